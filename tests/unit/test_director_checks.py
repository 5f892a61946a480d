"""Every check type of the director against small local servers on
127.0.0.1, deadlines included (servers that accept and never answer)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import time

import pytest

from ipvs.director.checks import dns_query, run_check
from ipvs.director.config import CheckConfig, parse

HOST = "127.0.0.1"


def make_check(type_: str, port: int = 0, *, timeout: float = 1.0, **params) -> CheckConfig:
    """A CheckConfig through the real parser (so the values are validated)."""
    lines = ['[[service]]', 'address = "10.0.0.1"', 'port = 80',
             '[[service.real_server]]', 'address = "%s"' % HOST, 'port = %d' % (port or 1),
             '[service.real_server.check]', 'type = "%s"' % type_, 'timeout = %r' % timeout]
    for k, v in params.items():
        if isinstance(v, bool):
            lines.append("%s = %s" % (k, "true" if v else "false"))
        elif isinstance(v, list):
            lines.append("%s = %s" % (k, json.dumps(v)))
        elif isinstance(v, str):
            lines.append("%s = '%s'" % (k, v))
        else:
            lines.append("%s = %r" % (k, v))
    return parse("\n".join(lines)).services[0].real_servers[0].checks[0]


def run(coro):
    return asyncio.run(coro)


def free_port(kind=socket.SOCK_STREAM) -> int:
    s = socket.socket(socket.AF_INET, kind)
    s.bind((HOST, 0))
    port = s.getsockname()[1]
    s.close()
    return port


async def with_server(handler, coro_fn, **kw):
    server = await asyncio.start_server(handler, HOST, 0, **kw)
    port = server.sockets[0].getsockname()[1]
    try:
        return await coro_fn(port)
    finally:
        server.close()
        # never wait for handlers that hang on purpose
        for t in asyncio.all_tasks():
            if t is not asyncio.current_task() and t.get_coro().__name__ == handler.__name__:
                t.cancel()


async def silent(reader, writer):
    """Accepts and never answers (bounded: 10 s at most)."""
    try:
        await asyncio.sleep(10)
    except asyncio.CancelledError:
        pass
    finally:
        writer.close()


# ---------------------------------------------------------------- tcp

def test_tcp_success_and_refused():
    async def go(port):
        return await run_check(make_check("tcp", port))
    res = run(with_server(silent, go))
    assert res.result == "success", res
    res = run(run_check(make_check("tcp", free_port())))
    assert res.result == "failure" and "refused" in res.message.lower(), res


# ---------------------------------------------------------------- http

def http_handler(status=200, body=b"hello world", chunked=False, seen=None):
    async def handler(reader, writer):
        head = await reader.readuntil(b"\r\n\r\n")
        if seen is not None:
            seen.append(head)
        if chunked:
            data = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in (body[:4], body[4:])) + b"0\r\n\r\n"
            writer.write(b"HTTP/1.1 %d X\r\nTransfer-Encoding: chunked\r\n\r\n" % status + data)
        else:
            writer.write(b"HTTP/1.1 %d X\r\nContent-Length: %d\r\n\r\n" % (status, len(body)) + body)
        await writer.drain()
        writer.close()
    handler.__name__ = "handler"
    return handler


def http_check(handler, **params):
    async def go(port):
        return await run_check(make_check(params.pop("type", "http"), port, **params))
    return run(with_server(handler, go))


def test_http_status_path_and_host():
    seen = []
    res = http_check(http_handler(seen=seen), path="/health", host="www.example")
    assert res.result == "success", res
    assert seen[0].startswith(b"GET /health HTTP/1.1\r\n")
    assert b"\r\nHost: www.example\r\n" in seen[0]
    assert http_check(http_handler(500)).result == "failure"
    assert "500" in http_check(http_handler(500)).message


def test_http_expect_status_ranges():
    assert http_check(http_handler(302), expect_status="200-299,302").ok
    assert not http_check(http_handler(301), expect_status="200-299,302").ok
    assert http_check(http_handler(503), expect_status=503).ok


def test_http_expect_body_and_digest_also_chunked():
    body = b"status: healthy\n"
    digest = hashlib.md5(body).hexdigest()
    assert http_check(http_handler(body=body), expect_body="heal+thy").ok
    assert not http_check(http_handler(body=body), expect_body="^sick").ok
    assert http_check(http_handler(body=body, chunked=True), expect_digest=digest).ok
    res = http_check(http_handler(body=b"other"), expect_digest=digest)
    assert res.result == "failure" and "digest" in res.message


def test_http_deadline_against_silent_server():
    t = time.monotonic()
    res = http_check(silent, timeout=0.3)
    took = time.monotonic() - t
    assert res.result == "timeout", res
    assert 0.25 <= took < 1.0, took


def test_http_deadline_is_total_for_a_slow_trickle():
    """A server sending one byte every 0.1 s never finishes within 0.5 s:
    the deadline covers the whole answer, not each read."""
    async def trickle(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        for b in b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello":
            writer.write(bytes([b]))
            await writer.drain()
            await asyncio.sleep(0.1)
        writer.close()
    t = time.monotonic()
    res = http_check(trickle, timeout=0.5)
    assert res.result == "timeout" and time.monotonic() - t < 1.0, res


# ---------------------------------------------------------------- https

@pytest.fixture(scope="module")
def cert(tmp_path_factory):
    if shutil.which("openssl") is None:
        pytest.skip("no openssl command here to make the self-signed test certificate")
    d = tmp_path_factory.mktemp("tls")
    key, crt = str(d / "key.pem"), str(d / "cert.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key,
                    "-out", crt, "-days", "2", "-subj", "/CN=backend.test",
                    "-addext", "subjectAltName=DNS:backend.test"],
                   check=True, capture_output=True, timeout=60)
    return crt, key


def tls_context(cert, names):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(*cert)

    def sni(sock, name, _ctx):
        names.append(name)
    ctx.sni_callback = sni
    return ctx


def https_check(cert, handler, names, **params):
    async def go(port):
        return await run_check(make_check("https", port, **params))
    return run(with_server(handler, go, ssl=tls_context(cert, names)))


def test_https_self_signed_verify_off_by_default_and_sni(cert):
    names = []
    res = https_check(cert, http_handler(), names, sni="backend.test")
    assert res.result == "success", res
    assert names == ["backend.test"]


def test_https_verify_true_refuses_self_signed(cert):
    res = https_check(cert, http_handler(), [], verify=True, sni="backend.test")
    assert res.result == "failure" and "certificate" in res.message.lower(), res


def test_https_deadline_during_handshake():
    """A plain TCP server that accepts and never answers the ClientHello."""
    async def go(port):
        return await run_check(make_check("https", port, timeout=0.3))
    t = time.monotonic()
    res = run(with_server(silent, go))
    assert res.result == "timeout" and time.monotonic() - t < 1.0, res


# ---------------------------------------------------------------- udp and dns

class UDPServer(asyncio.DatagramProtocol):
    def __init__(self, answer):
        self.answer = answer
        self.got = []

    def connection_made(self, transport):
        self.transport = transport

    def datagram_received(self, data, addr):
        self.got.append(data)
        reply = self.answer(data)
        if reply is not None:
            self.transport.sendto(reply, addr)


async def with_udp(answer, coro_fn):
    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_datagram_endpoint(lambda: UDPServer(answer),
                                                           local_addr=(HOST, 0))
    try:
        return await coro_fn(transport.get_extra_info("sockname")[1]), proto
    finally:
        transport.close()


def udp_check(answer, **params):
    async def go(port):
        return await run_check(make_check(params.pop("type", "udp"), port, **params))
    return run(with_udp(answer, go))


def test_udp_send_expect():
    res, proto = udp_check(lambda d: b"pong " + d, send="ping", expect="^pong ping$")
    assert res.result == "success" and proto.got == [b"ping"], res
    res, _ = udp_check(lambda d: b"nope", send="ping", expect="^pong")
    assert res.result == "failure"


def test_udp_deadline_and_refused():
    t = time.monotonic()
    res, _ = udp_check(lambda d: None, send="ping", timeout=0.3)
    assert res.result == "timeout" and time.monotonic() - t < 1.0, res
    res = run(run_check(make_check("udp", free_port(socket.SOCK_DGRAM), send="x")))
    assert res.result == "failure", res   # ICMP port unreachable


def test_dns_query_bytes_rfc1035():
    q = dns_query("www.example.org", 1, 0x1234)
    assert q == (b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00"
                 b"\x03www\x07example\x03org\x00\x00\x01\x00\x01")
    assert dns_query(".", 2, 1).endswith(b"\x00\x00\x02\x00\x01")


def dns_server(rcode):
    def answer(q):
        ident, flags, qd = struct.unpack("!HHH", q[:6])
        assert qd == 1 and flags & 0x0100
        question = q[12:]
        return struct.pack("!HHHHHH", ident, 0x8180 | rcode, 1, 0, 0, 0) + question
    return answer


def test_dns_rcode():
    res, proto = udp_check(dns_server(0), type="dns", name="svc.example", qtype="AAAA")
    assert res.result == "success", res
    assert proto.got[0][12:] == b"\x03svc\x07example\x00\x00\x1c\x00\x01"
    res, _ = udp_check(dns_server(3), type="dns", name="svc.example")
    assert res.result == "failure" and "rcode 3" in res.message
    res, _ = udp_check(dns_server(3), type="dns", name="gone.example", expect_rcode="NXDOMAIN")
    assert res.ok


def test_dns_ignores_answers_with_another_id_and_times_out():
    res, _ = udp_check(lambda q: b"\x00\x00" + dns_server(0)(q)[2:] if q[:2] != b"\x00\x00"
                       else None, type="dns", name="a.example", timeout=0.3)
    assert res.result == "timeout", res


# ---------------------------------------------------------------- smtp

def smtp_handler(banner=b"220 mx.test ESMTP\r\n", ehlo=b"250-mx.test\r\n250 PIPELINING\r\n",
                 seen=None):
    async def handler(reader, writer):
        writer.write(banner)
        line = await reader.readline()
        if seen is not None:
            seen.append(line)
        writer.write(ehlo)
        await reader.readline()
        writer.write(b"221 bye\r\n")
        writer.close()
    handler.__name__ = "handler"
    return handler


def smtp_check(handler, **params):
    async def go(port):
        return await run_check(make_check("smtp", port, **params))
    return run(with_server(handler, go))


def test_smtp_banner_and_ehlo():
    seen = []
    res = smtp_check(smtp_handler(seen=seen), helo="director.test")
    assert res.result == "success", res
    assert seen == [b"EHLO director.test\r\n"]
    assert smtp_check(smtp_handler(banner=b"554 go away\r\n")).result == "failure"
    assert smtp_check(smtp_handler(ehlo=b"502 no\r\n")).result == "failure"


def test_smtp_deadline_without_banner():
    t = time.monotonic()
    res = smtp_check(silent, timeout=0.3)
    assert res.result == "timeout" and time.monotonic() - t < 1.0, res


# ---------------------------------------------------------------- exec

def test_exec_exit_codes_and_dynamic_weight():
    assert run(run_check(make_check("exec", command=["true"]))).ok
    assert run(run_check(make_check("exec", command=["false"]))).result == "failure"
    res = run(run_check(make_check("exec", command=["sh", "-c", "exit 7"], dynamic_weight=True)))
    assert res.ok and res.weight == 5, res
    res = run(run_check(make_check("exec", command=["sh", "-c", "exit 7"])))
    assert res.result == "failure" and res.weight is None


def test_exec_gets_target_in_environment(tmp_path):
    out = tmp_path / "env"
    cmd = ["sh", "-c", 'echo "$IPVS_DIRECTOR_ADDRESS $IPVS_DIRECTOR_PORT" > %s' % out]
    assert run(run_check(make_check("exec", 4321, command=cmd))).ok
    assert out.read_text().split() == [HOST, "4321"]


def test_exec_killed_with_its_process_group_at_the_deadline(tmp_path):
    pidfile = tmp_path / "pid"
    cmd = ["sh", "-c", "sleep 30 & echo $! > %s; wait" % pidfile]
    t = time.monotonic()
    res = run(run_check(make_check("exec", command=cmd, timeout=0.5)))
    assert res.result == "timeout" and time.monotonic() - t < 1.5, res
    grandchild = int(pidfile.read_text())
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        try:
            os.kill(grandchild, 0)
        except ProcessLookupError:
            break
        # a zombie is dead too: reaped by init, not by us
        try:
            with open("/proc/%d/stat" % grandchild) as f:
                if f.read().split(") ")[1].startswith("Z"):
                    break
        except FileNotFoundError:
            break
        time.sleep(0.05)
    else:
        os.kill(grandchild, signal.SIGKILL)
        pytest.fail("the check's grandchild outlived the deadline")


def test_exec_missing_program():
    res = run(run_check(make_check("exec", command=["/nonexistent/prog"])))
    assert res.result == "failure", res


# ---------------------------------------------------------------- file, none

def test_file_weight(tmp_path):
    f = tmp_path / "weight"
    chk = make_check("file", path=str(f))
    assert run(run_check(chk)).result == "failure"         # missing
    f.write_text("5\n")
    res = run(run_check(chk))
    assert res.ok and res.weight == 5
    f.write_text("0\n")
    assert run(run_check(chk)).result == "failure"
    f.write_text("five\n")
    assert run(run_check(chk)).result == "failure"


def test_none_always_up():
    assert run(run_check(make_check("none"))).ok


def test_checks_keep_no_descriptor_between_runs():
    async def go(port):
        before = len(os.listdir("/proc/self/fd"))
        for _ in range(5):
            assert (await run_check(make_check("tcp", port))).ok
            assert (await run_check(make_check("http", port, timeout=0.2))).result != "success"
        await asyncio.sleep(0.05)
        return before, len(os.listdir("/proc/self/fd"))
    async def closing(reader, writer):
        writer.close()
    before, after = run(with_server(closing, go))
    assert after <= before


def test_one_table_of_check_types():
    """Every check type is one object of checks.TYPES: the configuration's
    types, its keys and keepalived's checkers all come from it."""
    from ipvs.director import checks, convert
    from ipvs.director.config import CHECK_TYPES, TYPE_KEYS
    assert tuple(checks.TYPES) == CHECK_TYPES == ("tcp", "http", "https", "udp", "dns",
                                                  "smtp", "exec", "file", "none")
    assert TYPE_KEYS["https"] == TYPE_KEYS["http"] + ("sni", "verify")
    assert convert.CHECKERS == {
        "TCP_CHECK": "tcp", "HTTP_GET": "http", "SSL_GET": "https", "UDP_CHECK": "udp",
        "DNS_CHECK": "dns", "SMTP_CHECK": "smtp", "MISC_CHECK": "exec", "FILE_CHECK": "file"}


def test_tcp_run_check_deadline_is_the_tcp_definition(monkeypatch):
    """run_check's TCP check is checks.tcp's, the scheduler's own: its
    start (tcp.connect) with a deadline on the loop, a connect still in
    progress at the deadline a timeout."""
    from ipvs.director.checks import tcp
    held = []

    def in_progress(c):
        # a socket that never becomes writable: a listening one
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind((HOST, 0))
        s.listen(1)
        held.append(s)
        return s, time.monotonic()
    monkeypatch.setattr(tcp, "connect", in_progress)

    async def go():
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        res = await run_check(make_check("tcp", 1, timeout=0.2))
        return res, loop.time() - t0
    res, took = run(go())
    assert res.result == "timeout" and res.message == "no answer within 0.2s", res
    assert 0.15 <= took < 2.0
    assert held and held[0].fileno() == -1          # closed by the check

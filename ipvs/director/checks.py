"""Health checks of the director, on asyncio, each with a hard total deadline.

:func:`run_check` runs one check of a :class:`~ipvs.director.config.CheckConfig`
and returns a :class:`CheckResult`; the whole check (connect, TLS handshake,
request, reading the answer, a child process's run) must finish within the
check's ``timeout`` or it is cut and counted as ``"timeout"``.  A check opens
its sockets or its process only while it runs: nothing is kept between runs.
"""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import hashlib
import os
import re
import secrets
import signal
import socket
import ssl
import struct
import time
from typing import Any, Optional, Tuple

from ipvs.director.config import CheckConfig

__all__ = ["CheckResult", "run_check", "dns_query", "MAX_BODY"]

MAX_BODY = 1 << 20          # bytes of an HTTP answer read at most
MAX_LINE = 8192


@dataclasses.dataclass(frozen=True)
class CheckResult:
    """The outcome of one check: ``result`` is "success", "failure" or
    "timeout"; ``weight`` a weight the check asks for (exec with
    dynamic_weight, file), else None."""
    result: str
    message: str
    duration: float
    weight: Optional[int] = None

    @property
    def ok(self) -> bool:
        return self.result == "success"

    def as_dict(self) -> dict:
        out = {"result": self.result, "message": self.message,
               "duration": round(self.duration, 6)}
        if self.weight is not None:
            out["weight"] = self.weight
        return out


class _Fail(Exception):
    pass


def _family(address: str) -> int:
    return socket.AF_INET6 if ":" in address else socket.AF_INET


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    try:
        await writer.wait_closed()
    except (OSError, ssl.SSLError):
        pass


async def _tcp(c: CheckConfig) -> Tuple[str, Optional[int]]:
    # a bare non-blocking socket: no transport, protocol or stream objects
    # (a third of the CPU of a check at 5,000 checks a second)
    loop = asyncio.get_running_loop()
    sock = socket.socket(_family(c.address), socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        await loop.sock_connect(sock, (c.address, c.port))
    finally:
        sock.close()
    return "connected", None


async def _tcp_check(c: CheckConfig, limit: float) -> CheckResult:
    """The TCP check on the loop's own primitives: one non-blocking socket,
    one writer callback, one timer, one future (no task, no transport, no
    timeout context: at 5,000 checks a second every object counts)."""
    loop = asyncio.get_running_loop()
    start = time.monotonic()
    try:
        sock = socket.socket(_family(c.address), socket.SOCK_STREAM)
    except OSError as e:
        return CheckResult("failure", os.strerror(e.errno) if e.errno else str(e),
                           time.monotonic() - start)
    fut: "asyncio.Future[bool]" = loop.create_future()
    fd = sock.fileno()
    watching = False
    timer = None

    def ready(expired: bool) -> None:
        if not fut.done():
            fut.set_result(expired)
    try:
        sock.setblocking(False)
        err = sock.connect_ex((c.address, c.port))
        if err in (errno.EINPROGRESS, errno.EAGAIN, errno.EALREADY):
            loop.add_writer(fd, ready, False)
            watching = True
            timer = loop.call_later(limit, ready, True)
            if await fut:
                return CheckResult("timeout", "no answer within %gs" % limit,
                                   time.monotonic() - start)
            err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            return CheckResult("failure", os.strerror(err), time.monotonic() - start)
        return CheckResult("success", "connected", time.monotonic() - start)
    except OSError as e:
        return CheckResult("failure", os.strerror(e.errno) if e.errno else str(e),
                           time.monotonic() - start)
    finally:
        if timer is not None:
            timer.cancel()
        if watching:
            loop.remove_writer(fd)
        sock.close()


def _dechunk(data: bytes) -> bytes:
    out = b""
    while True:
        line, sep, data = data.partition(b"\r\n")
        if not sep:
            raise _Fail("truncated chunked body")
        try:
            size = int(line.split(b";")[0].strip(), 16)
        except ValueError:
            raise _Fail("bad chunk size") from None
        if size == 0:
            return out
        out += data[:size]
        data = data[size + 2:]


async def _http(c: CheckConfig) -> Tuple[str, Optional[int]]:
    ctx = None
    server_hostname = None
    host = c.param("host") or (("[%s]" % c.address) if ":" in c.address else c.address)
    if c.type == "https":
        ctx = ssl.create_default_context()
        if not c.param("verify", False):
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        server_hostname = c.param("sni") or c.param("host") or c.address
    reader, writer = await asyncio.open_connection(c.address, c.port, ssl=ctx,
                                                   server_hostname=server_hostname)
    try:
        default_port = 443 if c.type == "https" else 80
        host_header = host if c.param("host") or c.port == default_port else "%s:%d" % (host, c.port)
        req = ("GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: ipvs-director\r\n"
               "Accept: */*\r\nConnection: close\r\n\r\n" % (c.param("path", "/"), host_header))
        writer.write(req.encode("latin-1"))
        await writer.drain()
        data = b""
        while len(data) <= MAX_BODY:
            try:
                chunk = await reader.read(65536)
            except (ssl.SSLError, ConnectionResetError):
                if data:
                    break
                raise
            if not chunk:
                break
            data += chunk
    finally:
        await _close(writer)
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        raise _Fail("no complete HTTP answer (%d bytes)" % len(data))
    lines = head.split(b"\r\n")
    m = re.match(rb"HTTP/\d\.\d (\d{3})", lines[0])
    if not m:
        raise _Fail("not an HTTP status line: %r" % lines[0][:60])
    status = int(m.group(1))
    headers = {}
    for ln in lines[1:]:
        k, _, v = ln.partition(b":")
        headers[k.strip().lower()] = v.strip()
    if b"chunked" in headers.get(b"transfer-encoding", b"").lower():
        body = _dechunk(body)
    elif b"content-length" in headers:
        try:
            body = body[:int(headers[b"content-length"])]
        except ValueError:
            pass
    if not any(lo <= status <= hi for lo, hi in c.param("expect_status", ((200, 299),))):
        raise _Fail("HTTP status %d" % status)
    if c.param("expect_body") is not None:
        if not re.search(c.param("expect_body").encode("latin-1"), body):
            raise _Fail("HTTP %d, body does not match %r" % (status, c.param("expect_body")))
    if c.param("expect_digest") is not None:
        digest = hashlib.md5(body).hexdigest()
        if digest != c.param("expect_digest"):
            raise _Fail("HTTP %d, body digest %s" % (status, digest))
    return "HTTP %d" % status, None


class _Datagram(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.answer: "asyncio.Future[bytes]" = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if not self.answer.done():
            self.answer.set_result(data)

    def error_received(self, exc: Exception) -> None:
        if not self.answer.done():
            self.answer.set_exception(exc)


async def _exchange(c: CheckConfig, payload: bytes, accept: Any = None) -> bytes:
    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_datagram_endpoint(
        _Datagram, remote_addr=(c.address, c.port), family=_family(c.address))
    try:
        transport.sendto(payload)
        while True:
            data = await proto.answer
            if accept is None or accept(data):
                return data
            proto.answer = loop.create_future()  # not ours: wait for the next one
    finally:
        transport.close()


async def _udp(c: CheckConfig) -> Tuple[str, Optional[int]]:
    data = await _exchange(c, c.param("send", "").encode("utf-8"))
    expect = c.param("expect")
    if expect is not None and not re.search(expect.encode("utf-8"), data):
        raise _Fail("answer %r does not match %r" % (data[:60], expect))
    return "answered %d bytes" % len(data), None


def dns_query(name: str, qtype: int, ident: int) -> bytes:
    """A DNS query message (RFC 1035 section 4): header with recursion
    desired, one question of class IN."""
    header = struct.pack("!HHHHHH", ident, 0x0100, 1, 0, 0, 0)
    qname = b""
    for label in name.rstrip(".").split("."):
        if label:
            raw = label.encode("idna") if not label.isascii() else label.encode("ascii")
            qname += bytes([len(raw)]) + raw
    return header + qname + b"\x00" + struct.pack("!HH", qtype, 1)


async def _dns(c: CheckConfig) -> Tuple[str, Optional[int]]:
    ident = secrets.randbelow(65536)
    query = dns_query(c.param("name", "."), c.param("qtype", 1), ident)

    def ours(data: bytes) -> bool:
        return len(data) >= 12 and struct.unpack("!H", data[:2])[0] == ident and data[2] & 0x80
    data = await _exchange(c, query, ours)
    rcode = data[3] & 0x0F
    if rcode != c.param("expect_rcode", 0):
        raise _Fail("DNS rcode %d, expected %d" % (rcode, c.param("expect_rcode", 0)))
    answers = struct.unpack("!H", data[6:8])[0]
    return "DNS rcode %d, %d answers" % (rcode, answers), None


async def _smtp_reply(reader: asyncio.StreamReader) -> Tuple[int, str]:
    text = ""
    for _ in range(100):
        line = await reader.readline()
        if not line:
            raise _Fail("connection closed during the reply")
        if len(line) > MAX_LINE:
            raise _Fail("reply line too long")
        s = line.decode("latin-1").rstrip("\r\n")
        text += s + " "
        if len(s) < 3 or not s[:3].isdigit():
            raise _Fail("not an SMTP reply: %r" % s[:60])
        if len(s) == 3 or s[3] == " ":
            return int(s[:3]), text.strip()
    raise _Fail("reply with too many lines")


async def _smtp(c: CheckConfig) -> Tuple[str, Optional[int]]:
    reader, writer = await asyncio.open_connection(c.address, c.port, limit=MAX_LINE * 2)
    try:
        code, text = await _smtp_reply(reader)
        if code != 220:
            raise _Fail("banner %d: %s" % (code, text[:80]))
        writer.write(b"EHLO %s\r\n" % c.param("helo", "ipvs-director").encode("ascii", "replace"))
        await writer.drain()
        code, text = await _smtp_reply(reader)
        if code != 250:
            raise _Fail("EHLO answered %d: %s" % (code, text[:80]))
        writer.write(b"QUIT\r\n")
        await writer.drain()
    finally:
        await _close(writer)
    return "SMTP 220, EHLO 250", None


async def _exec(c: CheckConfig) -> Tuple[str, Optional[int]]:
    env = dict(os.environ)
    env.update(IPVS_DIRECTOR_ADDRESS=c.address, IPVS_DIRECTOR_PORT=str(c.port))
    proc = await asyncio.create_subprocess_exec(
        *c.param("command"), stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        start_new_session=True, env=env)
    try:
        rc = await proc.wait()
    except BaseException:
        # the deadline (or a stop): kill the whole process group
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            await asyncio.shield(proc.wait())
        except BaseException:
            pass
        raise
    else:
        try:  # children it left behind in its group
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    if rc == 0:
        return "exit 0", None
    if c.param("dynamic_weight") and 2 <= rc <= 255:
        return "exit %d: weight %d" % (rc, rc - 2), rc - 2
    raise _Fail("exit %d" % rc if rc >= 0 else "killed by signal %d" % -rc)


async def _file(c: CheckConfig) -> Tuple[str, Optional[int]]:
    path = c.param("path")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            raw = os.read(fd, 64)
        finally:
            os.close(fd)
    except OSError as e:
        raise _Fail("cannot read %s: %s" % (path, e.strerror)) from None
    text = raw.decode("ascii", "replace").strip()
    if not re.fullmatch(r"\d{1,10}", text):
        raise _Fail("%s holds %r, not a weight" % (path, text[:20]))
    weight = int(text)
    if weight == 0 or weight > 0x7FFFFFFF:
        raise _Fail("%s says weight %d" % (path, weight))
    return "weight %d" % weight, weight


async def _none(c: CheckConfig) -> Tuple[str, Optional[int]]:
    return "no check", None


_timeout = getattr(asyncio, "timeout", None)

_RUNNERS = {"tcp": _tcp, "http": _http, "https": _http, "udp": _udp, "dns": _dns,
            "smtp": _smtp, "exec": _exec, "file": _file, "none": _none}


async def run_check(check: CheckConfig, timeout: Optional[float] = None) -> CheckResult:
    """Run ``check`` once within its total deadline (``timeout`` overrides the
    check's own).  Never raises for a failing target: the result says it."""
    limit = check.timeout if timeout is None else timeout
    if check.type == "tcp":
        return await _tcp_check(check, limit)
    start = time.monotonic()
    try:
        if _timeout is not None:
            # Python 3.11+: a deadline on the running task, no extra task
            async with _timeout(limit):
                message, weight = await _RUNNERS[check.type](check)
        else:  # pragma: no cover - Python < 3.11
            message, weight = await asyncio.wait_for(_RUNNERS[check.type](check), limit)
        return CheckResult("success", message, time.monotonic() - start, weight)
    except asyncio.TimeoutError:
        return CheckResult("timeout", "no answer within %gs" % limit, time.monotonic() - start)
    except _Fail as e:
        return CheckResult("failure", str(e), time.monotonic() - start)
    except (OSError, ssl.SSLError, EOFError, asyncio.IncompleteReadError, ValueError,
            UnicodeError) as e:
        if isinstance(e, OSError) and e.errno and not isinstance(e, ssl.SSLError):
            text = os.strerror(e.errno)
        else:
            text = str(e) or type(e).__name__
        return CheckResult("failure", text, time.monotonic() - start)

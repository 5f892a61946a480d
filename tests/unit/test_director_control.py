"""The control API over a UNIX socket, with a director on a stand-in kernel:
status, drain/undrain/weight, reload, events, errors and limits, the
socket's mode, and the subcommands."""

from __future__ import annotations

import asyncio
import io
import json
import os
import socket
import stat
import subprocess
import sys
import threading

import pytest

from ipvs.director import parse
from ipvs.director._kernel import MemoryKernel
from ipvs.director.checks import CheckResult
from ipvs.director.control import MAX_BODY, MAX_HEAD, ControlServer, request
from ipvs.director.core import Director

TEXT = '''
[[service]]
address = "10.0.0.1"
port = 80
[service.check]
type = "none"
rise = 1
[[service.real_server]]
address = "10.0.1.1"
port = 8080
[[service.real_server]]
address = "10.0.1.2"
port = 8080
weight = 2
'''
SVC = "TCP 10.0.0.1:80"


@pytest.fixture
def api(tmp_path):
    """A director and its control server on an event loop in a thread;
    yields (socket path, config path, director, loop)."""
    cfg_path = tmp_path / "d.toml"
    cfg_path.write_text(TEXT)
    sock = str(tmp_path / "ctl.sock")
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    box = {}

    async def main():
        d = Director(parse(TEXT, str(cfg_path)), path=str(cfg_path), kernel=MemoryKernel(),
                     stream=io.StringIO())
        d._dirty, d._lock, d._stopped = asyncio.Event(), asyncio.Lock(), asyncio.Event()
        await d._read()
        await d.round()
        for p in d.probes.values():
            d._on_result(p, CheckResult("success", "ok", 0.0))
        await d.round()
        srv = ControlServer(d, sock)
        await srv.start()
        box.update(d=d, srv=srv, stop=asyncio.Event())
        ready.set()
        await box["stop"].wait()
        await srv.close()

    t = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    t.start()
    assert ready.wait(10)
    yield sock, str(cfg_path), box["d"], loop
    loop.call_soon_threadsafe(box["stop"].set)
    t.join(10)
    loop.close()


def call(sock, method, target, body=None):
    st, data = request(sock, method, target, body, timeout=10)
    return st, json.loads(data)


def raw(sock, data: bytes) -> bytes:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(sock)
    try:
        s.sendall(data)
    except BrokenPipeError:
        pass
    out = b""
    while True:
        try:
            chunk = s.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        out += chunk
    s.close()
    return out


def test_socket_mode_0600(api):
    sock = api[0]
    mode = os.stat(sock).st_mode
    assert stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == 0o600


def test_status(api):
    st, body = call(api[0], "GET", "/status")
    assert st == 200
    svc = body["services"][0]
    assert svc["service"] == SVC
    rs = svc["real_servers"]
    assert [(r["address"], r["port"], r["weight"], r["configured_weight"], r["state"])
            for r in rs] == [("10.0.1.1", 8080, 1, 1, "up"), ("10.0.1.2", 8080, 2, 2, "up")]
    assert rs[0]["last_check"]["result"] == "success"


def test_drain_undrain_weight(api):
    sock, _, d, _ = api
    key = {"service": SVC, "address": "10.0.1.2", "port": 8080}
    st, body = call(sock, "POST", "/weight", dict(key, weight=5))
    assert st == 200 and body["weight"] == 5 and body["configured_weight"] == 2
    st, body = call(sock, "POST", "/drain", key)
    assert st == 200 and body["state"] == "draining"
    st, body = call(sock, "POST", "/undrain", key)
    assert st == 200 and body["state"] == "up" and body["weight"] == 5


@pytest.mark.parametrize("target,body,status,words", [
    ("/drain", b"{not json", 400, "bad JSON"),
    ("/drain", b"[1, 2]", 400, "JSON object"),
    ("/drain", json.dumps({"service": SVC, "address": "10.0.1.1"}).encode(), 400, "port"),
    ("/drain", json.dumps({"service": "TCP 10.0.0.9:80", "address": "10.0.1.1",
                           "port": 8080}).encode(), 404, "unknown service"),
    ("/undrain", json.dumps({"service": SVC, "address": "10.0.1.9", "port": 8080}).encode(),
     404, "no real server"),
    ("/weight", json.dumps({"service": SVC, "address": "10.0.1.1", "port": 8080,
                            "weight": -3}).encode(), 400, "weight"),
    ("/drain", json.dumps({"service": SVC, "address": "nowhere", "port": 8080}).encode(),
     400, "address"),
    ("/nothing", b"", 404, "no such endpoint"),
])
def test_errors(api, target, body, status, words):
    data = raw(api[0], b"POST %s HTTP/1.1\r\nContent-Length: %d\r\n\r\n" % (target.encode(),
                                                                         len(body)) + body)
    head, _, payload = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 %d " % status), head
    assert words in json.loads(payload)["error"]


def test_method_not_allowed_and_limits(api):
    sock = api[0]
    assert raw(sock, b"POST /status HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 405")
    big = b"GET /status HTTP/1.1\r\nX: " + b"a" * (MAX_HEAD + 10) + b"\r\n\r\n"
    assert raw(sock, big).startswith(b"HTTP/1.1 431")
    assert raw(sock, b"POST /drain HTTP/1.1\r\nContent-Length: %d\r\n\r\n"
               % (MAX_BODY + 1)).startswith(b"HTTP/1.1 413")
    assert raw(sock, b"garbage\r\n\r\n").startswith(b"HTTP/1.1 400")


def test_reload_refused_names_line_and_key_then_applied(api):
    sock, path, d, _ = api
    with open(path, "w") as f:
        f.write(TEXT.replace("weight = 2", "weight = 2\nforward = \"sideways\""))
    st, body = call(sock, "POST", "/reload")
    assert st == 422
    assert body["line"] == 15 and body["key"] == "service[0].real_server[1].forward", body
    assert call(sock, "GET", "/status")[1]["services"][0]["real_servers"][1]["weight"] == 2
    with open(path, "w") as f:
        f.write(TEXT.replace("weight = 2", "weight = 4"))
    st, body = call(sock, "POST", "/reload")
    assert st == 200 and body["changed"] == [SVC], body
    assert call(sock, "GET", "/status")[1]["services"][0]["real_servers"][1]["weight"] == 4


def test_events_stream(api):
    sock, _, d, loop = api
    lines = []
    got = threading.Event()

    def on_line(line):
        lines.append(json.loads(line))
        if lines[-1]["event"] == "drain":
            got.set()
            raise StopIteration  # leave the stream
    t = threading.Thread(target=lambda: _swallow(lambda: request(sock, "GET", "/events",
                                                                 stream=on_line)), daemon=True)
    t.start()
    deadline = 50
    while not d.subscribers and deadline:
        threading.Event().wait(0.05)
        deadline -= 1
    assert d.subscribers, "the events stream did not subscribe"
    call(sock, "POST", "/drain", {"service": SVC, "address": "10.0.1.1", "port": 8080})
    assert got.wait(10)
    ev = lines[-1]
    assert (ev["event"], ev["service"], ev["address"], ev["port"]) == ("drain", SVC, "10.0.1.1",
                                                                        8080)
    assert isinstance(ev["time"], float)


def test_events_stream_ends_when_its_client_goes_away(api):
    """A client that closes its end is dropped at once, not at the next
    event (with no event to come, its stream and task would stay)."""
    sock, _, d, loop = api
    c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    c.connect(sock)
    c.sendall(b"GET /events HTTP/1.1\r\nHost: x\r\n\r\n")
    deadline = 200
    while not d.subscribers and deadline:
        threading.Event().wait(0.05)
        deadline -= 1
    assert d.subscribers, "the events stream did not subscribe"
    c.close()
    deadline = 200
    while d.subscribers and deadline:
        threading.Event().wait(0.05)
        deadline -= 1
    assert not d.subscribers, "the stream of a closed client stayed"

    async def streams():
        return [t for t in asyncio.all_tasks() if t.get_coro().__qualname__
                in ("ControlServer._client", "_until_eof")]
    assert asyncio.run_coroutine_threadsafe(streams(), loop).result(10) == []


def _swallow(fn):
    try:
        fn()
    except StopIteration:
        pass


def test_subcommands_print_json_and_exit_status(api):
    sock = api[0]
    r = subprocess.run([sys.executable, "-m", "ipvs.director", "-s", sock, "status", "--json"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and json.loads(r.stdout)["services"][0]["service"] == SVC
    r = subprocess.run([sys.executable, "-m", "ipvs.director", "-s", sock, "weight", SVC,
                        "10.0.1.1", "8080", "3"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and json.loads(r.stdout)["weight"] == 3
    r = subprocess.run([sys.executable, "-m", "ipvs.director", "-s", sock, "drain", SVC,
                        "10.0.1.7", "8080"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "no real server" in r.stderr and not r.stdout
    r = subprocess.run([sys.executable, "-m", "ipvs.director", "-s", sock + ".none", "status"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "ipvs-director:" in r.stderr

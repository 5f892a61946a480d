"""systemd's notification protocol (ipvs.director.sdnotify): datagrams on
a socket the test binds, by path and in the abstract namespace; nothing
without NOTIFY_SOCKET; the watchdog only for its process; and the
director's READY/STOPPING/WATCHDOG on a stand-in kernel."""

from __future__ import annotations

import asyncio
import io
import os
import socket

import pytest

from ipvs.director import cli, parse
from ipvs.director._kernel import MemoryKernel
from ipvs.director.core import Director
from ipvs.director.sdnotify import Notifier


@pytest.fixture
def listener(tmp_path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = str(tmp_path / "notify.sock")
    s.bind(path)
    s.settimeout(5)
    yield path, s
    s.close()


def recv(s: socket.socket) -> str:
    return s.recv(4096).decode()


def test_path_socket(listener):
    path, s = listener
    n = Notifier({"NOTIFY_SOCKET": path})
    assert n.enabled and n.watchdog_interval is None
    assert n.ready("2 services")
    assert recv(s) == "READY=1\nSTATUS=2 services"
    assert n.watchdog()
    assert recv(s) == "WATCHDOG=1"
    assert n.stopping()
    assert recv(s) == "STOPPING=1"
    assert n.send("STATUS=line one\nline two")
    assert recv(s) == "STATUS=line one line two"     # one assignment stays one
    n.close()


def test_abstract_socket():
    name = "ipvs-test-notify-%d" % os.getpid()
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind("\0" + name)
    s.settimeout(5)
    try:
        n = Notifier({"NOTIFY_SOCKET": "@" + name})
        assert n.ready()
        assert recv(s) == "READY=1"
        n.close()
    finally:
        s.close()


def test_status_only_when_changed(listener):
    path, s = listener
    n = Notifier({"NOTIFY_SOCKET": path})
    assert n.status("a") and not n.status("a") and n.status("b")
    assert recv(s) == "STATUS=a" and recv(s) == "STATUS=b"


def test_nothing_without_socket(tmp_path):
    n = Notifier({})
    assert not n.enabled and n.watchdog_interval is None
    assert not n.ready() and not n.watchdog() and not n.stopping()
    # a relative or unknown form is not a socket either
    assert not Notifier({"NOTIFY_SOCKET": "vsock:2:1234"}).enabled
    # a socket nobody listens on: dropped, no exception
    assert not Notifier({"NOTIFY_SOCKET": str(tmp_path / "none")}).ready()


def test_watchdog_interval_and_pid(listener):
    path = listener[0]
    assert Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "3000000"}).watchdog_interval == 1.5
    assert Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "3000000",
                     "WATCHDOG_PID": str(os.getpid())}).watchdog_interval == 1.5
    assert Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "3000000",
                     "WATCHDOG_PID": str(os.getpid() + 1)}).watchdog_interval is None
    assert Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "x"}).watchdog_interval is None
    assert Notifier({"WATCHDOG_USEC": "3000000"}).watchdog_interval is None


TEXT = '''
[director]
control = "%s"
[[service]]
address = "10.0.0.1"
port = 80
[service.check]
type = "none"
[[service.real_server]]
address = "10.0.1.1"
port = 8080
'''


def test_director_ready_watchdog_stopping(listener, tmp_path, monkeypatch):
    """cli._run on a stand-in kernel: READY=1 once it runs, WATCHDOG=1 at
    half of WATCHDOG_USEC, STOPPING=1 at SIGTERM's stop."""
    path, s = listener
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    monkeypatch.setenv("WATCHDOG_USEC", "200000")
    cfg_path = tmp_path / "d.toml"
    cfg_path.write_text(TEXT % (tmp_path / "ctl.sock"))
    cfg = parse(cfg_path.read_text(), str(cfg_path))
    made = {}

    class Stub(Director):
        def __init__(self, *a, **kw):
            kw["kernel"] = MemoryKernel()
            kw["stream"] = io.StringIO()
            super().__init__(*a, **kw)
            made["d"] = self
    monkeypatch.setattr("ipvs.director.core.Director", Stub)
    got = []

    async def main():
        task = asyncio.get_running_loop().create_task(cli._run(cfg, str(cfg_path), "text"))
        loop = asyncio.get_running_loop()
        s.setblocking(False)
        deadline = loop.time() + 20
        while loop.time() < deadline:
            try:
                got.append(s.recv(4096).decode())
            except BlockingIOError:
                await asyncio.sleep(0.02)
                if sum("WATCHDOG=1" in g for g in got) >= 3:
                    break
        os.kill(os.getpid(), __import__("signal").SIGTERM)
        return await asyncio.wait_for(task, 20)
    assert asyncio.run(main()) == 0
    s.settimeout(5)
    got.append(recv(s))
    assert got[0].startswith("READY=1\nSTATUS=1 service, ")
    assert sum(g == "WATCHDOG=1" for g in got) >= 3
    assert got[-1].startswith("STOPPING=1")
    assert not os.path.exists(tmp_path / "ctl.sock")


def test_no_watchdog_when_the_writer_stops(listener, tmp_path, monkeypatch):
    """A writer that is not alive gets no WATCHDOG=1 (systemd then acts)."""
    path, s = listener
    n = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "100000"})

    class Dead:
        services: dict = {}
        last_round_error = None

        def writer_alive(self):
            return False

    async def main():
        t = asyncio.get_running_loop().create_task(cli._keep_notified(Dead(), n))
        await asyncio.sleep(0.5)
        t.cancel()
        await asyncio.gather(t, return_exceptions=True)
    asyncio.run(main())
    s.setblocking(False)
    with pytest.raises(BlockingIOError):
        s.recv(4096)

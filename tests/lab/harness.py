"""The lab tests' one harness: a director process (``python -m
ipvs.director``) on a config file of the test, the config writer of the
single-director tests, the waits, and the readers of the lab's kernel
(weights, ``ipvsadm``) and of the director's /metrics.  Fixtures built on
it (``lab``, ``director_factory``) are in tests/lab/conftest.py.

Every lab test module imports its helpers from here (or from
tests/lab/kmod.py for the ip_vs module), never from another test module.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Callable, Dict, List, Optional

import pytest

from ipvs import netns
from ipvs.director.control import request
from ipvs.lab import MissingTool, wait_for

# the health check of config(): fast enough for the timing bounds below
INTERVAL = 0.3
TIMEOUT = 0.5
RISE = 2
FALL = 2
SLACK = 0.2          # the round's dump + batch and this test's polling
QUIESCE_BOUND = FALL * INTERVAL + TIMEOUT + SLACK
RECOVER_BOUND = RISE * INTERVAL + TIMEOUT + SLACK
START_BOUND = 20.0   # s for a director to answer its control socket


# ------------------------------------------------------------ waiting

def wait_until(pred: Callable[[], object], timeout: float, step: float = 0.02):
    """``pred()``'s first true value within ``timeout`` s, else its last value."""
    return wait_for(pred, timeout, step)


def timed(pred: Callable[[], object], timeout: float, what: str = "condition") -> float:
    """Seconds until ``pred()`` is true; fails when it is not within ``timeout``."""
    t = time.monotonic()
    assert wait_until(pred, timeout), "%s not reached in %.1fs" % (what, timeout)
    return time.monotonic() - t


# ------------------------------------------------------------ the director

class DirectorProc:
    """``python -m ipvs.director -c PATH --log-format json`` in the
    background, its stderr (the JSON events) in ``log``, its control socket
    ``sock``.  ``start()`` returns once the socket answers; ``stop()`` sends
    a signal and returns the exit status (failing when it does not exit);
    ``kill()`` and ``close()`` are for teardowns and never fail."""

    def __init__(self, path: str, sock: str, log: str, name: str = "director") -> None:
        self.path, self.sock, self.log, self.name = str(path), str(sock), str(log), name
        self.proc: Optional[subprocess.Popen] = None
        self.errfile = None

    def start(self) -> "DirectorProc":
        self.errfile = open(self.log, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ipvs.director", "-c", self.path, "--log-format", "json"],
            stdout=subprocess.DEVNULL, stderr=self.errfile)
        deadline = time.monotonic() + START_BOUND
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, "%s died: %s" % (self.name, self.stderr())
            try:
                st, _ = request(self.sock, "GET", "/status", timeout=2)
                if st == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.05)
        raise AssertionError("%s did not start: %s" % (self.name, self.stderr()))

    def stderr(self) -> str:
        with open(self.log, errors="replace") as f:
            return f.read()

    def events(self) -> List[dict]:
        out = []
        for line in self.stderr().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
        return out

    def call(self, method: str, target: str, body=None):
        st, data = request(self.sock, method, target, body, timeout=60)
        return st, json.loads(data) if data else None

    def status(self) -> dict:
        st, body = self.call("GET", "/status")
        assert st == 200
        return body

    def server(self, service: str, address: str) -> dict:
        """One real server of GET /status."""
        svc = next(s for s in self.status()["services"] if s["service"] == service)
        return next(r for r in svc["real_servers"] if r["address"] == address)

    def role(self, state: str) -> dict:
        st, body = self.call("POST", "/role", {"state": state})
        assert st == 200, body
        return body

    def stop(self, sig=signal.SIGTERM) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.send_signal(signal.SIGUSR1)   # faulthandler: every thread's stack
            time.sleep(0.5)
            self.proc.kill()
            self.proc.wait(10)
            raise AssertionError("%s did not stop: %s" % (self.name, self.stderr()[-6000:]))
        finally:
            self._close_log()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._close_log()

    def close(self) -> None:
        """SIGTERM, then SIGKILL after 15 s."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()
        self._close_log()

    def _close_log(self) -> None:
        if self.errfile is not None:
            self.errfile.close()


def config(lab, tmp_path, *, servers=None, check: str = "", service_extra: str = "",
           director_extra: str = "", port: int = 80, scheduler: str = "wrr",
           rise: int = RISE, drain_timeout: int = 20) -> str:
    """A config text: one TCP service on the VIP, real servers by
    {name: extra lines}, an HTTP health check by default."""
    servers = servers if servers is not None else {n: "" for n in lab.names}
    check = check or ('type = "http"\nport = %d\npath = "/health"' % lab.http_port)
    text = """
[director]
netns = "%s"
control = "%s"
drain_timeout = %d
resync_interval = 1
%s

[[service]]
address = "%s"
port = %d
scheduler = "%s"
%s

[service.check]
%s
interval = %s
retry_interval = %s
timeout = %s
rise = %d
fall = %d
""" % (lab.director, tmp_path / "ctl.sock", drain_timeout, director_extra, lab.vip, port,
       scheduler, service_extra, check, INTERVAL, INTERVAL, TIMEOUT, rise, FALL)
    for name, extra in servers.items():
        addr = lab.server_addresses[lab.names.index(name)]
        text += '\n[[service.real_server]]\naddress = "%s"\nport = %d\nforward = "masq"\n%s\n' % (
            addr, lab.port, extra)
    return text


# ------------------------------------------------------------ the lab's kernel

def weights_by_address(lab, port: int = 80, director: int = 0) -> Dict[str, int]:
    """{real server address: weight} of the VIP service now (absent: not listed)."""
    with lab.ipvs(director=director) as lb:
        for svc in lb.services():
            if str(svc.address) == lab.vip and svc.port == port:
                return {str(d.address): d.weight for d in lb.destinations(svc)}
    return {}


def weights(lab, port: int = 80) -> Dict[str, int]:
    """{server name: weight} of the VIP service now (absent: not listed)."""
    return {lab.by_address[a]: w for a, w in weights_by_address(lab, port).items()}


def all_up(lab, want: Dict[str, int]):
    return lambda: weights(lab) == want


def ipvsadm(ns: str, *args: str) -> str:
    """Debian's ipvsadm in namespace ``ns`` (the independent witness): its stdout."""
    return subprocess.run(["ip", "netns", "exec", ns, "ipvsadm", *args], check=True,
                          capture_output=True, text=True, timeout=30).stdout


def vs_sysctl(ns: str, name: str, value: Optional[object] = None) -> str:
    """Read (and first write, if ``value`` is given) /proc/sys/net/ipv4/vs/NAME
    inside namespace ``ns``: /proc/sys/net shows the namespace of the thread
    that opens the file."""
    with netns.enter(ns):
        if value is not None:
            with open("/proc/sys/net/ipv4/vs/" + name, "w") as f:
                f.write(str(value))
        with open("/proc/sys/net/ipv4/vs/" + name) as f:
            return f.read().strip()


def metrics_text(ns: str, port: int) -> str:
    """GET http://127.0.0.1:PORT/metrics inside namespace ``ns``."""
    with netns.enter(ns):
        return urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port,
                                      timeout=5).read().decode()


def refused_scheduler() -> str:
    """A scheduler name --check accepts and this kernel refuses (a module
    it does not have: Debian's 6.1 has no ip_vs_twos)."""
    from ipvs.director.config import SCHEDULER_NAMES
    release = os.uname().release
    have = {os.path.basename(p)[6:-3] for d in ("/lib/modules", "/usr/lib/uml/modules")
            for p in glob.glob("%s/%s/kernel/net/netfilter/ipvs/ip_vs_*.ko*" % (d, release))}
    have = {h.split(".ko")[0] for h in have}
    for name in reversed(SCHEDULER_NAMES):
        if have and name not in have:
            return name
    pytest.skip("this kernel has every scheduler module: no refused scheduler to test with")


# ------------------------------------------------------------ tools

KEEPALIVED = shutil.which("keepalived") or "/usr/sbin/keepalived"


class KeepalivedProc:
    """Debian's keepalived in namespace ``ns`` with ``args`` (``-n``: in
    the foreground), its output in the file ``log``.  With ``session``, in
    a session of its own: stop() signals keepalived itself only (its notify
    commands, in its process group, are left to finish) and kills the whole
    group only when keepalived does not stop."""

    def __init__(self, ns: str, args: List[str], log, session: bool = False) -> None:
        self.log, self.session = Path(log), session
        self.errfile = open(self.log, "ab")
        self.proc = subprocess.Popen(["ip", "netns", "exec", ns, KEEPALIVED, *args],
                                     stdout=self.errfile, stderr=subprocess.STDOUT,
                                     start_new_session=session)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                if self.session:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                else:
                    self.proc.kill()
                self.proc.wait(10)
        self.errfile.close()


def missing_tool(e: MissingTool) -> None:
    """Skip for a missing tool (BIRD, ExaBGP ...), or fail under CI=true."""
    if os.environ.get("CI") == "true":
        pytest.fail("CI=true: %s" % e)
    pytest.skip(str(e))


def prometheus_binary() -> str:
    path = shutil.which("prometheus") or ("/usr/bin/prometheus"
                                          if os.path.exists("/usr/bin/prometheus") else None)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("the Debian package `prometheus` is missing in CI (.ci/run installs it)")
        pytest.skip("Debian package `prometheus` not installed: apt-get install prometheus")
    return path

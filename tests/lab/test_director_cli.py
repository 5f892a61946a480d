"""ipvs-director's operator kit in the traffic lab, on a real director
process keeping the lab director's namespace (``[director] netns``):
systemd notifications on a NOTIFY_SOCKET the test binds, ``diff`` (exit
codes, lines, nothing written), the ``status`` table, API weights cleared
(subcommand and JSON null), service strings in lower case, and no
traceback on the documented paths (SIGTERM with netns, ``| head``, a
missing socket, a refused reload).

Run inside the sandbox:
    python -m ipvs.sandbox -- .venv/bin/python -m pytest -q -p no:cacheprovider \
        tests/lab/test_director_cli.py
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from typing import List

from tests.lab.harness import all_up, config, timed, wait_until, weights

CLI = [sys.executable, "-m", "ipvs.director"]


def run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(CLI + list(args), capture_output=True, text=True, timeout=timeout)


def saved(lab) -> str:
    """``ipvsadm -Sn`` of the director's namespace (the ipvsadm-compatible CLI)."""
    r = subprocess.run([sys.executable, "-m", "ipvs", "--netns", lab.director, "-Sn"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout


def no_traceback(text: str) -> None:
    assert "Traceback" not in text and "Exception ignored" not in text, text[-3000:]


class Datagrams:
    """An AF_UNIX datagram socket bound in the test's directory: systemd's
    end of NOTIFY_SOCKET."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.got: List[str] = []
        self.at: List[float] = []

    def wait_for(self, pred, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not pred(self.got):
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self.sock.settimeout(min(left, 1.0))
            try:
                self.got.append(self.sock.recv(4096).decode())
                self.at.append(time.monotonic())
            except socket.timeout:
                pass
        return True

    def close(self) -> None:
        self.sock.close()


def count(prefix: str):
    return lambda got: sum(1 for g in got if g.split("\n")[0] == prefix)


# ------------------------------------------------------------ systemd

def test_notify_ready_watchdog_stopping(lab, tmp_path, director_factory, monkeypatch):
    dgrams = Datagrams(str(tmp_path / "notify.sock"))
    try:
        monkeypatch.setenv("NOTIFY_SOCKET", dgrams.path)
        monkeypatch.setenv("WATCHDOG_USEC", "1000000")
        d = director_factory(config(lab, tmp_path)).start()
        assert dgrams.wait_for(count("READY=1"), 20), dgrams.got
        ready = [g for g in dgrams.got if g.startswith("READY=1")]
        assert len(ready) == 1 and "STATUS=1 service, " in ready[0], ready
        # READY=1 comes once the first round is written: the service is there
        assert weights(lab) != {}
        # WATCHDOG=1 every 0.5 s (half of WATCHDOG_USEC): 4 within a generous bound
        assert dgrams.wait_for(count("WATCHDOG=1"), 30), dgrams.got
        assert dgrams.wait_for(lambda got: count("WATCHDOG=1")(got) >= 4, 30), dgrams.got
        pings = [t for g, t in zip(dgrams.got, dgrams.at) if g == "WATCHDOG=1"]
        assert min(b - a for a, b in zip(pings, pings[1:])) > 0.2, pings
        # SIGTERM (netns set in the file: the lab's director namespace)
        assert d.stop() == 0
        assert dgrams.wait_for(count("STOPPING=1"), 10), dgrams.got
        no_traceback(d.stderr())
        assert [e["event"] for e in d.events()][-1] == "stopping"
    finally:
        dgrams.close()


def test_no_notification_without_notify_socket(lab, tmp_path, director_factory, monkeypatch):
    """Without NOTIFY_SOCKET nothing is sent (and nothing fails)."""
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    dgrams = Datagrams(str(tmp_path / "notify.sock"))
    try:
        d = director_factory(config(lab, tmp_path)).start()
        assert not dgrams.wait_for(count("READY=1"), 2)
        assert d.stop() == 0
        assert dgrams.got == []
        no_traceback(d.stderr())
    finally:
        dgrams.close()


# ------------------------------------------------------------ diff

def test_diff_exit_codes_lines_and_nothing_written(lab, tmp_path, director_factory):
    d = director_factory(config(lab, tmp_path)).start()
    timed(all_up(lab, {"rs1": 1, "rs2": 1, "rs3": 1}), 20)
    state = tmp_path / "ctl.sock.state"
    before = saved(lab)
    state_before = state.read_bytes() if state.exists() else None
    # the running file: nothing differs
    r = run("-c", d.path, "diff")
    assert (r.returncode, r.stdout, r.stderr) == (0, "", ""), r
    # a weight changed in a copy of the file (same control socket: health
    # as the running director knows it)
    changed = tmp_path / "changed.toml"
    changed.write_text(config(lab, tmp_path, servers={"rs1": "weight = 3", "rs2": "",
                                                      "rs3": ""}))
    r = run("-c", str(changed), "diff")
    assert r.returncode == 1 and r.stderr == "", r
    assert r.stdout.splitlines() == ["-e -t %s:80 -r %s:%d -m -w 3" % (
        lab.vip, lab.server_addresses[0], lab.port)]
    # a real server left out of the file: drained first (weight 0)
    gone = tmp_path / "gone.toml"
    gone.write_text(config(lab, tmp_path, servers={"rs1": "", "rs2": ""}))
    r = run("-c", str(gone), "diff")
    assert r.returncode == 1 and r.stdout.splitlines() == ["-e -t %s:80 -r %s:%d -m -w 0" % (
        lab.vip, lab.server_addresses[2], lab.port)], r
    # the health of the running director counts: rs2 down -> its weight 0 in the diff
    lab.set_http_status("rs2", 500)
    timed(lambda: weights(lab).get("rs2") == 0, 20)
    before = saved(lab)
    r = run("-c", d.path, "diff")
    assert (r.returncode, r.stdout) == (0, ""), r
    r = run("-c", str(changed), "diff")
    assert r.returncode == 1 and r.stdout.splitlines() == ["-e -t %s:80 -r %s:%d -m -w 3" % (
        lab.vip, lab.server_addresses[0], lab.port)], r
    # a bad file: its error, exit 2
    bad = tmp_path / "bad.toml"
    bad.write_text(config(lab, tmp_path).replace('forward = "masq"', 'forward = "sideways"', 1))
    r = run("-c", str(bad), "diff")
    assert r.returncode == 2 and r.stdout == "", r
    assert r.stderr.startswith("ipvs-director: %s:" % bad) and "forward" in r.stderr, r.stderr
    no_traceback(r.stderr)
    # a namespace that does not exist: the kernel cannot be read, exit 2
    nowhere = tmp_path / "nowhere.toml"
    nowhere.write_text(config(lab, tmp_path).replace('netns = "%s"' % lab.director,
                                                     'netns = "no-such-namespace"'))
    r = run("-c", str(nowhere), "diff")
    assert r.returncode == 2 and r.stdout == "" and len(r.stderr.splitlines()) == 1, r
    no_traceback(r.stderr)
    # nothing written: not the kernel, not the state file
    assert saved(lab) == before
    assert (state.read_bytes() if state.exists() else None) == state_before
    # no director running: every real server as a start finds it (in the
    # kernel with a weight: up), so the running file differs in nothing
    # but rs2, which a start trusts up again
    assert d.stop() == 0
    r = run("-c", d.path, "diff")
    assert r.returncode == 1 and r.stdout.splitlines() == ["-e -t %s:80 -r %s:%d -m -w 1" % (
        lab.vip, lab.server_addresses[1], lab.port)] or r.returncode == 0, r
    assert saved(lab) == before


# ------------------------------------------------------------ status, weight, case

def test_status_table_weight_clear_and_lower_case(lab, tmp_path, director_factory):
    d = director_factory(config(lab, tmp_path)).start()
    timed(all_up(lab, {"rs1": 1, "rs2": 1, "rs3": 1}), 20)
    r = run("-s", d.sock, "status")
    assert r.returncode == 0 and r.stderr == "", r
    lines = r.stdout.splitlines()
    assert lines[0].startswith("ipvs-director %s: 1 service, 3 of 3 real servers up"
                               % d.path), lines
    assert lines[1] == "Prot LocalAddress:Port Scheduler Quorum Sorry"
    assert lines[3] == "TCP  %s:80 wrr" % lab.vip
    for i, addr in enumerate(lab.server_addresses):
        assert lines[4 + i].split() == ["->", "%s:%d" % (addr, lab.port), "Masq", "1", "0",
                                        "0", "up"], lines
    assert json.loads(run("-s", d.sock, "status", "--json").stdout)["services"][0][
        "service"] == "TCP %s:80" % lab.vip
    # a weight through the subcommand, the service in lower case
    svc = "tcp %s:80" % lab.vip
    rs1 = lab.server_addresses[0]
    r = run("-s", d.sock, "weight", svc, rs1, str(lab.port), "4")
    assert r.returncode == 0 and json.loads(r.stdout)["weight"] == 4, r
    timed(lambda: weights(lab) == {"rs1": 4, "rs2": 1, "rs3": 1}, 10)
    line = [x for x in run("-s", d.sock, "status").stdout.splitlines() if rs1 + ":" in x][0]
    assert line.split()[2:4] == ["Masq", "4"] and "api weight 4, file 1" in line, line
    # cleared through the subcommand: the configured weight again
    r = run("-s", d.sock, "weight", svc, rs1, str(lab.port), "clear")
    assert r.returncode == 0, r
    body = json.loads(r.stdout)
    assert body["weight"] == 1 and "weight_override" not in body, body
    timed(lambda: weights(lab) == {"rs1": 1, "rs2": 1, "rs3": 1}, 10)
    # ... and through the API with JSON null
    key = {"service": "TCP %s:80" % lab.vip, "address": rs1, "port": lab.port}
    assert d.call("POST", "/weight", dict(key, weight=6))[0] == 200
    timed(lambda: weights(lab).get("rs1") == 6, 10)
    st, body = d.call("POST", "/weight", dict(key, weight=None))
    assert st == 200 and body["weight"] == 1 and "weight_override" not in body, body
    timed(lambda: weights(lab).get("rs1") == 1, 10)
    cleared = [e for e in d.events() if e["event"] == "weight" and e.get("cleared")]
    assert len(cleared) == 2, d.events()
    # drain in lower case: the table shows it
    r = run("-s", d.sock, "drain", "tcp %s:80" % lab.vip, lab.server_addresses[2],
            str(lab.port))
    assert r.returncode == 0 and json.loads(r.stdout)["state"] == "draining", r
    lines = run("-s", d.sock, "status").stdout.splitlines()
    assert "draining" in lines[0], lines
    line = [x for x in lines if lab.server_addresses[2] + ":" in x][0]
    assert line.split()[-1] in ("draining", "down") or "draining" in line, line
    assert d.stop() == 0
    no_traceback(d.stderr())


# ------------------------------------------------------------ no traceback

def test_no_traceback_on_documented_paths(lab, tmp_path, director_factory):
    d = director_factory(config(lab, tmp_path)).start()
    timed(all_up(lab, {"rs1": 1, "rs2": 1, "rs3": 1}), 20)
    py = "%s -m ipvs.director -s %s" % (sys.executable, d.sock)
    # status | head -1, in both forms
    for sub in ("status", "status --json"):
        r = subprocess.run("%s %s | head -1" % (py, sub), shell=True, capture_output=True,
                           text=True, timeout=60)
        assert r.stdout.count("\n") == 1 and r.stderr == "", r
    # events | head -1: the first event ends head, the next ones the client
    p = subprocess.Popen("%s events | head -1; echo \"rc=${PIPESTATUS[0]}\"" % py, shell=True,
                         executable="/bin/bash", stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        assert wait_until(lambda: d.status()["event_streams"] == 1, 20)
        key = {"service": "TCP %s:80" % lab.vip, "address": lab.server_addresses[0],
               "port": lab.port}
        deadline = time.monotonic() + 30
        w = 2
        while p.poll() is None and time.monotonic() < deadline:
            d.call("POST", "/weight", dict(key, weight=w))
            w = 3 - w
            time.sleep(0.2)
        out, err = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(10)
    lines = out.splitlines()
    assert json.loads(lines[0])["event"] == "weight" and lines[1] == "rc=0", (out, err)
    assert err == "", err
    # a socket that is gone: one line, exit 1
    missing = str(tmp_path / "gone.sock")
    r = run("-s", missing, "status")
    assert r.returncode == 1 and r.stdout == "", r
    assert r.stderr == "ipvs-director: %s: No such file or directory\n" % missing
    # a refused reload: its message in one line, exit 1
    good = open(d.path).read()
    open(d.path, "w").write(good.replace('forward = "masq"', 'forward = "sideways"', 1))
    r = run("-s", d.sock, "reload")
    assert r.returncode == 1 and r.stdout == "", r
    assert len(r.stderr.splitlines()) == 1, r.stderr
    assert r.stderr.startswith("ipvs-director: reload failed: %s:" % d.path), r.stderr
    open(d.path, "w").write(good)
    # SIGTERM with netns set: exit 0, nothing on stderr but the events
    assert d.stop() == 0
    no_traceback(d.stderr())
    for line in d.stderr().splitlines():
        json.loads(line)          # --log-format json: every line an event
    # and the socket is gone after: the subcommands say so in one line
    r = run("-c", d.path, "status")
    assert r.returncode == 1 and len(r.stderr.splitlines()) == 1, r
    assert not os.path.exists(d.sock)
    assert signal.SIGTERM  # (sent by DirectorProc.stop)

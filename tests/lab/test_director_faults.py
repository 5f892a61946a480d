"""Fault injection against a real director process in the lab (sandbox
only: it unloads ip_vs once).  For a minute one real server flaps every
0.5 s while the director also meets: SIGHUP storms (20 reloads in 2 s, half
of them bad files, some refused by the kernel), services deleted behind
its back (its next writes refused mid-round), an IPVS module reload, a
control client that never reads, another that never sends, and 200
concurrent control requests.  Afterwards the director still runs, the
table equals the file's health, no file descriptor or task is left over,
and the event stream tells each of those stories."""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from ipvs.director.control import request
from tests.lab.harness import config, ipvsadm, refused_scheduler, timed, wait_until, weights
from tests.lab.kmod import modprobe_path, modules, reload, sandbox_only, unload

FLAP_SECONDS = 60.0


def _fds(pid: int) -> int:
    return len(os.listdir("/proc/%d/fd" % pid))


def _quiet_counts(d) -> tuple:
    """(fds, tasks) at their lowest over a few samples: checks in flight
    come and go, a leak does not."""
    fds, tasks = [], []
    for _ in range(15):
        fds.append(_fds(d.proc.pid))
        status = d.status()
        # the director's own tasks: a check run in flight is no leak
        tasks.append(status["tasks"] - status["check_tasks"])
        time.sleep(0.1)
    return min(fds), min(tasks)


@sandbox_only
def test_director_survives_a_minute_of_faults(ip_vs_as_found, lab, tmp_path, director_factory):
    good = config(lab, tmp_path)
    bad_syntax = good.replace("[[service]]", "[[service]\n", 1)
    bad_kernel = good.replace('scheduler = "wrr"', 'scheduler = "%s"' % refused_scheduler())
    d = director_factory(good).start()
    up = {"rs1": 1, "rs2": 1, "rs3": 1}
    timed(lambda: weights(lab) == up, 15)
    fds0, tasks0 = _quiet_counts(d)

    stop = threading.Event()

    def flap() -> None:
        status = 500
        while not stop.is_set():
            lab.set_http_status("rs2", status)
            status = 200 if status == 500 else 500
            stop.wait(0.5)
        lab.set_http_status("rs2", 200)
    flapper = threading.Thread(target=flap, daemon=True)
    t_end = time.monotonic() + FLAP_SECONDS
    flapper.start()
    try:
        # a client that never reads its event stream, one that never sends
        mute = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        mute.connect(d.sock)
        mute.sendall(b"GET /events HTTP/1.1\r\nHost: x\r\n\r\n")
        silent = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        silent.connect(d.sock)

        # SIGHUP storm: 20 reloads in 2 s, half of them bad files
        for i in range(20):
            text = good if i % 2 == 0 else (bad_syntax if i % 4 == 1 else bad_kernel)
            with open(d.path, "w") as f:
                f.write(text)
            d.proc.send_signal(signal.SIGHUP)
            time.sleep(0.1)
        with open(d.path, "w") as f:
            f.write(good)
        d.proc.send_signal(signal.SIGHUP)

        # 200 concurrent control requests
        def ask(_: int) -> int:
            return request(d.sock, "GET", "/status", timeout=60)[0]
        with ThreadPoolExecutor(max_workers=200) as pool:
            codes = list(pool.map(ask, range(200)))
        assert codes == [200] * 200

        # services deleted behind the director's back: its writes planned
        # against the table it last saw are refused, the next full round
        # puts everything back
        for _ in range(3):
            ipvsadm(lab.director, "-C")
            time.sleep(1.5)

        # an IPVS module reload (the director stopped meanwhile, as an
        # operator's modprobe -r would need)
        before, saved = modules(), modprobe_path()
        d.proc.send_signal(signal.SIGSTOP)
        try:
            with lab.ipvs() as lb:
                lb.flush()
            unload(before)
        finally:
            d.proc.send_signal(signal.SIGCONT)
        time.sleep(1.0)                 # the director runs a moment without ip_vs
        reload(before, saved)

        # the rest of the minute: only the flapping
        while time.monotonic() < t_end:
            assert d.proc.poll() is None, d.stderr()[-4000:]
            time.sleep(0.5)
    finally:
        stop.set()
        flapper.join(10)
    mute.close()
    silent.close()

    # the table ends equal to the file's health (all up), traffic flows
    timed(lambda: weights(lab) == up, 20)
    assert lab.run_tcp(lab.vip, 80, 3) == {"rs1": 1, "rs2": 1, "rs3": 1}
    assert d.proc.poll() is None
    wait_until(lambda: d.status()["event_streams"] == 0, 10)
    fds1, tasks1 = _quiet_counts(d)
    print("\nfaults: fds %d -> %d, tasks %d -> %d" % (fds0, fds1, tasks0, tasks1))
    assert fds1 <= fds0 and tasks1 <= tasks0

    # the event stream tells the story
    events = d.events()
    kinds = [e["event"] for e in events]
    rs2 = lab.server_addresses[1]
    flips = [e["event"] for e in events if e.get("address") == rs2
             and e["event"] in ("down", "up")]
    failed = [e for e in events if e["event"] == "reload_failed"]
    print("faults: %d state flips of rs2, %d reloads, %d refused, %d drift, %d errors"
          % (len(flips), kinds.count("reload"), len(failed), kinds.count("drift"),
             kinds.count("error")))
    assert len(flips) >= 10
    assert kinds.count("reload") >= 1 and failed
    assert any("TOML" in e["message"] for e in failed)
    assert any("kernel refused" in e["message"] for e in failed)
    assert any(e["event"] == "drift" and e["field"] == "service" for e in events)
    assert "error" in kinds and "resync" in kinds
    # the running configuration is the good file's: wrr, three servers
    st = d.status()["services"]
    assert [(s["scheduler"], len(s["real_servers"])) for s in st] == [("wrr", 3)]
    assert d.stop() == 0

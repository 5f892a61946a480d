"""ipvs-director across an IPVS module reload (sandbox only: unloads ip_vs;
the file name makes it run after the other director tests).

The director keeps running while ip_vs is gone (its kernel calls fail) and
puts its services back, with the weights its checks say, once the module is
loaded again.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time

import pytest

from tests.lab.test_director import (all_up, config, director_factory,  # noqa: F401
                                     lab, timed, weights)

MODPROBE = "/proc/sys/kernel/modprobe"


def _modules():
    with open("/proc/modules") as f:
        return {line.split()[0] for line in f if line.startswith("ip_vs")}


def _rmmod(m):
    for _ in range(100):       # namespaces of earlier tests die asynchronously
        p = subprocess.run(["rmmod", m], capture_output=True, text=True)
        if p.returncode == 0:
            return
        time.sleep(0.1)
    raise AssertionError("rmmod %s: %s" % (m, p.stderr))


@pytest.mark.skipif(os.environ.get("IPVS_SANDBOX") != "1",
                    reason="unloads ip_vs: only inside python -m ipvs.sandbox")
def test_services_back_after_module_reload(lab, tmp_path, director_factory):  # noqa: F811
    d = director_factory(config(lab, tmp_path)).start()
    up = {"rs1": 1, "rs2": 1, "rs3": 1}
    timed(all_up(lab, up), 10)
    before = _modules()
    with open(MODPROBE) as f:
        saved = f.read()
    d.proc.send_signal(signal.SIGSTOP)       # no writes while the table is emptied
    try:
        with open(MODPROBE, "w") as f:
            f.write("/bin/false\n")           # no auto-load while it is gone
        with lab.ipvs() as lb:
            lb.flush()
        for m in sorted(before - {"ip_vs"}):
            _rmmod(m)
        _rmmod("ip_vs")
        d.proc.send_signal(signal.SIGCONT)
        time.sleep(2.5)                       # the director runs without ip_vs
        assert d.proc.poll() is None, d.stderr()
    finally:
        d.proc.send_signal(signal.SIGCONT)
        with open(MODPROBE, "w") as f:
            f.write(saved)
        t = time.monotonic()
        for m in sorted(before - _modules(), key=lambda m: m != "ip_vs"):
            subprocess.run(["modprobe", m], check=False)
    assert weights(lab) in ({}, up)
    timed(all_up(lab, up), 15)
    took = time.monotonic() - t
    print("\nmodule reload: services back %.2fs after modprobe ip_vs" % took)
    assert lab.run_tcp(lab.vip, 80, 3) == {"rs1": 1, "rs2": 1, "rs3": 1}
    events = [e["event"] for e in d.events()]
    assert "error" in events and "resync" in events, events
    d.stop()
    assert _modules() >= before

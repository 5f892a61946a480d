"""ipvs-director across an IPVS module reload (sandbox only: unloads ip_vs).

The director keeps running while ip_vs is gone (its kernel calls fail) and
puts its services back, with the weights its checks say, once the module is
loaded again.  The test may run in any order with the others: the
``ip_vs_as_found`` fixture (tests/lab/kmod.py) leaves the modules and the
modprobe path as they were, and checks it.
"""

from __future__ import annotations

import signal
import time

from tests.lab.harness import all_up, config, timed, weights
from tests.lab.kmod import modprobe_path, modules, reload, sandbox_only, unload


@sandbox_only
def test_services_back_after_module_reload(ip_vs_as_found, lab, tmp_path, director_factory):
    d = director_factory(config(lab, tmp_path)).start()
    up = {"rs1": 1, "rs2": 1, "rs3": 1}
    timed(all_up(lab, up), 10)
    before, saved = modules(), modprobe_path()
    d.proc.send_signal(signal.SIGSTOP)       # no writes while the table is emptied
    try:
        with lab.ipvs() as lb:
            lb.flush()
        unload(before)                        # (no auto-load while it is gone)
        d.proc.send_signal(signal.SIGCONT)
        time.sleep(2.5)                       # the director runs without ip_vs
        assert d.proc.poll() is None, d.stderr()
    finally:
        d.proc.send_signal(signal.SIGCONT)
        t = time.monotonic()
        reload(before, saved)
    assert weights(lab) in ({}, up)
    timed(all_up(lab, up), 15)
    took = time.monotonic() - t
    print("\nmodule reload: services back %.2fs after modprobe ip_vs" % took)
    assert lab.run_tcp(lab.vip, 80, 3) == {"rs1": 1, "rs2": 1, "rs3": 1}
    events = [e["event"] for e in d.events()]
    assert "error" in events and "resync" in events, events
    d.stop()

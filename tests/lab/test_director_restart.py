"""What survives a restart of the director (a real ``python -m ipvs.director``
process on the lab's director namespace): a real server drained through the
API stays draining (weight 0 in the kernel, state "draining"), and a weight
set through the API stays set.  The state file is the default one, beside
the control socket.

Run inside the sandbox:
    python -m ipvs.sandbox -- .venv/bin/python -m pytest -q -p no:cacheprovider \
        tests/lab/test_director_restart.py
"""

from __future__ import annotations

import json
import os
import signal
import time
from typing import List

import pytest


from .test_director import DirectorProc

try:
    from ipvs.lab import Lab  # type: ignore[import-not-found]
except ImportError:
    from ipvs._lab import Lab

SERVICE = "TCP %s:80"


class Proc(DirectorProc):
    """One director process on the test's file (test_director's), that
    reports one real server's status and must exit 0 on SIGTERM."""

    def server(self, service: str, address: str) -> dict:
        svc = next(s for s in self.status()["services"] if s["service"] == service)
        return next(r for r in svc["real_servers"] if r["address"] == address)

    def stop(self, sig: int = signal.SIGTERM) -> int:
        rc = super().stop(sig)
        assert rc == 0, self.stderr()[-3000:]
        return rc


@pytest.fixture
def lab():
    with Lab(3) as lb:
        yield lb


@pytest.fixture
def made():
    procs: List[Proc] = []
    yield procs
    for p in procs:
        p.kill()
        if os.path.exists(p.log):
            print("---- director stderr ----\n" + p.stderr()[-4000:])


def write_config(lab, tmp_path) -> str:
    text = ('[director]\nnetns = "%s"\ncontrol = "%s"\ndrain_timeout = 600\n'
            'resync_interval = 1\n\n[[service]]\naddress = "%s"\nport = 80\nscheduler = "rr"\n'
            '[service.check]\ntype = "tcp"\ninterval = 0.3\nretry_interval = 0.3\n'
            'timeout = 0.5\nrise = 1\nfall = 2\n' % (lab.director, tmp_path / "ctl.sock", lab.vip))
    for addr in lab.server_addresses:
        text += ('\n[[service.real_server]]\naddress = "%s"\nport = %d\nweight = 2\n'
                 'forward = "masq"\n' % (addr, lab.port))
    path = tmp_path / "director.toml"
    path.write_text(text)
    return str(path)


def kernel_weights(lab) -> dict:
    with lab.ipvs() as h:
        out = {}
        for svc, dests in h.table().items():
            if str(svc.address) == lab.vip and svc.port == 80:
                out = {str(d.address): d.weight for d in dests}
        return out


def wait_for(pred, what: str, limit: float = 10.0):
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError("timed out waiting for " + what)


def test_drain_and_weight_survive_a_restart(lab, tmp_path, made):
    path = write_config(lab, tmp_path)
    service = SERVICE % lab.vip
    rs1, rs2, rs3 = lab.server_addresses
    d = Proc(path, str(tmp_path / "ctl.sock"), str(tmp_path / "stderr1.log"))
    made.append(d)
    d.start()
    wait_for(lambda: kernel_weights(lab) == {rs1: 2, rs2: 2, rs3: 2}, "all up")

    # a connection to rs1 keeps its drain going across the restart
    held = lab.hold(lab.vip, 80, 3)
    try:
        assert "rs1" in [name for _, name in held]
        st, body = d.call("POST", "/drain", {"service": service, "address": rs1,
                                              "port": lab.port})
        assert st == 200 and body["state"] == "draining", body
        st, body = d.call("POST", "/weight", {"service": service, "address": rs2,
                                               "port": lab.port, "weight": 7})
        assert st == 200 and body["weight"] == 7, body
        assert kernel_weights(lab) == {rs1: 0, rs2: 7, rs3: 2}
        state_file = str(tmp_path / "ctl.state")
        assert os.path.exists(state_file)

        d.stop()
        assert kernel_weights(lab) == {rs1: 0, rs2: 7, rs3: 2}   # left as it was

        d2 = Proc(path, str(tmp_path / "ctl.sock"), str(tmp_path / "stderr2.log"))
        made.append(d2)
        d2.start()
        # checks run (rs1's port answers: without the state it would come back
        # up) and a resync or two go by: the drain and the weight stay
        time.sleep(1.5)
        a = d2.server(service, rs1)
        assert a["state"] == "draining" and a["weight"] == 0, a
        b = d2.server(service, rs2)
        assert b["weight"] == 7 and b["weight_override"] == 7, b
        assert kernel_weights(lab) == {rs1: 0, rs2: 7, rs3: 2}
        adds = [e for e in map(json.loads, filter(None, d2.stderr().splitlines()))
                if e.get("event") in ("up", "undrain") and e.get("address") == rs1]
        assert adds == []

        # undrain after the restart: the state file forgets it, rs1 is back
        st, body = d2.call("POST", "/undrain", {"service": service, "address": rs1,
                                                 "port": lab.port})
        assert st == 200, body
        wait_for(lambda: kernel_weights(lab).get(rs1) == 2, "rs1 weighted again")
        with open(state_file) as f:
            saved = json.load(f)
        assert [(e["address"], e["drain"], e["weight"]) for e in saved["servers"]] == [
            (rs2, None, 7)]
        d2.stop()
    finally:
        for s, _ in held:
            s.close()

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
import time

from tests.lab.harness import config, timed, weights_by_address

SERVICE = "TCP %s:80"


def restart_config(lab, tmp_path) -> str:
    """TCP checks that rise at once, weight 2 everywhere, drains that only
    end when their connections do."""
    return config(lab, tmp_path, check='type = "tcp"', scheduler="rr", rise=1,
                  drain_timeout=600, servers={n: "weight = 2" for n in lab.names})


def test_drain_and_weight_survive_a_restart(lab, tmp_path, director_factory):
    text = restart_config(lab, tmp_path)
    service = SERVICE % lab.vip
    rs1, rs2, rs3 = lab.server_addresses
    d = director_factory(text, log="stderr1.log")
    d.start()
    timed(lambda: weights_by_address(lab) == {rs1: 2, rs2: 2, rs3: 2}, 10, "all up")

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
        assert weights_by_address(lab) == {rs1: 0, rs2: 7, rs3: 2}
        state_file = str(tmp_path / "ctl.state")
        assert os.path.exists(state_file)

        assert d.stop() == 0, d.stderr()[-3000:]
        assert weights_by_address(lab) == {rs1: 0, rs2: 7, rs3: 2}   # left as it was

        d2 = director_factory(text, log="stderr2.log")
        d2.start()
        # checks run (rs1's port answers: without the state it would come back
        # up) and a resync or two go by: the drain and the weight stay
        time.sleep(1.5)
        a = d2.server(service, rs1)
        assert a["state"] == "draining" and a["weight"] == 0, a
        b = d2.server(service, rs2)
        assert b["weight"] == 7 and b["weight_override"] == 7, b
        assert weights_by_address(lab) == {rs1: 0, rs2: 7, rs3: 2}
        adds = [e for e in map(json.loads, filter(None, d2.stderr().splitlines()))
                if e.get("event") in ("up", "undrain") and e.get("address") == rs1]
        assert adds == []

        # undrain after the restart: the state file forgets it, rs1 is back
        st, body = d2.call("POST", "/undrain", {"service": service, "address": rs1,
                                                 "port": lab.port})
        assert st == 200, body
        timed(lambda: weights_by_address(lab).get(rs1) == 2, 10, "rs1 weighted again")
        with open(state_file) as f:
            saved = json.load(f)
        assert [(e["address"], e["drain"], e["weight"]) for e in saved["servers"]] == [
            (rs2, None, 7)]
        assert d2.stop() == 0, d2.stderr()[-3000:]
    finally:
        for s, _ in held:
            s.close()

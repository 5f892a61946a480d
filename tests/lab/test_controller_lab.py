"""examples/controller.py end to end in the lab: the controller runs as its
own process on the director and keeps the services of its file in the real
kernel's table; the client's connections follow the weights (wrr 1:3 gives
10/30 of 40), a file change moves the traffic, another owner's service keeps
working, and SIGTERM leaves the table as it is. Its unit tests on the memory
backend: tests/unit/test_controller_example.py."""
from __future__ import annotations

import collections
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import ipvs
from ipvs.lab import Lab, wait_for
from tests.lab.harness import weights

pytestmark = pytest.mark.kernel

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "controller.py"


def write(path: Path, lab: Lab, weights: dict) -> None:
    dests = [{"address": addr, "port": lab.port, "weight": weights[name], "forward": "masq"}
             for name, addr in zip(lab.names, lab.server_addresses) if name in weights]
    data = {"owns": [lab.vip + "/32"],
            "services": [{"address": lab.vip, "port": 80, "scheduler": "wrr",
                          "destinations": dests}]}
    tmp = path.with_suffix(".new")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)


def test_the_controller_in_the_lab(tmp_path):
    if not EXAMPLE.exists():
        pytest.skip("examples/ is not here (not a source tree)")
    path = tmp_path / "desired.json"
    with Lab(servers=2) as lab:
        # another program's service (on the IPv6 VIP: the file owns the IPv4 one),
        # there before the controller
        foreign = ipvs.Service(address=lab.vip6, port=80, scheduler="rr")
        with lab.ipvs() as lb:
            lb.add_service(foreign)
            lb.add_destination(foreign, ipvs.Destination(lab.server_addresses6[0], lab.port,
                                                         forward="masq"))
        write(path, lab, {"rs1": 1, "rs2": 3})
        log = open(tmp_path / "controller.log", "w+")
        proc = subprocess.Popen([sys.executable, str(EXAMPLE), str(path), "--netns",
                                 lab.director, "--interval", "0.1", "--resync", "2"],
                                stdout=log, stderr=subprocess.STDOUT)
        try:
            assert wait_for(lambda: weights(lab) == {"rs1": 1, "rs2": 3}, timeout=30)
            assert lab.run_tcp(lab.vip, 80, 40) == collections.Counter(rs1=10, rs2=30)
            assert lab.run_tcp(lab.vip6, 80, 4) == collections.Counter(rs1=4)

            write(path, lab, {"rs1": 3, "rs2": 1})          # the traffic moves
            assert wait_for(lambda: weights(lab) == {"rs1": 3, "rs2": 1}, timeout=15)
            assert lab.run_tcp(lab.vip, 80, 40) == collections.Counter(rs1=30, rs2=10)

            write(path, lab, {"rs2": 2})                    # rs1 leaves the service
            assert wait_for(lambda: weights(lab) == {"rs2": 2}, timeout=15)
            assert lab.run_tcp(lab.vip, 80, 8) == collections.Counter(rs2=8)

            # drift behind its back is repaired by the periodic resync
            with lab.ipvs() as lb:
                svc = next(s for s in lb.services() if str(s.address) == lab.vip)
                lb.modify_destination(svc, ipvs.Destination(lab.server_addresses[1], lab.port),
                                      weight=9)
            assert wait_for(lambda: weights(lab) == {"rs2": 2}, timeout=15)
            assert lab.run_tcp(lab.vip6, 80, 2) == collections.Counter(rs1=2)
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                rc = proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                rc = proc.wait()
        log.seek(0)
        text = log.read()
        assert rc == 0, text
        assert "weight 1 -> 3" in text and "weight 9 -> 2" in text, text
        with lab.ipvs() as lb:                 # stopped: the table is left as it is
            assert {str(s.address) for s in lb.services()} == {lab.vip, lab.vip6}

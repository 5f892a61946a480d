"""End-to-end with ipvs.lab: a tiny HTTP health checker keeps real servers'
weights in step with their health, checked with real traffic.

    python -m ipvs.sandbox -- "$PWD/.venv/bin/python" examples/lab_health_check.py

Needs root and a kernel with IPVS and veth (the sandbox kernel has both).
The lab gives a client, a director and three real servers in network
namespaces; each real server answers HTTP ``GET /health`` with a status the
script sets. The checker runs in the director's namespace (as a real
director would), sets weight 0 on servers whose /health is not 200 and the
configured weight back when it is. The client's connections show the
effect. Exit status 0 when every step saw what it should.
"""
from __future__ import annotations

import http.client
import sys
from typing import Dict

import ipvs
from ipvs import netns
from ipvs.lab import Lab

PORT = 80


def healthy(director: str, address: str, port: int) -> bool:
    """GET /health from the director's namespace: True on 200."""
    conn = http.client.HTTPConnection(address, port, timeout=2)
    try:
        with netns.enter(director):   # the socket is made (and used) in there
            conn.request("GET", "/health")
            return conn.getresponse().status == 200
    except OSError:
        return False
    finally:
        conn.close()


def check_once(lab: Lab, lb: ipvs.IPVS, svc: ipvs.Service, weights: Dict[str, int]) -> None:
    """One round of checks: weight 0 for unhealthy, configured when healthy."""
    for dest in lb.destinations(svc):
        up = healthy(lab.director, str(dest.address), lab.http_port)
        want = weights[str(dest.address)] if up else 0
        if dest.weight != want:
            lb.update_destination(svc, dest.replace(weight=want))


def main() -> int:
    ok = True
    with Lab(servers=3, lifetime=120) as lab:
        svc = ipvs.Service(address=lab.vip, port=PORT, scheduler="wrr")
        weights = {rip: 1 for rip in lab.server_addresses}
        with lab.ipvs() as lb:
            lb.apply({svc: [ipvs.Destination(rip, lab.port, weight=w, forward="masq")
                            for rip, w in weights.items()]})

            check_once(lab, lb, svc, weights)
            seen = lab.run_tcp(lab.vip, PORT, 30)
            print("all healthy:      ", dict(sorted(seen.items())))
            ok &= seen == {"rs1": 10, "rs2": 10, "rs3": 10}

            lab.set_http_status("rs2", 503)           # rs2 says it is sick
            check_once(lab, lb, svc, weights)
            seen = lab.run_tcp(lab.vip, PORT, 30)
            print("rs2 answers 503:  ", dict(sorted(seen.items())))
            ok &= "rs2" not in seen and sum(seen.values()) == 30

            lab.stop_server("rs3")                    # rs3's process dies
            check_once(lab, lb, svc, weights)
            seen = lab.run_tcp(lab.vip, PORT, 30)
            print("and rs3 stopped:  ", dict(sorted(seen.items())))
            ok &= seen == {"rs1": 30}

            lab.set_http_status("rs2", 200)
            lab.start_server("rs3")
            check_once(lab, lb, svc, weights)
            seen = lab.run_tcp(lab.vip, PORT, 30)
            print("both back:        ", dict(sorted(seen.items())))
            ok &= seen == {"rs1": 10, "rs2": 10, "rs3": 10}
    print("OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

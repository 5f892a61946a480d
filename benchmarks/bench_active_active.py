"""Flows kept per event with N directors behind ECMP (the lab's router and
BIRD), for a consistent hash (`mh`, Maglev) against source hashing (`sh`)
and a scheduler without hashing (`wlc`), all with the same real servers in
the same order on every director.

For each scheduler: F UDP flows (fixed source ports) through the VIP give
the real server of each flow; after each event the same flows are sent
again (the directors' UDP entries have expired: the UDP timeout is 1 s) and
the share of flows that kept their real server is counted against the
ideal (a director lost: all of them; a real server failed: all but its
own; a real server added: all but the new one's share).

    python -m ipvs.sandbox -- PYTHON benchmarks/bench_active_active.py --flows 1000

Needs Debian's bird2 (the lab's router and the directors' speakers).
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import time
from typing import Dict, List, Optional

import ipvs
from ipvs import netns
from ipvs.lab import Lab, wait_for

BASE = 30000          # the flows' source ports: BASE .. BASE + flows - 1


def _ns(ns: str, *argv: str) -> None:
    subprocess.run(["ip", "netns", "exec", ns] + list(argv), check=True, capture_output=True)


def setup_director(lab: Lab, i: int) -> None:
    ns = lab.directors[i]
    _ns(ns, "ip", "addr", "add", lab.vip + "/32", "dev", "lo")
    _ns(ns, "ip", "link", "add", "ipvs-vips", "type", "dummy")
    _ns(ns, "ip", "link", "set", "ipvs-vips", "up")
    _ns(ns, "ip", "addr", "add", lab.vip + "/32", "dev", "ipvs-vips")
    with lab.ipvs(director=i) as lb:
        lb.set_timeouts(udp=1)


def table(lab: Lab, scheduler: str, servers: List[str]) -> None:
    """The same UDP service on every director (real servers sorted)."""
    flags = {"mh": ipvs.ServiceFlags.MH_FALLBACK | ipvs.ServiceFlags.MH_PORT,
             "sh": ipvs.ServiceFlags.SH_FALLBACK | ipvs.ServiceFlags.SH_PORT}.get(
                 scheduler, ipvs.ServiceFlags(0))
    svc = ipvs.Service(lab.vip, lab.port, "udp", scheduler, flags=flags)
    for i in range(len(lab.directors)):
        with lab.ipvs(director=i) as lb:
            lb.apply({svc: [ipvs.Destination(a, lab.port, forward="route")
                            for a in sorted(servers, key=socket.inet_aton)]})


def weight(lab: Lab, address: str, w: int) -> None:
    for i in range(len(lab.directors)):
        with lab.ipvs(director=i) as lb:
            svc = next(iter(lb.services()))
            d = next(x for x in lb.destinations(svc) if str(x.address) == address)
            lb.update_destination(svc, d.replace(weight=w))


def flows(lab: Lab, n: int) -> Dict[int, Optional[str]]:
    """{source port: real server name (None: no answer)} of n UDP flows."""
    out: Dict[int, Optional[str]] = {}
    with netns.enter(lab.client):
        for p in range(BASE, BASE + n):
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind((lab.client_address, p))
                s.settimeout(0.5)
                name = None
                for _ in range(3):
                    try:
                        s.sendto(b"x\n", (lab.vip, lab.port))
                        name = s.recv(64).decode().strip()
                        break
                    except OSError:
                        continue
                out[p] = name
    return out


def kept(before: Dict[int, Optional[str]], after: Dict[int, Optional[str]],
         among: Optional[List[int]] = None) -> float:
    ports = among if among is not None else list(before)
    return sum(1 for p in ports if before[p] is not None and after[p] == before[p]) / len(ports)


def wait_paths(lab: Lab, want: List[str]) -> None:
    assert wait_for(lambda: lab.router_paths() == want, timeout=30, interval=0.05), \
        (lab.router_paths(), want)


def run(n: int, schedulers: List[str]) -> List[dict]:
    rows = []
    with Lab(4, directors=3, router=True, bgp_hold=3, lifetime=1800) as lab:
        for i in range(3):
            setup_director(lab, i)
            lab.start_director_bird(i, interface="ipvs-vips")
        wait_paths(lab, lab.director_addresses)
        three = lab.server_addresses[:3]
        for sched in schedulers:
            table(lab, sched, three)
            time.sleep(1.5)
            m0 = flows(lab, n)
            answered = sum(1 for v in m0.values() if v)
            # a director lost (its speaker stopped: the router drops the path)
            lab.stop_speakers(0)
            wait_paths(lab, lab.director_addresses[1:])
            time.sleep(1.5)
            m1 = flows(lab, n)
            lab.start_director_bird(0, interface="ipvs-vips")
            wait_paths(lab, lab.director_addresses)
            # a real server fails (quiesced on every director)
            victim = "rs2"
            weight(lab, three[1], 0)
            time.sleep(1.5)
            m2 = flows(lab, n)
            others = [p for p, s in m0.items() if s and s != victim]
            weight(lab, three[1], 1)
            # a real server added (the fourth, last in sorted order)
            table(lab, sched, lab.server_addresses)
            time.sleep(1.5)
            m3 = flows(lab, n)
            moved_to_new = sum(1 for p in m0 if m3[p] == "rs4") / n
            rows.append({
                "scheduler": sched, "flows": n, "answered": answered,
                "director_lost_kept": kept(m0, m1), "director_lost_ideal": 1.0,
                "server_failed_others_kept": kept(m0, m2, others),
                "server_failed_ideal": 1.0,
                "server_added_kept": kept(m0, m3), "server_added_ideal": 0.75,
                "server_added_to_new": moved_to_new})
            # back to three real servers for the next scheduler
            table(lab, sched, three)
    return rows


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--flows", type=int, default=1000)
    ap.add_argument("--schedulers", default="mh,sh,wlc")
    ap.add_argument("--json", help="write the rows to this file")
    a = ap.parse_args(argv)
    rows = run(a.flows, a.schedulers.split(","))
    print("\nflows kept per event, %d UDP flows, 3 directors behind ECMP, 3 real servers "
          "(a 4th added)" % a.flows)
    print("%-9s %9s %16s %24s %20s" % ("scheduler", "answered", "director lost",
                                        "server failed (others)", "server added"))
    for r in rows:
        print("%-9s %9d %15.1f%% %23.1f%% %19.1f%%" % (
            r["scheduler"], r["answered"], 100 * r["director_lost_kept"],
            100 * r["server_failed_others_kept"], 100 * r["server_added_kept"]))
    print("%-9s %9s %15.1f%% %23.1f%% %19.1f%%" % ("ideal", "", 100.0, 100.0, 75.0))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())

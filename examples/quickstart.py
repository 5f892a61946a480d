"""The ipvs quick-start demo: a real load balancer in network namespaces.

    sudo scripts/quickstart.sh                                  # fresh Debian 12
    python -m ipvs.sandbox -- "$PWD/.venv/bin/python" examples/quickstart.py

Needs root and a kernel with IPVS and veth (the sandbox kernel has both).
It builds a client, a director and three real servers in their own network
namespaces (private 10.200.x.y addresses, see ipvs/lab/), configures the
director's IPVS table through ``ipvs`` -- a TCP service (wrr, weights 1:2:3)
and a UDP service (rr), three NAT destinations each -- sends real
connections from the client, and prints the table with its counters and
what the client saw.  Everything is removed at the end; the namespace the
demo starts in is never touched.

Exit status 0 when every answer came from where the scheduler says it must.
"""

from __future__ import annotations

import collections
import os
import sys
import time
from typing import Counter, List

import ipvs
from ipvs.lab import Lab, wait_for

TCP_CONNECTIONS = 60
UDP_EXCHANGES = 30
WEIGHTS = (1, 2, 3)
HOW = "run it with scripts/quickstart.sh or python -m ipvs.sandbox -- PYTHON examples/quickstart.py"


def fmt_table(lb: ipvs.IPVS, lab: Lab, services: List[ipvs.Service]) -> str:
    head = ("%-28s %-5s %-6s %6s %6s %6s %7s %7s %7s %8s %8s"
            % ("Service / destination", "Sched", "Fwd", "Weight", "Active", "InAct",
               "Conns", "InPkts", "OutPkts", "InBytes", "OutBytes"))
    lines = [head, "-" * len(head)]
    for svc in services:
        s = lb.get_service(svc)
        st = s.stats
        name = "%s  %s:%d" % (ipvs.Protocol(s.protocol).name, s.address, s.port)
        lines.append("%-28s %-5s %-6s %6s %6s %6s %7d %7d %7d %8d %8d"
                     % (name, s.scheduler, "", "", "", "", st.connections,
                        st.packets_in, st.packets_out, st.bytes_in, st.bytes_out))
        dests = sorted(lb.destinations(svc), key=lambda d: d.address)
        for d in dests:
            st = d.stats
            name = "  -> %s:%s %s" % (d.address, d.port, lab.by_address[str(d.address)])
            lines.append("%-28s %-5s %-6s %6d %6d %6d %7d %7d %7d %8d %8d"
                         % (name, "", d.forward.name.capitalize(), d.weight,
                            d.active_connections, d.inactive_connections,
                            st.connections, st.packets_in, st.packets_out,
                            st.bytes_in, st.bytes_out))
    return "\n".join(lines)


def main() -> int:
    if os.geteuid() != 0:
        print("quickstart: needs root (network namespaces, IPVS): %s" % HOW, file=sys.stderr)
        return 2
    if not os.path.exists("/proc/net/ip_vs"):  # the ip_vs module is not loaded
        print("quickstart: no IPVS in this kernel: %s" % HOW, file=sys.stderr)
        return 2
    try:
        return demo()
    except ipvs.IPVSUnavailableError as e:
        print("quickstart: no IPVS in this kernel (%s): %s" % (e, HOW), file=sys.stderr)
        return 2


def demo() -> int:
    t0 = time.monotonic()
    with Lab(servers=3) as lab:
        print("Lab: client %s -> director VIP %s -> real servers %s"
              % (lab.client_address, lab.vip,
                 ", ".join("%s=%s" % x for x in zip(lab.names, lab.server_addresses))))
        print("     (namespaces %s, %s, %s)" % (lab.client, lab.director,
                                               ", ".join(lab.servers)))
        with lab.ipvs() as lb:
            web = ipvs.Service(address=lab.vip, port=80, protocol="tcp", scheduler="wrr")
            dns = ipvs.Service(address=lab.vip, port=53, protocol="udp", scheduler="rr")
            plan = lb.apply({
                web: [ipvs.Destination(rip, lab.port, weight=w, forward=ipvs.Forward.MASQ)
                      for rip, w in zip(lab.server_addresses, WEIGHTS)],
                dns: [ipvs.Destination(rip, lab.port, forward=ipvs.Forward.MASQ)
                      for rip in lab.server_addresses],
            })
            info = lb.info()
            print("Configured the director through ipvs (%s backend, IPVS %s): %d changes"
                  % (lb.backend, info.version, len(plan)))

            tcp = lab.run_tcp(lab.vip, 80, TCP_CONNECTIONS)
            udp = lab.run_udp(lab.vip, 53, UDP_EXCHANGES)

            # IPVS folds its per-CPU counters into the totals every 2 s
            wait_for(lambda: lb.get_service(web).stats.connections == TCP_CONNECTIONS
                     and lb.get_service(dns).stats.connections == UDP_EXCHANGES,
                     timeout=8)
            print()
            print(fmt_table(lb, lab, [web, dns]))
            print()
            for label, seen in (("TCP %s:80 (wrr %s)" % (lab.vip, ":".join(map(str, WEIGHTS))), tcp),
                                ("UDP %s:53 (rr)" % lab.vip, udp)):
                print("Client answers, %-34s %s" % (
                    label + ":", "  ".join("%s %d" % (n, seen[n]) for n in lab.names)))

            unit = TCP_CONNECTIONS // sum(WEIGHTS)
            want_tcp: Counter[str] = collections.Counter(
                {n: w * unit for n, w in zip(lab.names, WEIGHTS)})
            want_udp: Counter[str] = collections.Counter(
                {n: UDP_EXCHANGES // 3 for n in lab.names})
            stats_ok = (lb.get_service(web).stats.connections == TCP_CONNECTIONS
                        and lb.get_service(dns).stats.connections == UDP_EXCHANGES)
            lb.flush()
    ok = tcp == want_tcp and udp == want_udp and stats_ok
    print("%s in %.1f s; lab removed" % ("OK" if ok else "UNEXPECTED COUNTS",
                                         time.monotonic() - t0))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

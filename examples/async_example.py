"""ipvs from asyncio: one `AsyncIPVS` handle shared by many tasks.

    python -m ipvs.sandbox -- "$PWD/.venv/bin/python" examples/async_example.py

Needs root and a kernel with IPVS (the sandbox kernel has it). It works in a
network namespace of its own (made here, removed at the end); the namespace
it starts in is never touched. Also type-checked: ``mypy --strict
examples/async_example.py`` (tests/unit/test_async_unit.py runs it).

Exit status 0 when the table read back is the one that was built.
"""

from __future__ import annotations

import asyncio
import ipaddress
import subprocess
import sys
from typing import Dict, List

import ipvs
import ipvs.netns

NETNS = "ipvs-async-example"
WEB = ipvs.Service(address="10.0.0.1", port=80, protocol="tcp", scheduler="wrr")
DNS = ipvs.Service(address="10.0.0.1", port=53, protocol="udp", scheduler="rr")


def backends(count: int, base: str) -> List[ipvs.Destination]:
    first = ipaddress.IPv4Address(base)
    return [ipvs.Destination(address=first + i, port=8080, weight=1 + i % 3,
                             forward=ipvs.Forward.MASQ) for i in range(count)]


async def add_one(lb: ipvs.AsyncIPVS, dest: ipvs.Destination) -> None:
    # Many tasks call at once: the handle sends their calls together.
    await lb.add_destination(WEB, dest)


async def build(lb: ipvs.AsyncIPVS) -> Dict[ipvs.Service, List[ipvs.Destination]]:
    await lb.add_service(WEB)
    web = backends(50, "192.168.1.10")
    await asyncio.gather(*(add_one(lb, d) for d in web))

    try:
        await lb.add_service(WEB)  # same exceptions as ipvs.IPVS
    except ipvs.ServiceExistsError as e:
        print("as expected:", e)

    async with lb.batch() as b:  # queued here, sent when the block ends
        b.add_service(DNS)
        for d in backends(3, "192.168.2.10"):
            b.add_destination(DNS, d)
    print("batch: %d calls, sent=%s, succeeded=%s" % (len(b), b.sent, b.succeeded))

    # apply(): converge to a wanted table; the plan says what changed
    wanted = {WEB: web[:40], DNS: backends(3, "192.168.2.10")}
    plan: ipvs.Plan = await lb.apply(wanted)
    print("apply: %d changes" % len(plan))
    return wanted


async def main() -> int:
    async with ipvs.AsyncIPVS(netns=NETNS, timeout=2.0) as lb:
        print("backend:", lb.backend, "closed:", lb.closed)
        info = await lb.info()
        print("kernel IPVS", info.version)
        wanted = await build(lb)
        # a deadline on the whole call: a cancellation the handle survives
        table = await asyncio.wait_for(lb.table(), timeout=10.0)
        timeouts: ipvs.Timeouts = await lb.timeouts()
        print("timeouts: tcp=%d tcp_fin=%d udp=%d" % (timeouts.tcp, timeouts.tcp_fin, timeouts.udp))
        same = (set(table) == set(wanted)
                and all({d.key for d in table[s]} == {d.key for d in wanted[s]} for s in wanted))
        for svc, dests in table.items():
            print(svc, "->", len(dests), "destinations")
        await lb.flush()
        return 0 if same else 1


def run() -> int:
    ipvs.netns.create(NETNS)
    try:
        # MASQ destinations need no route, but lo up keeps the kernel's checks quiet
        subprocess.run(["ip", "netns", "exec", NETNS, "ip", "link", "set", "lo", "up"],
                       check=False)
        return asyncio.run(main())
    finally:
        ipvs.netns.remove(NETNS)


if __name__ == "__main__":
    sys.exit(run())

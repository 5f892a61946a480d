#!/usr/bin/env python3
"""Benchmark of issue 15: AsyncIPVS against the sync handle and pyroute2's AsyncIPVS.

Run it as root in a kernel with IPVS, normally the sandbox kernel:

    python -m ipvs.sandbox -- $(which python3) benchmarks/bench_async.py --repeat 5

Rows (each repetition in a fresh network namespace, lo up, made and removed
with ipvs.netns as benchmarks/bench.py does; the namespace the benchmark
starts in is never touched):

* ``--count`` (10,000) single ``add_destination`` calls, spread over 100
  services created beforehand (not timed): the sync `IPVS` one call at a
  time; `AsyncIPVS` with 1, 10 and 100 tasks pulling calls from one shared
  list; pyroute2's ``AsyncIPVS`` (``dest("add", ...)``) with 100 tasks, in a
  child process inside the namespace (``ip netns exec``), as bench.py runs
  pyroute2.
* ``table()`` of ``--services`` x ``--dests`` (1000 x 10): the sync handle,
  then `AsyncIPVS` with a task that sleeps 1 ms in a loop, whose worst gap is
  printed next to the worst gap of the same task on the idle loop.

Targets (issue 15): 100 tasks >= 2x the sync rate and >= 10x pyroute2's
async rate; async ``table()`` within 1.2x of the sync one.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
for p in (ROOT, HERE):
    if p not in sys.path:
        sys.path.insert(0, p)

SERVICES_FOR_ADDS = 100
PORT = 8080

ROWS = [
    ("sync", "sync IPVS, one call at a time"),
    ("async-1", "AsyncIPVS, 1 task"),
    ("async-10", "AsyncIPVS, 10 tasks"),
    ("async-100", "AsyncIPVS, 100 tasks"),
    ("pyroute2-100", "pyroute2 AsyncIPVS 0.9.7, 100 tasks"),
]


def log(msg: str) -> None:
    print("  . " + msg, file=sys.stderr, flush=True)


def add_work(count: int):
    """(services, [(service, destination)] * count), round robin over services."""
    import ipvs
    svcs = [ipvs.Service(address=ipaddress.IPv4Address(0x0A000001 + i), port=80,
                         protocol="tcp", scheduler="wlc") for i in range(SERVICES_FOR_ADDS)]
    calls = [(svcs[k % SERVICES_FOR_ADDS],
              ipvs.Destination(address=ipaddress.IPv4Address(0xAC100001 + k), port=PORT,
                               weight=1)) for k in range(count)]
    return svcs, calls


def prepare(ns: str, backend: str, svcs) -> None:
    import ipvs
    with ipvs.IPVS(netns=ns, backend=backend) as lb:
        with lb.batch() as b:
            for s in svcs:
                b.add_service(s)


def check(ns: str, backend: str, count: int, what: str) -> None:
    import ipvs
    with ipvs.IPVS(netns=ns, backend=backend) as lb:
        total = sum(len(v) for v in lb.table().values())
    if total != count:
        raise SystemExit("%s: %d destinations in the table, expected %d" % (what, total, count))


def m_sync(ns: str, backend: str, calls) -> float:
    import ipvs
    with ipvs.IPVS(netns=ns, backend=backend, timeout=120.0) as lb:
        add = lb.add_destination
        t0 = time.perf_counter()
        for s, d in calls:
            add(s, d)
        return time.perf_counter() - t0


def m_async(ns: str, backend: str, calls, tasks: int, loop_kind: str) -> float:
    import ipvs

    async def main() -> float:
        async with ipvs.AsyncIPVS(netns=ns, backend=backend, timeout=120.0) as lb:
            await lb.info()  # the worker thread is started outside the timing
            it = iter(calls)

            async def worker() -> None:
                for s, d in it:
                    await lb.add_destination(s, d)

            t0 = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(tasks)))
            return time.perf_counter() - t0

    return run(main(), loop_kind)


def run(coro, loop_kind: str):
    if loop_kind == "uvloop":
        import uvloop
        loop = uvloop.new_event_loop()
    else:
        loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(coro)
    finally:
        loop.close()


def _pyroute2_worker(count: int, tasks: int) -> None:
    """Runs inside the namespace: prints {"seconds": ...}."""
    from socket import IPPROTO_TCP
    from pyroute2 import AsyncIPVS, IPVSDest, IPVSService

    svcs = [IPVSService(addr=str(ipaddress.IPv4Address(0x0A000001 + i)), port=80,
                        protocol=IPPROTO_TCP) for i in range(SERVICES_FOR_ADDS)]
    calls = [(svcs[k % SERVICES_FOR_ADDS],
              IPVSDest(addr=str(ipaddress.IPv4Address(0xAC100001 + k)), port=PORT,
                       fwd_method=3, weight=1)) for k in range(count)]

    async def main() -> float:
        async with AsyncIPVS() as sock:
            await sock.setup_endpoint()  # the generic netlink family lookup (bind)
            it = iter(calls)

            async def worker() -> None:
                for s, d in it:
                    await sock.dest("add", service=s, dest=d)

            t0 = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(tasks)))
            return time.perf_counter() - t0

    print(json.dumps({"seconds": asyncio.run(main())}))


def m_pyroute2(ns: str, count: int, tasks: int) -> float:
    p = subprocess.run(["ip", "netns", "exec", ns, sys.executable, os.path.abspath(__file__),
                        "--pyroute2-worker", "--count", str(count), "--tasks", str(tasks)],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)
    if p.returncode != 0:
        raise SystemExit("pyroute2 worker failed:\n" + p.stderr.decode(errors="replace"))
    return float(json.loads(p.stdout.decode().strip().splitlines()[-1])["seconds"])


async def worst_gap(until) -> float:
    worst = 0.0
    last = time.perf_counter()
    while not until():
        await asyncio.sleep(0.001)
        now = time.perf_counter()
        worst = max(worst, now - last)
        last = now
    return worst


def m_table(ns: str, backend: str, repeat: int, loop_kind: str):
    """(sync seconds, async seconds, worst gap during async, worst idle gap)
    lists; sync and async dumps alternate, so that both see the same state
    of the kernel and of the host."""
    import ipvs
    from bench import wait_idle
    sync_t, async_t, gaps, idle = [], [], [], []

    async def main() -> None:
        with ipvs.IPVS(netns=ns, backend=backend, timeout=120.0) as lb:
            async with ipvs.AsyncIPVS(netns=ns, backend=backend, timeout=120.0) as alb:
                await alb.info()
                for _ in range(repeat):
                    wait_idle()
                    t0 = time.perf_counter()
                    lb.table()  # blocks this loop: nothing else runs on it meanwhile
                    sync_t.append(time.perf_counter() - t0)
                    wait_idle()
                    t0 = time.perf_counter()
                    dump = asyncio.ensure_future(alb.table())
                    gaps.append(await worst_gap(dump.done))
                    async_t.append(time.perf_counter() - t0)
                    end = time.perf_counter() + async_t[-1]
                    idle.append(await worst_gap(lambda: time.perf_counter() >= end))

    run(main(), loop_kind)
    return sync_t, async_t, gaps, idle


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=10000, help="single add_destination calls")
    ap.add_argument("--services", type=int, default=1000, help="services of the table() row")
    ap.add_argument("--dests", type=int, default=10, help="destinations per service (table())")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--backend", default="netlink", choices=["netlink", "sockopt"])
    ap.add_argument("--loop", default="asyncio", choices=["asyncio", "uvloop"])
    ap.add_argument("--skip", action="append", default=[],
                    help="a row to leave out (sync, async-1, ..., pyroute2-100, table)")
    ap.add_argument("--json", help="also write the raw results to this file")
    ap.add_argument("--pyroute2-worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--tasks", type=int, default=100, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.pyroute2_worker:
        _pyroute2_worker(args.count, args.tasks)
        return 0

    from bench import fresh_netns, wait_idle
    try:
        import pyroute2
        have_pyroute2 = getattr(pyroute2, "__version__", "?")
    except ImportError:
        have_pyroute2 = None
    svcs, calls = add_work(args.count)
    times = {name: [] for name, _ in ROWS}
    plan = [("sync", lambda ns: m_sync(ns, args.backend, calls))]
    for n in (1, 10, 100):
        plan.append(("async-%d" % n,
                     lambda ns, n=n: m_async(ns, args.backend, calls, n, args.loop)))
    if have_pyroute2 and args.backend == "netlink":
        plan.append(("pyroute2-100", lambda ns: m_pyroute2(ns, args.count, 100)))
    for rep in range(args.repeat):
        for name, fn in plan:
            if name in args.skip:
                continue
            with fresh_netns() as ns:
                prepare(ns, args.backend, svcs)
                wait_idle()
                t = fn(ns)
                if rep == 0 and not name.startswith("pyroute2"):
                    check(ns, args.backend, args.count, name)
                times[name].append(t)
                log("%s: %.3f s (%.0f calls/s)" % (name, t, args.count / t))
            time.sleep(0.5)

    table = None
    if "table" not in args.skip:
        import ipvs
        with fresh_netns() as ns:
            with ipvs.IPVS(netns=ns, backend=args.backend, timeout=120.0) as lb:
                with lb.batch() as b:
                    for i in range(args.services):
                        s = ipvs.Service(address=ipaddress.IPv4Address(0x0B000001 + i), port=80,
                                         protocol="tcp")
                        b.add_service(s)
                        for j in range(args.dests):
                            b.add_destination(s, ipvs.Destination(
                                address=ipaddress.IPv4Address(0xAD000001 + i * args.dests + j),
                                port=PORT))
            table = m_table(ns, args.backend, args.repeat, args.loop)

    med = {k: statistics.median(v) for k, v in times.items() if v}
    lines = ["AsyncIPVS benchmark: %d single add_destination over %d services; backend %s; "
             "loop %s; median of %d; Python %s"
             % (args.count, SERVICES_FOR_ADDS, args.backend, args.loop, args.repeat,
                sys.version.split()[0]),
             "%-40s %10s %12s" % ("", "seconds", "calls/s")]
    for name, label in ROWS:
        if name in med:
            lines.append("%-40s %10.3f %12.0f" % (label, med[name], args.count / med[name]))
        elif name.startswith("pyroute2") and not have_pyroute2:
            lines.append("%-40s %s" % (label, "pyroute2 not installed"))
    if "sync" in med and "async-100" in med:
        r = med["sync"] / med["async-100"]
        lines.append("100 tasks / sync rate: %.1fx (target >= 2x: %s)"
                     % (r, "met" if r >= 2 else "MISSED"))
    if "pyroute2-100" in med and "async-100" in med:
        r = med["pyroute2-100"] / med["async-100"]
        lines.append("100 tasks / pyroute2 async (100 tasks) rate: %.1fx (target >= 10x: %s)"
                     % (r, "met" if r >= 10 else "MISSED"))
    if table is not None:
        st, at, gaps, idle = table
        ms, ma = statistics.median(st), statistics.median(at)
        lines.append("table() of %dx%d: sync %.3f s, async %.3f s: %.2fx (target <= 1.2x: %s)"
                     % (args.services, args.dests, ms, ma, ma / ms,
                        "met" if ma / ms <= 1.2 else "MISSED"))
        lines.append("  1 ms ticker's worst gap: during async table() median %.1f ms "
                     "(max %.1f); idle loop median %.1f ms (max %.1f)"
                     % (statistics.median(gaps) * 1e3, max(gaps) * 1e3,
                        statistics.median(idle) * 1e3, max(idle) * 1e3))
    print("\n".join(lines))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"times": times, "table": table, "count": args.count,
                       "backend": args.backend, "loop": args.loop,
                       "pyroute2": have_pyroute2}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())

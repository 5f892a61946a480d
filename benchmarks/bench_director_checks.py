"""The director's check engine at scale, on the host (no IPVS needed).

    python benchmarks/bench_director_checks.py [--checks 50000] [--interval 10]
        [--measure 30] [--profile FILE]

N TCP checks of N distinct endpoints (address, port) at one interval, run by
the director's own scheduler and TCP check (``ipvs.director.scheduler``,
``ipvs.director.checks.tcp``), with the table in the director's in-memory kernel
(``_kernel.MemoryKernel``).  The endpoints are 127.x.y.z addresses times a
few ports, served by a handful of wildcard listening sockets in a private
network namespace (``unshare -n``: only its loopback exists, so the
wildcard binds are reachable from nowhere else); a child process accepts
and closes, and stops by itself at its deadline or when this process goes.

Measured after a warm-up of one interval (every probe has run and risen):
lateness of check starts (actual start minus the time the scheduler had it
due, recorded by the scheduler), CPU of the director's process, open file descriptors beside the checks
in flight at the same moment, RSS.  The load average is printed beside every
figure: the machine is shared.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import os
import pstats
import resource
import select
import socket
import subprocess
import sys
import time
from typing import Any, Dict, List

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from ipvs.director.config import parse  # noqa: E402
from ipvs.director.core import Director  # noqa: E402
from ipvs.director._kernel import MemoryKernel  # noqa: E402

PORT0 = 20000
PER_SERVICE = 1000


def load() -> str:
    with open("/proc/loadavg") as f:
        return "load %s" % " ".join(f.read().split()[:3])


def endpoints(n: int, ports: int) -> List[tuple]:
    """n distinct (address, port): 127.1.0.1... times ``ports`` ports."""
    out = []
    per_port = -(-n // ports)
    for i in range(n):
        a, p = divmod(i, ports)
        a += 1
        out.append(("127.%d.%d.%d" % (1 + a // 65536, (a // 256) % 256, a % 256), PORT0 + p))
    assert per_port >= 1
    return out


def listener(ports: int, deadline: float) -> None:
    """Child: wildcard listeners on PORT0.. accepting and closing until the
    deadline or until the parent is gone."""
    import signal
    parent = os.getppid()
    stop: List[int] = []
    signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
    socks = []
    for p in range(ports):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("0.0.0.0", PORT0 + p))
        s.listen(4096)
        s.setblocking(False)
        socks.append(s)
    ep = select.epoll()
    by_fd = {s.fileno(): s for s in socks}
    for fd in by_fd:
        ep.register(fd, select.EPOLLIN)
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    while time.monotonic() < deadline and os.getppid() == parent and not stop:
        try:
            events = ep.poll(0.5)
        except InterruptedError:
            continue
        for fd, _ in events:
            s = by_fd[fd]
            for _ in range(256):
                try:
                    c, _ = s.accept()
                except (BlockingIOError, InterruptedError):
                    break
                c.close()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    sys.stdout.write("cpu %.2f\n" % (usage.ru_utime + usage.ru_stime))


def config_text(eps: List[tuple], interval: float, timeout: float,
                slots: int = 0) -> str:
    out = ['[director]\ncontrol = "/nonexistent/ipvs-director.sock"\n']
    if slots:
        out.append("max_checks_in_flight = %d\n" % slots)
    for i in range(0, len(eps), PER_SERVICE):
        s = i // PER_SERVICE
        out.append('[[service]]\naddress = "10.%d.%d.1"\nport = 80\nscheduler = "wlc"\n'
                   '[service.check]\ntype = "tcp"\ninterval = %g\nretry_interval = %g\n'
                   'timeout = %g\nrise = 2\nfall = 2\n' % (s // 256, s % 256, interval,
                                                            interval, timeout))
        for a, p in eps[i:i + PER_SERVICE]:
            out.append('[[service.real_server]]\naddress = "%s"\nport = %d\n'
                       'forward = "masq"\n' % (a, p))
    return "".join(out)


def netstat(*names: str) -> str:
    """Counters of this namespace's TCP stack (/proc/net/netstat, snmp)."""
    out = {}
    for path in ("/proc/net/netstat", "/proc/net/snmp"):
        with open(path) as f:
            lines = f.read().splitlines()
        for head, vals in zip(lines[::2], lines[1::2]):
            for k, v in zip(head.split()[1:], vals.split()[1:]):
                if k in names:
                    out[k] = v
    return " ".join("%s=%s" % (k, out.get(k, "?")) for k in names)


def fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def pct(values: List[float], q: float) -> float:
    if not values:
        return float("nan")
    v = sorted(values)
    return v[min(len(v) - 1, int(q * len(v)))]


class _Null:
    def write(self, s: str) -> int:
        return len(s)

    def flush(self) -> None:
        pass


async def bench(args: argparse.Namespace) -> int:
    eps = endpoints(args.checks, args.ports)
    t0 = time.monotonic()
    cfg = parse(config_text(eps, args.interval, args.timeout, args.slots), "bench.toml")
    print("config: %d services, %d real servers, parsed in %.2f s (%s)" % (
        len(cfg.services), sum(len(s.real_servers) for s in cfg.services),
        time.monotonic() - t0, load()))
    kernel = MemoryKernel()
    d = Director(cfg, kernel=kernel, stream=_Null())
    loop = asyncio.get_running_loop()
    stats: Dict[str, Any] = {"late": [], "inflight": 0, "max_inflight": 0, "results": {},
                             "measuring": False, "writes": 0}
    real_kernel_run = kernel.run

    async def counted(calls: Any) -> None:
        stats["writes"] += len(calls)
        await real_kernel_run(calls)
    kernel.run = counted  # type: ignore[method-assign]

    t0 = time.monotonic()
    await d.start()
    sched = d.scheduler
    assert sched is not None
    real_finish = sched.finish

    def finish(probe: Any, r: Any) -> None:
        if stats["measuring"]:
            k = r.result if r.ok else "%s (%s)" % (r.result, r.message[:40])
            stats["results"][k] = stats["results"].get(k, 0) + 1
        real_finish(probe, r)
    sched.finish = finish  # type: ignore[method-assign]
    print("checks in flight at most %d" % d.max_checks_in_flight)
    print("start: %d probes, first round %d kernel writes in %.2f s (%s)" % (
        len(d.probes), stats["writes"], time.monotonic() - t0, load()))
    base_fds = fds()
    samples: List[tuple] = []

    async def sampler() -> None:
        while True:
            try:
                n = sched.inflight
                stats["max_inflight"] = max(stats["max_inflight"], n)
                samples.append((fds() - base_fds, n, rss_mb()))
            except OSError as e:  # EMFILE: the checks hold every fd
                print("sampler: %s (%d checks in flight)" % (e, sched.inflight))
            await asyncio.sleep(0.25)
    st = loop.create_task(sampler())
    await asyncio.sleep(args.interval * 2)   # warm-up: down -> rising -> up
    up = sum(1 for p in d.probes.values() if p.state == "up")
    print("warm-up %.0f s: %d of %d probes up, %d kernel writes (%s)" % (
        args.interval * 2, up, len(d.probes), stats["writes"], load()))
    for t in d._tasks:
        if t.done():
            print("director task ended: %r" % (t.exception(),))
    samples.clear()
    stats["measuring"] = True
    stats["max_inflight"] = sched.inflight
    sched.late = stats["late"]
    prof = cProfile.Profile() if args.profile else None
    u0 = resource.getrusage(resource.RUSAGE_SELF)
    w0 = time.monotonic()
    if prof:
        prof.enable()
    await asyncio.sleep(args.measure)
    if prof:
        prof.disable()
    w1 = time.monotonic()
    u1 = resource.getrusage(resource.RUSAGE_SELF)
    stats["measuring"] = False
    sched.late = None
    st.cancel()
    cpu = (u1.ru_utime + u1.ru_stime - u0.ru_utime - u0.ru_stime) / (w1 - w0)
    late = stats["late"]
    n = len(late)
    print("measured %.1f s: %d check starts (%.0f/s; expected %.0f/s), results %s (%s)" % (
        w1 - w0, n, n / (w1 - w0), args.checks / args.interval, stats["results"], load()))
    target = 0.05 * args.interval
    p99 = pct(late, 0.99)
    print("lateness: p50 %.1f ms, p99 %.1f ms, max %.1f ms; target p99 <= %.0f ms: %s (%s)" % (
        1000 * pct(late, 0.5), 1000 * p99, 1000 * max(late or [0]), 1000 * target,
        "MET" if p99 <= target else "MISSED", load()))
    user = (u1.ru_utime - u0.ru_utime) / (w1 - w0)
    print("cpu: %.0f %% of one core for the director's process (user %.0f %%, system %.0f %%); "
          "%.0f us per check (%s)" % (100 * cpu, 100 * user, 100 * (cpu - user),
                                      1e6 * cpu * (w1 - w0) / max(1, n), load()))
    worst = max(samples, key=lambda s: s[0]) if samples else (0, 0, 0)
    over = max((f - i for f, i, _ in samples), default=0)
    print("open fds above the idle %d: max %d (checks in flight then %d; max in flight %d); "
          "fds minus in-flight at most %d (%s)" % (base_fds, worst[0], worst[1],
                                                   stats["max_inflight"], over, load()))
    rss = max((s[2] for s in samples), default=rss_mb())
    print("rss: max %.0f MB; target <= 1024 MB: %s (%s)" % (
        rss, "MET" if rss <= 1024 else "MISSED", load()))
    print("tcp: " + netstat("ListenOverflows", "ListenDrops", "TCPTimeWaitOverflow",
                            "ActiveOpens", "AttemptFails", "RetransSegs", "TCPReqQFullDrop",
                            "TCPSynRetrans"))
    await d.stop()
    if prof:
        prof.dump_stats(args.profile)
        out = io.StringIO()
        pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(25)
        print(out.getvalue())
    return 0 if p99 <= target and rss <= 1024 else 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checks", type=int, default=50000)
    ap.add_argument("--interval", type=float, default=10.0)
    ap.add_argument("--timeout", type=float, default=2.0)
    ap.add_argument("--ports", type=int, default=10, help="listening ports (and sockets)")
    ap.add_argument("--measure", type=float, default=30.0, help="seconds measured")
    ap.add_argument("--slots", type=int, default=0,
                    help="[director] max_checks_in_flight (default: the director's)")
    ap.add_argument("--profile", metavar="FILE", help="cProfile the measured part into FILE")
    ap.add_argument("--listener", type=float, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.listener is not None:
        listener(args.ports, args.listener)
        return 0
    if os.environ.get("BENCH_DIRECTOR_NETNS") != "1":
        # a private network namespace: only its loopback, reachable from nowhere
        env = dict(os.environ, BENCH_DIRECTOR_NETNS="1")
        return subprocess.call(["unshare", "-n", sys.executable] + sys.argv, env=env)
    subprocess.check_call(["ip", "link", "set", "lo", "up"])
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = max(soft, 65536)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, max(hard, want)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    print("RLIMIT_NOFILE %d; %d checks at %g s, timeout %g s; %d listening sockets "
          "(%s)" % (resource.getrlimit(resource.RLIMIT_NOFILE)[0], args.checks, args.interval,
                    args.timeout, args.ports, load()))
    duration = args.interval * 2 + args.measure + 60
    child = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--ports",
                              str(args.ports), "--listener",
                              str(time.monotonic() + duration)],
                             stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "ready"
    try:
        rc = asyncio.run(bench(args))
    finally:
        child.terminate()
        out = child.communicate(timeout=10)[0]
    print("listener process: %s s of CPU in all" % out.strip().split()[-1] if out else "")
    return rc


if __name__ == "__main__":
    sys.exit(main())

"""The director's check scheduler (ipvs.director.scheduler): the timer
wheel's grid, the cap on checks in flight, TCP checks on its own epoll set
(success, refused, timeout), other types through checks.run_check, drop and
close.  Loopback listeners only; every test ends within seconds."""

from __future__ import annotations

import asyncio
import os
import socket
from typing import Any, List, Optional, Tuple

import pytest

from ipvs.director import scheduler as _scheduler
from ipvs.director.checks import CheckResult
from ipvs.director.config import CheckConfig
from ipvs.director.scheduler import Scheduler


class FakeProbe:
    def __init__(self, check: CheckConfig) -> None:
        self.check = check
        self.due: Optional[float] = None
        self.sched = 0

    def period(self) -> float:
        return self.check.interval


def tcp(port: int, *, interval: float = 0.1, timeout: float = 1.0,
        address: str = "127.0.0.1") -> CheckConfig:
    return CheckConfig("tcp", address, port, interval=interval, retry_interval=interval,
                       timeout=timeout)


def listener(backlog: int = 64) -> socket.socket:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(backlog)
    return s


def full_backlog(port: int) -> List[socket.socket]:
    """Connections that fill the backlog of a ``listener(0)`` that never
    accepts: further SYNs are dropped, so a connect hangs until its deadline
    (close them after)."""
    fillers = []
    for _ in range(4):
        c = socket.socket()
        c.setblocking(False)
        c.connect_ex(("127.0.0.1", port))
        fillers.append(c)
    return fillers


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def collect(probes: List[FakeProbe], seconds: float, slots: int = 100,
                  delay: float = 0.0) -> Tuple[Scheduler, List[Tuple[float, Any, CheckResult]]]:
    loop = asyncio.get_running_loop()
    results: List[Tuple[float, Any, CheckResult]] = []
    sched = Scheduler(slots, lambda p, r: results.append((loop.time(), p, r)))
    sched.late = []
    for p in probes:
        sched.add(p, delay)
    await asyncio.sleep(seconds)
    await sched.close()
    return sched, results


def test_tcp_success_and_refused_on_a_fixed_grid():
    srv = listener()
    ok, refused = FakeProbe(tcp(srv.getsockname()[1])), FakeProbe(tcp(free_port()))

    async def go():
        return await collect([ok, refused], 0.55)
    try:
        sched, results = asyncio.run(go())
    finally:
        srv.close()
    mine = [r for _, p, r in results if p is ok]
    theirs = [r for _, p, r in results if p is refused]
    assert 5 <= len(mine) <= 7 and all(r.result == "success" for r in mine), mine
    assert 5 <= len(theirs) <= 7, theirs
    assert all(r.result == "failure" and "refused" in r.message for r in theirs), theirs
    # starts are due on a grid of the interval from the first, not drifting
    assert sched.late is not None and len(sched.late) == sched.started
    assert max(sched.late) < 0.1, sched.late
    assert sched.inflight == 0


def test_tcp_timeout_when_the_syn_goes_unanswered():
    # a listener whose backlog is full and which never accepts: further SYNs
    # are dropped, the connect hangs until the check's own deadline
    srv = listener(0)
    port = srv.getsockname()[1]
    fillers = full_backlog(port)

    async def go():
        return await collect([FakeProbe(tcp(port, interval=5.0, timeout=0.3))], 0.7)
    try:
        sched, results = asyncio.run(go())
    finally:
        for c in fillers:
            c.close()
        srv.close()
    assert len(results) == 1, results
    t, _, r = results[0]
    assert r.result == "timeout" and r.message == "no answer within 0.3s", r
    assert 0.28 <= r.duration <= 0.5, r


def test_slots_bound_checks_in_flight_and_sockets():
    srv = listener(0)
    port = srv.getsockname()[1]
    fillers = full_backlog(port)
    probes = [FakeProbe(tcp(port, interval=0.05, timeout=0.2)) for _ in range(20)]

    async def go():
        loop = asyncio.get_running_loop()
        seen = []
        sched = Scheduler(3, lambda p, r: seen.append(r))
        base = open_fds()
        for p in probes:
            sched.add(p, 0.0)
        peak_inflight = peak_fds = 0
        end = loop.time() + 0.9
        while loop.time() < end:
            peak_inflight = max(peak_inflight, sched.inflight)
            peak_fds = max(peak_fds, open_fds() - base)
            await asyncio.sleep(0.01)
        await sched.close()
        return seen, peak_inflight, peak_fds, open_fds() - base
    try:
        seen, peak_inflight, peak_fds, left = asyncio.run(go())
    finally:
        for c in fillers:
            c.close()
        srv.close()
    assert peak_inflight == 3
    assert peak_fds <= 3
    assert left <= -1          # close() closed the epoll set too
    # 3 at a time, 0.2 s each, over 0.9 s: about 12 timeouts, queued probes
    # start as slots free up (FIFO), none fails for want of an fd
    assert 9 <= len(seen) <= 15, seen
    assert all(r.result == "timeout" for r in seen)


def test_other_types_run_through_run_check(monkeypatch):
    calls: List[str] = []

    async def fake_run(check, timeout=None):
        calls.append(check.address)
        await asyncio.sleep(0.01)
        return CheckResult("success", "fake", 0.01)
    monkeypatch.setattr(_scheduler._checks, "run_check", fake_run)
    p = FakeProbe(CheckConfig("http", "192.0.2.1", 80, interval=0.1, retry_interval=0.1))

    async def go():
        return await collect([p], 0.35)
    _, results = asyncio.run(go())
    assert calls == ["192.0.2.1"] * len(calls) and 3 <= len(calls) <= 5, calls
    assert [r.message for _, _, r in results] == ["fake"] * len(results)


def test_at_most_one_run_of_a_probe_in_flight(monkeypatch):
    running = []
    peak = []

    async def slow(check, timeout=None):
        running.append(1)
        peak.append(len(running))
        await asyncio.sleep(0.25)        # longer than the 0.1 s interval
        running.pop()
        return CheckResult("success", "slow", 0.25)
    monkeypatch.setattr(_scheduler._checks, "run_check", slow)
    p = FakeProbe(CheckConfig("exec", "192.0.2.1", 80, interval=0.1, retry_interval=0.1,
                              params=(("command", ("true",)),)))

    async def go():
        return await collect([p], 0.8)
    _, results = asyncio.run(go())
    assert max(peak) == 1
    # an overrun starts the next run at once: back to back, not skipped
    assert 3 <= len(results) <= 4, results


def test_dropped_probe_gets_no_more_results():
    srv = listener()
    a, b = FakeProbe(tcp(srv.getsockname()[1])), FakeProbe(tcp(srv.getsockname()[1] ))

    async def go():
        loop = asyncio.get_running_loop()
        got: List[Any] = []
        sched = Scheduler(10, lambda p, r: got.append((loop.time(), p)))
        sched.add(a, 0.0)
        sched.add(b, 0.0)
        await asyncio.sleep(0.25)
        sched.drop(b)
        t = loop.time()
        await asyncio.sleep(0.3)
        await sched.close()
        return got, t
    try:
        got, t = asyncio.run(go())
    finally:
        srv.close()
    assert any(p is b for _, p in got)
    assert not any(p is b and when > t for when, p in got)
    assert sum(1 for when, p in got if p is a and when > t) >= 2


def test_first_runs_spread_over_the_shorter_period():
    srv = listener(256)
    probes = [FakeProbe(tcp(srv.getsockname()[1], interval=1.0)) for _ in range(40)]

    async def go():
        loop = asyncio.get_running_loop()
        first = {}
        sched = Scheduler(100, lambda p, r: first.setdefault(id(p), loop.time()))
        t0 = loop.time()
        for p in probes:
            sched.add(p)            # no delay given: a random point of 1 s
        await asyncio.sleep(1.05)
        await sched.close()
        return sorted(t - t0 for t in first.values())
    try:
        times = asyncio.run(go())
    finally:
        srv.close()
    assert len(times) == 40
    assert times[-1] - times[0] > 0.5, times
    assert max(sum(1 for t in times if a <= t < a + 0.1) for a in times) <= 14, times


@pytest.mark.parametrize("address", ["::1"])
def test_tcp_over_ipv6(address):
    try:
        srv = socket.socket(socket.AF_INET6)
        srv.bind((address, 0))
    except OSError as e:  # pragma: no cover - a host without IPv6 loopback
        pytest.skip("no IPv6 loopback here: %s" % e)
    srv.listen(8)
    p = FakeProbe(tcp(srv.getsockname()[1], address=address, interval=5.0))

    async def go():
        return await collect([p], 0.1)
    try:
        _, results = asyncio.run(go())
    finally:
        srv.close()
    assert [r.result for _, _, r in results] == ["success"]


def test_director_start_and_reload_leave_the_collector_as_they_found_it(tmp_path):
    import gc
    import io

    from ipvs.director import parse
    from ipvs.director._kernel import MemoryKernel
    from ipvs.director.core import Director
    path = tmp_path / "d.toml"
    text = ('[director]\ncontrol = "%s"\n[[service]]\naddress = "10.0.0.1"\nport = 80\n'
            '[[service.real_server]]\naddress = "10.0.1.1"\n' % (tmp_path / "s.sock"))
    path.write_text(text)
    seen = []

    async def go():
        d = Director(parse(text), path=str(path), kernel=MemoryKernel(), stream=io.StringIO(),
                     state_file="")
        await d.start()
        seen.append(gc.isenabled())
        path.write_text(text.replace('"10.0.1.1"', '"10.0.1.2"'))
        await d.reload()
        seen.append(gc.isenabled())
        await d.stop()
    was = gc.isenabled()
    try:
        gc.enable()
        asyncio.run(go())
        gc.disable()
        asyncio.run(go())
    finally:
        if was:
            gc.enable()
    assert seen == [True, True, False, False]


def test_rounds_plan_in_chunks_of_services_and_real_servers():
    import io

    from ipvs.director import parse
    from ipvs.director._kernel import MemoryKernel
    from ipvs.director import core
    from ipvs.director.core import Director
    text = "".join('[[service]]\naddress = "10.0.%d.1"\nport = 80\n%s' % (
        s, "".join('[[service.real_server]]\naddress = "10.%d.%d.%d"\n' % (1 + s, r // 250, 1 + r % 250)
                   for r in range(3000 if s < 3 else 1))) for s in range(8))
    d = Director(parse(text), kernel=MemoryKernel(), stream=io.StringIO())
    order = list(d.services)
    chunks = d._chunks(order)
    assert [k for c in chunks for k in c] == order
    # 3,000 + 3,000 reaches 5,000: cut; the third 3,000 and the small ones next
    assert [len(c) for c in chunks] == [2, 6]
    assert all(len(c) <= core.CHUNK for c in d._chunks(order * 100))


def test_a_failing_result_handler_does_not_stop_the_probes(caplog):
    srv = listener()
    probes = [FakeProbe(tcp(srv.getsockname()[1])) for _ in range(3)]
    got: List[Any] = []

    def finish(p, r):
        got.append(p)
        if p is probes[0]:
            raise RuntimeError("boom")

    async def go():
        sched = Scheduler(10, finish)
        for p in probes:
            sched.add(p, 0.0)
        await asyncio.sleep(0.35)
        await sched.close()
        return sched
    try:
        sched = asyncio.run(go())
    finally:
        srv.close()
    for p in probes:
        assert 3 <= sum(1 for q in got if q is p) <= 5
    assert sched.free == sched.slots
    assert "boom" in caplog.text


def test_an_idle_wheel_does_not_tick():
    # one probe a second: the loop is woken for its start and its timeout's
    # bucket, not every 10 ms (each wake-up is a system call; in the UML
    # sandbox a slow one)
    srv = listener()
    p = FakeProbe(tcp(srv.getsockname()[1], interval=1.0, timeout=0.5))

    async def go():
        got: List[Any] = []
        sched = Scheduler(10, lambda q, r: got.append(r))
        ticks = []
        real = sched._on_tick

        def counted() -> None:
            ticks.append(1)
            real()
        sched._on_tick = counted  # type: ignore[method-assign]
        sched.add(p, 0.05)
        await asyncio.sleep(1.2)
        await sched.close()
        return got, len(ticks)
    try:
        got, ticks = asyncio.run(go())
    finally:
        srv.close()
    assert [r.result for r in got] == ["success", "success"]
    assert ticks <= 6, ticks


def test_connects_done_during_a_stall_are_not_timeouts(monkeypatch):
    # 1,500 connects finish while the loop is blocked past their deadline:
    # they are successes (the epoll set is read whole, and before deadlines;
    # epoll's default of 1,023 events a read left 477 to the deadlines)
    monkeypatch.setattr(_scheduler, "BATCH", 5000)
    srv = listener(2048)
    n = 1500
    probes = [FakeProbe(tcp(srv.getsockname()[1], interval=30.0, timeout=0.2))
              for _ in range(n)]

    async def go():
        import time as _time
        got: List[CheckResult] = []
        sched = Scheduler(n + 10, lambda p, r: got.append(r))
        real = sched._start_ready

        def then_stall() -> None:
            real()
            if sched.started >= n:
                _time.sleep(0.5)   # the loop stalls beyond every deadline
        sched._start_ready = then_stall  # type: ignore[method-assign]
        for p in probes:
            sched.add(p, 0.0)
        await asyncio.sleep(0.8)
        await sched.close()
        return sched, got
    try:
        sched, got = asyncio.run(go())
    finally:
        srv.close()
    assert sched.started == n
    assert len(got) == n
    kinds = {r.result for r in got}
    assert kinds == {"success"}, (len([r for r in got if r.result != "success"]),
                                  [r for r in got if r.result != "success"][:2])

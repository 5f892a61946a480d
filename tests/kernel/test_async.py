"""AsyncIPVS against the kernel, on both backends (``ipvs_backend``).

How these tests hold handles: each test runs its own event loop (plain
``loop.run_until_complete``, on asyncio's default loop or on uvloop) and opens
its `AsyncIPVS` inside the coroutine that runs on that loop, so a handle is
never shared between loops (a handle belongs to the loop of its first use).

Parity: one scenario of calls touching every name of ``ipvs._async.METHODS``
runs on a sync `IPVS` and then, after the table and timeouts are put back, on
an `AsyncIPVS`; every step must give an equal result or an exception of the
same class, errno, operation and message. Methods that this version of
`IPVS` lacks (``modify_*`` before they are merged) must be missing on both
sides in the same way; once they exist, the same scenario checks them.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import inspect
import ipaddress
import os
import random
import socket
import threading
import time
import warnings

import pytest

import ipvs
from ipvs import _async, netns
from ipvs import Daemon, DaemonState, Destination, Forward, Service
from .test_timeouts_signals import silent_peer as _sync_silent_peer

pytestmark = pytest.mark.kernel

LOOPS = ["asyncio", "uvloop"]

S1 = Service(address="10.10.0.1", port=80, protocol="tcp", scheduler="wlc")
S9 = Service(address="10.10.0.9", port=80, protocol="tcp")
S6 = Service(address="2001:db8::1", port=80, protocol="tcp")
SF = Service(fwmark=5, scheduler="rr")
D1 = Destination(address="192.168.10.1", port=8080, weight=2, forward=Forward.MASQ)
D2 = Destination(address="192.168.10.2", port=8080)
DT = Destination(address="192.168.10.3", port=8080, forward=Forward.TUNNEL,
                 tunnel_type=ipvs.TunnelType.GUE, tunnel_port=6080)


def new_loop(kind: str) -> asyncio.AbstractEventLoop:
    if kind == "uvloop":
        import uvloop  # a test dependency (pyproject's `test` extra): never skipped
        return uvloop.new_event_loop()
    return asyncio.new_event_loop()


def run(coro, kind: str = "asyncio"):
    loop = new_loop(kind)
    try:
        return loop.run_until_complete(coro)
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


# ------------------------------------------------------------------ parity

def scenario():
    """(method, args, kwargs) steps; together they call every METHODS name."""
    mark = Daemon(DaemonState.MASTER, "lo", sync_id=3)
    return [
        ("info", (), {}),
        ("timeouts", (), {}),
        ("set_timeouts", (), {"tcp": 1000, "udp": 200}),
        ("timeouts", (), {}),
        ("set_timeouts", (), {"tcp": 0}),
        ("add_service", (S1,), {}),
        ("add_service", (S1,), {}),
        ("add_service", (S6,), {}),
        ("add_service", (SF,), {}),
        ("add_service", ("S1",), {}),
        ("add_service", (S1.replace(port=81, scheduler="nosuch"),), {}),
        ("get_service", (S1,), {}),
        ("get_service", (S9,), {}),
        ("update_service", (S1.replace(scheduler="rr"),), {}),
        ("update_service", (S9,), {}),
        ("add_destination", (S1, D1), {}),
        ("add_destination", (S1, D1), {}),
        ("add_destination", (S9, D1), {}),
        ("add_destination", (S1, DT), {}),
        ("add_destination", (S1, "D1"), {}),
        ("add_destination", (SF, D2), {}),
        ("destinations", (S1,), {}),
        ("destinations", (S9,), {}),
        ("update_destination", (S1, D1.replace(weight=5)), {}),
        ("update_destination", (S1, D2), {}),
        ("modify_service", (S1,), {"scheduler": "wlc"}),
        ("modify_service", (S1,), {"port": 81}),
        ("modify_service", (S9,), {"scheduler": "rr"}),
        ("modify_destination", (S1, D1), {"weight": 7}),
        ("modify_destination", (S1, D2), {"weight": 7}),
        ("get_service", (S1,), {}),
        ("destinations", (S1,), {}),
        ("services", (), {}),
        ("services", (), {"consistent": True}),
        ("table", (), {}),
        ("table", (), {"consistent": True}),
        ("zero", (), {}),
        ("zero", (S1,), {}),
        ("zero", (S9,), {}),
        ("connections", (), {}),
        ("stats", (), {}),
        ("daemons", (), {}),
        ("start_daemon", (mark,), {}),
        ("start_daemon", (mark,), {}),
        ("daemons", (), {}),
        ("stop_daemon", ("master",), {}),
        ("stop_daemon", (DaemonState.MASTER,), {}),
        ("stop_daemon", ("bogus",), {}),
        ("start_daemon", ("lo",), {}),
        ("apply", ({S1: [D1, D2]},), {"dry_run": True}),
        ("apply", ({S1: [D1, D2], SF: []},), {"prune": False}),
        ("apply", ({S1: [D2]},), {"prune": "destinations"}),
        ("apply", ({S1: [D2]},), {}),
        ("apply", ("nope",), {}),
        ("table", (), {}),
        ("delete_destination", (S1, D2), {}),
        ("delete_destination", (S1, D2), {}),
        ("delete_service", (S1,), {}),
        ("delete_service", (S1,), {}),
        ("services", (), {}),
        ("flush", (), {}),
        ("services", (), {}),
    ]


def outcome_of(fn):
    try:
        return ("ok", fn())
    except Exception as e:  # compared field by field below
        return ("exc", e)


async def async_outcome_of(make):
    try:
        return ("ok", await make())
    except Exception as e:
        return ("exc", e)


def describe(outcome):
    kind, value = outcome
    if kind == "ok":
        # the order of a service dump is the kernel's hash order, which on 7.x
        # differs between namespaces (docs/KERNEL-FACTS.md): services, and the
        # plan's changes that follow the dump's order, compare as sorted lists
        if isinstance(value, ipvs.Plan):
            return ("ok", "Plan", sorted(value.changes, key=repr), value.applied)
        if isinstance(value, list) and value and all(isinstance(v, ipvs.Service) for v in value):
            return ("ok", "list", sorted(value, key=repr))
        return ("ok", type(value).__name__, value)
    return ("exc", type(value), str(value), getattr(value, "errno", None),
            getattr(value, "operation", None), getattr(value, "kernel_message", None),
            [(c, type(e), str(e)) for c, e in getattr(value, "failures", [])])


def sync_call(lb, name, args, kwargs):
    return outcome_of(lambda: getattr(lb, name)(*args, **kwargs))


def reset(ns, timeouts):
    with ipvs.IPVS(netns=ns) as lb:
        lb.flush()
        lb.set_timeouts(tcp=timeouts.tcp, tcp_fin=timeouts.tcp_fin, udp=timeouts.udp)
        for d in lb.daemons():
            lb.stop_daemon(d.state)


def test_scenario_covers_every_method():
    names = {name for name, _, _ in scenario()}
    assert set(_async.METHODS) <= names, set(_async.METHODS) - names


@pytest.mark.parametrize("loop_kind", LOOPS)
def test_parity_every_method(ipvs_netns, ipvs_backend, loop_kind):
    with ipvs.IPVS(netns=ipvs_netns) as probe:
        initial = probe.timeouts()
    steps = scenario()
    with ipvs.IPVS(netns=ipvs_netns, backend=ipvs_backend) as lb:
        expected = [describe(sync_call(lb, *step)) for step in steps]
    reset(ipvs_netns, initial)

    async def main(ns):
        async with ipvs.AsyncIPVS(netns=ns, backend=ipvs_backend) as alb:
            assert alb.backend == ipvs_backend
            out = []
            for name, args, kwargs in steps:
                if hasattr(ipvs.IPVS, name):
                    assert inspect.iscoroutinefunction(getattr(type(alb), name)), name
                out.append(describe(await async_outcome_of(
                    lambda: getattr(alb, name)(*args, **kwargs))))
            return out

    # the async run gets a fresh namespace of its own, as the sync run had:
    # a 7.x kernel sizes its connection table when the first service is
    # added, so info() of a namespace that has had services differs
    # (docs/KERNEL-FACTS.md)
    with netns.temporary() as fresh:
        netns.link_up(fresh, "lo")
        got = run(main(fresh), loop_kind)
    assert len(got) == len(expected)
    for step, e, g in zip(steps, expected, got):
        assert g == e, "step %s%r: sync %r, async %r" % (step[0], step[1], e, g)
    # the scenario is not vacuous: successes and failures of many classes
    assert sum(1 for e in expected if e[0] == "ok") >= 25
    assert len({e[1] for e in expected if e[0] == "exc"}) >= 6


def writes_for_coalescing():
    """Single writes with successes and failures of each kind, in order."""
    svc2 = S1.replace(port=82)
    return [
        ("add_service", (S1,)),
        ("add_service", (S1,)),                          # exists
        ("add_service", (S6,)),                          # sockopt: UnsupportedError
        ("add_service", (svc2.replace(scheduler="nosuch"),)),
        ("add_destination", (S1, D1)),
        ("add_destination", (S1, D1)),                   # exists
        ("add_destination", (S9, D1)),                   # no service
        ("add_destination", (S1, DT)),                   # sockopt: UnsupportedError
        ("update_destination", (S1, D1.replace(weight=9))),
        ("update_destination", (S1, D2)),                # no destination
        ("update_service", (S1.replace(scheduler="rr"),)),
        ("update_service", (S9,)),
        ("add_service", (svc2,)),
        ("add_destination", (svc2, D2)),
        ("delete_destination", (svc2, D2)),
        ("delete_destination", (svc2, D2)),              # gone
        ("delete_service", (svc2,)),
        ("delete_service", (svc2,)),                     # gone
        ("add_destination", (S1, "x")),                  # TypeError before queuing
    ]


@pytest.mark.parametrize("loop_kind", LOOPS)
def test_coalesced_writes_give_each_caller_its_own_result(ipvs_netns, ipvs_backend, loop_kind,
                                                          monkeypatch):
    with ipvs.IPVS(netns=ipvs_netns) as probe:
        initial = probe.timeouts()
    writes = writes_for_coalescing()
    with ipvs.IPVS(netns=ipvs_netns, backend=ipvs_backend) as lb:
        expected = [describe(sync_call(lb, name, args, {})) for name, args in writes]
        expected_table = lb.table()
    reset(ipvs_netns, initial)

    groups = []
    real = _async._Worker._writes

    def spy(self, group):
        groups.append(len(group))
        return real(self, group)

    monkeypatch.setattr(_async._Worker, "_writes", spy)

    async def main():
        async with ipvs.AsyncIPVS(netns=ipvs_netns, backend=ipvs_backend) as alb:
            # hold the worker in a read until every write is queued, so that
            # they all wait together (as they do under load)
            sync = alb._worker.sync
            entered, gate = threading.Event(), threading.Event()
            real_info = sync.info

            def held_info():
                entered.set()
                gate.wait(10)
                return real_info()

            sync.info = held_info
            first = asyncio.ensure_future(alb.info())
            while not entered.is_set():
                await asyncio.sleep(0.001)
            tasks = [asyncio.ensure_future(async_outcome_of(
                lambda n=name, a=args: getattr(alb, n)(*a))) for name, args in writes]
            for _ in range(3):
                await asyncio.sleep(0)
            gate.set()
            outs = await asyncio.gather(*tasks)
            assert isinstance(await first, ipvs.Info)
            del sync.info
            return [describe(o) for o in outs], await alb.table()

    got, table = run(main(), loop_kind)
    reset(ipvs_netns, initial)
    assert max(groups) == len(writes) - 1, groups  # the queued writes went as one batch
    for w, e, g in zip(writes, expected, got):
        assert g == e, "%s%r: sync %r, coalesced %r" % (w[0], w[1], e, g)
    assert table == expected_table
    # weights per service (a service dump's order is the kernel's hash order)
    assert {s: [d.weight for d in v] for s, v in table.items()} == \
        {s: [d.weight for d in v] for s, v in expected_table.items()}


# ------------------------------------------------------------- concurrency

def dest(i: int, j: int) -> Destination:
    return Destination(address=ipaddress.IPv4Address(0xAC140000 + i * 256 + j + 1), port=80,
                       weight=1 + j % 4)


def svc(i: int) -> Service:
    return Service(address=ipaddress.IPv4Address(0x0A140000 + i + 1), port=80, protocol="tcp",
                   scheduler="wlc")


@pytest.mark.parametrize("loop_kind", LOOPS)
def test_fifty_tasks_on_one_handle(ipvs_netns, ipvs_backend, loop_kind):
    tasks_n, per = 50, 12

    async def worker(lb, i):
        s = svc(i)
        await lb.add_service(s)
        mine = []
        for j in range(per):
            await lb.add_destination(s, dest(i, j))
            mine.append(dest(i, j))
            if j % 4 == 3:  # reads interleaved with everybody's writes
                got = await lb.destinations(s)
                assert {d.key for d in got} == {d.key for d in mine}
                assert (await lb.get_service(s)) == s
                info = await lb.info()
                assert info.version_info >= (1, 2, 0)
        await lb.update_destination(s, dest(i, 0).replace(weight=9))
        await lb.delete_destination(s, dest(i, 1))
        with pytest.raises(ipvs.DestinationNotFoundError):
            await lb.delete_destination(s, dest(i, 1))
        with pytest.raises(ipvs.ServiceExistsError):
            await lb.add_service(s)
        if i % 5 == 0:
            await lb.delete_service(s)
        return i

    async def main():
        async with ipvs.AsyncIPVS(netns=ipvs_netns, backend=ipvs_backend) as lb:
            done = await asyncio.gather(*(worker(lb, i) for i in range(tasks_n)))
            assert sorted(done) == list(range(tasks_n))
            return await lb.table()

    table = run(main(), loop_kind)
    want = {}
    for i in range(tasks_n):
        if i % 5 == 0:
            continue
        ds = [dest(i, j) for j in range(per) if j != 1]
        ds[0] = ds[0].replace(weight=9)
        want[svc(i)] = {d.key: d.weight for d in ds}
    assert set(table) == set(want)
    for s, ds in table.items():
        assert {d.key: d.weight for d in ds} == want[s]
    with ipvs.IPVS(netns=ipvs_netns, backend=ipvs_backend) as lb:
        assert lb.table() == table


def test_two_hundred_cancellations_then_correct_reads(ipvs_netns, ipvs_backend):
    rng = random.Random(15)
    n = 200

    async def main():
        async with ipvs.AsyncIPVS(netns=ipvs_netns, backend=ipvs_backend) as lb:
            s = svc(0)
            await lb.add_service(s)
            attempts = []  # (destination, task)
            reads = []
            batches = []   # (AsyncBatch, its destinations, task)
            for k in range(n):
                kind = k % 4
                if kind == 3:  # a batch of three new destinations
                    b = lb.batch()
                    ds = [Destination(address=ipaddress.IPv4Address(0xAC300000 + k * 4 + x),
                                      port=80) for x in range(3)]

                    async def send(b=b, ds=ds):
                        async with b:
                            for d in ds:
                                b.add_destination(s, d)
                    t = asyncio.ensure_future(send())
                    batches.append((b, ds, t))
                elif kind == 2:
                    t = asyncio.ensure_future(rng.choice([lb.table, lb.services, lb.info,
                                                          lb.timeouts])())
                    reads.append(t)
                else:
                    d = Destination(address=ipaddress.IPv4Address(0xAC200000 + k), port=80)
                    t = asyncio.ensure_future(lb.add_destination(s, d))
                    attempts.append((d, t))
                # cancel at a random point: before it ran, while queued, or
                # while the worker has it
                delay = rng.choice([0, 0, 0.0002, 0.001, 0.003])
                if delay:
                    await asyncio.sleep(delay)
                else:
                    await asyncio.sleep(0) if rng.random() < 0.5 else None
                t.cancel()
            everything = [t for _, t in attempts] + reads + [t for _, _, t in batches]
            await asyncio.gather(*everything, return_exceptions=True)
            cancelled = sum(1 for t in everything if t.cancelled())
            # the handle is in step: every kind of reply lands at its caller
            for _ in range(5):
                info = await lb.info()
                assert isinstance(info, ipvs.Info)
                assert isinstance(await lb.timeouts(), ipvs.Timeouts)
                assert [x.key for x in await lb.services()] == [s.key]
                assert await lb.get_service(s) == s
            present = {d.key for d in await lb.destinations(s)}
            table = await lb.table()
            return attempts, batches, present, table, cancelled

    attempts, batches, present, table, cancelled = run(main())
    assert cancelled >= 50, cancelled  # the test really cancelled calls
    requested = {d.key for d, _ in attempts} | {d.key for _, ds, _ in batches for d in ds}
    assert present <= requested
    for d, t in attempts:
        if not t.cancelled():
            assert t.exception() is None
            assert d.key in present           # completed: applied
    for b, ds, t in batches:
        keys = {d.key for d in ds}
        if b.sent:
            assert keys <= present, (b, keys - present)   # went out whole
        else:
            assert not keys & present, b                    # nothing went out
    with ipvs.IPVS(netns=ipvs_netns, backend=ipvs_backend) as lb:
        assert lb.table() == table


# ------------------------------------------------------------------ timeouts

@contextlib.contextmanager
def silent_peer(alb):
    """A socketpair end in place of the worker's netlink socket: requests
    land in the pair and no reply ever comes (test_timeouts_signals' peer,
    put under the worker's own sync handle)."""
    with _sync_silent_peer(alb._worker.sync) as peer:
        yield peer


def test_timeouts_handle_and_asyncio(ipvs_netns, ipvs_backend):
    async def main():
        async with ipvs.AsyncIPVS(netns=ipvs_netns, backend=ipvs_backend, timeout=0.3) as lb:
            assert lb.timeout == 0.3
            await lb.add_service(S1)
            if ipvs_backend == "netlink":
                with silent_peer(lb):
                    t0 = time.monotonic()
                    with pytest.raises(ipvs.IPVSTimeoutError) as ei:
                        await lb.info()
                    assert 0.25 <= time.monotonic() - t0 < 3
                    assert isinstance(ei.value, TimeoutError)
                    # coalesced writes: each caller hears the transport's timeout
                    outs = await asyncio.gather(
                        *(lb.add_destination(S1, dest(0, j)) for j in range(5)),
                        return_exceptions=True)
                    assert all(isinstance(o, ipvs.IPVSTimeoutError) for o in outs), outs
                    # asyncio's own deadline, shorter than the handle's
                    lb.timeout = 2.0
                    t0 = time.monotonic()
                    with pytest.raises(asyncio.TimeoutError):
                        await asyncio.wait_for(lb.services(), 0.1)
                    assert time.monotonic() - t0 < 1.0
                    # the worker still waits for the silent peer: let it time out
                    await asyncio.sleep(2.2)
                assert lb.timeout == 2.0
            else:
                # sockopt answers synchronously: only asyncio's deadline applies
                lb.timeout = 2.0
                with pytest.raises(asyncio.TimeoutError):
                    await asyncio.wait_for(lb.table(), 0)
            with pytest.raises(TypeError):
                lb.timeout = "1"
            with pytest.raises(ValueError):
                lb.timeout = 0
            # in step afterwards: each reply reaches its own caller
            assert [s.key for s in await lb.services()] == [S1.key]
            assert await lb.destinations(S1) == []
            assert isinstance(await lb.info(), ipvs.Info)
            assert isinstance(await lb.timeouts(), ipvs.Timeouts)

    run(main())


# ----------------------------------------------------------- loop and gaps

def populate(ns, backend, n, m):
    with ipvs.IPVS(netns=ns, backend=backend) as lb:
        with lb.batch() as b:
            for i in range(n):
                b.add_service(svc(i))
                for j in range(m):
                    b.add_destination(svc(i), dest(i, j))


async def worst_gap(until) -> float:
    """Worst gap seen by a task sleeping 1 ms in a loop, until until() is true."""
    worst = 0.0
    last = time.perf_counter()
    while not until():
        await asyncio.sleep(0.001)
        now = time.perf_counter()
        worst = max(worst, now - last)
        last = now
    return worst


@pytest.mark.parametrize("loop_kind", LOOPS)
def test_loop_not_blocked_by_table_of_11000_objects(ipvs_netns, ipvs_backend, loop_kind):
    populate(ipvs_netns, ipvs_backend, 1000, 10)

    async def once(lb):
        t0 = time.perf_counter()
        dump = asyncio.ensure_future(lb.table())
        busy = await worst_gap(dump.done)
        took = time.perf_counter() - t0
        table = dump.result()
        assert len(table) == 1000 and sum(len(v) for v in table.values()) == 10000
        end = time.perf_counter() + max(took, 0.2)
        idle = await worst_gap(lambda: time.perf_counter() >= end)
        return busy, idle, took

    async def main():
        async with ipvs.AsyncIPVS(netns=ipvs_netns, backend=ipvs_backend) as lb:
            await lb.info()
            # the CPU is shared (one sandbox CPU, other jobs on the host): a
            # run passes when the gap during table() is within 50 ms of the
            # idle gap measured right after it; three tries at most
            runs = []
            for _ in range(3):
                busy, idle, took = await once(lb)
                runs.append((busy, idle, took))
                if busy <= idle + 0.050:
                    break
            return runs

    runs = run(main(), loop_kind)
    print("table() of 11,000 objects: (worst gap, idle worst gap, seconds) =", runs)
    busy, idle, took = runs[-1]
    assert busy <= idle + 0.050, runs


def test_another_loop_is_refused(ipvs_netns, ipvs_backend):
    lb = ipvs.AsyncIPVS(netns=ipvs_netns, backend=ipvs_backend)
    try:
        assert isinstance(run(lb.info()), ipvs.Info)
        with pytest.raises(RuntimeError, match="event loop it was first used in"):
            run(lb.info())
        with pytest.raises(RuntimeError, match="event loop"):
            run(lb.info(), "uvloop")
    finally:
        run(lb.close())  # close() works from any loop
    assert lb.closed


def test_closed_handle_and_resource_warning(ipvs_netns, ipvs_backend):
    async def main():
        lb = ipvs.AsyncIPVS(netns=ipvs_netns, backend=ipvs_backend)
        await lb.add_service(S1)
        pending = asyncio.ensure_future(lb.services())
        await asyncio.sleep(0)
        await lb.close()
        assert lb.closed
        assert [s.key for s in pending.result()] == [S1.key]  # queued before close: answered
        await lb.close()  # idempotent
        with pytest.raises(ValueError, match="closed"):
            await lb.info()
        with pytest.raises(ValueError, match="closed"):
            lb.batch()
        with pytest.raises(ValueError, match="closed"):
            async with lb:
                pass
        threads = set(threading.enumerate())
        lb2 = ipvs.AsyncIPVS(netns=ipvs_netns, backend=ipvs_backend)
        assert [s.key for s in await lb2.services()] == [S1.key]
        worker = lb2._worker.thread
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            del lb2
            gc.collect()
        assert any(issubclass(w.category, ResourceWarning) for w in caught), caught
        worker.join(5)
        assert not worker.is_alive()
        assert set(threading.enumerate()) <= threads

    run(main())


def test_fork_child_gets_its_own_socket(ipvs_netns, ipvs_backend):
    async def parent_first(lb):
        await lb.add_service(S1)
        return os.fstat(lb.fileno()).st_ino

    lb = ipvs.AsyncIPVS(netns=ipvs_netns, backend=ipvs_backend)
    loop = asyncio.new_event_loop()
    try:
        inode = loop.run_until_complete(parent_first(lb))
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: a fresh loop, a fresh worker, its own socket
            code = 1
            try:
                os.close(r)

                async def child():
                    svcs = await lb.services()
                    await lb.add_destination(S1, D1)
                    mine = os.fstat(lb.fileno()).st_ino
                    await lb.close()
                    return svcs, mine

                svcs, mine = asyncio.run(child())
                ok = [s.key for s in svcs] == [S1.key] and mine != inode
                os.write(w, b"ok" if ok else b"bad")
                code = 0
            finally:
                os._exit(code)
        os.close(w)
        _, status = os.waitpid(pid, 0)
        said = os.read(r, 10)
        os.close(r)
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
        assert said == b"ok"

        async def parent_after():
            assert os.fstat(lb.fileno()).st_ino == inode
            assert [d.key for d in await lb.destinations(S1)] == [D1.key]
            assert isinstance(await lb.info(), ipvs.Info)

        loop.run_until_complete(parent_after())
    finally:
        loop.run_until_complete(lb.close())
        loop.close()


def test_fork_child_reopens_in_the_handles_namespace_when_netns_is_none(ipvs_netns,
                                                                        ipvs_backend):
    """netns=None means the namespace the handle was opened in: the child,
    running in another namespace, reopens in the handle's (SIOCGSKNS)."""
    from ipvs import netns as nsmod

    with nsmod.enter(ipvs_netns):
        lb = ipvs.AsyncIPVS(backend=ipvs_backend)   # its socket lives in ipvs_netns
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(lb.add_service(S1))
        here = os.stat("/proc/thread-self/ns/net").st_ino
        there = os.stat(os.path.join("/run/netns", ipvs_netns)).st_ino
        assert here != there
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                os.close(r)

                async def child():
                    keys = [s.key for s in await lb.services()]
                    if keys == [S1.key]:  # (never writes to any other namespace)
                        await lb.add_destination(S1, D2)
                    await lb.close()
                    return keys

                keys = asyncio.run(child())
                os.write(w, b"ok" if keys == [S1.key] else repr(keys).encode()[:200])
                code = 0
            finally:
                os._exit(code)
        os.close(w)
        _, status = os.waitpid(pid, 0)
        said = os.read(r, 300)
        os.close(r)
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
        assert said == b"ok", said

        async def parent_after():
            return await lb.destinations(S1)

        # the child's write went to the handle's namespace, not to its own
        assert [d.key for d in loop.run_until_complete(parent_after())] == [D2.key]
    finally:
        loop.run_until_complete(lb.close())
        loop.close()


def test_cancelled_while_queued_never_reaches_the_kernel(ipvs_netns, ipvs_backend):
    async def main():
        async with ipvs.AsyncIPVS(netns=ipvs_netns, backend=ipvs_backend) as lb:
            await lb.add_service(S1)
            # hold the worker in a read while the writes queue behind it
            sync = lb._worker.sync
            entered, gate = threading.Event(), threading.Event()
            real_info = sync.info

            def held_info():
                entered.set()
                gate.wait(10)
                return real_info()

            sync.info = held_info
            first = asyncio.ensure_future(lb.info())
            while not entered.is_set():
                await asyncio.sleep(0.001)
            ds = [Destination(address=ipaddress.IPv4Address(0xAC500001 + k), port=80)
                  for k in range(20)]
            tasks = [asyncio.ensure_future(lb.add_destination(S1, d)) for d in ds]
            b = lb.batch()

            async def send():
                async with b:
                    b.add_destination(S1, D1)
            bt = asyncio.ensure_future(send())
            await asyncio.sleep(0.01)           # all queued behind the held read
            for t in tasks[::2]:
                t.cancel()
            bt.cancel()
            gate.set()
            await asyncio.gather(*tasks, bt, return_exceptions=True)
            await first
            del sync.info
            present = {d.key for d in await lb.destinations(S1)}
            return ds, tasks, b, present

    ds, tasks, b, present = run(main())
    assert all(t.cancelled() for t in tasks[::2])
    assert present == {d.key for d in ds[1::2]}   # the cancelled ones were never sent
    assert b.done and not b.sent and b.succeeded is None and D1.key not in present

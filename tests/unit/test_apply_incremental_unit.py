"""Incremental apply (issue 19): ``apply(desired, current=..., changed=...)``
on the memory backend (no kernel): the plan, prune, a stale ``current``, the
GC pause, and AsyncIPVS's parity. The kernel side: tests/kernel/test_apply_incremental.py."""
from __future__ import annotations

import asyncio
import gc
import threading

import pytest
from hypothesis import given, settings, strategies as st

import ipvs
from ipvs import Destination, Service
from ipvs._handle import _gc_paused
from ipvs.testing import add_netns, reset_memory


@pytest.fixture(autouse=True)
def _fresh():
    reset_memory()
    yield
    reset_memory()


def svc(i: int, **kw) -> Service:
    return Service(address="10.0.0.%d" % i, port=80, scheduler=kw.pop("scheduler", "rr"), **kw)


def dest(i: int, j: int, weight: int = 1) -> Destination:
    return Destination("192.168.%d.%d" % (i, j), 8080, weight=weight, forward="masq")


def table_of(n: int, m: int) -> dict:
    return {svc(i): [dest(i, j) for j in range(1, m + 1)] for i in range(1, n + 1)}


def norm(t: dict) -> dict:
    return {s.key: (s.replace(stats=None),
                    sorted(((d.key, d.replace(stats=None, active_connections=0,
                                              inactive_connections=0,
                                              persistent_connections=0)) for d in ds),
                           key=lambda x: str(x[0])))
            for s, ds in t.items()}


@pytest.fixture
def lb():
    with ipvs.IPVS(backend="memory") as h:
        yield h


def test_current_skips_the_dump_and_plans_like_a_full_apply(lb, monkeypatch):
    old = table_of(4, 3)
    lb.apply(old)
    new = dict(old)
    new[svc(2)] = [dest(2, 1), dest(2, 2, weight=7), dest(2, 9)]
    del new[svc(3)]
    new[svc(5)] = [dest(5, 1)]
    full = lb.apply(new, dry_run=True)

    def no_dump():
        raise AssertionError("apply(current=...) read the table")
    monkeypatch.setattr(lb._live(), "listing", no_dump)
    inc = lb.apply(new, current=old)
    assert sorted(map(str, inc.changes)) == sorted(map(str, full.changes))
    assert inc.applied
    monkeypatch.undo()
    assert norm(lb.table()) == norm(new)
    assert not lb.apply(new)


def test_changed_compares_only_the_named_services(lb):
    old = table_of(3, 2)
    lb.apply(old)
    new = dict(old)
    new[svc(1)] = [dest(1, 1, weight=5), dest(1, 2)]
    new[svc(2)] = [dest(2, 1)]                     # changed too, but not named
    plan = lb.apply(new, current=old, changed=[svc(1)])
    assert [(c.action, c.service, c.destination) for c in plan.changes] == [
        ("update_destination", svc(1), dest(1, 1, weight=5))]
    # svc(2) was not looked at: the table still has both of its destinations
    assert len(lb.destinations(svc(2))) == 2
    # a full resync (no current) repairs what the caller did not name
    plan = lb.apply(new)
    assert [c.action for c in plan.changes] == ["delete_destination"]
    assert norm(lb.table()) == norm(new)


def test_changed_service_settings_name_both_records(lb):
    old = table_of(2, 2)
    lb.apply(old)
    rr, wlc = svc(1), svc(1, scheduler="wlc")
    new = dict(old)
    new[wlc] = new.pop(rr)
    plan = lb.apply(new, current=old, changed=[rr, wlc])
    assert [(c.action, c.service) for c in plan.changes] == [("update_service", wlc)]
    assert lb.get_service(wlc).scheduler == "wlc"


def test_changed_only_the_new_record_names_the_service(lb):
    """Naming only the new record of a service whose settings changed names
    the service (by its key): one update, as when both records are named."""
    old = table_of(1, 1)
    lb.apply(old)
    wlc = svc(1, scheduler="wlc")
    new = {wlc: old[svc(1)]}
    plan = lb.apply(new, current=old, changed=[wlc])
    assert [(c.action, c.service) for c in plan.changes] == [("update_service", wlc)]
    assert plan.changes[0].before == svc(1) and plan.changes[0].after == wlc
    assert lb.get_service(wlc).scheduler == "wlc"


@pytest.mark.parametrize("prune, deleted", [(True, True), ("destinations", False), (False, False)])
def test_changed_prune_of_a_removed_service(lb, prune, deleted):
    old = table_of(3, 2)
    lb.apply(old)
    new = dict(old)
    del new[svc(2)]
    new[svc(1)] = [dest(1, 1)]
    plan = lb.apply(new, current=old, changed=[svc(2), svc(1)], prune=prune)
    actions = sorted(c.action for c in plan.changes)
    want = (["delete_destination"] if prune else []) + (["delete_service"] if deleted else [])
    assert actions == sorted(want)
    assert (svc(2) in lb.table()) is not deleted


def test_stale_current_surfaces_the_kernels_errors(lb):
    """current says the table is empty, but it is not: each add the kernel
    refuses is in BatchError, the others are applied."""
    lb.apply(table_of(1, 2))
    new = table_of(2, 2)
    with pytest.raises(ipvs.BatchError) as info:
        lb.apply(new, current={})
    e = info.value
    assert [type(x) for _, x in e.failures] == [ipvs.ServiceExistsError,
                                                ipvs.DestinationExistsError,
                                                ipvs.DestinationExistsError]
    assert e.succeeded == 3
    assert norm(lb.table()) == norm(new)
    # and a stale delete: current shows a destination the table does not have
    cur = table_of(2, 2)
    cur[svc(1)] = cur[svc(1)] + [dest(1, 9)]
    with pytest.raises(ipvs.BatchError) as info:
        lb.apply(new, current=cur)
    assert [type(x) for _, x in info.value.failures] == [ipvs.DestinationNotFoundError]


def test_dry_run_with_current_writes_nothing(lb):
    old = table_of(2, 2)
    lb.apply(old)
    plan = lb.apply({}, current=old, changed=list(old), dry_run=True)
    assert sorted(c.action for c in plan.changes) == ["delete_service", "delete_service"]
    assert not plan.applied
    assert norm(lb.table()) == norm(old)


def test_bad_arguments(lb):
    old = table_of(1, 1)
    with pytest.raises(ValueError, match="changed needs current"):
        lb.apply(old, changed=[svc(1)])
    with pytest.raises(TypeError):
        lb.apply(old, current=[(svc(1), [])])
    with pytest.raises(TypeError):
        lb.apply(old, current=old, changed=svc(1))
    with pytest.raises(TypeError):
        lb.apply(old, current=old, changed=["10.0.0.1"])
    with pytest.raises(TypeError):
        lb.apply(old, current={svc(1): ["192.168.1.1"]})
    with pytest.raises(ValueError, match="twice"):
        lb.apply(old, current={svc(1): [dest(1, 1), dest(1, 1, weight=3)]})
    # a name in neither mapping is ignored
    assert not lb.apply(old, current=old, changed=[svc(9)])
    assert lb.table() == {}


@pytest.mark.parametrize("enabled", [True, False])
def test_gc_state_is_restored(lb, enabled):
    was = gc.isenabled()
    try:
        (gc.enable if enabled else gc.disable)()
        lb.apply(table_of(2, 2))
        assert gc.isenabled() is enabled
        with pytest.raises(ipvs.BatchError):
            lb.apply(table_of(2, 2), current={})
        assert gc.isenabled() is enabled
        with pytest.raises(TypeError):
            lb.apply({svc(1): ["x"]})
        assert gc.isenabled() is enabled
        lb.table()
        assert gc.isenabled() is enabled
    finally:
        (gc.enable if was else gc.disable)()


def test_gc_pause_nests_across_threads():
    """Two overlapping pauses, left in either order: the GC comes back on only
    when the last one leaves (a plain save/restore per call would leave it
    off for good when the inner one left last)."""
    assert gc.isenabled()
    a, b = _gc_paused(), _gc_paused()
    a.__enter__()
    assert not gc.isenabled()
    inside = threading.Event()
    leave = threading.Event()

    def other():
        with b:
            inside.set()
            leave.wait(5)
    t = threading.Thread(target=other)
    t.start()
    assert inside.wait(5)
    a.__exit__(None, None, None)
    assert not gc.isenabled()
    leave.set()
    t.join(5)
    assert gc.isenabled()


def test_async_apply_takes_the_same_keywords():
    old = table_of(3, 2)
    new = dict(old)
    new[svc(2)] = [dest(2, 2)]

    add_netns("async-incr")
    add_netns("sync-incr")

    async def main():
        async with ipvs.AsyncIPVS(backend="memory", netns="async-incr") as alb:
            await alb.apply(old)
            plan = await alb.apply(new, current=old, changed=[svc(2)], dry_run=True)
            assert [c.action for c in plan.changes] == ["delete_destination"]
            plan = await alb.apply(new, current=old, changed=[svc(2)])
            assert plan.applied
            return await alb.table()

    got = asyncio.run(main())
    assert norm(got) == norm(new)
    with ipvs.IPVS(backend="memory", netns="sync-incr") as lb:
        lb.apply(old)
        assert (lb.apply(new, current=old, changed=[svc(2)]).changes
                == [ipvs.Change("delete_destination", svc(2), dest(2, 1))])


_entry = st.dictionaries(st.integers(1, 6), st.lists(st.tuples(st.integers(1, 5),
                                                              st.integers(1, 3)),
                                                    max_size=4),
                         max_size=5)


def _build(spec: dict) -> dict:
    out = {}
    for i, ds in spec.items():
        seen = {}
        for j, w in ds:
            seen[j] = dest(i, j, weight=w)
        out[svc(i, scheduler="wlc" if i % 2 else "rr")] = list(seen.values())
    return out


@settings(max_examples=60, deadline=None)
@given(before=_entry, after=_entry, prune=st.sampled_from([True, "destinations", False]))
def test_incremental_equals_full_apply(before, after, prune):
    """Whatever the two tables, applying ``after`` incrementally (current =
    the table, changed = every service that differs) leaves the same table
    as a full apply does."""
    old, new = _build(before), _build(after)
    differ = [s for s in set(old) | set(new) if old.get(s) != new.get(s)]
    add_netns("full")
    add_netns("inc")
    with ipvs.IPVS(backend="memory", netns="full") as full, \
            ipvs.IPVS(backend="memory", netns="inc") as inc:
        full.flush()
        inc.flush()
        full.apply(old)
        inc.apply(old)
        p_full = full.apply(new, prune=prune)
        p_inc = inc.apply(new, prune=prune, current=old, changed=differ)
        assert sorted(map(str, p_inc.changes)) == sorted(map(str, p_full.changes))
        assert norm(inc.table()) == norm(full.table())


def test_dest_map_in_cython_keys_as_the_python_version():
    """apply()'s destination keys read from the slots (Cython) are those of
    the plain Python loop, the odd items (not a Destination, port None)
    included."""
    from ipvs import _libipvs
    from ipvs._handle import _dest_map_py

    class Sub(Destination):
        __slots__ = ()

    items = [dest(1, 1), Destination("2001:db8::1", 443), Destination("10.9.9.9", None),
             Destination("10.9.9.8", 0), "not a destination",
             Sub("10.9.9.7", 80), dest(1, 1).replace(weight=9)]
    assert _libipvs.dest_map(items) == _dest_map_py(items)
    assert _libipvs.dest_map(items)[None] is items[5]     # the last odd item: the subclass
    plain = [dest(i, j) for i in range(1, 4) for j in range(1, 30)]
    assert _libipvs.dest_map(plain) == _dest_map_py(plain)
    assert None not in _libipvs.dest_map(plain)


def test_apply_accepts_a_destination_subclass(lb):
    class Sub(Destination):
        __slots__ = ()
    s = svc(1)
    plan = lb.apply({s: [Sub("192.168.1.1", 8080), Destination("192.168.1.2", None)]})
    assert sorted(str(c.destination.port) for c in plan.changes if c.destination) == ["80", "8080"]
    assert not lb.apply({s: [Destination("192.168.1.1", 8080), Destination("192.168.1.2", 80)]})

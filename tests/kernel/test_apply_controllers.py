"""apply() for controllers on the running kernel, over netlink and sockopt:
``changed=`` names services by key, ``scope=`` keeps another owner's service
through full and incremental applies (and never dumps its destinations),
each Change's ``before`` is the table's record; AsyncIPVS on the kernel, and
the memory backend with this kernel's profile, plan the same. The memory
side alone: tests/unit/test_apply_controllers_unit.py."""
from __future__ import annotations

import asyncio
import os

import pytest

import ipvs
from ipvs import Destination, Service, _memory
from ipvs._plan import _svc_key
from ipvs.testing import reset_memory

pytestmark = pytest.mark.kernel

WEB = Service(address="10.0.0.1", port=80, scheduler="rr")
WEBP = WEB.replace(timeout=300)
API = Service(address="10.0.0.2", port=443, scheduler="wlc")
FOREIGN = Service(address="10.9.0.1", port=80, scheduler="sh")
D1 = Destination("192.168.1.1", 8080, forward="masq")
D2 = Destination("192.168.1.2", 8080, forward="masq")
D9 = Destination("192.168.9.1", 80, weight=4)


def steps(plan):
    return [(c.action, c.service, c.destination) for c in plan.changes]


def table(lb):
    return {s: sorted(lb.destinations(s), key=lambda d: str(d.address)) for s in lb.services()}


def other_owner(netns, backend):
    """Another program's service, made through a handle of its own."""
    with ipvs.IPVS(netns=netns, backend=backend) as other:
        other.add_service(FOREIGN)
        other.add_destination(FOREIGN, D9)


@pytest.mark.parametrize("name", [WEB, WEBP, Service(address="10.0.0.1", port=80)],
                         ids=["old-record", "new-record", "key-only"])
def test_changed_names_services_by_key(ipvs_handle, name):
    lb = ipvs_handle
    lb.apply({WEBP: [D1]})
    plan = lb.apply({WEBP: [D2]}, current={WEBP: [D1]}, changed=[name])
    assert steps(plan) == [("add_destination", WEBP, D2), ("delete_destination", WEBP, D1)]
    assert table(lb) == {WEBP: [D2]}
    # a settings change named by the other record: one update_service
    plan = lb.apply({WEB: [D2]}, current={WEBP: [D2]}, changed=[name])
    assert steps(plan) == [("update_service", WEB, None)]
    assert lb.get_service(WEB).timeout == 0
    # a key in neither mapping is ignored
    assert not lb.apply({WEB: [D2]}, current={WEB: [D2]}, changed=[API])


def test_scope_keeps_a_foreign_service_full_and_incremental(ipvs_handle, ipvs_netns):
    lb = ipvs_handle
    other_owner(ipvs_netns, lb.backend)
    scope = {WEB.key, API.key}
    # full applies
    lb.apply({WEB: [D1, D2], API: [D1]}, scope=scope)
    assert table(lb) == {FOREIGN: [D9], WEB: [D1, D2], API: [D1]}
    plan = lb.apply({WEB: [D1]}, scope=scope)
    assert sorted(c.action for c in plan.changes) == ["delete_destination", "delete_service"]
    assert table(lb) == {FOREIGN: [D9], WEB: [D1]}
    assert not lb.apply({WEB: [D1]}, scope=scope)
    # incremental: a current that shows the foreign service does not make it ours
    plan = lb.apply({WEB: [D2], API: [D2]}, current={WEB: [D1], FOREIGN: [D9]}, scope=scope)
    assert sorted(c.action for c in plan.changes) == [
        "add_destination", "add_destination", "add_service", "delete_destination"]
    plan = lb.apply({WEB: [D2]}, current={WEB: [D2], API: [D2], FOREIGN: [D9]},
                    changed=[API, FOREIGN], scope=scope)
    assert steps(plan) == [("delete_service", API, None)]
    assert table(lb) == {FOREIGN: [D9], WEB: [D2]}
    # a predicate, and prune=True of everything that is ours
    lb.apply({}, scope=lambda s: s.address is not None and s.address.packed[1] == 0)
    assert table(lb) == {FOREIGN: [D9]}
    # dry runs never write
    assert steps(lb.apply({}, scope={FOREIGN}, dry_run=True)) == [
        ("delete_service", FOREIGN, None)]
    assert table(lb) == {FOREIGN: [D9]}


def test_scope_never_dumps_a_foreign_service(ipvs_handle, ipvs_netns, monkeypatch):
    """The compiled handle's compare() dumps the destinations of wanted
    services only: a foreign service's are never read."""
    lb = ipvs_handle
    other_owner(ipvs_netns, lb.backend)
    lb.apply({WEB: [D1]}, scope={WEB})
    h = lb._live()
    asked = []

    class Spy:
        """The compiled handle, its compare() recorded."""

        def __getattr__(self, name):
            return getattr(h, name)

        def compare(self, want, prune_dests):
            asked.append(set(want))
            return h.compare(want, prune_dests)
    monkeypatch.setattr(lb, "_h", Spy())
    plan = lb.apply({WEB: [D1.replace(weight=3)], FOREIGN: []}, scope={WEB})
    assert asked == [{_svc_key(WEB)}]
    (c,) = plan.changes
    assert c.before == D1 and c.after == D1.replace(weight=3)
    assert str(c).endswith(": weight 1 -> 3")


def test_before_is_the_tables_record(ipvs_handle):
    lb = ipvs_handle
    lb.apply({WEB: [D1, D2]})
    want = {WEBP: [D1.replace(weight=5), D2.replace(upper_threshold=100, lower_threshold=10)]}
    plan = lb.apply(want, dry_run=True)
    got = {(c.action, c.destination and str(c.destination.address)): c for c in plan.changes}
    assert set(got) == {("update_service", None), ("update_destination", "192.168.1.1"),
                        ("update_destination", "192.168.1.2")}
    assert got[("update_service", None)].before == WEB
    assert str(got[("update_service", None)]).endswith(
        ": flags 0 -> PERSISTENT, timeout 0 -> 300")
    assert got[("update_destination", "192.168.1.1")].before == D1
    assert str(got[("update_destination", "192.168.1.2")]).endswith(
        ": upper_threshold 0 -> 100, lower_threshold 0 -> 10")
    # the incremental planner, from current, says the same
    inc = lb.apply(want, current={WEB: [D1, D2]}, changed=[WEB], dry_run=True)
    assert sorted(map(str, inc.changes)) == sorted(map(str, plan.changes))
    lb.apply(want)
    assert table(lb) == {WEBP: sorted(want[WEBP], key=lambda d: str(d.address))}


def test_async_on_the_kernel(ipvs_netns, ipvs_backend):
    other_owner(ipvs_netns, ipvs_backend)

    async def main():
        async with ipvs.AsyncIPVS(netns=ipvs_netns, backend=ipvs_backend) as lb:
            await lb.apply({WEBP: [D1]}, scope=[WEB])
            plan = await lb.apply({WEBP: [D2]}, current={WEBP: [D1], FOREIGN: []},
                                  changed=[Service(address="10.0.0.1", port=80), FOREIGN],
                                  scope=[WEB])
            return steps(plan), await lb.table()
    got, tab = asyncio.run(main())
    assert got == [("add_destination", WEBP, D2), ("delete_destination", WEBP, D1)]
    assert {s.key: ds for s, ds in tab.items()} == {FOREIGN.key: [D9], WEB.key: [D2]}


def test_the_memory_backend_plans_as_this_kernel(ipvs_handle, ipvs_netns):
    """The same scenario on the kernel and on the memory backend with this
    kernel's profile: the same plans, step by step, and the same table."""
    profile = _memory.profile_of(os.uname().release) or _memory.DEFAULT_KERNEL

    def scenario(lb):
        out = []
        lb.add_service(FOREIGN)
        lb.add_destination(FOREIGN, D9)
        out.append(lb.apply({WEB: [D1, D2], API: [D1]}, scope={WEB, API}))
        out.append(lb.apply({WEBP: [D1.replace(weight=2)]}, scope={WEB, API}))
        out.append(lb.apply({WEBP: [D2]}, current={WEBP: [D1.replace(weight=2)]},
                            changed=[Service(address="10.0.0.1", port=80), FOREIGN],
                            scope={WEB, API}))
        out.append(lb.apply({}, scope=lambda s: s.port == 80, dry_run=True))
        # the order of delete_service steps follows the listing's, which
        # differs (docs/memory-backend.md): compared as a set, the rest in order
        return [sorted(str(c) for c in p.changes if c.action == "delete_service")
                + [str(c) for c in p.changes if c.action != "delete_service"]
                for p in out], table(lb)

    kernel = scenario(ipvs_handle)
    reset_memory()
    try:
        with ipvs.IPVS(backend="memory", kernel=profile) as mem:
            memory = scenario(mem)
    finally:
        reset_memory()
    assert memory == kernel

"""The order of apply()'s plan, pinned on both of the planner's paths: the
table read and compared in C (``Handle.compare``, the kernel's handle) and
the comparison in Python (``current=``, and the memory backend's listing).

Within a service its new destinations and weights go first and its removals
last, so that the service is never left without its new real servers in
between; deleted services stay first. (tests/unit/test_memory_kernel_suite.py
runs these bodies on the memory backend too.)"""
from __future__ import annotations

import pytest

from ipvs import Destination, Service

pytestmark = pytest.mark.kernel

OLD = Service(address="10.0.0.9", port=80, scheduler="rr")
WEB = Service(address="10.0.0.1", port=80, scheduler="rr")
API = Service(address="10.0.0.2", port=443, scheduler="wlc")
NEW = Service(address="10.0.0.3", port=53, protocol="udp", scheduler="rr")
D1 = Destination("192.168.1.1", 8080, forward="masq")
D2 = Destination("192.168.1.2", 8080, forward="masq")
D3 = Destination("192.168.1.3", 8080, forward="masq")
D4 = Destination("192.168.1.4", 8080, forward="masq")
D5 = Destination("192.168.1.5", 8080, forward="masq")


def steps(plan):
    """(action, service key, destination key or None), each step."""
    return [(c.action, c.service.key, None if c.destination is None else c.destination.key)
            for c in plan]


def expected(table, prune=True):
    """(``table``: {service key: its destinations, in table order}.) The one order: deleted services (table order); then per wanted service,
    in ``desired``'s order, its adds and updates, then its deletes (table
    order)."""
    def gone(svc, keep):
        if not prune:
            return []
        return [("delete_destination", svc.key, d.key) for d in table[svc.key]
                if d.key not in keep]
    web_deletes = gone(WEB, {D2.key, D4.key})
    api_deletes = gone(API, {D5.key})
    head = [("delete_service", OLD.key, None)] if prune is True else []
    return (head
            + [("update_destination", WEB.key, D2.key), ("add_destination", WEB.key, D4.key)]
            + web_deletes
            + [("add_service", NEW.key, None), ("add_destination", NEW.key, D1.key)]
            + [("add_destination", API.key, D5.key)] + api_deletes)


DESIRED = {WEB: [D2.replace(weight=5), D4], NEW: [D1], API: [D5]}


@pytest.mark.parametrize("prune", [True, "destinations"])
def test_adds_and_updates_before_deletes_on_both_paths(ipvs_handle, prune):
    lb = ipvs_handle
    lb.apply({OLD: [D1], WEB: [D1, D2, D3], API: [D1]})
    table = lb.table()
    assert {s.key for s in table} == {OLD.key, WEB.key, API.key}
    by_table = lb.apply(DESIRED, prune=prune, dry_run=True)     # the table read
    by_current = lb.apply(DESIRED, prune=prune, current=table, dry_run=True)
    want = expected({s.key: ds for s, ds in table.items()}, prune)
    assert steps(by_table) == steps(by_current) == want
    # the deletes of a service are its last steps, after every add and update
    plan = lb.apply(DESIRED, prune=prune)
    assert plan.applied and steps(plan) == want
    got = {s.key: sorted(d.key for d in ds) for s, ds in lb.table().items()}
    assert got[WEB.key] == sorted([D2.key, D4.key]) and got[API.key] == [D5.key]
    assert (OLD.key in got) == (prune != True)  # noqa: E712
    assert not lb.apply(DESIRED, prune=prune)


def test_a_service_is_never_left_empty_by_a_replacement(ipvs_handle):
    """Replacing every destination of a service: the adds come first, so the
    service always has at least one real server while the batch runs."""
    lb = ipvs_handle
    lb.apply({WEB: [D1, D2]})
    for plan in (lb.apply({WEB: [D3, D4]}, dry_run=True),
                 lb.apply({WEB: [D3, D4]}, current={WEB: [D1, D2]}, dry_run=True)):
        actions = [c.action for c in plan]
        assert actions[:2] == ["add_destination", "add_destination"]
        assert actions[2:] == ["delete_destination", "delete_destination"]
    lb.apply({WEB: [D3, D4]})
    assert sorted(str(d.address) for d in lb.destinations(WEB)) == ["192.168.1.3",
                                                                     "192.168.1.4"]

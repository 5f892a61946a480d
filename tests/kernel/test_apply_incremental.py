"""Incremental apply (issue 19) against the real kernel: ``apply(desired,
current=..., changed=...)`` writes what a full apply would, checked with
ipvsadm -Sn and a fresh listing; a stale ``current`` surfaces the kernel's
refusals as BatchError. Small tables only (the 110,000-object figures are
benchmarks/bench.py's)."""
from __future__ import annotations

import pytest

import ipvs
from ipvs import Destination, Service

pytestmark = pytest.mark.kernel


def svc(i: int, sched: str = "rr") -> Service:
    return Service(address="10.1.0.%d" % i, port=80, scheduler=sched)


def dest(i: int, j: int, weight: int = 1) -> Destination:
    return Destination("192.168.%d.%d" % (i, j), 8080, weight=weight, forward="masq")


def table_of(n: int, m: int) -> dict:
    return {svc(i): [dest(i, j) for j in range(1, m + 1)] for i in range(1, n + 1)}


def expected_sn(t: dict) -> set:
    """ipvsadm -Sn lines of table t (order aside)."""
    out = set()
    for s, ds in t.items():
        out.add("-A -t %s:%d -s %s" % (s.address, s.port, s.scheduler))
        for d in ds:
            out.add("-a -t %s:%d -r %s:%d -m -w %d" % (s.address, s.port, d.address, d.port,
                                                        d.weight))
    return out


def listed(lb) -> dict:
    return {s.replace(stats=None): sorted((d.address, d.port, d.weight) for d in ds)
            for s, ds in lb.table().items()}


def wanted(t: dict) -> dict:
    return {s: sorted((d.address, d.port, d.weight) for d in ds) for s, ds in t.items()}


def test_one_change_in_a_full_table(ipvs_handle, ipvsadm):
    lb = ipvs_handle
    applied = table_of(20, 5)
    lb.apply(applied)
    desired = dict(applied)
    desired[svc(7)] = [dest(7, 1), dest(7, 2, weight=9), dest(7, 3), dest(7, 4), dest(7, 6)]
    plan = lb.apply(desired, current=applied, changed=[svc(7)])
    assert sorted((c.action, str(c.destination.address)) for c in plan.changes) == [
        ("add_destination", "192.168.7.6"), ("delete_destination", "192.168.7.5"),
        ("update_destination", "192.168.7.2")]
    assert set(ipvsadm("-Sn").splitlines()) == expected_sn(desired)
    assert listed(lb) == wanted(desired)
    assert not lb.apply(desired)           # a full resync finds nothing to do


def test_services_added_removed_and_changed(ipvs_handle, ipvsadm):
    lb = ipvs_handle
    applied = table_of(6, 2)
    lb.apply(applied)
    desired = dict(applied)
    del desired[svc(2)]                                 # removed
    desired[svc(9)] = [dest(9, 1)]                      # added
    desired[svc(4, "wlc")] = desired.pop(svc(4))        # its scheduler changed
    changed = [svc(2), svc(9), svc(4), svc(4, "wlc")]
    plan = lb.apply(desired, current=applied, changed=changed)
    assert sorted(c.action for c in plan.changes) == [
        "add_destination", "add_service", "delete_service", "update_service"]
    assert set(ipvsadm("-Sn").splitlines()) == expected_sn(desired)
    assert not lb.apply(desired)


def test_prune_destinations_keeps_removed_services(ipvs_handle):
    lb = ipvs_handle
    applied = table_of(3, 2)
    lb.apply(applied)
    desired = dict(applied)
    del desired[svc(3)]
    desired[svc(1)] = [dest(1, 2)]
    plan = lb.apply(desired, current=applied, changed=[svc(1), svc(3)], prune="destinations")
    assert [c.action for c in plan.changes] == ["delete_destination"]
    assert svc(3) in lb.table()
    plan = lb.apply(desired, current=applied, changed=[svc(1), svc(3)], prune=False)
    assert not plan       # nothing to add or update; prune=False never deletes


def test_current_without_changed_plans_like_a_full_apply(ipvs_handle, ipvsadm):
    lb = ipvs_handle
    applied = table_of(5, 3)
    lb.apply(applied)
    desired = table_of(5, 3)
    desired[svc(1)] = [dest(1, 1, weight=4)]
    desired[svc(8)] = [dest(8, 1), dest(8, 2)]
    full = lb.apply(desired, dry_run=True)
    inc = lb.apply(desired, current=applied)
    assert sorted(map(str, inc.changes)) == sorted(map(str, full.changes))
    assert set(ipvsadm("-Sn").splitlines()) == expected_sn(desired)


def test_stale_current_raises_batch_error_and_a_resync_repairs(ipvs_handle, ipvsadm):
    lb = ipvs_handle
    applied = table_of(3, 2)
    lb.apply(applied)
    # someone else changed the table behind the controller's back
    lb.delete_destination(svc(1), dest(1, 1))
    lb.add_destination(svc(2), dest(2, 7))
    desired = dict(applied)
    desired[svc(1)] = [dest(1, 1, weight=3), dest(1, 2)]
    desired[svc(2)] = [dest(2, 1), dest(2, 2), dest(2, 7)]
    with pytest.raises(ipvs.BatchError) as info:
        lb.apply(desired, current=applied, changed=[svc(1), svc(2)])
    e = info.value
    assert sorted(type(x).__name__ for _, x in e.failures) == [
        "DestinationExistsError", "DestinationNotFoundError"]
    assert e.succeeded == 0
    plan = lb.apply(desired)                 # the full resync reads the table
    assert sorted(c.action for c in plan.changes) == ["add_destination"]
    assert set(ipvsadm("-Sn").splitlines()) == expected_sn(desired)


def _variety(lb, v6: bool):
    """A table with every kind of setting the C comparison looks at (v6:
    netlink, which also has GUE tunnels)."""
    from ipvs import Forward, TunnelType
    a = Service(address="10.2.0.1", port=80, scheduler="wlc")
    fw = Service(fwmark=7, scheduler="rr")
    t = {
        a: [Destination("192.168.5.1", 80, weight=3, forward=Forward.MASQ),
            Destination("192.168.5.2", 8080, forward=Forward.ROUTE,
                        upper_threshold=100, lower_threshold=10),
            (Destination("192.168.5.3", 80, forward=Forward.TUNNEL,
                         tunnel_type=TunnelType.GUE, tunnel_port=6080) if v6 else
             Destination("192.168.5.3", 80, forward=Forward.TUNNEL)),   # sockopt: no GUE
            Destination("192.168.5.4", 80, weight=0)],
        fw: [Destination("192.168.6.1", 0), Destination("192.168.6.2", 0, weight=5)],
        Service(address="10.2.0.2", port=53, protocol="udp"): [Destination("192.168.7.1", 53)],
    }
    if v6:
        t[Service(address="2001:db8::1", port=443, scheduler="rr")] = [
            Destination("2001:db8:1::1", 443), Destination("2001:db8:1::2", 443, weight=4)]
    return a, fw, t


@pytest.mark.parametrize("prune", [True, "destinations", False])
def test_compared_in_c_plans_as_the_listing_does(ipvs_handle, prune):
    """apply() compares the table's destinations with the wanted ones as C
    structs; its plan is the one the records' own equality gives."""
    from ipvs import Forward, TunnelType
    from ipvs._handle import _dest_map, _svc_key, _want_map, plan_changes
    lb = ipvs_handle
    a, fw, table = _variety(lb, lb.backend == "netlink")
    lb.apply(table)
    lb.add_service(Service(address="10.2.0.9", port=80))       # not in desired
    desired = {s: list(ds) for s, ds in table.items()}
    ds = desired.pop(a)
    a2 = a.replace(scheduler="rr")
    desired[a2] = [ds[0].replace(weight=4),                    # weight
                   ds[1].replace(lower_threshold=11),          # threshold
                   (ds[2].replace(tunnel_port=6081) if ds[2].tunnel_port  # tunnel setting
                    else ds[2].replace(weight=2)),
                   ds[3],                                      # same
                   Destination("192.168.5.9", 80)]             # new
    desired[fw] = [desired[fw][0].replace(forward=Forward.TUNNEL,
                                          tunnel_type=TunnelType.IPIP)]   # forward; .2 removed
    desired[Service(address="10.2.0.3", port=80)] = [Destination("192.168.8.1", 80)]
    plan = lb.apply(desired, prune=prune, dry_run=True)
    have = {_svc_key(s): (s, _dest_map(d)) for s, d in lb._live().listing()}
    ref = plan_changes(have, _want_map(desired.items()), prune=prune)
    assert plan.changes == ref
    kinds = sorted(c.action for c in plan.changes)
    assert kinds.count("update_destination") == 4
    assert kinds.count("add_destination") == 2
    # and applied, a fresh listing shows desired, nothing left to do
    lb.apply(desired, prune=prune)
    assert not lb.apply(desired, prune=prune)
    got = listed(lb)
    for s, want in wanted(desired).items():
        if prune:
            assert got[s] == want
        else:
            assert set(want) <= set(got[s])

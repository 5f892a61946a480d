"""Batches and desired-state apply against the real kernel, checked with ipvsadm."""
import errno

import pytest

import ipvs
from ipvs import Destination, Forward, Service

pytestmark = pytest.mark.kernel


def sn(ipvsadm):
    return ipvsadm("-Sn").splitlines()


def test_batch_applies_everything(ipvs_handle, ipvsadm):
    svcs = [Service(address="10.0.0.1", port=p, scheduler="rr") for p in range(1, 51)]
    with ipvs_handle.batch() as b:
        for s in svcs:
            b.add_service(s)
            for i in range(1, 5):
                b.add_destination(s, Destination("192.168.0.%d" % i, s.port, forward="masq"))
    lines = sn(ipvsadm)
    assert len(lines) == 50 * 5
    assert "-a -t 10.0.0.1:50 -r 192.168.0.4:50 -m -w 1" in lines
    table = ipvs_handle.table()
    assert set(table) == set(svcs) and all(len(v) == 4 for v in table.values())


def test_batch_mixed_success_and_failure(ipvs_handle, ipvsadm):
    lb = ipvs_handle
    existing = Service(address="10.0.0.1", port=80, scheduler="rr")
    lb.add_service(existing)
    new = Service(address="10.0.0.2", port=80, scheduler="rr")
    missing = Service(address="10.0.0.9", port=80)
    d1 = Destination("192.168.1.1", 80)
    with pytest.raises(ipvs.BatchError) as info:
        with lb.batch() as b:
            b.add_service(existing)                       # 0 fails: exists
            b.add_service(new)                            # 1 ok
            b.add_destination(new, d1)                    # 2 ok
            b.add_destination(new, d1)                    # 3 fails: dest exists
            b.delete_destination(missing, d1)             # 4 fails: no service
            b.add_service(Service(address="10.0.0.3", port=80, scheduler="nosuch"))  # 5 fails
            b.add_destination(existing, d1.replace(weight=2))  # 6 ok
    e = info.value
    assert isinstance(e, ipvs.IPVSError)
    assert e.succeeded == 3 and len(e.failures) == 4
    calls = [c for c, _ in e.failures]
    assert [c.method for c in calls] == ["add_service", "add_destination", "delete_destination",
                                         "add_service"]
    kinds = [type(x) for _, x in e.failures]
    assert kinds == [ipvs.ServiceExistsError, ipvs.DestinationExistsError,
                     ipvs.ServiceNotFoundError, ipvs.SchedulerNotFoundError]
    assert e.failures[0][1].errno == errno.EEXIST
    # the successful calls stay applied, exactly those
    assert sn(ipvsadm) == [
        "-A -t 10.0.0.1:80 -s rr",
        "-a -t 10.0.0.1:80 -r 192.168.1.1:80 -g -w 2",
        "-A -t 10.0.0.2:80 -s rr",
        "-a -t 10.0.0.2:80 -r 192.168.1.1:80 -g -w 1",
    ]


def test_batch_body_raising_sends_nothing(ipvs_handle):
    with pytest.raises(RuntimeError):
        with ipvs_handle.batch() as b:
            b.add_service(Service(address="10.0.0.1", port=80))
            raise RuntimeError("abort")
    assert ipvs_handle.services() == []


def test_apply_create_change_remove_noop_dryrun(ipvs_handle, ipvsadm):
    lb = ipvs_handle
    web = Service(address="10.0.0.1", port=80, scheduler="wrr")
    dns = Service(address="10.0.0.1", port=53, protocol="udp", scheduler="rr")
    desired = {
        web: [Destination("192.168.1.1", 80, weight=1, forward="masq"),
              Destination("192.168.1.2", 80, weight=2, forward="masq")],
        dns: [Destination("192.168.1.3", 53)],
    }
    plan = lb.apply(desired)
    assert plan and plan.applied
    assert [c.action for c in plan.changes] == ["add_service", "add_destination",
                                                "add_destination", "add_service",
                                                "add_destination"]
    before = sn(ipvsadm)
    assert sorted(before) == sorted([
        "-A -t 10.0.0.1:80 -s wrr",
        "-a -t 10.0.0.1:80 -r 192.168.1.1:80 -m -w 1",
        "-a -t 10.0.0.1:80 -r 192.168.1.2:80 -m -w 2",
        "-A -u 10.0.0.1:53 -s rr",
        "-a -u 10.0.0.1:53 -r 192.168.1.3:53 -g -w 1",
    ])

    # nothing to change: an empty plan, nothing written
    noop = lb.apply(desired)
    assert not noop and noop.changes == [] and str(noop) == "no changes"

    # weights change -> updates only; a removed destination -> delete
    desired2 = {
        web: [Destination("192.168.1.1", 80, weight=5, forward="masq")],
        dns: [Destination("192.168.1.3", 53)],
    }
    dry = lb.apply(desired2, dry_run=True)
    assert [c.action for c in dry] == ["update_destination", "delete_destination"]
    assert not dry.applied and sn(ipvsadm) == before
    plan = lb.apply(desired2)
    assert plan == dry.changes
    lines = sn(ipvsadm)
    assert "-a -t 10.0.0.1:80 -r 192.168.1.1:80 -m -w 5" in lines
    assert not any("192.168.1.2" in l for l in lines)

    # prune=False never deletes
    keep = lb.apply({web: []}, prune=False)
    assert not keep
    # a service that is no longer desired is removed; a changed scheduler updated
    plan = lb.apply({web.replace(scheduler="rr"): [Destination("192.168.1.1", 80, weight=5,
                                                               forward="masq")]})
    assert [c.action for c in plan] == ["delete_service", "update_service"]
    assert sorted(sn(ipvsadm)) == sorted([
        "-A -t 10.0.0.1:80 -s rr",
        "-a -t 10.0.0.1:80 -r 192.168.1.1:80 -m -w 5",
    ])
    # a changed key field means delete + add
    moved = Destination("192.168.1.1", 8080, weight=5, forward="masq")
    plan = lb.apply({web.replace(scheduler="rr"): [moved]})
    assert [c.action for c in plan] == ["add_destination", "delete_destination"]
    assert lb.destinations(web) == [moved]

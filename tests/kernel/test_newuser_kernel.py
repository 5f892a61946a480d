"""Issue 14 against the real kernel, on both backends, checked with ipvsadm:
modify_* keep what they are not told to change, an omitted destination port
is the service's, apply(prune="destinations") never touches other services,
BatchError positions, stats always a Stats."""
import pytest

import ipvs
from ipvs import Destination, Forward, Service, Stats

pytestmark = pytest.mark.kernel

SVC = Service(address="10.0.0.1", port=80, scheduler="rr")


def sn(ipvsadm):
    return ipvsadm("-Sn").splitlines()


def test_modify_destination_keeps_the_forwarding_method(ipvs_handle, ipvsadm):
    lb = ipvs_handle
    lb.add_service(SVC)
    lb.add_destination(SVC, Destination("192.168.1.1", 80, forward=Forward.MASQ, weight=2,
                                        upper_threshold=50))
    lb.modify_destination(SVC, Destination("192.168.1.1", 80), weight=7)
    assert "-a -t 10.0.0.1:80 -r 192.168.1.1:80 -m -w 7" in sn(ipvsadm)  # (-S omits thresholds)
    (d,) = lb.destinations(SVC)
    assert (d.forward, d.weight, d.upper_threshold) == (Forward.MASQ, 7, 50)
    assert "forward=Forward.MASQ" in repr(d) and "weight=7" in repr(d)
    # update_destination replaces the whole record (forward back to ROUTE)
    lb.update_destination(SVC, Destination("192.168.1.1", 80, weight=7))
    assert "-a -t 10.0.0.1:80 -r 192.168.1.1:80 -g -w 7" in sn(ipvsadm)
    with pytest.raises(ipvs.DestinationNotFoundError):
        lb.modify_destination(SVC, Destination("192.168.1.99", 80), weight=1)
    with pytest.raises(ipvs.ServiceNotFoundError):
        lb.modify_destination(Service(address="10.0.0.9", port=80), Destination("192.168.1.1"),
                              weight=1)
    with pytest.raises(ValueError):
        lb.modify_destination(SVC, Destination("192.168.1.1", 80), port=81)


def test_modify_service_keeps_other_settings(ipvs_handle, ipvsadm):
    lb = ipvs_handle
    lb.add_service(SVC.replace(timeout=100))
    lb.modify_service(Service(address="10.0.0.1", port=80), scheduler="wlc")
    assert sn(ipvsadm) == ["-A -t 10.0.0.1:80 -s wlc -p 100"]
    with pytest.raises(ipvs.ServiceNotFoundError):
        lb.modify_service(Service(address="10.0.0.9", port=80), scheduler="rr")


def test_omitted_port_is_the_services(ipvs_handle, ipvsadm):
    lb = ipvs_handle
    masq = Service(address="10.0.0.2", port=8080, scheduler="rr")
    lb.add_service(masq)
    lb.add_destination(masq, Destination("192.168.1.1", forward="masq"))
    with lb.batch() as b:
        b.add_destination(masq, Destination("192.168.1.2", forward="masq"))
    lb.add_destination(masq, Destination("192.168.1.3", 0, forward="masq"))  # 0 stays 0
    assert sorted(sn(ipvsadm)) == sorted([
        "-A -t 10.0.0.2:8080 -s rr",
        "-a -t 10.0.0.2:8080 -r 192.168.1.1:8080 -m -w 1",
        "-a -t 10.0.0.2:8080 -r 192.168.1.2:8080 -m -w 1",
        "-a -t 10.0.0.2:8080 -r 192.168.1.3:0 -m -w 1"])
    want = {masq: [Destination("192.168.1.1", forward="masq"),
                   Destination("192.168.1.2", forward="masq"),
                   Destination("192.168.1.3", 0, forward="masq")]}
    assert not lb.apply(want)
    lb.delete_destination(masq, Destination("192.168.1.1"))
    assert len(lb.destinations(masq)) == 2


def test_apply_prune_destinations_leaves_other_services(ipvs_handle, ipvsadm):
    ipvsadm("-A", "-t", "10.0.0.50:80", "-s", "rr")       # another tool's service
    ipvsadm("-a", "-t", "10.0.0.50:80", "-r", "192.168.5.1:80")
    lb = ipvs_handle
    lb.add_service(SVC)
    lb.add_destination(SVC, Destination("192.168.1.1", 80))
    lb.apply({SVC: [Destination("192.168.1.2", 80)]}, prune="destinations")
    assert sorted(sn(ipvsadm)) == sorted([
        "-A -t 10.0.0.1:80 -s rr", "-a -t 10.0.0.1:80 -r 192.168.1.2:80 -g -w 1",
        "-A -t 10.0.0.50:80 -s rr", "-a -t 10.0.0.50:80 -r 192.168.5.1:80 -g -w 1"])
    lb.apply({SVC: [Destination("192.168.1.2", 80)]}, prune=True)
    assert sn(ipvsadm) == ["-A -t 10.0.0.1:80 -s rr",
                           "-a -t 10.0.0.1:80 -r 192.168.1.2:80 -g -w 1"]


def test_batch_error_positions_of_identical_calls(ipvs_handle):
    lb = ipvs_handle
    with pytest.raises(ipvs.BatchError) as ei:
        with lb.batch() as b:
            b.add_service(SVC)          # 0
            b.add_service(SVC)          # 1: fails
            b.add_service(SVC.replace(port=81))
            b.add_service(SVC)          # 3: fails
    e = ei.value
    assert [c.index for c, _ in e.failures] == [1, 3] and e.succeeded == 2
    assert all(isinstance(x, ipvs.ServiceExistsError) for _, x in e.failures)


def test_stats_always_a_stats(ipvs_handle):
    lb = ipvs_handle
    lb.add_service(SVC)
    lb.add_destination(SVC, Destination("192.168.1.1", 80))
    for s in [lb.get_service(SVC)] + lb.services() + list(lb.table()):
        assert isinstance(s.stats, Stats) and s.stats.connections == 0
    for d in lb.destinations(SVC):
        assert isinstance(d.stats, Stats)

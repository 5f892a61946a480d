"""Unit-testing a tool built on ipvs with the memory backend.

The tool below drains a real server: it sets its weight to 0 (no new
connections) and deletes it once no connection uses it any more. Its tests
run anywhere, without root or an IPVS kernel: the ``ipvs_memory`` fixture
(from the ``ipvs.testing`` pytest plugin) makes the tool's own ``ipvs.IPVS()``
a memory handle, and ``set_counters`` plays the connections.

    python -m pytest examples/test_memory_example.py
"""
from __future__ import annotations

import ipvs
from ipvs.testing import set_counters


# ----------------------------------------------------------------- the tool

def drain_step(service: ipvs.Service, address: str, port: int) -> str:
    """One step of draining ADDRESS:PORT out of SERVICE: "quiesced" (weight
    set to 0), "waiting" (connections remain), "removed" or "absent"."""
    with ipvs.IPVS() as lb:
        for dest in lb.destinations(service):
            if str(dest.address) != address or dest.port != port:
                continue
            if dest.weight > 0:
                lb.update_destination(service, dest.replace(weight=0))
                return "quiesced"
            if dest.active_connections or dest.inactive_connections or dest.persistent_connections:
                return "waiting"
            lb.delete_destination(service, dest)
            return "removed"
    return "absent"


# ---------------------------------------------------------------- its tests

WEB = ipvs.Service(address="10.0.0.1", port=80, scheduler="wrr")
RS1 = ipvs.Destination("192.168.1.1", 80, weight=5, forward="masq")
RS2 = ipvs.Destination("192.168.1.2", 80, weight=5, forward="masq")


def test_drain_waits_for_connections(ipvs_memory: ipvs.IPVS) -> None:
    ipvs_memory.apply({WEB: [RS1, RS2]})
    set_counters(WEB, RS1, active=2, inactive=1)

    assert drain_step(WEB, "192.168.1.1", 80) == "quiesced"
    assert {str(d.address): d.weight for d in ipvs_memory.destinations(WEB)} == {
        "192.168.1.1": 0, "192.168.1.2": 5}
    assert drain_step(WEB, "192.168.1.1", 80) == "waiting"

    set_counters(WEB, RS1, active=0, inactive=0)
    assert drain_step(WEB, "192.168.1.1", 80) == "removed"
    assert ipvs_memory.destinations(WEB) == [RS2]
    assert drain_step(WEB, "192.168.1.1", 80) == "absent"


def test_drain_of_a_missing_service_raises_as_the_kernel_would(ipvs_memory: ipvs.IPVS) -> None:
    try:
        drain_step(WEB, "192.168.1.1", 80)
    except ipvs.ServiceNotFoundError as e:
        assert e.errno == 3  # ESRCH, as from the kernel
    else:
        raise AssertionError("expected ServiceNotFoundError")

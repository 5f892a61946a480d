"""The Cython module's fast paths (issue 13): records read from the kernel
are built by filling their __slots__ directly, and IPv4Address by setting its
_ip slot. These tests fail loudly on an interpreter where that no longer
gives the same objects as the constructors, or where the IPv4 fast path has
silently fallen back (then the gain measured in _libipvs.pyx is gone:
decide again). The conversions are reached through the private test module
ipvs._libipvs_test (tests/unit/_private.py): the release extension carries
no entry point for tests, and an installed wheel no test module."""
import ipaddress
import pickle
import socket

import pytest

import ipvs
from ipvs import _libipvs

from ._private import libipvs_test

# the test entry points that were in the release extension until issue 27
TEST_ENTRY_POINTS = ("_parse_nl_reply", "_convert_roundtrip", "_v4_from_int", "_fast_paths")


def test_fast_path_conditions_hold_here():
    """What the fast paths need of this interpreter (the extension decides by
    the same member descriptors); runs from an installed wheel too."""
    assert type(ipaddress.IPv4Address.__dict__["_ip"]).__name__ == "member_descriptor", (
        "ipaddress.IPv4Address has no _ip slot on this interpreter: the Cython "
        "module falls back to the constructor (slower); see _v4 in _libipvs.pyx")
    for cls in (ipvs.Service, ipvs.Destination, ipvs.Stats):
        for f in cls._field_names:
            assert type(cls.__dict__[f]).__name__ == "member_descriptor", (cls, f)


def test_fast_paths_are_active_here():
    paths = libipvs_test()._fast_paths()
    assert paths["records"] is True
    assert paths["ipv4"] is True, (
        "ipaddress.IPv4Address has no _ip slot on this interpreter: the Cython "
        "module fell back to the constructor (slower); see _v4 in _libipvs.pyx")


@pytest.mark.parametrize("ip", [0, 1, 0x0A000001, 0x7F000001, 0xC0A80163, 0xFFFFFFFF])
def test_v4_fast_path_is_the_real_object(ip):
    fast = libipvs_test()._v4_from_int(ip)
    real = ipaddress.IPv4Address(ip)
    assert type(fast) is ipaddress.IPv4Address
    assert fast == real and hash(fast) == hash(real) and str(fast) == str(real)
    assert fast.packed == real.packed and int(fast) == ip
    assert pickle.loads(pickle.dumps(fast)) == real
    assert fast.is_private == real.is_private
    assert ipaddress.ip_network(fast) == ipaddress.ip_network(real)


SERVICES = [
    ipvs.Service(address="10.0.0.1", port=80, scheduler="rr"),
    ipvs.Service(address="2001:db8::1", port=443, protocol="udp", scheduler="wlc",
                 flags=ipvs.ServiceFlags.PERSISTENT, timeout=300, netmask=64),
    ipvs.Service(fwmark=7, scheduler="sh", flags=ipvs.ServiceFlags.SCHED1 | ipvs.ServiceFlags.PERSISTENT,
                 timeout=60, netmask=24),
    ipvs.Service(address="192.0.2.5", port=5060, protocol="udp", scheduler="rr", pe_name="sip",
                 flags=ipvs.ServiceFlags.PERSISTENT, timeout=10),
]
DESTS = [
    ipvs.Destination("10.0.1.1", 8080, weight=3, forward="masq"),
    ipvs.Destination("2001:db8::2", 443, weight=0, forward="route", upper_threshold=9,
                     lower_threshold=2),
    ipvs.Destination("192.0.2.9", 80, forward="tunnel", tunnel_type="gue", tunnel_port=6080,
                     tunnel_flags=ipvs.TunnelFlags.CSUM),
]


@pytest.mark.parametrize("svc", SERVICES, ids=str)
@pytest.mark.parametrize("dest", DESTS, ids=str)
def test_slot_filled_records_equal_constructed_ones(svc, dest):
    out_svc, out_dest = libipvs_test()._convert_roundtrip(svc, dest)
    for built, real in ((out_svc, svc), (out_dest, dest)):
        assert type(built) is type(real)
        assert built == real and hash(built) == hash(real) and repr(built) == repr(real)
        assert pickle.loads(pickle.dumps(built)) == real
        for f in type(real)._field_names:
            if f == "stats":
                continue
            assert getattr(built, f) == getattr(real, f), f
        # a constructor-made copy of the built object is the same again
        assert built.replace() == real
    assert out_svc.family in (socket.AF_INET, socket.AF_INET6)


def test_release_build_has_no_test_switch():
    """The test hooks (IPVS_TEST_NETLINK_FAMILY) exist only in a
    -DIPVS_TEST_HOOKS build (make test-hooks); a normal build has not even
    the variable's name in it."""
    data = open(_libipvs.__file__, "rb").read()
    if _libipvs.TEST_BUILD:
        assert b"IPVS_TEST_NETLINK_FAMILY" in data
    else:
        assert b"IPVS_TEST_NETLINK_FAMILY" not in data
        assert not hasattr(_libipvs.Handle, "_test_swap_fd")


def test_release_build_has_no_test_entry_points():
    """The release extension carries no entry point for tests: they are in
    the private module ipvs._libipvs_test, which no wheel carries."""
    data = open(_libipvs.__file__, "rb").read()
    for name in TEST_ENTRY_POINTS:
        assert not hasattr(_libipvs, name), name
        assert name.encode() not in data, name

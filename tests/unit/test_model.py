"""Unit tests of the pure-Python model: validation, repr, equality, hash, replace."""
import copy
import ipaddress
import pickle
import socket

import pytest

import ipvs
from ipvs import Destination, Forward, Protocol, Service, ServiceFlags, Stats


def test_service_defaults_and_inference():
    s = Service(address="10.0.0.1", port=80)
    assert s.family == socket.AF_INET and isinstance(s.family, socket.AddressFamily)
    assert s.protocol is Protocol.TCP and s.scheduler == "wlc"
    assert s.address == ipaddress.IPv4Address("10.0.0.1")
    assert s.fwmark == 0 and s.timeout == 0 and s.netmask == 32 and s.pe_name is None
    assert s.flags == ServiceFlags.NONE and s.stats == Stats() and isinstance(s.stats, Stats)
    s6 = Service(address="2001:db8::1", port=443, protocol="udp")
    assert s6.family == socket.AF_INET6 and s6.netmask == 128 and s6.protocol is Protocol.UDP


def test_service_fwmark():
    s = Service(fwmark=7, family=socket.AF_INET6, scheduler="mh",
                flags=ServiceFlags.PERSISTENT | ServiceFlags.MH_PORT, timeout=300, netmask=64)
    assert s.address is None and s.fwmark == 7 and s.family == socket.AF_INET6
    assert s.protocol is Protocol.TCP  # the kernel stores fwmark services as TCP
    assert s.key == (socket.AF_INET6, "fwmark", 7)
    assert Service(fwmark=1).family == socket.AF_INET


@pytest.mark.parametrize("proto,expected", [("tcp", Protocol.TCP), ("UDP", Protocol.UDP),
                                            ("sctp", Protocol.SCTP), (6, Protocol.TCP),
                                            (17, Protocol.UDP), (132, Protocol.SCTP)])
def test_protocol_inputs(proto, expected):
    assert Service(address="1.2.3.4", port=1, protocol=proto).protocol is expected


@pytest.mark.parametrize("kwargs,exc,field", [
    (dict(address="10.0.0.1", port=70000), ValueError, "port"),
    (dict(address="10.0.0.1", port=-1), ValueError, "port"),
    (dict(address="10.0.0.1", port="80"), TypeError, "port"),
    (dict(address="10.0.0.1", port=80, protocol="icmp"), ValueError, "protocol"),
    (dict(address="10.0.0.1", port=80, protocol=1), ValueError, "protocol"),
    (dict(address="10.0.0.1", port=80, scheduler="x" * 20), ValueError, "scheduler"),
    (dict(address="10.0.0.1", port=80, scheduler=""), ValueError, "scheduler"),
    (dict(address="10.0.0.1", port=80, scheduler=5), TypeError, "scheduler"),
    (dict(address=12345, port=80), TypeError, "address"),
    (dict(address=["10.0.0.1"], port=80), TypeError, "address"),
    (dict(address="10.0.0.300", port=80), ValueError, "address"),
    (dict(address="10.0.0.1", port=80, fwmark=5), ValueError, "fwmark"),
    (dict(), ValueError, "fwmark"),
    (dict(fwmark=-1), ValueError, "fwmark"),
    (dict(fwmark=2**32), ValueError, "fwmark"),
    (dict(address="10.0.0.1", port=80, netmask=33), ValueError, "netmask"),
    (dict(address="10.0.0.1", port=80, netmask="255.0.255.0"), ValueError, "netmask"),
    (dict(address="2001:db8::1", port=80, netmask=0), ValueError, "netmask"),
    (dict(address="10.0.0.1", port=80, flags=0x100), ValueError, "flags"),
    (dict(address="10.0.0.1", port=80, timeout=-5), ValueError, "timeout"),
    (dict(address="10.0.0.1", port=80, family=socket.AF_INET6), ValueError, "family"),
    (dict(address="10.0.0.1", port=80, pe_name="p" * 16), ValueError, "pe_name"),
])
def test_service_bad_input_names_field(kwargs, exc, field):
    with pytest.raises(exc) as info:
        Service(**kwargs)
    assert field in str(info.value) or (field == "fwmark" and "fwmark" in str(info.value))


def test_persistence_rules_and_netmask_inputs():
    s = Service(address="10.0.0.1", port=80, timeout=60)
    assert s.flags & ServiceFlags.PERSISTENT
    s = Service(address="10.0.0.1", port=80, flags=ServiceFlags.PERSISTENT)
    assert s.timeout == 360  # ipvsadm 1.31 -p
    assert Service(address="10.0.0.1", port=80, netmask="255.255.255.0").netmask == 24
    assert Service(address="10.0.0.1", port=80, netmask=ipaddress.IPv4Address("255.255.0.0")).netmask == 16
    assert Service(address="10.0.0.1", port=80, netmask="24").netmask == 24
    # HASHED is kernel-internal and never kept
    assert Service(address="10.0.0.1", port=80, flags=ServiceFlags.HASHED).flags == ServiceFlags.NONE


def test_equality_hash_replace_and_stats_excluded():
    a = Service(address="10.0.0.1", port=80)
    b = Service(address=ipaddress.ip_address("10.0.0.1"), port=80, stats=Stats(connections=5))
    assert a == b and hash(a) == hash(b)
    c = a.replace(scheduler="rr")
    assert c != a and c.scheduler == "rr" and a.scheduler == "wlc"
    assert c.key == a.key
    with pytest.raises(TypeError):
        a.replace(bogus=1)
    with pytest.raises(ValueError):
        a.replace(port=70000)
    assert {a: 1}[b] == 1


def test_immutable():
    s = Service(address="10.0.0.1", port=80)
    with pytest.raises(AttributeError):
        s.port = 81
    with pytest.raises(AttributeError):
        del s.port
    d = Destination("10.1.1.1", 80)
    with pytest.raises(AttributeError):
        d.weight = 2
    assert copy.copy(s) is s and copy.deepcopy(d) is d


def test_pickle_roundtrip():
    s = Service(address="2001:db8::1", port=80, scheduler="rr", stats=Stats(1, 2, 3, 4, 5))
    s2 = pickle.loads(pickle.dumps(s))
    assert s2 == s and s2.stats == s.stats
    d = Destination("10.1.1.1", 80, weight=5, forward="masq")
    assert pickle.loads(pickle.dumps(d)) == d


def test_repr_reads_like_constructor():
    s = Service(address="10.0.0.1", port=80, protocol="tcp", scheduler="wlc")
    assert repr(s) == "Service(address='10.0.0.1', port=80, protocol='tcp', scheduler='wlc')"
    assert eval(repr(s), {"Service": Service}) == s
    f = Service(fwmark=7, family=socket.AF_INET6, scheduler="mh",
                flags=ServiceFlags.PERSISTENT | ServiceFlags.MH_PORT, timeout=300, netmask=64)
    r = repr(f)
    assert "MH_PORT" in r and "fwmark=7" in r and "AF_INET6" in r
    env = {"Service": Service, "ServiceFlags": ServiceFlags, "socket": socket}
    assert eval(r, env) == f
    d = Destination(address="192.168.1.10", port=8080, weight=3, forward=Forward.MASQ,
                    upper_threshold=100, lower_threshold=10)
    env = {"Destination": Destination, "Forward": Forward, "TunnelType": ipvs.TunnelType,
           "TunnelFlags": ipvs.TunnelFlags}
    assert eval(repr(d), env) == d
    t = Destination(address="2001:db8::10", forward=Forward.TUNNEL, tunnel_type=ipvs.TunnelType.GUE,
                    tunnel_port=6080, tunnel_flags=ipvs.TunnelFlags.CSUM)
    assert eval(repr(t), env) == t


def test_destination_defaults_and_validation():
    d = Destination("192.168.1.10", 8080)
    assert d.weight == 1 and d.forward is Forward.ROUTE and d.family == socket.AF_INET
    assert d.key == (socket.AF_INET, ipaddress.IPv4Address("192.168.1.10"), 8080)
    assert Destination("10.0.0.1", forward="nat").forward is Forward.MASQ
    assert Destination("10.0.0.1", forward="dr").forward is Forward.ROUTE
    # counters and stats are read-back state, not identity
    assert Destination("10.0.0.1", 80, active_connections=3, stats=Stats()) == Destination("10.0.0.1", 80)
    # every kernel refuses these with ERANGE: the model refuses them first
    assert Destination("10.0.0.1", 80, weight=0).weight == 0
    assert Destination("10.0.0.1", upper_threshold=5, lower_threshold=5).lower_threshold == 5
    for kwargs, exc, field in [
        (dict(address="10.0.0.1", port=65536), ValueError, "port"),
        (dict(address=None), TypeError, "address"),
        (dict(address=b"\x01\x02\x03"), ValueError, "address"),
        (dict(address="10.0.0.1", weight=2**31), ValueError, "weight"),
        (dict(address="10.0.0.1", weight=-1), ValueError, "Destination.weight must be in 0.."),
        (dict(address="10.0.0.1", upper_threshold=5, lower_threshold=10), ValueError,
         "Destination.lower_threshold (10) must not be above upper_threshold (5)"),
        (dict(address="10.0.0.1", lower_threshold=1), ValueError, "lower_threshold"),
        (dict(address="10.0.0.1", weight=1.5), TypeError, "weight"),
        (dict(address="10.0.0.1", forward="teleport"), ValueError, "forward"),
        (dict(address="10.0.0.1", tunnel_type=9), ValueError, "tunnel_type"),
        (dict(address="10.0.0.1", tunnel_flags=8), ValueError, "tunnel_flags"),
        (dict(address="10.0.0.1", upper_threshold=-1), ValueError, "upper_threshold"),
        (dict(address="10.0.0.1", family=socket.AF_INET6), ValueError, "family"),
    ]:
        with pytest.raises(exc) as info:
            Destination(**kwargs)
        assert field in str(info.value)


def test_enums_and_aliases():
    assert ServiceFlags.SH_FALLBACK == ServiceFlags.SCHED1 == ServiceFlags.MH_FALLBACK == 8
    assert ServiceFlags.SH_PORT == ServiceFlags.SCHED2 == ServiceFlags.MH_PORT == 16
    assert int(Forward.MASQ) == 0 and int(Forward.BYPASS) == 4
    assert int(ipvs.TunnelType.GRE) == 2 and int(ipvs.TunnelFlags.REMCSUM) == 2
    assert int(ipvs.DaemonState.BACKUP) == 2
    assert Protocol("tcp") is Protocol.TCP


def test_other_records():
    t = ipvs.Timeouts(900, 120, 300)
    assert t.tcp == 900 and t == ipvs.Timeouts(900, 120, 300)
    d = ipvs.Daemon(ipvs.DaemonState.MASTER, "eth0", sync_id=3, mcast_group="239.1.1.1")
    assert d.mcast_group == ipaddress.IPv4Address("239.1.1.1") and d.max_len == 0
    assert ipvs.Daemon("backup", "lo").state is ipvs.DaemonState.BACKUP
    with pytest.raises(ValueError):
        ipvs.Daemon("master", "x" * 16)
    with pytest.raises(ValueError):
        ipvs.Daemon("master", "lo", sync_id=256)
    i = ipvs.Info("1.2.1", (1, 2, 1), 4096)
    assert i.version_info == (1, 2, 1)
    s = Stats(connections=2**40)
    assert s.connections == 2**40 and list(s)[0] == 2**40
    with pytest.raises(ValueError):
        Stats(connections=-1)
    c = ipvs.Connection("tcp", "10.0.0.2", 40000, "10.0.0.1", 80, "192.168.1.2", 8080,
                        "ESTABLISHED", 899)
    assert c.protocol is Protocol.TCP and c.virtual_port == 80

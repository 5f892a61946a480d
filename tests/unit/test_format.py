"""ipvs._format against Debian ipvsadm 1.31's output (tests/unit/golden/).

The state below is the one tests/unit/golden/state.sh (+ state_mixed.sh and
the traffic of capture.py) built in a real kernel, written out by hand as
model objects, in the kernel's dump order (ipvsadm's sort depends on it, see
ipvs/_format.py).
"""

import os
import socket

import pytest

from ipvs import (Connection, Daemon, Destination, Forward, Info, Service, ServiceFlags,
                  Stats, Timeouts, TunnelFlags, TunnelType)
from ipvs import _format as F

GOLDEN = os.path.join(os.path.dirname(__file__), "golden")
PF = ServiceFlags


def golden(name):
    with open(os.path.join(GOLDEN, name)) as f:
        return f.read()


def D(addr, port, fwd="masq", w=1, **kw):
    return Destination(addr, port, forward=Forward(fwd), weight=w, **kw)


def T(addr, port, ttype=TunnelType.IPIP, **kw):
    return Destination(addr, port, forward=Forward.TUNNEL, tunnel_type=ttype, **kw)


INFO = Info("1.2.1", (1, 2, 1), 4096)

# (service, [destinations]) in the kernel's order (see Ln_nosort.txt)
TABLE = [
    (Service("2001:db8::80", 80, "tcp", "rr",
             stats=Stats(1, 3, 0, 240, 0, 0, 0, 0, 23, 0)), [
        T("192.168.100.40", 80, active_connections=1,
          stats=Stats(1, 3, 0, 240, 0, 0, 0, 0, 23, 0)),
        T("ff::1", 80),
        D("1::ff", 80),
        D("2001:db8:100::1:1", 80),
        D("2001:db8:100::2", 80),
        D("2001:db8:100::a0", 8080),
    ]),
    (Service("2001:db8:1234:5678:9abc:def0:1234:5678", 65535, "tcp", "rr", timeout=99999), [
        T("192.168.100.12", 65535),
        D("2001:db8:1234:5678:9abc:def0:1234:5679", 65535),
    ]),
    (Service("10.0.0.17", 80, "udp", "wlc", pe_name="sip"), []),
    (Service("10.0.0.7", 80, "tcp", "mh", flags=PF.MH_FALLBACK | PF.MH_PORT), []),
    (Service("10.0.0.1", 81, "tcp", "rr"), []),
    (Service("127.0.0.1", 80, "tcp", "wlc"), []),
    (Service("10.0.0.4", 5060, "sctp", "mh", flags=PF.MH_PORT, timeout=60, pe_name="sip"), []),
    (Service("10.0.0.1", 80, "tcp", "wlc", stats=Stats(1, 2, 2, 120, 176, 0, 0, 0, 10, 14)), [
        T("2001:db8:1234:5678:9abc:def0:1234:5678", 80, active_connections=1,
          stats=Stats(1, 2, 2, 120, 176, 0, 0, 0, 10, 14)),
        D("1.2.3.5", 81),
        D("1.2.3.5", 256),
        D("1.2.3.5", 80),
        D("4.3.2.1", 80),
        D("1.2.3.4", 80),
        D("10.0.0.20", 22, w=2147483647, upper_threshold=65535, lower_threshold=65535),
        D("127.0.0.1", 80, "route", w=0),
        T("192.168.100.17", 80, TunnelType.GUE, tunnel_port=6082),
        T("192.168.100.16", 80, TunnelType.GRE, tunnel_flags=TunnelFlags.CSUM),
        T("192.168.100.15", 80, TunnelType.GUE, tunnel_port=6081,
          tunnel_flags=TunnelFlags.REMCSUM),
        T("192.168.100.13", 80, TunnelType.GUE, tunnel_port=6080, tunnel_flags=TunnelFlags.CSUM),
        T("192.168.100.12", 80),
        D("192.168.100.11", 8080, w=5, upper_threshold=100, lower_threshold=10),
        D("192.168.100.10", 80, "route"),
    ]),
    (Service("10.0.0.14", 80, "tcp", "lc"), []),
    (Service("10.0.0.12", 80, "tcp", "rr", timeout=10, netmask=0), []),
    (Service("10.0.0.13", 80, "tcp", "rr", timeout=360), []),
    (Service("10.0.0.9", 80, "tcp", "sh", flags=PF.SH_FALLBACK), []),
    (Service("10.0.0.2", 53, "udp", "rr", timeout=360,
             stats=Stats(1, 3, 0, 384, 0, 0, 0, 0, 27, 0)), [
        D("192.168.100.21", 53, inactive_connections=1, persistent_connections=1,
          stats=Stats(1, 3, 0, 384, 0, 0, 0, 0, 27, 0)),
    ]),
    (Service("10.9.9.9", 53, "udp", "rr", flags=PF.ONEPACKET,
             stats=Stats(1600, 1600, 0, 104044800, 0, 112, 112, 0, 7315650, 0)), [
        D("192.168.100.20", 53, stats=Stats(1600, 1600, 0, 104044800, 0, 112, 112, 0, 7315650, 0)),
    ]),
    (Service("10.0.0.5", 0, "tcp", "wlc", timeout=360), []),
    (Service("10.0.0.1", 256, "tcp", "rr"), []),
    (Service("10.0.0.6", 22, "tcp", "none"), []),
    (Service("::ffff:1.2.3.4", 22, "tcp", "wlc"), []),
    (Service("2001:db8::53", 53, "udp", "wlc", flags=PF.ONEPACKET), []),
    (Service("10.0.0.30", 5060, "udp", "sh", flags=PF.SH_PORT | PF.ONEPACKET, timeout=100,
             netmask="255.255.0.0", pe_name="sip"), []),
    (Service("::1", 443, "tcp", "wlc"), []),
    (Service("10.0.0.3", 443, "tcp", "sh", flags=PF.SH_FALLBACK | PF.SH_PORT, timeout=600,
             netmask="255.255.255.0"), []),
    (Service(fwmark=6, family=socket.AF_INET6, scheduler="rr"), []),
    (Service(fwmark=7, scheduler="wrr"), [D("192.168.100.30", 0, "route", w=3)]),
    (Service(fwmark=8, family=socket.AF_INET6, scheduler="lc", timeout=100, netmask=64),
     [D("2001:db8:100::30", 0)]),
    (Service(fwmark=9, scheduler="rr"), []),
]


def _zero_stats(table):
    # listings without counters must not need them
    return [(s.replace(stats=s.stats or Stats()), [d.replace(stats=d.stats or Stats()) for d in ds])
            for s, ds in table]


@pytest.mark.parametrize("name, opts", [
    ("Ln.txt", {}),
    ("Ln_exact.txt", {"exact": True}),
    ("Ln_nosort.txt", {"sort": False}),
    ("Ln_stats.txt", {"stats": True}),
    ("Ln_stats_exact.txt", {"stats": True, "exact": True}),
    ("Ln_rate.txt", {"rate": True}),
    ("Ln_rate_exact.txt", {"rate": True, "exact": True}),
    ("Ln_thresholds.txt", {"thresholds": True}),
    ("Ln_persistent_conn.txt", {"persistent_conn": True}),
    ("Ln_tun_info.txt", {"tun_info": True}),
])
def test_listing(name, opts):
    assert F.list_table(INFO, _zero_stats(TABLE), F.ListOptions(**opts)) == golden(name)


def _one(svc_key):
    for s, ds in TABLE:
        if s.key == svc_key:
            return [(s, ds)]
    raise KeyError(svc_key)


@pytest.mark.parametrize("name, key, opts", [
    ("Ln_t_service.txt", Service("10.0.0.1", 80).key, {}),
    ("Ln_t_service_stats.txt", Service("10.0.0.1", 80).key, {"stats": True}),
    ("Ln_t_service_thresholds.txt", Service("10.0.0.1", 80).key, {"thresholds": True}),
    ("Ln_u_service_v6.txt", Service("2001:db8::53", 53, "udp").key, {}),
    ("Ln_f_service.txt", Service(fwmark=8, family=socket.AF_INET6).key, {}),
])
def test_one_service(name, key, opts):
    assert F.list_table(None, _zero_stats(_one(key)), F.ListOptions(**opts)) == golden(name)


def test_save_numeric():
    assert F.save_table(TABLE, numeric=True) == golden("Sn.txt")


def _have_names():
    try:
        return (socket.getservbyport(80, "tcp") == "http" and socket.getservbyport(8080, "tcp") == "http-alt"
                and socket.gethostbyaddr("127.0.0.1")[0] == "localhost")
    except OSError:
        return False


@pytest.mark.skipif(not _have_names(), reason="needs /etc/services and localhost in /etc/hosts")
def test_names():
    # reverse DNS of the documentation addresses is not stable: compare the
    # lines that only need /etc/hosts and /etc/services
    text = F.list_table(INFO, TABLE, F.ListOptions(numeric=False))
    want = golden("L.txt")
    for line in ("TCP  localhost:http wlc\n", "  -> localhost:http               Route   0      0          0         \n",
                 "  -> 192.168.100.11:http-alt      Masq    5      0          0         \n",
                 "TCP  [::1]:https wlc\n", "UDP  10.0.0.17:80 wlc\n", "SCTP 10.0.0.4:5060 mh (mh-port) persistent 60 pe sip\n",
                 "  -> [2001:db8:1234:5678:9abc:def0:1234:5678]:http Tunnel  1      1          0         \n"):
        assert line in want and line in text
    assert "-a -t 10.0.0.1:http -r localhost:http -g -w 0\n" in F.save_table(TABLE, numeric=False)


def test_timeouts():
    assert F.format_timeouts(Timeouts(900, 120, 300)) == golden("timeout.txt")


def test_daemons():
    daemons = [Daemon("master", "dummy0", 7, 1200, "224.0.0.82", 8849, 3),
               Daemon("backup", "dummy0", 9, 1472, "224.0.0.81", 8848, 1)]
    assert F.format_daemons(daemons) == golden("daemon.txt")
    assert F.format_daemons([]) == ""


CONNS = [
    Connection("udp", "192.168.100.1", 50508, "10.0.0.2", 53, "192.168.100.21", 53, "UDP", 294),
    Connection("tcp", "192.168.100.1", 54292, "10.0.0.1", 80,
               "2001:db8:1234:5678:9abc:def0:1234:5678", 80, "SYN_RECV", 55),
    Connection("udp", "192.168.100.1", 0, "10.0.0.2", 53, "192.168.100.21", 53, "NONE", 354),
    Connection("tcp", "2001:db8:100::1", 57518, "2001:db8::80", 80, "192.168.100.40", 80,
               "SYN_RECV", 57),
]


def test_connections():
    assert F.list_connections(CONNS) == golden("Lcn.txt")
    assert F.list_connections(CONNS, persistent_conn=True) == golden("Lcn_persistent_conn.txt")


@pytest.mark.parametrize("value, exact, text", [
    (0, False, "        0"), (99999999, False, " 99999999"), (100000000, False, "  100000K"),
    (104044800, False, "  104044K"), (104044800, True, " 104044800"),
    (999999999, False, "  999999K"), (1000000000, False, "    1000M"),
    (99999999999, False, "   99999M"), (100000000000, False, "     100G"),
    (100000000000000, False, "     100T"), (2 ** 64 - 1, True, " 18446744073709551615"),
])
def test_largenum(value, exact, text):
    assert F.format_largenum(value, exact) == text


def test_sort_is_ipvsadms_merge_sort():
    # the observed orders (tests/unit/golden/Ln.txt) follow from the kernel order
    svc, dests = _one(Service("10.0.0.1", 80).key)[0]
    got = [(str(d.address), d.port) for d in F.sort_destinations(dests)]
    assert got[:7] == [("1.2.3.4", 80), ("1.2.3.5", 80), ("1.2.3.5", 81), ("1.2.3.5", 256),
                       ("4.3.2.1", 80), ("10.0.0.20", 22),
                       ("2001:db8:1234:5678:9abc:def0:1234:5678", 80)]
    assert got[7] == ("127.0.0.1", 80)


def test_json_shape():
    doc = F.table_to_json(INFO, TABLE)
    assert doc["version"] == "1.2.1" and doc["conn_tab_size"] == 4096
    first = doc["services"][0]
    assert first["protocol"] == "tcp" and first["address"] == "10.0.0.1" and first["port"] == 80
    assert first["stats"]["bytes_out"] == 176
    d = first["destinations"][0]
    assert set(d) >= {"address", "port", "forward", "weight", "stats", "active_connections"}
    fw = [s for s in doc["services"] if s["fwmark"] == 8][0]
    assert fw["protocol"] is None and fw["family"] == "inet6" and fw["netmask"] == 64

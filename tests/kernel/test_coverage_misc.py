"""Issue 3, the rest of the kernel surface: stats (per service, per
destination, global), timeouts, sync daemons, zero, info and the connection
table, each compared with what Debian's ipvsadm shows for the same state."""
import re
import socket
import subprocess
import time

import pytest

import ipvs
from ipvs import Daemon, DaemonState, Destination, Forward, Service, Stats, Timeouts

from .conftest import netlink_only
from .test_coverage_dests import add_local_address, ns_run, tcp_traffic, udp_traffic

pytestmark = pytest.mark.kernel

STATS_FIELDS = ("connections", "packets_in", "packets_out", "bytes_in", "bytes_out")
RATE_FIELDS = ("cps", "pps_in", "pps_out", "bps_in", "bps_out")


def ipvsadm_table(ipvsadm, *opts):
    """``ipvsadm -Ln OPTS --exact`` as {row name: [5 ints]}; service rows are
    keyed "TCP  10.0.0.1:80", destination rows "SVC -> 192.168.1.1:80"."""
    out = {}
    svc = None
    for line in ipvsadm("-Ln", "--exact", *opts).splitlines()[3:]:
        f = line.split()
        if f[0] == "->":
            out["%s -> %s" % (svc, f[1])] = [int(x) for x in f[2:7]]
        else:
            svc = "%s %s" % (f[0], f[1])
            out[svc] = [int(x) for x in f[2:7]]
    return out


def stats_row(stats, fields):
    return [getattr(stats, f) for f in fields]


def wait_for(fn, timeout=10.0, step=0.25):
    """The stats are refreshed by the kernel's estimator every 2 s (6.1)."""
    end = time.monotonic() + timeout
    while True:
        v = fn()
        if v or time.monotonic() > end:
            return v
        time.sleep(step)


def stable_compare(lb, svc, ipvsadm, key, dkey, tries=6):
    """Read ipvs, then ipvsadm, then ipvs again; when both ipvs reads agree
    (no estimator tick in between) the ipvsadm values must be equal."""
    for _ in range(tries):
        s1, d1 = lb.get_service(svc).stats, lb.destinations(svc)[0].stats
        counters = ipvsadm_table(ipvsadm, "--stats")
        rates = ipvsadm_table(ipvsadm, "--rate")
        s2, d2 = lb.get_service(svc).stats, lb.destinations(svc)[0].stats
        if s1 == s2 and d1 == d2:
            assert counters[key] == stats_row(s1, STATS_FIELDS)
            assert counters[dkey] == stats_row(d1, STATS_FIELDS)
            assert rates[key] == stats_row(s1, RATE_FIELDS)
            assert rates[dkey] == stats_row(d1, RATE_FIELDS)
            return s1, d1
        time.sleep(0.3)
    pytest.fail("stats kept changing")


# ------------------------------------------------------------------- stats

@pytest.mark.parametrize("family", ["ipv4", "ipv6"])
def test_service_and_destination_stats_match_ipvsadm(ipvs_handle, ipvsadm, ipvs_netns, family):
    lb = ipvs_handle
    vip = "10.0.0.100" if family == "ipv4" else "2001:db8::100"
    svc = Service(address=vip, port=80, scheduler="rr")
    if family == "ipv6":
        netlink_only(lb, lb.add_service, svc)
    add_local_address(ipvs_netns, vip)
    lb.add_service(svc)
    lb.add_destination(svc, Destination(vip, 80, forward=Forward.LOCAL))
    s0 = lb.get_service(svc).stats
    assert s0 == Stats() and lb.destinations(svc)[0].stats == Stats()
    with tcp_traffic(ipvs_netns, vip, 80, 2, 3):
        assert wait_for(lambda: lb.get_service(svc).stats.connections == 5)
        host = vip if family == "ipv4" else "[%s]" % vip
        key = "TCP %s:80" % host
        s, d = stable_compare(lb, svc, ipvsadm, key, "%s -> %s:80" % (key, host))
        assert s.connections == d.connections == 5
        assert s.packets_in > 0 and s.bytes_in > s.packets_in
        assert s == d     # one destination: its counters are the service's
        (listed,) = lb.services()
        assert listed.stats.connections == 5
        if lb.backend == "netlink" and family == "ipv4":
            # the 32-bit sockopt view of the same counters agrees
            with ipvs.IPVS(netns=ipvs_netns, backend="sockopt") as legacy:
                assert legacy.get_service(svc).stats.connections == 5
                assert legacy.get_service(svc).stats.bytes_in == lb.get_service(svc).stats.bytes_in


def test_rates_become_nonzero_then_match_ipvsadm(ipvs_handle, ipvsadm, ipvs_netns):
    lb = ipvs_handle
    vip = "10.0.0.100"
    add_local_address(ipvs_netns, vip)
    svc = Service(address=vip, port=53, protocol="udp", scheduler="rr")
    lb.add_service(svc)
    lb.add_destination(svc, Destination("192.168.5.5", 53, forward="masq"))
    with udp_traffic(ipvs_netns, vip, 53, 20):
        assert wait_for(lambda: lb.get_service(svc).stats.cps > 0)
        s, _ = stable_compare(lb, svc, ipvsadm, "UDP %s:53" % vip, "UDP %s:53 -> 192.168.5.5:53" % vip)
        assert s.connections == 20 and s.packets_in == 20
        assert s.bytes_in == sum(28 + 10 + i for i in range(20))   # IP+UDP headers + payload
        assert s.pps_in > 0 and s.bps_in > 0


def test_global_stats_parse_proc(ipvs_handle, ipvs_netns):
    """lb.stats() parses /proc/net/ip_vs_stats, whose columns are
    HEXADECIMAL (%8LX): 20 connections show as "14"."""
    lb = ipvs_handle
    assert lb.stats() == Stats()
    vip = "10.0.0.100"
    add_local_address(ipvs_netns, vip)
    for port in (53, 54):
        svc = Service(address=vip, port=port, protocol="udp", scheduler="rr")
        lb.add_service(svc)
        lb.add_destination(svc, Destination("192.168.5.5", port, forward="masq"))
    with udp_traffic(ipvs_netns, vip, 53, 12), udp_traffic(ipvs_netns, vip, 54, 8):
        assert wait_for(lambda: lb.stats().connections == 20)
        raw = subprocess.run(["ip", "netns", "exec", ipvs_netns, "cat", "/proc/net/ip_vs_stats"],
                             capture_output=True, text=True, check=True).stdout
        assert raw.splitlines()[2].split()[0] == "14"   # 20 in hex
        g = lb.stats()
        per = [s.stats for s in lb.services()]
        assert g.connections == sum(s.connections for s in per) == 20
        assert g.packets_in == sum(s.packets_in for s in per)
        assert g.bytes_in == sum(s.bytes_in for s in per)


# ---------------------------------------------------------------- timeouts

def timeout_line(ipvsadm):
    return ipvsadm("-L", "--timeout").strip()


def test_timeouts_defaults_and_set(ipvs_handle, ipvsadm):
    lb = ipvs_handle
    assert lb.timeouts() == Timeouts(900, 120, 300)
    assert timeout_line(ipvsadm) == "Timeout (tcp tcpfin udp): 900 120 300"
    lb.set_timeouts(tcp=1000, tcp_fin=20, udp=30)
    assert lb.timeouts() == Timeouts(1000, 20, 30)
    assert timeout_line(ipvsadm) == "Timeout (tcp tcpfin udp): 1000 20 30"
    # None leaves a value as it is
    lb.set_timeouts(udp=77)
    assert lb.timeouts() == Timeouts(1000, 20, 77)
    lb.set_timeouts(tcp=5)
    assert timeout_line(ipvsadm) == "Timeout (tcp tcpfin udp): 5 20 77"
    lb.set_timeouts()
    assert lb.timeouts() == Timeouts(5, 20, 77)


def test_timeouts_set_by_ipvsadm_read_back(ipvs_handle, ipvsadm):
    ipvsadm("--set", "123", "45", "67")
    assert ipvs_handle.timeouts() == Timeouts(123, 45, 67)


def test_timeouts_are_per_namespace(ipvs_handle, ipvs_netns):
    ipvs_handle.set_timeouts(tcp=42)
    from ipvs import netns
    with netns.temporary() as other:
        with ipvs.IPVS(netns=other, backend=ipvs_handle.backend) as lb2:
            assert lb2.timeouts() == Timeouts(900, 120, 300)
    assert ipvs_handle.timeouts().tcp == 42


# ----------------------------------------------------------------- daemons

def daemon_lines(ipvsadm):
    return ipvsadm("-L", "--daemon").splitlines()


def test_master_daemon_defaults(ipvs_handle, ipvsadm):
    lb = ipvs_handle
    assert lb.daemons() == [] and daemon_lines(ipvsadm) == []
    lb.start_daemon(Daemon(DaemonState.MASTER, "lo", sync_id=3))
    assert daemon_lines(ipvsadm) == [
        "master sync daemon (mcast=lo, syncid=3, maxlen=1472, group=224.0.0.81, port=8848, ttl=1)"]
    (d,) = lb.daemons()
    if lb.backend == "netlink":
        # the kernel fills in its defaults and reports them
        assert d == Daemon("master", "lo", sync_id=3, max_len=1472, mcast_group="224.0.0.81",
                           mcast_port=8848, mcast_ttl=1)
    else:
        # the sockopt reply has no room for them: defaults / None
        assert d == Daemon("master", "lo", sync_id=3)
        assert d.max_len == 0 and d.mcast_group is None and d.mcast_port == 0
    time.sleep(0.3)
    lb.stop_daemon(DaemonState.MASTER)
    assert lb.daemons() == [] and daemon_lines(ipvsadm) == []


def test_backup_daemon_every_attribute(ipvs_handle, ipvsadm):
    lb = ipvs_handle
    d = Daemon("backup", "lo", sync_id=4, max_len=1400, mcast_group="239.1.1.1",
               mcast_port=9000, mcast_ttl=5)
    netlink_only(lb, lb.start_daemon, d)
    lb.start_daemon(d)
    assert lb.daemons() == [d]
    assert daemon_lines(ipvsadm) == [
        "backup sync daemon (mcast=lo, syncid=4, maxlen=1400, group=239.1.1.1, port=9000, ttl=5)"]
    time.sleep(0.3)
    lb.stop_daemon("backup")
    assert lb.daemons() == []


@pytest.mark.parametrize("state,given,kept", [
    ("backup", 500, 1024),        # a backup's max length is at least 1024
    ("backup", 65535, 65507),     # ... and at most 65535 - IPv4+UDP headers
    ("master", 1, 1),
    ("master", 65535, 65507),
])
def test_daemon_max_len_is_clamped_by_the_kernel(ipvs_handle, ipvsadm, state, given, kept):
    lb = ipvs_handle
    d = Daemon(state, "lo", max_len=given)
    netlink_only(lb, lb.start_daemon, d)
    lb.start_daemon(d)
    (got,) = lb.daemons()
    assert got.max_len == kept
    assert "maxlen=%d," % kept in daemon_lines(ipvsadm)[0]
    time.sleep(0.3)
    lb.stop_daemon(state)


def test_backup_daemon_ipv6_group(ipvs_handle, ipvsadm):
    lb = ipvs_handle
    d = Daemon("backup", "lo", sync_id=9, max_len=2000, mcast_group="ff02::98",
               mcast_port=7000, mcast_ttl=2)
    netlink_only(lb, lb.start_daemon, d)
    lb.start_daemon(d)
    assert lb.daemons() == [d]
    assert daemon_lines(ipvsadm) == [
        "backup sync daemon (mcast=lo, syncid=9, maxlen=2000, group=ff02::98, port=7000, ttl=2)"]
    time.sleep(0.3)
    lb.stop_daemon("backup")


def test_master_daemon_ipv6_group_on_veth(ipvs_handle, ipvsadm, ipvs_netns):
    lb = ipvs_handle
    ns_run(ipvs_netns, "ip", "link", "add", "sync0", "type", "veth", "peer", "name", "sync1")
    ns_run(ipvs_netns, "ip", "addr", "add", "2001:db8:5::1/64", "dev", "sync0", "nodad")
    ns_run(ipvs_netns, "ip", "link", "set", "sync0", "up")
    ns_run(ipvs_netns, "ip", "link", "set", "sync1", "up")
    d = Daemon("master", "sync0", sync_id=1, mcast_group="ff02::99", mcast_port=8000,
               mcast_ttl=3)
    netlink_only(lb, lb.start_daemon, d)
    lb.start_daemon(d)
    # default max length of an IPv6 master: 1500 - IPv6 and UDP headers
    assert lb.daemons() == [d.replace(max_len=1452)]
    assert daemon_lines(ipvsadm) == [
        "master sync daemon (mcast=sync0, syncid=1, maxlen=1452, group=ff02::99, port=8000, ttl=3)"]
    time.sleep(0.3)
    lb.stop_daemon("master")


def test_master_and_backup_together(ipvs_handle, ipvsadm):
    lb = ipvs_handle
    lb.start_daemon(Daemon("master", "lo", sync_id=1))
    lb.start_daemon(Daemon("backup", "lo", sync_id=2))
    got = lb.daemons()
    assert [(d.state, d.interface, d.sync_id) for d in got] == [
        (DaemonState.MASTER, "lo", 1), (DaemonState.BACKUP, "lo", 2)]
    lines = daemon_lines(ipvsadm)
    assert len(lines) == 2 and lines[0].startswith("master sync daemon (mcast=lo, syncid=1,")
    assert lines[1].startswith("backup sync daemon (mcast=lo, syncid=2,")
    time.sleep(0.3)
    lb.stop_daemon("master")
    assert [d.state for d in lb.daemons()] == [DaemonState.BACKUP]
    lb.stop_daemon("backup")
    assert lb.daemons() == []


def test_daemon_started_by_ipvsadm_reads_back(ipvs_handle, ipvsadm):
    ipvsadm("--start-daemon", "master", "--mcast-interface", "lo", "--syncid", "7")
    (d,) = ipvs_handle.daemons()
    assert (d.state, d.interface, d.sync_id) == (DaemonState.MASTER, "lo", 7)
    time.sleep(0.3)
    ipvs_handle.stop_daemon("master")
    assert daemon_lines(ipvsadm) == []


@pytest.mark.parametrize("state", ["master", "backup"])
def test_stop_daemon_right_after_start(ipvs_handle, ipvsadm, state):
    """The kernel answers -EINTR when a daemon thread is stopped before it
    first ran (kthread_stop), and netlink_rcv_skb() then sends NO ack at all.
    The daemon is stopped nonetheless: stop_daemon must succeed, not hang."""
    lb = ipvs_handle
    lb.timeout = 3.0
    for i in range(3):
        lb.start_daemon(Daemon(state, "lo", sync_id=i))
        lb.stop_daemon(state)
        assert lb.daemons() == [] and daemon_lines(ipvsadm) == []


# -------------------------------------------------------------------- zero

def test_zero_one_service_and_all(ipvs_handle, ipvsadm, ipvs_netns):
    lb = ipvs_handle
    vip = "10.0.0.100"
    add_local_address(ipvs_netns, vip)
    a = Service(address=vip, port=53, protocol="udp", scheduler="rr")
    b = Service(address=vip, port=54, protocol="udp", scheduler="rr")
    for s in (a, b):
        lb.add_service(s)
        lb.add_destination(s, Destination("192.168.5.5", s.port, forward="masq"))
    with udp_traffic(ipvs_netns, vip, 53, 3), udp_traffic(ipvs_netns, vip, 54, 4):
        assert wait_for(lambda: lb.get_service(a).stats.connections == 3 and
                        lb.get_service(b).stats.connections == 4)
        lb.zero(a)
        sa, sb = lb.get_service(a).stats, lb.get_service(b).stats
        assert stats_row(sa, STATS_FIELDS) == [0] * 5
        assert lb.destinations(a)[0].stats.connections == 0
        assert sb.connections == 4 and sb.packets_in == 4
        table = ipvsadm_table(ipvsadm, "--stats")
        assert table["UDP %s:53" % vip] == [0] * 5
        assert table["UDP %s:53 -> 192.168.5.5:53" % vip] == [0] * 5
        assert table["UDP %s:54" % vip][:2] == [4, 4]
        # the connections themselves are not touched by zeroing
        assert lb.destinations(a)[0].inactive_connections == 3

        lb.zero()
        for s in (a, b):
            assert stats_row(lb.get_service(s).stats, STATS_FIELDS) == [0] * 5
            assert stats_row(lb.destinations(s)[0].stats, STATS_FIELDS) == [0] * 5
        assert all(v == [0] * 5 for v in ipvsadm_table(ipvsadm, "--stats").values())
        assert stats_row(lb.stats(), STATS_FIELDS) == [0] * 5


def test_zero_counters_made_visible_by_ipvsadm_zero(ipvs_handle, ipvsadm, ipvs_netns):
    lb = ipvs_handle
    vip = "10.0.0.100"
    add_local_address(ipvs_netns, vip)
    s = Service(address=vip, port=53, protocol="udp", scheduler="rr")
    lb.add_service(s)
    lb.add_destination(s, Destination("192.168.5.5", 53, forward="masq"))
    with udp_traffic(ipvs_netns, vip, 53, 2):
        assert wait_for(lambda: lb.get_service(s).stats.connections == 2)
        ipvsadm("-Z", "-u", "%s:53" % vip)
        assert lb.get_service(s).stats.connections == 0


# -------------------------------------------------------------------- info

def test_info_matches_ipvsadm(ipvs_handle, ipvsadm, ipvs_netns):
    info = ipvs_handle.info()
    header = ipvsadm("-Ln").splitlines()[0]
    m = re.match(r"IP Virtual Server version (\d+)\.(\d+)\.(\d+) \(size=(\d+)\)", header)
    assert m, header
    assert info.version_info == tuple(int(x) for x in m.group(1, 2, 3))
    assert info.version == "%s.%s.%s" % m.group(1, 2, 3)
    assert info.conn_tab_size == int(m.group(4))


# ------------------------------------------------------------- connections

def ipvsadm_connections(ipvsadm):
    """``ipvsadm -Lcn`` rows as (proto, seconds, state, src, vip, dst)."""
    rows = []
    for line in ipvsadm("-Lcn").splitlines()[2:]:
        proto, expire, state, src, vip, dst = line.split()
        mm, ss = expire.split(":")
        rows.append((proto, int(mm) * 60 + int(ss), state, src, vip, dst))
    return rows


def hostport(addr, port):
    return ("[%s]:%d" if addr.version == 6 else "%s:%d") % (addr, port)


def test_connections_ipv4_and_ipv6_match_ipvsadm(ipvs_handle, ipvsadm, ipvs_netns):
    lb = ipvs_handle
    v4, v6 = "10.0.0.100", "2001:db8::100"
    add_local_address(ipvs_netns, v4)
    add_local_address(ipvs_netns, v6)
    assert lb.connections() == []
    # made by ipvsadm so that both backends see the same IPv6 table
    ipvsadm("-A", "-t", "%s:80" % v4, "-s", "rr")
    ipvsadm("-a", "-t", "%s:80" % v4, "-r", "%s:80" % v4, "-m")
    ipvsadm("-A", "-t", "[%s]:80" % v6, "-s", "rr", "-p", "30")
    ipvsadm("-a", "-t", "[%s]:80" % v6, "-r", "[%s]:80" % v6, "-g")
    ipvsadm("-A", "-u", "%s:53" % v4, "-s", "rr")
    ipvsadm("-a", "-u", "%s:53" % v4, "-r", "192.168.5.5:53", "-m")
    with tcp_traffic(ipvs_netns, v4, 80, 2, 0), tcp_traffic(ipvs_netns, v6, 80, 1, 0), \
            udp_traffic(ipvs_netns, v4, 53, 2):
        conns = lb.connections()
        theirs = ipvsadm_connections(ipvsadm)
    assert len(conns) == len(theirs) == 6   # 2 + 1 + template + 2
    mine = sorted((str(c.protocol), c.state, hostport(c.client_address, c.client_port),
                   hostport(c.virtual_address, c.virtual_port),
                   hostport(c.destination_address, c.destination_port)) for c in conns)
    assert mine == sorted((p, st, src, vip, dst) for p, _, st, src, vip, dst in theirs)
    by = {(hostport(c.client_address, c.client_port), c.state): c for c in conns}
    for p, secs, st, src, _, _ in theirs:
        assert abs(by[(src, st)].expires - secs) <= 3
    states = sorted(c.state for c in conns)
    assert states.count("ESTABLISHED") == 3 and states.count("UDP") == 2
    v6c = [c for c in conns if c.virtual_address.version == 6]
    assert len(v6c) == 2 and all(c.destination_address == c.virtual_address for c in v6c)
    template = [c for c in v6c if c.client_port == 0]
    assert len(template) == 1 and template[0].virtual_port == 80
    udp = [c for c in conns if c.protocol == ipvs.Protocol.UDP]
    assert {str(c.destination_address) for c in udp} == {"192.168.5.5"}
    assert all(c.expires <= 300 for c in udp)


# ------------------------------------------------- features a backend lacks

def test_sockopt_names_what_it_cannot_do(ipvs_handle):
    """Where the legacy interface cannot express something, UnsupportedError
    names the feature (netlink does all of them)."""
    lb = ipvs_handle
    v4 = Service(address="10.0.0.1", port=80)

    def daemon_start_stop(d):
        lb.start_daemon(d)
        time.sleep(0.3)
        # a running daemon makes the kernel refuse mixed-family destinations
        lb.stop_daemon(d.state)

    cases = [
        ("daemon", "start_daemon", daemon_start_stop, (Daemon("backup", "lo", mcast_port=9999),)),
        ("IPv6", "add_service", lb.add_service, (Service(address="2001:db8::1", port=80),)),
        ("persistence engine", "add_service", lb.add_service,
         (Service(address="10.0.0.2", port=80, timeout=10, pe_name="sip"),)),
        ("tunnel", "add_destination", lb.add_destination,
         (v4, Destination("192.168.1.1", 80, forward="tunnel", tunnel_type="gre"))),
        ("IPv6", "add_destination", lb.add_destination,
         (v4, Destination("2001:db8::1", 80, forward="tunnel"))),
    ]
    lb.add_service(v4)
    for feature, op, fn, args in cases:
        if lb.backend == "sockopt":
            with pytest.raises(ipvs.UnsupportedError) as e:
                fn(*args)
            assert feature.lower() in str(e.value).lower(), str(e.value)
            assert e.value.operation == op
        else:
            fn(*args)
    if lb.backend == "sockopt":
        assert lb.services() == [v4] and lb.destinations(v4) == [] and lb.daemons() == []
    else:
        assert len(lb.services()) == 3 and len(lb.destinations(v4)) == 2

"""Real traffic through IPVS configured by ``ipvs``.

One lab (ipvs.lab) for the module: a client, a director and three real
servers in their own network namespaces, joined by veth pairs on private
addresses (10.200.0.0/16, fd00:200::/48).  Each test configures the
director's IPVS table through ``ipvs``, sends real TCP/UDP traffic from the
client namespace and checks where it went: the servers answer with their
name.  Counts are asserted exactly where the scheduler is deterministic.

The director's table is flushed after every test; the namespace the tests
start in is never touched (checked at the end of the module).
"""
import collections
import os
import time

import pytest

import ipvs
from ipvs import netns
from ipvs.lab import Lab, wait_for

pytestmark = pytest.mark.kernel

MASQ, ROUTE = ipvs.Forward.MASQ, ipvs.Forward.ROUTE

# IPVS folds its per-CPU counters into the totals it reports only from its
# rate estimator, every 2 seconds: stats lag the traffic by up to ~2 s.
STATS_WAIT = 8.0


def _own_table():
    try:
        with open("/proc/thread-self/net/ip_vs") as f:
            return f.read()
    except FileNotFoundError:
        return None


@pytest.fixture(scope="module")
def lab():
    from ipvs.testing import require_kernel
    require_kernel()
    before_table = _own_table()
    before_ns = netns.current_id()
    with Lab() as lab:
        yield lab
    assert netns.current_id() == before_ns
    assert _own_table() == before_table, "the starting namespace's IPVS table changed"
    assert not any(n.startswith(lab.client.rsplit("-", 1)[0]) for n in netns.names())


@pytest.fixture
def lb(lab):
    with lab.ipvs() as handle:
        handle.flush()
        try:
            yield handle
        finally:
            handle.flush()


def make_service(lb, lab, port, scheduler="rr", weights=(1, 1, 1), forward=MASQ,
                 protocol="tcp", address=None, servers=None, **kw):
    svc = ipvs.Service(address=address or lab.vip, port=port, protocol=protocol,
                       scheduler=scheduler, **kw)
    lb.add_service(svc)
    dests = []
    for rip, w in zip(servers or lab.server_addresses, weights):
        d = ipvs.Destination(rip, lab.port, weight=w, forward=forward)
        lb.add_destination(svc, d)
        dests.append(d)
    return svc, dests


def dest_by_name(lb, lab, svc):
    """{server name: Destination read back from the kernel}"""
    return {lab.by_address[str(d.address)]: d for d in lb.destinations(svc)}


def wait_stats(lb, svc, connections):
    """Poll until the service's stats show ``connections`` (they lag)."""
    got = wait_for(lambda: lb.get_service(svc).stats.connections == connections,
                   timeout=STATS_WAIT)
    assert got, "service stats: %r, expected %d connections" % (
        lb.get_service(svc).stats, connections)
    return lb.get_service(svc)


def check_stats(lb, lab, svc, expected, proto="tcp"):
    """Service and destination stats match the traffic: exact connection
    counts, at least one packet each way per connection."""
    total = sum(expected.values())
    s = wait_stats(lb, svc, total).stats
    assert s.connections == total
    assert s.packets_in >= total and s.packets_out >= total
    if proto == "tcp":
        # SYN, ACK, "ping\n", FIN/ACK at least from the client
        assert s.packets_in >= 3 * total
        assert s.bytes_in >= total * (40 + len(b"ping\n"))
    dests = dest_by_name(lb, lab, svc)
    assert sum(d.stats.connections for d in dests.values()) == total
    for name, d in dests.items():
        n = expected.get(name, 0)
        assert d.stats.connections == n, (name, d.stats)
        assert d.stats.packets_in >= n and d.stats.packets_out >= n
        if n == 0:
            assert d.stats.packets_in == 0 and d.stats.bytes_in == 0
    return dests


def wait_no_active(lb, svc, timeout=5.0):
    ok = wait_for(lambda: all(d.active_connections == 0 for d in lb.destinations(svc)),
                  timeout=timeout)
    assert ok, lb.destinations(svc)


# -- schedulers ------------------------------------------------------------

@pytest.mark.parametrize("backend", ["netlink", "sockopt"])
def test_rr_spreads_tcp_exactly(lab, backend):
    with lab.ipvs(backend=backend) as lb:
        assert lb.backend == backend
        lb.flush()
        try:
            # A port of its own per backend: a destination deleted while
            # connections still use it waits in the kernel's trash, and
            # adding the same one again revives it with its old counters.
            port = {"netlink": 80, "sockopt": 88}[backend]
            svc, _ = make_service(lb, lab, port)
            before = lab.accepted
            seen = lab.run_tcp(lab.vip, port, 300)
            assert seen == {"rs1": 100, "rs2": 100, "rs3": 100}
            assert lab.accepted - before == seen  # the servers agree
            dests = check_stats(lb, lab, svc, seen)
            wait_no_active(lb, svc)
            dests = dest_by_name(lb, lab, svc)
            for name, d in dests.items():
                # closed connections linger in TIME_WAIT/CLOSE: inactive
                assert d.inactive_connections == 100, (name, d)
                assert d.persistent_connections == 0
        finally:
            lb.flush()


def test_wrr_weights_1_2_3(lb, lab):
    svc, _ = make_service(lb, lab, 81, "wrr", weights=(1, 2, 3))
    seen = lab.run_tcp(lab.vip, 81, 600)
    assert seen == {"rs1": 100, "rs2": 200, "rs3": 300}
    check_stats(lb, lab, svc, seen)


def test_weight_zero_drains(lb, lab):
    svc, dests = make_service(lb, lab, 82, "wrr")
    held = lab.hold(lab.vip, 82, 3)
    try:
        assert sorted(name for _, name in held) == ["rs1", "rs2", "rs3"]
        lb.update_destination(svc, dests[1].replace(weight=0))
        d = dest_by_name(lb, lab, svc)
        assert d["rs2"].weight == 0 and d["rs2"].active_connections == 1
        seen = lab.run_tcp(lab.vip, 82, 60)
        assert seen == {"rs1": 30, "rs3": 30}  # no new connection to rs2
        # ... but the established one to rs2 goes on working
        (s2,) = [s for s, name in held if name == "rs2"]
        assert lab.echo(s2, b"still here\n") == b"still here\n"
        d = dest_by_name(lb, lab, svc)
        assert d["rs2"].active_connections == 1
        # weight back: rs2 takes new connections again
        lb.update_destination(svc, dests[1])
        seen = lab.run_tcp(lab.vip, 82, 30)
        assert seen == {"rs1": 10, "rs2": 10, "rs3": 10}
    finally:
        for s, _ in held:
            s.close()
    check_stats(lb, lab, svc, {"rs1": 41, "rs2": 11, "rs3": 41})


def test_sh_keeps_each_client_on_one_server(lb, lab):
    svc, _ = make_service(lb, lab, 83, "sh")
    sources = [lab.client_address] + lab.client_extra
    where = {}
    for src in sources:
        seen = lab.run_tcp(lab.vip, 83, 10, source=src)
        assert len(seen) == 1 and sum(seen.values()) == 10, (src, seen)
        where[src] = next(iter(seen))
    # the hash is a function of the source: a second round lands the same
    for src in sources:
        assert lab.run_tcp(lab.vip, 83, 3, source=src) == {where[src]: 3}
    assert len(set(where.values())) >= 2, where  # 8 sources do spread
    expected = collections.Counter()
    for src in sources:
        expected[where[src]] += 13
    check_stats(lb, lab, svc, expected)


def test_persistent_service_keeps_client(lb, lab):
    svc, _ = make_service(lb, lab, 84, "rr", flags=ipvs.ServiceFlags.PERSISTENT,
                          timeout=60)
    got = lb.get_service(svc)
    assert got.flags & ipvs.ServiceFlags.PERSISTENT and got.timeout == 60
    first = lab.run_tcp(lab.vip, 84, 30)
    assert len(first) == 1 and sum(first.values()) == 30, first
    (server,) = first
    d = dest_by_name(lb, lab, svc)
    assert d[server].persistent_connections == 1  # one template
    assert sum(x.persistent_connections for x in d.values()) == 1
    # another client address (persistence netmask /32) gets its own template,
    # scheduled by rr to the next server, and sticks there too
    other = lab.run_tcp(lab.vip, 84, 20, source=lab.client_extra[0])
    assert len(other) == 1 and sum(other.values()) == 20 and server not in other
    # and the first client is still on its server
    assert lab.run_tcp(lab.vip, 84, 10) == {server: 10}
    d = dest_by_name(lb, lab, svc)
    assert sum(x.persistent_connections for x in d.values()) == 2
    check_stats(lb, lab, svc, {server: 40, next(iter(other)): 20})


def test_persistence_ends_after_its_timeout_udp(lb, lab):
    saved = lb.timeouts()
    lb.set_timeouts(udp=1)  # the connections end 1 s after their last packet
    try:
        svc, _ = make_service(lb, lab, 85, "rr", protocol="udp",
                              flags=ipvs.ServiceFlags.PERSISTENT, timeout=2)
        first = lab.run_udp(lab.vip, 85, 10)
        assert len(first) == 1 and sum(first.values()) == 10, first
        (server,) = first
        d = dest_by_name(lb, lab, svc)
        assert d[server].persistent_connections == 1
        # within the timeout the client stays
        assert lab.run_udp(lab.vip, 85, 5) == {server: 5}
        # then the template expires (its connections first, then itself)
        start = time.monotonic()
        gone = wait_for(lambda: sum(x.persistent_connections
                                    for x in lb.destinations(svc)) == 0,
                        timeout=20, interval=0.25)
        assert gone, lb.destinations(svc)
        assert time.monotonic() - start >= 1.0  # not before its timeout
        # a new template: rr picks the next server
        after = lab.run_udp(lab.vip, 85, 5)
        assert len(after) == 1 and server not in after, (server, after)
    finally:
        lb.set_timeouts(tcp=saved.tcp, tcp_fin=saved.tcp_fin, udp=saved.udp)
    assert lb.timeouts() == saved


# -- forwarding methods ------------------------------------------------------

@pytest.mark.parametrize("forward", [MASQ, ROUTE], ids=["masq", "route"])
def test_forwarding_carries_traffic(lb, lab, forward):
    port = lab.port  # direct routing cannot change the port
    svc, _ = make_service(lb, lab, port, "rr", forward=forward)
    before = lab.accepted_at
    seen = lab.run_tcp(lab.vip, port, 30)
    assert seen == {"rs1": 10, "rs2": 10, "rs3": 10}
    at = lab.accepted_at - before
    if forward == MASQ:
        # NAT: the server saw its own address as the destination
        want = {(n, a): 10 for n, a in zip(lab.names, lab.server_addresses)}
    else:
        # direct routing: the packet still went to the VIP (on the server's lo)
        want = {(n, lab.vip): 10 for n in lab.names}
    assert at == want
    check_stats(lb, lab, svc, seen)
    for d in lb.destinations(svc):
        assert d.forward == forward


def test_ipv6_rr_masq(lb, lab):
    svc, _ = make_service(lb, lab, 86, "rr", address=lab.vip6,
                          servers=lab.server_addresses6)
    seen = lab.run_tcp(lab.vip6, 86, 30)
    assert seen == {"rs1": 10, "rs2": 10, "rs3": 10}
    check_stats(lb, lab, svc, seen)


# -- UDP -------------------------------------------------------------------

def test_udp_rr_spreads_exactly(lb, lab):
    svc, _ = make_service(lb, lab, 53, "rr", protocol="udp")
    seen = lab.run_udp(lab.vip, 53, 300)
    assert seen == {"rs1": 100, "rs2": 100, "rs3": 100}
    dests = check_stats(lb, lab, svc, seen, proto="udp")
    for name, d in dests.items():
        # a UDP connection is never "active": each lingers as inactive
        assert d.active_connections == 0 and d.inactive_connections == 100, d


# -- counters and the connection table ---------------------------------------

def test_active_and_inactive_counters(lb, lab):
    svc, _ = make_service(lb, lab, 87, "rr")
    held = lab.hold(lab.vip, 87, 6)
    try:
        assert collections.Counter(n for _, n in held) == {"rs1": 2, "rs2": 2, "rs3": 2}
        for name, d in dest_by_name(lb, lab, svc).items():
            assert (d.active_connections, d.inactive_connections) == (2, 0), (name, d)
        # the connection table lists exactly these six, established
        conns = [c for c in lb.connections() if c.virtual_port == 87]
        assert len(conns) == 6
        ports = {s.getsockname()[1] for s, _ in held}
        assert {c.client_port for c in conns} == ports
        assert {str(c.client_address) for c in conns} == {lab.client_address}
        assert all(str(c.virtual_address) == lab.vip for c in conns)
        assert all(c.state == "ESTABLISHED" for c in conns), conns
        by_port = {s.getsockname()[1]: name for s, name in held}
        for c in conns:
            assert lab.by_address[str(c.destination_address)] == by_port[c.client_port]
            assert c.destination_port == lab.port
    finally:
        for s, _ in held:
            s.close()
    wait_no_active(lb, svc)
    for name, d in dest_by_name(lb, lab, svc).items():
        assert (d.active_connections, d.inactive_connections) == (0, 2), (name, d)
    check_stats(lb, lab, svc, {"rs1": 2, "rs2": 2, "rs3": 2})
    # zero() clears the counters (not the connection counts)
    lb.zero(svc)
    s = lb.get_service(svc).stats
    assert s.connections == 0 and s.packets_in == 0
    assert sum(d.inactive_connections for d in lb.destinations(svc)) == 6


def test_lab_left_nothing_in_the_start_namespace(lab):
    # the veth pairs went straight into the lab's namespaces
    names = os.listdir("/sys/class/net")
    assert not any(n.startswith(("c0", "s1", "s2", "s3")) for n in names), names

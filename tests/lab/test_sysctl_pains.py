"""The ``net.ipv4.vs.*`` sysctls against the IPVS pains most often reported
by kube-proxy and Docker swarm users, measured with real traffic in the lab.

Each test runs the same traffic twice, once without the setting (the pain
shows) and once with it (the pain is gone), and asserts both halves, so a
setting that made no difference fails the test.  The measured figures are
printed (``pytest -s`` or ``-rP`` shows them) and are the ones quoted in
docs/production.md:

- a UDP flow whose real server is deleted: black-holed for the rest of the
  UDP timeout without ``expire_nodest_conn``, moved at once with it (and a
  quiesced UDP real server keeps its flows whatever the setting);
- a TCP connection whose real server is deleted: hangs (15 min entry)
  without ``expire_nodest_conn``, reset at its next packet with it;
- a persistent client of a quiesced real server: kept there without
  ``expire_quiescent_template``, sent elsewhere with it;
- a client reusing a source port: under direct routing with conntrack on,
  the 1 s SYN drop of ``conn_reuse_mode`` 1 (and 2), gone with mode 0, which
  instead pins the port to its old real server; under NAT no drop;
- a director taking over established connections (the VIP moved to it):
  reset without ``sloppy_tcp``, carried on with it.

Run inside the sandbox:
    python -m ipvs.sandbox -- .venv/bin/python -m pytest -q -s \\
        tests/lab/test_sysctl_pains.py
"""

from __future__ import annotations

import socket
import struct
import time
from typing import Dict, List, Optional, Tuple

import pytest

import ipvs
from ipvs import netns
from ipvs.lab import Lab, wait_for
from tests.lab.harness import vs_sysctl

DEFAULTS = {"expire_nodest_conn": "0", "expire_quiescent_template": "0",
            "conn_reuse_mode": "1", "conntrack": "0", "sloppy_tcp": "0"}
UDP_PORT = 53
TCP_PORT = 80
PERSISTENT_PORT = 81
# the SYN retransmission of a dropped first SYN comes after 1 s (Linux's
# initial RTO); a connect that is not dropped takes milliseconds
SLOW, FAST = 0.9, 0.5


def conntrack_count(ns: str) -> int:
    with netns.enter(ns):
        with open("/proc/sys/net/netfilter/nf_conntrack_count") as f:
            return int(f.read())


def report(pain: str, **figures: object) -> None:
    print("MEASURED %s: %s" % (pain, ", ".join("%s=%s" % kv for kv in figures.items())))


@pytest.fixture(scope="module")
def lab():
    """One director, two real servers (NAT)."""
    with Lab(servers=2, lifetime=300) as lab:
        yield lab


@pytest.fixture(scope="module")
def lab2():
    """Two directors on one segment (direct routing: the real servers answer
    the client themselves, a director sees only the client's packets)."""
    with Lab(servers=2, directors=2, lifetime=300) as lab:
        yield lab


@pytest.fixture
def restore(lab, lab2):
    """Every test leaves the directors as it found them: defaults, empty
    tables, the VIPs on the first director."""
    yield
    for ns in [lab.director] + lab2.directors:
        for name, value in DEFAULTS.items():
            vs_sysctl(ns, name, value)
    for handle in (lab.ipvs(), lab2.ipvs(director=0), lab2.ipvs(director=1)):
        with handle as lb:
            lb.flush()
            lb.set_timeouts(tcp=900, tcp_fin=120, udp=300)
    lab2.move_vip(0)


def table(lab: Lab, service: ipvs.Service, forward: str, port: int,
          director: int = 0) -> None:
    """The director's table becomes ``service`` alone, with every real
    server (at ``port``) behind it, added in the same order everywhere."""
    with lab.ipvs(director=director) as lb:
        lb.flush()
        lb.add_service(service)
        for address in lab.server_addresses:
            lb.add_destination(service, ipvs.Destination(address, port, forward=forward))


def nat_table(lab: Lab, service: ipvs.Service) -> None:
    table(lab, service, "masq", lab.port)


def rip_of(lab: Lab, name: str) -> str:
    return lab.server_addresses[lab.names.index(name)]


def entries(lab: Lab, port: int, director: int = 0) -> List[ipvs.Connection]:
    with lab.ipvs(director=director) as lb:
        return [c for c in lb.connections() if c.client_port == port]


# ------------------------------------------------------------- (a) UDP

class UdpFlow:
    """One UDP flow from the client: a fixed source port, datagrams to the
    VIP, the answering server's name (None when nothing comes back)."""

    def __init__(self, lab: Lab, sport: int) -> None:
        with netns.enter(lab.client):
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((lab.client_address, sport))
        self.sock.connect((lab.vip, UDP_PORT))
        self.sport = sport

    def ask(self, wait: float = 0.5) -> Optional[str]:
        self.sock.settimeout(wait)
        self.sock.send(b"who\n")
        try:
            return self.sock.recv(256).decode().strip()
        except (socket.timeout, ConnectionRefusedError):
            return None

    def close(self) -> None:
        self.sock.close()


def udp_flow_after_delete(lab: Lab, setting: int, sport: int) -> Tuple[str, List[Optional[str]],
                                                                        List[ipvs.Connection]]:
    """A UDP flow answered by one server, that server deleted, four more
    datagrams: (first server, the answers, the flow's entries then)."""
    svc = ipvs.Service(address=lab.vip, port=UDP_PORT, protocol="udp", scheduler="rr")
    nat_table(lab, svc)
    vs_sysctl(lab.director, "expire_nodest_conn", setting)
    flow = UdpFlow(lab, sport)
    try:
        first = flow.ask(2.0)
        assert first in lab.names
        gone = rip_of(lab, first)
        with lab.ipvs() as lb:
            lb.delete_destination(svc, ipvs.Destination(gone, lab.port))
        if setting:
            # kernels 5.9+ expire a deleted server's entries in the
            # background, without waiting for a packet.  Waiting for it also
            # keeps that pending work from reaching into the next test: it
            # expires whatever points at an unavailable server when it runs.
            assert wait_for(lambda: not [c for c in entries(lab, sport)
                                         if str(c.destination_address) == gone], timeout=10)
        after = [flow.ask() for _ in range(4)]
        return first, after, entries(lab, sport)
    finally:
        flow.close()


def test_udp_flow_of_a_deleted_server_expire_nodest_conn(lab, restore):
    """(a) A real server deleted under an active UDP flow: without
    expire_nodest_conn its datagrams are dropped as long as the flow's entry
    lives (the UDP timeout, 300 s, not renewed by the dropped datagrams);
    with it the entry goes at once and the next datagram reaches another
    server."""
    first, after, left = udp_flow_after_delete(lab, 0, 21000)
    assert after == [None] * 4, after
    assert len(left) == 1 and str(left[0].destination_address) == rip_of(lab, first)
    assert left[0].expires > 200, left[0]       # of 300: still ~5 min to go
    report("udp deleted, expire_nodest_conn=0", answered="0/4 in 2 s",
           entry_expires_in="%d s" % left[0].expires)

    first, after, left = udp_flow_after_delete(lab, 1, 21001)
    other = [n for n in lab.names if n != first][0]
    assert after == [other] * 4, after
    assert [str(c.destination_address) for c in left] == [rip_of(lab, other)]
    report("udp deleted, expire_nodest_conn=1", answered="4/4 by the other server")


def test_udp_black_hole_lasts_the_udp_timeout(lab, restore):
    """(a) The black hole without expire_nodest_conn ends when the flow's
    entry expires: with the UDP timeout at 6 s, the flow is answered by the
    remaining server when the time the entry had left at the deletion has
    passed, not before."""
    with lab.ipvs() as lb:
        lb.set_timeouts(udp=6)
    svc = ipvs.Service(address=lab.vip, port=UDP_PORT, protocol="udp", scheduler="rr")
    nat_table(lab, svc)
    flow = UdpFlow(lab, 21002)
    try:
        first = flow.ask(2.0)
        assert first in lab.names
        with lab.ipvs() as lb:
            lb.delete_destination(svc, ipvs.Destination(rip_of(lab, first), lab.port))
        left = entries(lab, flow.sport)
        t0 = time.monotonic()
        assert len(left) == 1, left
        remaining = left[0].expires                 # whole seconds, rounded down
        got, dropped = None, 0
        while got is None and time.monotonic() - t0 < remaining + 15:
            got = flow.ask(0.25)
            dropped += got is None
        gap = time.monotonic() - t0
    finally:
        flow.close()
    assert got is not None and got != first
    assert dropped >= 1
    assert remaining - 1.5 <= gap < remaining + 10, (remaining, gap)
    report("udp deleted, udp timeout 6 s", entry_had="%d s" % remaining,
           black_hole="%.1f s" % gap, datagrams_lost=dropped)


def test_udp_flow_stays_on_a_quiesced_server_either_way(lab, restore):
    """(a) Weight 0 (quiesce) never moves an active UDP flow, with or without
    expire_nodest_conn: UDP has no 'new connection' packet for IPVS to
    reschedule.  Only deleting the real server (on_failure = "remove") moves
    it, with expire_nodest_conn = 1 (the test above)."""
    svc = ipvs.Service(address=lab.vip, port=UDP_PORT, protocol="udp", scheduler="rr")
    for setting, sport in ((0, 21010), (1, 21011)):
        nat_table(lab, svc)
        vs_sysctl(lab.director, "expire_nodest_conn", setting)
        flow = UdpFlow(lab, sport)
        try:
            first = flow.ask(2.0)
            with lab.ipvs() as lb:
                lb.update_destination(svc, ipvs.Destination(rip_of(lab, first), lab.port,
                                                             weight=0, forward="masq"))
            after = [flow.ask(2.0) for _ in range(3)]
        finally:
            flow.close()
        assert after == [first] * 3, (setting, after)
    report("udp quiesced", note="the flow stays on the weight-0 server with 0 and 1")


# ------------------------------------------------------------- (b) TCP

def test_tcp_connection_of_a_deleted_server_expire_nodest_conn(lab, restore):
    """(b) A real server deleted under an established TCP connection:
    without expire_nodest_conn the client's packets are dropped and the
    entry stays ESTABLISHED (900 s); with it the entry is removed at once
    and the client's next packet is answered by a reset."""
    svc = ipvs.Service(address=lab.vip, port=TCP_PORT, scheduler="rr")
    figures: Dict[int, str] = {}
    for setting in (0, 1):
        nat_table(lab, svc)
        vs_sysctl(lab.director, "expire_nodest_conn", setting)
        sock, name = lab.tcp_connect(lab.vip, TCP_PORT)
        try:
            assert lab.echo(sock, b"before\n") == b"before\n"
            sport = sock.getsockname()[1]
            with lab.ipvs() as lb:
                lb.delete_destination(svc, ipvs.Destination(rip_of(lab, name), lab.port))
            if setting == 0:
                sock.settimeout(2.0)
                with pytest.raises(socket.timeout):
                    lab.echo(sock, b"after\n")
                left = entries(lab, sport)
                assert len(left) == 1 and left[0].state == "ESTABLISHED"
                assert left[0].expires > 800, left[0]
                figures[0] = "no answer in 2 s, entry ESTABLISHED for %d s more" % left[0].expires
            else:
                # gone before any packet of the client (the kernel expires a
                # deleted server's entries in the background)
                assert wait_for(lambda: not entries(lab, sport), timeout=10)
                sock.settimeout(5.0)
                t0 = time.monotonic()
                with pytest.raises(ConnectionResetError):
                    lab.echo(sock, b"after\n")
                took = time.monotonic() - t0
                assert took < 2.0, took
                figures[1] = "entry gone, reset after %.3f s" % took
        finally:
            sock.close()
    report("tcp deleted", expire_nodest_conn_0=figures[0], expire_nodest_conn_1=figures[1])


def test_persistent_client_of_a_quiesced_server_expire_quiescent_template(lab, restore):
    """(b) Persistence: a client's template keeps sending its new connections
    to a real server set to weight 0 unless expire_quiescent_template is
    set, which expires the template at the next new connection."""
    svc = ipvs.Service(address=lab.vip, port=PERSISTENT_PORT, scheduler="rr", timeout=60)
    seen = {}
    for setting in (0, 1):
        nat_table(lab, svc)
        vs_sysctl(lab.director, "expire_quiescent_template", setting)
        before = lab.run_tcp(lab.vip, PERSISTENT_PORT, 2)
        assert len(before) == 1, before           # persistence: one server
        name = next(iter(before))
        with lab.ipvs() as lb:
            lb.update_destination(svc, ipvs.Destination(rip_of(lab, name), lab.port,
                                                        weight=0, forward="masq"))
        after = lab.run_tcp(lab.vip, PERSISTENT_PORT, 4)
        seen[setting] = after[name]
    assert seen == {0: 4, 1: 0}, seen
    report("persistent client, quiesced server",
           new_connections_to_it_without="%d/4" % seen[0], with_="%d/4" % seen[1])


# ------------------------------------------------------------- (c) port reuse

def connect_from(lab: Lab, sport: int, port: int, close: str = "rst") -> Tuple[float, str]:
    """Connect from the client's fixed source port ``sport``; the time the
    connect took and the server's name.  close="rst" aborts the connection
    (SO_LINGER 0: a reset, no TIME_WAIT on the client); close="fin" sends an
    HTTP request to the server's http_port, which closes first (the client
    keeps no TIME_WAIT either), as `curl --local-port` does."""
    with netns.enter(lab.client):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.settimeout(8.0)
        s.bind((lab.client_address, sport))
        t0 = time.monotonic()
        s.connect((lab.vip, port))
        took = time.monotonic() - t0
        if close == "rst":
            name = s.recv(64).decode().strip()     # the server's "NAME\n"
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        else:
            s.sendall(b"GET / HTTP/1.1\r\nHost: lab\r\nConnection: close\r\n\r\n")
            buf = b""
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                buf += chunk
            name = buf.rpartition(b"\r\n\r\n")[2].decode().strip()
        return took, name
    finally:
        s.close()


def reuse_round(lab: Lab, sport: int, port: int, close: str, tries: int = 3,
                director: int = 0) -> Tuple[List[float], List[str]]:
    """``tries`` connections from the same source port, each as soon as the
    previous one closed (once the director saw its end)."""
    times, names = [], []
    for _ in range(tries):
        took, name = connect_from(lab, sport, port, close)
        times.append(took)
        names.append(name)
        closed = ("CLOSE",) if close == "rst" else ("FIN_WAIT", "TIME_WAIT", "CLOSE")
        assert wait_for(lambda: all(c.state in closed
                                    for c in entries(lab, sport, director)), timeout=5)
    return times, names


def conntrack_in(lab: Lab, director: int, on: bool) -> None:
    """Conntrack for the director's namespace.  On a real host an iptables or
    nftables rule that uses conntrack does this; the sandbox has neither
    tool, so a NAT service on port 21 stands in: IPVS registers conntrack in
    its namespace for it (FTP under NAT needs it).  IPVS's own `conntrack`
    sysctl then keeps entries for the connections it forwards."""
    if on:
        ftp = ipvs.Service(address=lab.vip, port=21, scheduler="rr")
        with lab.ipvs(director=director) as lb:
            lb.add_service(ftp)
            lb.add_destination(ftp, ipvs.Destination(lab.server_addresses[0], 21,
                                                     forward="masq"))
    vs_sysctl(lab.directors[director], "conntrack", 1 if on else 0)


def test_port_reuse_under_direct_routing_conn_reuse_mode(lab2, restore):
    """(c) Direct routing, conntrack on in the director, a client reusing a
    source port right after its previous connection there ended:
    conn_reuse_mode 1 (the default) reschedules the new connection but drops
    its first SYN (the old conntrack entry cannot follow it to another real
    server), so the client waits for its 1 s retransmission; mode 0 connects
    at once but keeps the port on the old real server; with conntrack off
    mode 1 reschedules without the drop."""
    lab = lab2
    svc = ipvs.Service(address=lab.vip, port=lab.port, scheduler="rr")
    results = {}
    for label, ct, mode, sport in (("conntrack on, mode 1", True, 1, 32001),
                                   ("conntrack on, mode 0", True, 0, 32002),
                                   ("conntrack off, mode 1", False, 1, 32003)):
        table(lab, svc, "route", lab.port)
        conntrack_in(lab, 0, ct)
        vs_sysctl(lab.director, "conn_reuse_mode", mode)
        results[label] = reuse_round(lab, sport, lab.port, "rst")
        if ct:
            assert conntrack_count(lab.director) > 0      # conntrack was really on
        report("port reuse after a reset, DR, " + label,
               connect_s=["%.3f" % t for t in results[label][0]],
               servers=results[label][1])

    times, names = results["conntrack on, mode 1"]
    assert times[0] < FAST
    assert all(t >= SLOW for t in times[1:]), times        # the 1 s SYN drop
    assert names[1] != names[0] and names[2] != names[1]   # rescheduled (rr)

    times, names = results["conntrack on, mode 0"]
    assert all(t < FAST for t in times), times             # no drop ...
    assert len(set(names)) == 1, names                     # ... but no rescheduling

    times, names = results["conntrack off, mode 1"]
    assert all(t < FAST for t in times), times
    assert names[1] != names[0] and names[2] != names[1]


def test_port_reuse_after_fin_under_direct_routing_mode_2(lab2, restore):
    """(c) Under direct routing a director sees only the client's half of a
    close: the entry ends in FIN_WAIT, which mode 1 does not reschedule (the
    reused port stays on its server, at once) and mode 2 does, with the same
    1 s SYN drop when conntrack is on."""
    lab = lab2
    svc = ipvs.Service(address=lab.vip, port=lab.http_port, scheduler="rr")
    results = {}
    for mode, sport in ((1, 32011), (2, 32012)):
        table(lab, svc, "route", lab.http_port)
        conntrack_in(lab, 0, True)
        vs_sysctl(lab.director, "conn_reuse_mode", mode)
        results[mode] = reuse_round(lab, sport, lab.http_port, "fin")
        report("port reuse after a FIN, DR, conntrack on, mode %d" % mode,
               connect_s=["%.3f" % t for t in results[mode][0]], servers=results[mode][1])
    times, names = results[1]
    assert all(t < FAST for t in times) and len(set(names)) == 1, results[1]
    times, names = results[2]
    assert all(t >= SLOW for t in times[1:]), times
    assert names[1] != names[0] and names[2] != names[1]


def test_port_reuse_under_nat_has_no_drop(lab, restore):
    """(c) Under NAT the director sees both halves of every connection and
    the old conntrack entry is replaced at the reused port's SYN: mode 1
    reschedules without a drop even with conntrack on (kernels 5.9 and
    later), mode 0 keeps the port on its old server, even once that server
    is set to weight 0."""
    svc = ipvs.Service(address=lab.vip, port=TCP_PORT, scheduler="rr")
    results = {}
    for mode, sport in ((1, 32021), (0, 32022)):
        nat_table(lab, svc)
        conntrack_in(lab, 0, True)
        vs_sysctl(lab.director, "conn_reuse_mode", mode)
        results[mode] = reuse_round(lab, sport, TCP_PORT, "rst")
        # the port's server set to weight 0 (a health check failed, a pod
        # is terminating), then the port reused once more
        with lab.ipvs() as lb:
            lb.update_destination(svc, ipvs.Destination(rip_of(lab, results[mode][1][-1]),
                                                        lab.port, weight=0, forward="masq"))
        took, name = connect_from(lab, sport, TCP_PORT, "rst")
        results[mode] = (results[mode][0] + [took], results[mode][1] + [name])
        report("port reuse after a reset, NAT, conntrack on, mode %d" % mode,
               connect_s=["%.3f" % t for t in results[mode][0]], servers=results[mode][1],
               last="after its server was set to weight 0")
    assert conntrack_count(lab.director) > 0
    times, names = results[1]
    assert all(t < FAST for t in times), times
    assert names[1] != names[0] and names[2] != names[1]
    assert names[3] != names[2]                 # away from the quiesced server
    times, names = results[0]
    assert all(t < FAST for t in times), times
    assert len(set(names)) == 1, names          # even to the quiesced server


# ------------------------------------------------------------- (d) sloppy_tcp

def test_takeover_of_established_connections_sloppy_tcp(lab2, restore):
    """(d) The VIP moves to the second director (failover, or ECMP moving
    flows) and the client's established connections now reach a director
    that never saw their SYN: without sloppy_tcp it does not take them (its
    own stack answers with a reset); with sloppy_tcp it makes an entry from
    the mid-stream packet and forwards it (mh: same real server)."""
    lab = lab2
    svc = ipvs.Service(address=lab.vip, port=lab.port, scheduler="mh")
    for i in range(2):
        table(lab, svc, "route", lab.port, director=i)
    outcome = {}
    for setting in (0, 1):
        lab.move_vip(0)
        for ns in lab.directors:
            vs_sysctl(ns, "sloppy_tcp", setting)
        held = lab.hold(lab.vip, lab.port, 4)
        try:
            assert all(lab.echo(s, b"before\n") == b"before\n" for s, _ in held)
            lab.move_vip(1)
            ok = reset = 0
            for s, _name in held:
                s.settimeout(5.0)
                try:
                    ok += lab.echo(s, b"after\n") == b"after\n"
                except ConnectionResetError:
                    reset += 1
            outcome[setting] = (ok, reset)
            ports = {s.getsockname()[1] for s, _ in held}
            taken = len([c for c in entries_all(lab, 1)
                         if c.client_port in ports and c.state == "ESTABLISHED"])
            report("takeover by the second director, sloppy_tcp=%d" % setting,
                   echoed="%d/4" % ok, reset="%d/4" % reset,
                   established_entries_on_director2=taken)
            if setting:
                assert taken == 4
        finally:
            for s, _ in held:
                s.close()
    assert outcome == {0: (0, 4), 1: (4, 0)}, outcome


def entries_all(lab: Lab, director: int) -> List[ipvs.Connection]:
    with lab.ipvs(director=director) as lb:
        return lb.connections()

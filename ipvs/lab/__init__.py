"""``ipvs.lab``: a ready IPVS lab of network namespaces for end-to-end tests.

A client, a director and N real servers, each in its own network namespace,
joined by veth pairs; removed on ``close()``. Needs root (CAP_SYS_ADMIN,
CAP_NET_ADMIN), the ``ip`` binary (iproute2) and a kernel with veth and IPVS:
run it inside ``python -m ipvs.sandbox`` where the host has none. It never
touches the namespace it is started in beyond creating the veth pairs, which
go straight into the lab's namespaces.

Topology (``N`` real servers, default 3; private addresses, traffic never
leaves the lab's namespaces)::

    client    eth0 10.200.0.2/24, fd00:200::2/64  (+ 10.200.0.3 .. .9, for
       |           source-hashing tests); default via the director
    director  c0 10.200.0.1/24, fd00:200::1/64; the VIPs 10.200.0.100 and
       |         fd00:200::100; forwarding on
       |-- sK    10.200.K.1/24, fd00:200:K::1/64          (K = 1..N)
    server K  eth0 10.200.K.2/24, fd00:200:K::2/64, default via the director
              (so NAT works); lo also carries the VIPs (for direct routing),
              arp_ignore=1, arp_announce=2

``Lab(directors=2)``: two directors on one shared segment (a bridge in a
namespace of its own, ``switch``) with the client and the real servers;
direct routing, and the real servers' gateway is not a director (they answer
the client themselves)::

    client     eth0 10.200.0.2/24, fd00:200::2/64 (+ .3 .. .9)
    director1  eth0 10.200.0.11/24, fd00:200::11/64 (+ the VIPs while active)
    director2  eth0 10.200.0.12/24, fd00:200::12/64
    server K   eth0 10.200.0.(20+K)/24, fd00:200::(20+K)/64 (hex); the VIPs
               on lo, arp_ignore=1, arp_announce=2
       all on br0 in the ``switch`` namespace

The VIPs start on ``directors[0]``; ``move_vip(i)`` moves them to the i-th
director and renews the client's neighbour entries for them (what VRRP's
gratuitous ARP does), so that the client's next packets reach it.

Every real server ("rs1" .. "rsN") answers, on all its addresses:

- TCP on ``port`` (default 8000): ``NAME\\n`` at once, then an echo of what
  the client sends, until the client closes;
- UDP on ``port``: ``NAME\\n`` for each datagram (from the address it was
  sent to: the VIP under direct routing);
- HTTP on ``http_port`` (default 8080): ``GET /`` answers 200 with
  ``NAME\\n``, ``GET /health`` the status set by ``set_http_status`` (200 at
  start) with ``NAME STATUS\\n``; one request per connection.

``stop_server(name)`` makes a server behave as if its process died (TCP and
HTTP refused, UDP unanswered, its open connections closed);
``start_server(name)`` brings it back. The servers run in one thread of
this process (their sockets were made in the servers' namespaces; the
thread switches namespace only to make them again on ``start_server``) and
stop by themselves after ``lifetime`` seconds at the latest. ::

    import ipvs
    from ipvs.lab import Lab

    with Lab() as lab:
        with lab.ipvs() as lb:
            svc = ipvs.Service(address=lab.vip, port=80, scheduler="rr")
            lb.add_service(svc)
            for rip in lab.server_addresses:
                lb.add_destination(svc, ipvs.Destination(rip, lab.port,
                                                         forward=ipvs.Forward.MASQ))
        print(lab.run_tcp(lab.vip, 80, 30))    # Counter({'rs1': 10, ...})

Everything is removed on ``close()``, also when ``start()`` fails half way.

The package's rooms: ``topology.py`` (addresses, links, routes, sysctls),
``servers.py`` (the real servers' TCP, UDP and HTTP servers), ``client.py``
(the client's traffic: ``Lab``'s ``run_tcp``, ``hold``, ``run_udp``,
``http_get``...), ``router.py`` (``Lab(router=True)``: the router, BIRD and
ExaBGP); ``Lab`` itself (here) makes and removes the namespaces and drives
the others.
"""

from __future__ import annotations

import collections
import os
import secrets
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

import ipvs
from ipvs import netns
from ipvs.lab import topology
from ipvs.lab import client as _client
from ipvs.lab.servers import _Servers
from ipvs.lab.topology import (CLIENT_ADDRESS, CLIENT_ADDRESS6, CLIENT_EXTRA,  # noqa: F401
                               CLIENT_NET, CLIENT_NET6, VIP, VIP6, LabError, MissingTool,
                               _ip_batch)

__all__ = ["Lab", "LabError", "MissingTool", "wait_for"]


class Lab:
    """A client, a director and ``servers`` real servers in fresh network
    namespaces (see the module's docstring for the topology).

    ``Lab(servers=3, *, port=8000, http_port=8080, directors=1)``; also ``prefix`` (of
    the namespace names), ``lifetime`` (seconds after which the servers stop
    by themselves) and ``timeout`` (of each client operation). Use it as a
    context manager, or ``start()`` and ``close()``.

    ``router=True``: a router running BIRD 2 between the client and 1..8
    directors, which reach it over BGP (hold time ``bgp_hold`` seconds) and
    share the VIP by ECMP; see ipvs/lab/router.py and docs/lab.md.
    """

    def __init__(self, servers: int = 3, *, port: int = 8000, http_port: int = 8080,
                 directors: int = 1, prefix: str = "ipvslab", lifetime: float = 600.0,
                 timeout: float = 5.0, router: bool = False, bgp_hold: int = 3) -> None:
        if isinstance(servers, bool) or not isinstance(servers, int) or not 1 <= servers <= 50:
            raise ValueError("servers must be an int 1..50")
        if isinstance(directors, bool) or \
                directors not in (range(1, 9) if router else (1, 2)):
            raise ValueError("directors must be 1 or 2 (1..8 with router=True), got %r"
                             % (directors,))
        for what, value in (("port", port), ("http_port", http_port)):
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
                raise ValueError("%s must be an int 1..65535" % what)
        if port == http_port:
            raise ValueError("port and http_port must differ")
        if not lifetime > 0 or not timeout > 0:
            raise ValueError("lifetime and timeout must be > 0 seconds")
        tag = "%s-%d-%s" % (prefix, os.getpid(), secrets.token_hex(3))
        self.client: str = tag + "-client"
        if directors == 1:
            self.directors: List[str] = [tag + "-director"]
        else:
            self.directors = [tag + "-director%d" % (i + 1) for i in range(directors)]
        self.director: str = self.directors[0]
        #: the namespace of the segment's bridge (two-director labs), else None
        self.switch: Optional[str] = tag + "-switch" if directors > 1 else None
        #: index in ``directors`` of the director that holds the VIPs
        self.active_director = 0
        self.servers: List[str] = [tag + "-rs%d" % (i + 1) for i in range(servers)]
        self.names: List[str] = ["rs%d" % (i + 1) for i in range(servers)]
        self.port = port
        self.http_port = http_port
        self.lifetime = lifetime
        self.timeout = timeout
        self.vip = VIP
        self.vip6 = VIP6
        self.client_address = CLIENT_ADDRESS
        self.client_address6 = CLIENT_ADDRESS6
        self.client_extra = list(CLIENT_EXTRA)
        if directors == 1:
            self.server_addresses: List[str] = ["10.200.%d.2" % (i + 1) for i in range(servers)]
            self.server_addresses6: List[str] = ["fd00:200:%d::2" % (i + 1)
                                                 for i in range(servers)]
        else:
            # one segment: client, directors and real servers side by side
            self.server_addresses = ["%s.%d" % (CLIENT_NET, 21 + i) for i in range(servers)]
            self.server_addresses6 = ["fd00:200::%x" % (0x21 + i) for i in range(servers)]
        #: the directors' own addresses (two-director labs: on the segment)
        self.director_addresses: List[str] = (
            ["%s.1" % CLIENT_NET] if directors == 1
            else ["%s.%d" % (CLIENT_NET, 11 + i) for i in range(directors)])
        self.by_address: Dict[str, str] = dict(zip(self.server_addresses, self.names))
        self.by_address.update(zip(self.server_addresses6, self.names))
        self._created: List[str] = []
        self._next_udp_port = 20000
        self._next_tcp_port = 10000
        self._servers: Optional[_Servers] = None
        self.started = False
        #: the router's namespace (``Lab(router=True)``: see ipvs/lab/router.py), else None
        self.router: Optional[str] = None
        self._routed: Optional[Any] = None
        if router:
            from ipvs.lab import router as _router
            self._routed = _router.RouterLab(self, directors, bgp_hold)

    # ---------------------------------------------------------------- setup
    @property
    def namespaces(self) -> List[str]:
        """Every namespace of the lab (the order they are made in)."""
        extra = [ns for ns in (self.switch, self.router) if ns]
        return extra + [self.client] + self.directors + self.servers

    def start(self) -> "Lab":
        """Create the namespaces, links, addresses and the name servers."""
        if self.started:
            return self
        try:
            self._build()
            self._servers = _Servers(self.names, self.servers, self.port, self.http_port,
                                     self.lifetime)
        except BaseException:
            self.close()
            raise
        self.started = True
        return self

    def _build(self) -> None:
        for ns in self.namespaces:
            netns.create(ns)
            self._created.append(ns)
        if self._routed is not None:
            self._routed.build()
        elif self.switch:
            topology.build_segment(self)
        else:
            topology.build_star(self)

    def move_vip(self, index: int) -> None:
        """Two-director labs: move the VIPs to ``directors[index]`` so that
        the client's next packets reach it, as VRRP's gratuitous ARP would
        (the client's neighbour entries for the VIPs are renewed)."""
        if not self.switch or self.router:
            raise LabError("move_vip needs a lab with two directors (Lab(directors=2))")
        if isinstance(index, bool) or not isinstance(index, int) or \
                not 0 <= index < len(self.directors):
            raise ValueError("index must be 0..%d" % (len(self.directors) - 1))
        if not self.started:
            raise LabError("the lab is not started")
        if index == self.active_director:
            return
        _ip_batch(topology.vip_commands("del"), self.directors[self.active_director])
        _ip_batch(topology.vip_commands("add"), self.directors[index])
        self.active_director = index
        # what a gratuitous ARP / unsolicited NA does for the client: its next
        # packet to a VIP asks again and reaches the new holder
        _ip_batch(["neigh flush to %s dev eth0" % VIP, "neigh flush to %s dev eth0" % VIP6],
                  self.client)

    # -------------------------------------------------------------- router
    def _router_lab(self) -> Any:
        if self._routed is None:
            raise LabError("this lab has no router (Lab(..., router=True))")
        return self._routed

    @property
    def router_address(self) -> str:
        """The router's address on the directors' segment (its BGP address)."""
        return str(self._router_lab().router_address)

    def router_paths(self, vip: Optional[str] = None) -> List[str]:
        """The router's next hops for ``vip`` (default ``vip``) now: the
        directors' addresses that BGP gave it, sorted; [] for none."""
        return list(self._router_lab().router_paths(vip or self.vip))

    def cut_director(self, index: int) -> None:
        """Set director ``index``'s link to the segment down at the switch, as
        if its cable were cut: nobody is told, the router drops the path
        when the BGP hold time (``bgp_hold``) runs out."""
        self._router_lab().set_link(index, False)

    def restore_director(self, index: int) -> None:
        """Set director ``index``'s link up again (after ``cut_director``)."""
        self._router_lab().set_link(index, True)

    def start_director_bird(self, index: int, interface: Optional[str] = "ipvs-vips",
                            config_extra: str = "") -> None:
        """Run BIRD 2 in director ``index``: one BGP session to the router
        announcing every address on ``interface`` (``protocol direct``; the
        caller makes the interface) and the routes of any ``protocol
        static`` in ``config_extra`` (BIRD config text added at the end).
        Stopped by ``stop_speakers(index)`` or ``close()``."""
        self._router_lab().start_director_bird(index, interface, config_extra)

    def start_exabgp(self, index: int, process_argv: List[str]) -> None:
        """Run ExaBGP in director ``index``: the router as its neighbor, and
        ``process_argv`` as its API process (text encoder; it prints
        ``announce route VIP/32 next-hop self``...). Stopped by
        ``stop_speakers(index)`` or ``close()``."""
        self._router_lab().start_exabgp(index, process_argv)

    def stop_speakers(self, index: int) -> None:
        """Stop the BGP speaker the lab started in director ``index``
        (SIGTERM: BIRD closes its session, so the router withdraws at once)."""
        self._router_lab().stop_speakers(index)

    def birdc(self, command: str, director: Optional[int] = None) -> str:
        """``birdc COMMAND`` on the router's BIRD (or director ``director``'s)."""
        return str(self._router_lab().birdc(command, director))

    def speaker_log(self, index: int) -> str:
        """The end of the output of the speaker in director ``index``."""
        return str(self._router_lab().speaker_log(index))

    def close(self) -> None:
        """Stop the servers and remove every namespace the lab made."""
        if self._routed is not None:
            self._routed.close()  # the BGP speakers and the router's BIRD
        if self._servers is not None:
            self._servers.stop()
            self._servers = None
        errors = []
        for ns in reversed(self._created):
            try:
                netns.remove(ns)
            except FileNotFoundError:
                pass
            except OSError as e:  # keep going: remove the others
                errors.append(e)
        self._created = []
        self.started = False
        if errors:
            raise errors[0]

    def __enter__(self) -> "Lab":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "started" if self.started else "not started"
        return "<ipvs.lab.Lab %s director=%r servers=%r>" % (state, self.director, self.names)

    # ------------------------------------------------------------- servers
    def _live_servers(self) -> _Servers:
        if self._servers is None:
            raise LabError("the lab is not started")
        return self._servers

    def _server_name(self, name: str) -> str:
        if name not in self.names:
            raise ValueError("no real server %r in this lab (names: %s)"
                             % (name, ", ".join(self.names)))
        return name

    def stop_server(self, name: str) -> None:
        """Stop real server ``name`` ("rs1"...) as if its process died: its
        TCP and HTTP ports refuse connections, UDP to it gets no answer (an
        ICMP port unreachable), its open connections are closed. Stopping a
        stopped server does nothing."""
        srv = self._live_servers()
        name = self._server_name(name)
        srv.call(lambda: srv._shut(name))

    def start_server(self, name: str) -> None:
        """Start real server ``name`` again (TCP, UDP and HTTP, the HTTP
        status as last set). Starting a running server does nothing."""
        srv = self._live_servers()
        name = self._server_name(name)
        srv.call(lambda: None if srv.running(name) else srv._open(name))

    def server_running(self, name: str) -> bool:
        """Whether real server ``name`` is running (not stopped)."""
        srv = self._live_servers()
        name = self._server_name(name)
        return bool(srv.call(lambda: srv.running(name)))

    def set_http_status(self, name: str, status: int) -> None:
        """What ``GET /health`` on real server ``name`` answers from now on
        (an HTTP status code 100..599; 200 at start)."""
        if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
            raise ValueError("status must be an HTTP status code 100..599, got %r" % (status,))
        srv = self._live_servers()
        name = self._server_name(name)

        def put() -> None:
            srv.http_status[name] = status
        srv.call(put)

    # ---------------------------------------------------------------- use
    def ipvs(self, *, director: int = 0, **kwargs: Any) -> "ipvs.IPVS":
        """An ``ipvs.IPVS`` handle on the namespace of ``directors[director]``
        (keywords as IPVS takes them, ``netns`` aside). The caller closes it."""
        if isinstance(director, bool) or not isinstance(director, int) or \
                not 0 <= director < len(self.directors):
            raise ValueError("director must be 0..%d" % (len(self.directors) - 1))
        return ipvs.IPVS(netns=self.directors[director], **kwargs)

    @property
    def accepted(self) -> "collections.Counter[str]":
        """TCP connections each server has accepted since the lab started."""
        srv = self._live_servers()
        with srv.lock:
            return collections.Counter(srv.accepted)

    @property
    def accepted_at(self) -> "collections.Counter[Tuple[str, str]]":
        """Accepted TCP connections by (server name, local address): the
        local address is the VIP under direct routing, the server's own
        address under NAT (MASQ)."""
        srv = self._live_servers()
        with srv.lock:
            return collections.Counter(srv.local)

    # ------------------------------------------------------------- client
    # the client's traffic (client.py)
    tcp_connect = _client.tcp_connect
    run_tcp = _client.run_tcp
    hold = _client.hold
    echo = staticmethod(_client.echo)
    run_udp = _client.run_udp
    http_get = _client.http_get


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0,
             interval: float = 0.1) -> Any:
    """Poll ``predicate()`` until it returns a true value (returned) or
    ``timeout`` seconds pass (the last value is returned)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)

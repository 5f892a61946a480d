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
"""

from __future__ import annotations

import collections
import contextlib
import http
import ipaddress
import os
import queue
import secrets
import selectors
import socket
import subprocess
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

import ipvs
from ipvs import errors, netns

__all__ = ["Lab", "LabError", "MissingTool", "wait_for"]

CLIENT_NET = "10.200.0"
CLIENT_NET6 = "fd00:200:"
VIP = "10.200.0.100"
VIP6 = "fd00:200::100"
CLIENT_ADDRESS = "10.200.0.2"
CLIENT_ADDRESS6 = "fd00:200::2"
# extra client addresses (10.200.0.3 .. 10.200.0.9), for source-hashing tests
CLIENT_EXTRA = [f"{CLIENT_NET}.{i}" for i in range(3, 10)]


class LabError(RuntimeError):
    """Setting up the lab failed (an ``ip`` command, a sysctl...)."""


class MissingTool(LabError):
    """A program the lab needs is not installed: the message ends with the
    command that installs it (also in ``install``)."""

    def __init__(self, what: str, install: str) -> None:
        super().__init__("%s: %s" % (what, install))
        self.install = install


def _ip_batch(commands: List[str], ns: Optional[str] = None, timeout: float = 60) -> None:
    argv = ["ip"] + (["-n", ns] if ns else []) + ["-batch", "-"]
    try:
        proc = subprocess.run(argv, input="\n".join(commands) + "\n", text=True,
                              capture_output=True, timeout=timeout, check=False)
    except FileNotFoundError:
        raise LabError("the `ip` command (iproute2) is not installed") from None
    if proc.returncode != 0:
        raise LabError("`%s` failed (exit %d): %s" % (" ".join(argv), proc.returncode,
                                                     proc.stderr.strip()))


def _sysctl(ns: str, values: Dict[str, str]) -> None:
    """Write /proc/sys/net/... values inside namespace ``ns``.

    /proc/sys/net shows the namespace of the thread that opens the file, so
    this runs in a helper thread that enters ``ns`` (the caller never moves).
    """
    def work() -> None:
        with netns.enter(ns):
            for key, value in values.items():
                with open("/proc/sys/" + key.replace(".", "/"), "w") as f:
                    f.write(value)

    try:
        netns._in_thread(work)
    except Exception as e:
        raise LabError("sysctl in %s: %s" % (ns, e)) from e


_HTTP_MAX_REQUEST = 8192


class _Servers:
    """The name servers of all real servers (TCP, UDP and HTTP), served by
    one thread with a selector. Other threads ask for changes (stop, start)
    through ``call``: the selector is touched by its own thread only."""

    def __init__(self, names: List[str], namespaces: List[str], port: int, http_port: int,
                 lifetime: float) -> None:
        self.sel = selectors.DefaultSelector()
        self.stop_event = threading.Event()
        self.deadline = time.monotonic() + lifetime
        self.port = port
        self.http_port = http_port
        self.namespaces = dict(zip(names, namespaces))
        self.socks: Dict[str, List[socket.socket]] = {n: [] for n in names}
        self.conns: Dict[str, List[socket.socket]] = {n: [] for n in names}
        self.http_buf: Dict[socket.socket, bytes] = {}
        self.http_status: Dict[str, int] = {n: 200 for n in names}
        self.accepted: "collections.Counter[str]" = collections.Counter()
        self.local: "collections.Counter[Tuple[str, str]]" = collections.Counter()
        self.lock = threading.Lock()
        self.calls: "queue.Queue[Tuple[Callable[[], Any], Dict[str, Any], threading.Event]]" = \
            queue.Queue()
        self.wake_r, self.wake_w = socket.socketpair()
        self.wake_r.setblocking(False)
        self.sel.register(self.wake_r, selectors.EVENT_READ, ("wake", ""))
        try:
            for name in names:
                self._open(name)
        except BaseException:
            self._close_all()
            raise
        self.thread = threading.Thread(target=self._loop, name="ipvs-lab-servers",
                                       daemon=True)
        self.thread.start()

    # -- sockets of one server (called before the thread runs, or in it)
    def _open(self, name: str) -> None:
        """Bind the server's TCP, UDP and HTTP sockets in its namespace."""
        made: List[socket.socket] = []
        try:
            with netns.enter(self.namespaces[name]):
                # UDP answers come from the address asked: a socket on each
                # VIP (on lo, for direct routing) besides the wildcard one
                for family, kind, addr, port, role in (
                        (socket.AF_INET6, socket.SOCK_STREAM, "::", self.port, "listen"),
                        (socket.AF_INET6, socket.SOCK_DGRAM, "::", self.port, "udp"),
                        (socket.AF_INET, socket.SOCK_DGRAM, VIP, self.port, "udp"),
                        (socket.AF_INET6, socket.SOCK_DGRAM, VIP6, self.port, "udp"),
                        (socket.AF_INET6, socket.SOCK_STREAM, "::", self.http_port,
                         "http_listen")):
                    s = socket.socket(family, kind)
                    made.append(s)
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    if family == socket.AF_INET6:
                        # dual stack on "::": one socket answers IPv4 and IPv6
                        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY,
                                     0 if addr == "::" else 1)
                    s.bind((addr, port))
                    s.setblocking(False)
                    if kind == socket.SOCK_STREAM:
                        s.listen(512)
                    self.sel.register(s, selectors.EVENT_READ, (role, name))
        except BaseException:
            for s in made:
                with contextlib.suppress(KeyError, ValueError):
                    self.sel.unregister(s)
                s.close()
            raise
        self.socks[name] = made

    def _shut(self, name: str) -> None:
        """Close the server's sockets and connections: it refuses TCP and
        HTTP, and UDP to it gets an ICMP port unreachable."""
        for s in self.socks.get(name, []) + self.conns.get(name, []):
            self._drop(s)
        self.socks[name] = []
        self.conns[name] = []

    def running(self, name: str) -> bool:
        return bool(self.socks.get(name))

    def call(self, fn: Callable[[], Any], timeout: float = 10.0) -> Any:
        """Run ``fn`` in the server thread; its result or its exception."""
        if not self.thread.is_alive():
            raise LabError("the lab's servers have stopped (lifetime over or lab closed)")
        box: Dict[str, Any] = {}
        done = threading.Event()
        self.calls.put((fn, box, done))
        with contextlib.suppress(OSError):
            self.wake_w.send(b"x")
        if not done.wait(timeout):
            raise LabError("the lab's server thread did not answer in %.0f s" % timeout)
        if "error" in box:
            raise box["error"]
        return box.get("value")

    def _run_calls(self) -> None:
        with contextlib.suppress(OSError):
            while self.wake_r.recv(512):
                pass
        while True:
            try:
                fn, box, done = self.calls.get_nowait()
            except queue.Empty:
                return
            try:
                box["value"] = fn()
            except BaseException as e:  # handed to the caller
                box["error"] = e
            done.set()

    def _loop(self) -> None:
        try:
            while not self.stop_event.is_set() and time.monotonic() < self.deadline:
                for key, _ in self.sel.select(timeout=0.2):
                    kind, name = key.data
                    if kind == "wake":
                        self._run_calls()
                        continue
                    try:
                        self._handle(key.fileobj, kind, name)
                    except OSError:
                        if kind in ("conn", "http"):
                            self._drop(key.fileobj)
        finally:
            self._close_all()
            # callers still waiting get an answer
            while True:
                try:
                    _fn, box, done = self.calls.get_nowait()
                except queue.Empty:
                    break
                box["error"] = LabError("the lab's servers have stopped")
                done.set()

    def _accept(self, sock: socket.socket, kind: str, name: str) -> None:
        for _ in range(64):  # bounded: take what is queued now
            try:
                conn, _addr = sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            conn.setblocking(False)
            if kind == "http_listen":
                self.http_buf[conn] = b""
                self.conns[name].append(conn)
                self.sel.register(conn, selectors.EVENT_READ, ("http", name))
                continue
            try:
                local: Any = ipaddress.ip_address(conn.getsockname()[0])
                if local.version == 6 and local.ipv4_mapped:
                    local = local.ipv4_mapped
            except (OSError, ValueError):
                local = None
            with self.lock:
                self.accepted[name] += 1
                self.local[(name, str(local))] += 1
            try:
                conn.send((name + "\n").encode())
            except OSError:
                conn.close()
                continue
            self.conns[name].append(conn)
            self.sel.register(conn, selectors.EVENT_READ, ("conn", name))

    def _handle(self, sock: Any, kind: str, name: str) -> None:
        if kind in ("listen", "http_listen"):
            self._accept(sock, kind, name)
        elif kind == "udp":
            for _ in range(64):
                try:
                    _data, addr = sock.recvfrom(2048)
                except (BlockingIOError, InterruptedError):
                    return
                with contextlib.suppress(OSError):
                    sock.sendto((name + "\n").encode(), addr)
        elif kind == "http":
            self._http(sock, name)
        else:  # an accepted connection: echo until EOF
            data = sock.recv(65536)
            if not data:
                self._drop(sock)
            else:
                sock.send(data)

    def _http(self, sock: socket.socket, name: str) -> None:
        """One HTTP/1.x request per connection: GET / answers the server's
        name, GET /health the status set for it; then the connection closes."""
        data = sock.recv(4096)
        if not data:
            self._drop(sock)
            return
        buf = self.http_buf.get(sock, b"") + data
        if b"\r\n\r\n" not in buf and b"\n\n" not in buf:
            if len(buf) > _HTTP_MAX_REQUEST:
                self._drop(sock)
            else:
                self.http_buf[sock] = buf
            return
        line = buf.split(b"\n", 1)[0].decode("latin-1").strip().split()
        method, path = (line[0], line[1]) if len(line) >= 2 else ("", "")
        path = path.split("?", 1)[0]
        if method not in ("GET", "HEAD"):
            status, body = 405, "method not allowed\n"
        elif path == "/":
            status, body = 200, name + "\n"
        elif path == "/health":
            status = self.http_status[name]
            body = "%s %d\n" % (name, status)
        else:
            status, body = 404, "not found\n"
        try:
            phrase = http.HTTPStatus(status).phrase
        except ValueError:
            phrase = "Status %d" % status
        head = ("HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n"
                "X-Server: %s\r\nConnection: close\r\n\r\n"
                % (status, phrase, len(body), name))
        payload = (head + ("" if method == "HEAD" else body)).encode()
        with contextlib.suppress(OSError):
            sock.setblocking(True)
            sock.settimeout(1.0)
            sock.sendall(payload)
        self._drop(sock)

    def _drop(self, sock: Any) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self.sel.unregister(sock)
        self.http_buf.pop(sock, None)
        for lst in self.conns.values():
            if sock in lst:
                lst.remove(sock)
        with contextlib.suppress(OSError):
            sock.close()

    def _close_all(self) -> None:
        for key in list(self.sel.get_map().values()):
            with contextlib.suppress(OSError):
                key.fileobj.close()  # type: ignore[union-attr]
        for lst in list(self.socks.values()) + list(self.conns.values()):
            for s in lst:
                s.close()
        with contextlib.suppress(OSError):
            self.sel.close()
        self.wake_r.close()
        self.wake_w.close()

    def stop(self) -> None:
        self.stop_event.set()
        with contextlib.suppress(OSError):
            self.wake_w.send(b"x")
        if self.thread.is_alive():
            self.thread.join(10)


class Lab:
    """A client, a director and ``servers`` real servers in fresh network
    namespaces (see the module's docstring for the topology).

    ``Lab(servers=3, *, port=8000, http_port=8080, directors=1)``; also ``prefix`` (of
    the namespace names), ``lifetime`` (seconds after which the servers stop
    by themselves) and ``timeout`` (of each client operation). Use it as a
    context manager, or ``start()`` and ``close()``.

    ``router=True``: a router running BIRD 2 between the client and 1..8
    directors, which reach it over BGP (hold time ``bgp_hold`` seconds) and
    share the VIP by ECMP; see ipvs/_lab_router.py and docs/lab.md.
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
        #: the router's namespace (``Lab(router=True)``: see ipvs/_lab_router.py), else None
        self.router: Optional[str] = None
        self._routed: Optional[Any] = None
        if router:
            from ipvs import _lab_router
            self._routed = _lab_router.RouterLab(self, directors, bgp_hold)

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
            return
        if self.switch:
            self._build_segment()
            return
        links = ["link add c0 netns %s type veth peer name eth0 netns %s"
                 % (self.director, self.client)]
        for i, ns in enumerate(self.servers, 1):
            links.append("link add s%d netns %s type veth peer name eth0 netns %s"
                         % (i, self.director, ns))
        _ip_batch(links)

        v6 = "nodad"  # no duplicate address detection: addresses usable at once
        cmds = ["link set lo up", "link set eth0 up",
                "addr add %s/24 dev eth0" % CLIENT_ADDRESS,
                "addr add %s/64 dev eth0 %s" % (CLIENT_ADDRESS6, v6)]
        cmds += ["addr add %s/24 dev eth0" % a for a in self.client_extra]
        cmds += ["route add default via %s.1" % CLIENT_NET,
                 "route add default via fd00:200::1"]
        _ip_batch(cmds, self.client)

        cmds = ["link set lo up", "link set c0 up",
                "addr add %s.1/24 dev c0" % CLIENT_NET,
                "addr add fd00:200::1/64 dev c0 %s" % v6,
                "addr add %s/32 dev c0" % VIP,
                "addr add %s/128 dev c0 %s" % (VIP6, v6)]
        for i in range(1, len(self.servers) + 1):
            cmds += ["link set s%d up" % i,
                     "addr add 10.200.%d.1/24 dev s%d" % (i, i),
                     "addr add fd00:200:%d::1/64 dev s%d %s" % (i, i, v6)]
        _ip_batch(cmds, self.director)
        director_sysctls = {
            "net.ipv4.ip_forward": "1",
            "net.ipv6.conf.all.forwarding": "1",
        }
        # Direct routing here: the servers' replies (source = VIP) come back
        # through the director, their gateway; the VIP is local on the
        # director, so without accept_local it drops them as martians.
        for i in range(1, len(self.servers) + 1):
            director_sysctls["net.ipv4.conf.s%d.accept_local" % i] = "1"
        _sysctl(self.director, director_sysctls)

        for i, ns in enumerate(self.servers, 1):
            _ip_batch(["link set lo up", "link set eth0 up",
                       "addr add 10.200.%d.2/24 dev eth0" % i,
                       "addr add fd00:200:%d::2/64 dev eth0 %s" % (i, v6),
                       # the VIPs on lo, for direct routing (ROUTE)
                       "addr add %s/32 dev lo" % VIP,
                       "addr add %s/128 dev lo %s" % (VIP6, v6),
                       "route add default via 10.200.%d.1" % i,
                       "route add default via fd00:200:%d::1" % i], ns)
            _sysctl(ns, {"net.ipv4.conf.all.arp_ignore": "1",
                         "net.ipv4.conf.all.arp_announce": "2",
                         "net.ipv4.conf.eth0.arp_ignore": "1",
                         "net.ipv4.conf.eth0.arp_announce": "2"})

    def _build_segment(self) -> None:
        """Two directors: everything on one bridged segment, direct routing
        (the real servers answer the client themselves)."""
        sw = self.switch
        assert sw is not None
        _ip_batch(["link add br0 type bridge", "link set br0 up", "link set lo up"], sw)
        members = [self.client] + self.directors + self.servers
        _ip_batch(["link add eth0 netns %s type veth peer name p%d netns %s" % (ns, i, sw)
                   for i, ns in enumerate(members)])
        _ip_batch(["link set p%d master br0 up" % i for i in range(len(members))], sw)
        v6 = "nodad"
        cmds = ["link set lo up", "link set eth0 up",
                "addr add %s/24 dev eth0" % CLIENT_ADDRESS,
                "addr add %s/64 dev eth0 %s" % (CLIENT_ADDRESS6, v6)]
        cmds += ["addr add %s/24 dev eth0" % a for a in self.client_extra]
        _ip_batch(cmds, self.client)
        for i, ns in enumerate(self.directors):
            cmds = ["link set lo up", "link set eth0 up",
                    "addr add %s/24 dev eth0" % self.director_addresses[i],
                    "addr add fd00:200::%x/64 dev eth0 %s" % (0x11 + i, v6)]
            if i == self.active_director:
                cmds += self._vip_commands("add")
            _ip_batch(cmds, ns)
        for i, ns in enumerate(self.servers):
            _ip_batch(["link set lo up", "link set eth0 up",
                       "addr add %s/24 dev eth0" % self.server_addresses[i],
                       "addr add %s/64 dev eth0 %s" % (self.server_addresses6[i], v6),
                       "addr add %s/32 dev lo" % VIP,
                       "addr add %s/128 dev lo %s" % (VIP6, v6)], ns)
            _sysctl(ns, {"net.ipv4.conf.all.arp_ignore": "1",
                         "net.ipv4.conf.all.arp_announce": "2",
                         "net.ipv4.conf.eth0.arp_ignore": "1",
                         "net.ipv4.conf.eth0.arp_announce": "2"})

    @staticmethod
    def _vip_commands(verb: str) -> List[str]:
        return ["addr %s %s/32 dev eth0" % (verb, VIP),
                "addr %s %s/128 dev eth0%s" % (verb, VIP6, " nodad" if verb == "add" else "")]

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
        _ip_batch(self._vip_commands("del"), self.directors[self.active_director])
        _ip_batch(self._vip_commands("add"), self.directors[index])
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

    @staticmethod
    def _family(address: str) -> int:
        return socket.AF_INET6 if ":" in address else socket.AF_INET

    def _read_name(self, s: socket.socket) -> str:
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = s.recv(256)
            if not chunk:
                raise ConnectionError("connection closed before the server's name")
            buf += chunk
            if len(buf) > 256:
                raise ConnectionError("unexpected answer %r" % buf[:80])
        return buf.decode().strip()

    def _client_connect(self, address: str, port: int, source: Optional[str] = None,
                        source_port: int = 0) -> socket.socket:
        """A TCP socket from the client namespace, connected to address:port
        (closed again when the connect fails)."""
        family = self._family(address)
        with netns.enter(self.client):
            s = socket.socket(family, socket.SOCK_STREAM)
        try:
            s.settimeout(self.timeout)
            if source or source_port:
                anywhere = "::" if family == socket.AF_INET6 else "0.0.0.0"
                s.bind((source or anywhere, source_port))
            s.connect((address, port))
        except BaseException:
            s.close()
            raise
        return s

    def tcp_connect(self, address: str, port: int, source: Optional[str] = None,
                    source_port: int = 0) -> Tuple[socket.socket, str]:
        """Open a TCP connection from the client; returns (socket, server name).

        The socket is left open (see ``hold``); the caller closes it.
        """
        s = self._client_connect(address, port, source, source_port)
        try:
            name = self._read_name(s)
        except BaseException:
            s.close()
            raise
        return s, name

    def run_tcp(self, address: str, port: int, count: int,
                source: Optional[str] = None) -> "collections.Counter[str]":
        """``count`` TCP connections to address:port, one after the other.

        Each reads the server's name, sends a line, reads the echo and
        closes.  Returns a Counter of server names.
        """
        seen: "collections.Counter[str]" = collections.Counter()
        for _ in range(count):
            s, name = self.tcp_connect(address, port, source)
            try:
                s.sendall(b"ping\n")
                got = b""
                while len(got) < 5:
                    chunk = s.recv(64)
                    if not chunk:
                        raise ConnectionError("echo from %s cut short" % name)
                    got += chunk
            finally:
                s.close()
            seen[name] += 1
        return seen

    def hold(self, address: str, port: int, count: int,
             source: Optional[str] = None) -> List[Tuple[socket.socket, str]]:
        """Open ``count`` TCP connections and keep them open: (socket, name).

        Each from a source port of its own taken in turn from 10000..19999
        (below the kernel's ephemeral range), so that hashes over ports
        (ECMP's, ``sh``/``mh`` with their port flag) spread them."""
        held = []
        try:
            for _ in range(count):
                for attempt in range(50):
                    port_from = self._next_tcp_port
                    self._next_tcp_port = port_from + 1 if port_from < 19999 else 10000
                    try:
                        held.append(self.tcp_connect(address, port, source, port_from))
                        break
                    except OSError as e:  # a port still taken (TIME_WAIT): the next
                        if not errors.address_taken(e) or attempt == 49:
                            raise
        except BaseException:
            for s, _ in held:
                s.close()
            raise
        return held

    @staticmethod
    def echo(s: "socket.socket", data: bytes = b"hello\n") -> bytes:
        """Send ``data`` on a held connection and return the echo."""
        s.sendall(data)
        got = b""
        while len(got) < len(data):
            chunk = s.recv(len(data) - len(got))
            if not chunk:
                raise ConnectionError("connection closed")
            got += chunk
        return got

    def _udp_port(self) -> int:
        # below the default ephemeral range (32768-60999): never picked by
        # the kernel for anyone else
        port = self._next_udp_port
        self._next_udp_port = port + 1 if port < 32767 else 20000
        return port

    def run_udp(self, address: str, port: int, count: int,
                source: Optional[str] = None, retries: int = 2) -> "collections.Counter[str]":
        """``count`` UDP exchanges, each from a new socket and a source port
        not used before by this lab (so each is a new IPVS connection: a
        random ephemeral port could repeat one and join its connection).
        Returns a Counter of server names."""
        seen: "collections.Counter[str]" = collections.Counter()
        family = self._family(address)
        anywhere = "::" if family == socket.AF_INET6 else "0.0.0.0"
        for _ in range(count):
            with netns.enter(self.client):
                s = socket.socket(family, socket.SOCK_DGRAM)
            try:
                s.settimeout(self.timeout / (retries + 1))
                s.bind((source or anywhere, self._udp_port()))
                s.connect((address, port))  # replies only from the VIP
                for attempt in range(retries + 1):
                    s.send(b"who\n")
                    try:
                        data = s.recv(256)
                        break
                    except socket.timeout:
                        if attempt == retries:
                            raise
                seen[data.decode().strip()] += 1
            finally:
                s.close()
        return seen

    def http_get(self, address: str, path: str = "/", port: Optional[int] = None,
                 source: Optional[str] = None) -> Tuple[int, str]:
        """``GET path`` from the client namespace (default port
        ``http_port``): (status, body). Raises OSError when refused or
        unanswered within ``timeout``."""
        s = self._client_connect(address, self.http_port if port is None else port, source)
        try:
            s.sendall(("GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n"
                       % (path, address)).encode())
            buf = b""
            while len(buf) < 65536:
                chunk = s.recv(4096)
                if not chunk:
                    break
                buf += chunk
        finally:
            s.close()
        head, _, body = buf.partition(b"\r\n\r\n")
        parts = head.split(b"\r\n", 1)[0].split()
        if len(parts) < 2 or not parts[1].isdigit():
            raise ConnectionError("not an HTTP answer: %r" % buf[:80])
        return int(parts[1]), body.decode("utf-8", "replace")


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

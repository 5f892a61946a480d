"""A small IPVS lab: client, director and real servers in network namespaces.

Used by the kernel traffic tests and by ``examples/quickstart.py``.  Needs
root (CAP_SYS_ADMIN, CAP_NET_ADMIN), the ``ip`` binary (iproute2) and a kernel
with veth and IPVS -- run it inside ``python -m ipvs.sandbox`` where the host
has none.  It never touches the namespace it is started in beyond creating
the veth pairs that go straight into the lab's namespaces.

Topology (``N`` real servers, default 3; addresses are private, traffic never
leaves the lab's namespaces)::

    client  eth0 10.200.0.2/24, fd00:200::2/64  (+ .3 .. .9 for sh tests)
       |    default via the director
    director c0 10.200.0.1/24, fd00:200::1/64; VIP 10.200.0.100, fd00:200::100
       |-- sK  10.200.K.1/24, fd00:200:K::1/64      (K = 1..N)
    server K eth0 10.200.K.2/24, fd00:200:K::2/64, default via the director;
            lo also carries the VIPs (for direct routing), arp_ignore=1,
            arp_announce=2

Each server answers on ``port`` (TCP and UDP, default 8000, on all its
addresses): a TCP connection gets ``NAME\\n`` at once and then an echo of
whatever it sends until the client closes; a UDP datagram gets ``NAME\\n``.
The servers run in one thread of this process (their sockets were created in
the servers' namespaces; the thread itself never switches) and stop by
themselves after ``lifetime`` seconds at the latest.

    with Lab() as lab:
        with lab.ipvs() as lb:
            svc = ipvs.Service(address=lab.vip, port=80, scheduler="rr")
            lb.add_service(svc)
            for rip in lab.server_addresses:
                lb.add_destination(svc, ipvs.Destination(rip, lab.port,
                                                         forward=ipvs.Forward.MASQ))
        print(lab.run_tcp(lab.vip, 80, 30))    # Counter({'rs1': 10, ...})

Everything is removed on ``close()`` (also when ``start`` fails half way).
"""

from __future__ import annotations

import collections
import contextlib
import ipaddress
import os
import secrets
import selectors
import socket
import subprocess
import threading
import time
from typing import Dict, List, Optional, Tuple

from ipvs import netns

__all__ = ["Lab", "LabError"]

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
    box: Dict[str, BaseException] = {}

    def work() -> None:
        try:
            with netns.enter(ns):
                for key, value in values.items():
                    with open("/proc/sys/" + key.replace(".", "/"), "w") as f:
                        f.write(value)
        except BaseException as e:  # re-raised in the caller
            box["error"] = e

    t = threading.Thread(target=work, name="ipvs-lab-sysctl", daemon=True)
    t.start()
    t.join()
    if "error" in box:
        raise LabError("sysctl in %s: %s" % (ns, box["error"])) from box["error"]


class _Servers:
    """Name servers for all real servers, served by one thread with a selector."""

    def __init__(self, names: List[str], namespaces: List[str], port: int,
                 lifetime: float) -> None:
        self.sel = selectors.DefaultSelector()
        self.stop_event = threading.Event()
        self.deadline = time.monotonic() + lifetime
        self.socks: List[socket.socket] = []
        self.accepted: collections.Counter = collections.Counter()
        self.local: collections.Counter = collections.Counter()
        self.lock = threading.Lock()
        try:
            for name, ns in zip(names, namespaces):
                with netns.enter(ns):
                    for family, kind in ((socket.AF_INET6, socket.SOCK_STREAM),
                                         (socket.AF_INET6, socket.SOCK_DGRAM)):
                        s = socket.socket(family, kind)
                        self.socks.append(s)
                        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                        # dual stack: one socket answers IPv4 and IPv6
                        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
                        s.bind(("::", port))
                        s.setblocking(False)
                        if kind == socket.SOCK_STREAM:
                            s.listen(512)
                            self.sel.register(s, selectors.EVENT_READ, ("listen", name))
                        else:
                            self.sel.register(s, selectors.EVENT_READ, ("udp", name))
        except BaseException:
            self._close_all()
            raise
        self.thread = threading.Thread(target=self._loop, name="ipvs-lab-servers",
                                       daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        try:
            while not self.stop_event.is_set() and time.monotonic() < self.deadline:
                for key, _ in self.sel.select(timeout=0.2):
                    kind, name = key.data
                    try:
                        self._handle(key.fileobj, kind, name)
                    except OSError:
                        if kind == "conn":
                            self._drop(key.fileobj)
        finally:
            self._close_all()

    def _handle(self, sock, kind: str, name: str) -> None:
        reply = (name + "\n").encode()
        if kind == "listen":
            for _ in range(64):  # bounded: take what is queued now
                try:
                    conn, _addr = sock.accept()
                except (BlockingIOError, InterruptedError):
                    return
                try:
                    local = ipaddress.ip_address(conn.getsockname()[0])
                    if local.version == 6 and local.ipv4_mapped:
                        local = local.ipv4_mapped
                except (OSError, ValueError):
                    local = None
                with self.lock:
                    self.accepted[name] += 1
                    self.local[(name, str(local))] += 1
                conn.setblocking(False)
                try:
                    conn.send(reply)
                except OSError:
                    conn.close()
                    continue
                self.sel.register(conn, selectors.EVENT_READ, ("conn", name))
        elif kind == "udp":
            for _ in range(64):
                try:
                    _data, addr = sock.recvfrom(2048)
                except (BlockingIOError, InterruptedError):
                    return
                with contextlib.suppress(OSError):
                    sock.sendto(reply, addr)
        else:  # an accepted connection: echo until EOF
            data = sock.recv(65536)
            if not data:
                self._drop(sock)
            else:
                sock.send(data)

    def _drop(self, sock) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self.sel.unregister(sock)
        sock.close()

    def _close_all(self) -> None:
        for key in list(self.sel.get_map().values()):
            with contextlib.suppress(OSError):
                key.fileobj.close()
        for s in self.socks:
            s.close()
        with contextlib.suppress(OSError):
            self.sel.close()

    def stop(self) -> None:
        self.stop_event.set()
        if self.thread.is_alive():
            self.thread.join(10)


class Lab:
    """Client, director and ``servers`` real servers in fresh namespaces."""

    def __init__(self, servers: int = 3, *, port: int = 8000, prefix: str = "ipvslab",
                 lifetime: float = 600.0, timeout: float = 5.0) -> None:
        if not 1 <= servers <= 50:
            raise ValueError("servers must be 1..50")
        tag = "%s-%d-%s" % (prefix, os.getpid(), secrets.token_hex(3))
        self.client = tag + "-client"
        self.director = tag + "-director"
        self.servers = [tag + "-rs%d" % (i + 1) for i in range(servers)]
        self.names = ["rs%d" % (i + 1) for i in range(servers)]
        self.port = port
        self.lifetime = lifetime
        self.timeout = timeout
        self.vip = VIP
        self.vip6 = VIP6
        self.client_address = CLIENT_ADDRESS
        self.client_address6 = CLIENT_ADDRESS6
        self.client_extra = list(CLIENT_EXTRA)
        self.server_addresses = ["10.200.%d.2" % (i + 1) for i in range(servers)]
        self.server_addresses6 = ["fd00:200:%d::2" % (i + 1) for i in range(servers)]
        self.by_address = dict(zip(self.server_addresses, self.names))
        self.by_address.update(zip(self.server_addresses6, self.names))
        self._created: List[str] = []
        self._next_udp_port = 20000
        self._servers: Optional[_Servers] = None
        self.started = False

    # ---------------------------------------------------------------- setup
    @property
    def namespaces(self) -> List[str]:
        return [self.client, self.director] + self.servers

    def start(self) -> "Lab":
        """Create the namespaces, links, addresses and the name servers."""
        if self.started:
            return self
        try:
            self._build()
            self._servers = _Servers(self.names, self.servers, self.port, self.lifetime)
        except BaseException:
            self.close()
            raise
        self.started = True
        return self

    def _build(self) -> None:
        for ns in self.namespaces:
            netns.create(ns)
            self._created.append(ns)
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

    def close(self) -> None:
        """Stop the servers and remove every namespace the lab made."""
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

    def __exit__(self, *exc) -> None:
        self.close()

    # ---------------------------------------------------------------- use
    def ipvs(self, **kwargs):
        """An ``ipvs.IPVS`` handle on the director's namespace."""
        import ipvs
        return ipvs.IPVS(netns=self.director, **kwargs)

    @property
    def accepted(self) -> collections.Counter:
        """Connections each server has accepted since the lab started."""
        assert self._servers is not None, "lab not started"
        with self._servers.lock:
            return collections.Counter(self._servers.accepted)

    @property
    def accepted_at(self) -> collections.Counter:
        """Accepted TCP connections by (server name, local address): the
        local address is the VIP under direct routing, the server's own
        address under NAT (MASQ)."""
        assert self._servers is not None, "lab not started"
        with self._servers.lock:
            return collections.Counter(self._servers.local)

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

    def tcp_connect(self, address: str, port: int,
                    source: Optional[str] = None) -> Tuple[socket.socket, str]:
        """Open a TCP connection from the client; returns (socket, server name).

        The socket is left open (see ``hold``); the caller closes it.
        """
        with netns.enter(self.client):
            s = socket.socket(self._family(address), socket.SOCK_STREAM)
        try:
            s.settimeout(self.timeout)
            if source:
                s.bind((source, 0))
            s.connect((address, port))
            name = self._read_name(s)
        except BaseException:
            s.close()
            raise
        return s, name

    def run_tcp(self, address: str, port: int, count: int,
                source: Optional[str] = None) -> collections.Counter:
        """``count`` TCP connections to address:port, one after the other.

        Each reads the server's name, sends a line, reads the echo and
        closes.  Returns a Counter of server names.
        """
        seen: collections.Counter = collections.Counter()
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
        """Open ``count`` TCP connections and keep them open: (socket, name)."""
        held = []
        try:
            for _ in range(count):
                held.append(self.tcp_connect(address, port, source))
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
                source: Optional[str] = None, retries: int = 2) -> collections.Counter:
        """``count`` UDP exchanges, each from a new socket and a source port
        not used before by this lab (so each is a new IPVS connection: a
        random ephemeral port could repeat one and join its connection).
        Returns a Counter of server names."""
        seen: collections.Counter = collections.Counter()
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


def wait_for(predicate, timeout: float = 10.0, interval: float = 0.1):
    """Poll ``predicate()`` until it returns a true value (returned) or
    ``timeout`` seconds pass (the last value is returned)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)

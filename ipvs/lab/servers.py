"""The real servers' name servers (TCP, UDP and HTTP), served by one thread
of this process with a selector; their sockets are made in the servers'
namespaces."""

from __future__ import annotations

import collections
import contextlib
import http
import ipaddress
import queue
import selectors
import socket
import threading
import time
from typing import Any, Callable, Dict, List, Tuple

from ipvs import netns
from ipvs.lab.topology import VIP, VIP6, LabError

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

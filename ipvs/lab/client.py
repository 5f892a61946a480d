"""The lab's client: the traffic it makes from its namespace (TCP
connections held or run, UDP exchanges, HTTP requests).  The public
functions here are ``Lab``'s methods of the same names (``self`` is the
lab); they use its ``client`` (namespace), ``timeout`` and source-port
counters."""

from __future__ import annotations

import collections
import socket
from typing import List, Optional, Protocol, Tuple

from ipvs import errors, netns

__all__ = ["tcp_connect", "run_tcp", "hold", "echo", "run_udp", "http_get"]


class LabClient(Protocol):
    """What the functions here use of a ``Lab``."""

    client: str            # the client's namespace
    timeout: float         # of each operation, seconds
    http_port: int         # http_get's default port
    _next_tcp_port: int    # hold's next source port (10000..19999)
    _next_udp_port: int    # run_udp's next source port (20000..32767)


def _family(address: str) -> int:
    return socket.AF_INET6 if ":" in address else socket.AF_INET


def _read_name(s: socket.socket) -> str:
    buf = b""
    while not buf.endswith(b"\n"):
        chunk = s.recv(256)
        if not chunk:
            raise ConnectionError("connection closed before the server's name")
        buf += chunk
        if len(buf) > 256:
            raise ConnectionError("unexpected answer %r" % buf[:80])
    return buf.decode().strip()


def _client_connect(lab: LabClient, address: str, port: int, source: Optional[str] = None,
                    source_port: int = 0) -> socket.socket:
    """A TCP socket from the client namespace, connected to address:port
    (closed again when the connect fails)."""
    family = _family(address)
    with netns.enter(lab.client):
        s = socket.socket(family, socket.SOCK_STREAM)
    try:
        s.settimeout(lab.timeout)
        if source or source_port:
            anywhere = "::" if family == socket.AF_INET6 else "0.0.0.0"
            s.bind((source or anywhere, source_port))
        s.connect((address, port))
    except BaseException:
        s.close()
        raise
    return s


def tcp_connect(self: LabClient, address: str, port: int, source: Optional[str] = None,
                source_port: int = 0) -> Tuple[socket.socket, str]:
    """Open a TCP connection from the client; returns (socket, server name).

    The socket is left open (see ``hold``); the caller closes it.
    """
    s = _client_connect(self, address, port, source, source_port)
    try:
        name = _read_name(s)
    except BaseException:
        s.close()
        raise
    return s, name


def run_tcp(self: LabClient, address: str, port: int, count: int,
            source: Optional[str] = None) -> "collections.Counter[str]":
    """``count`` TCP connections to address:port, one after the other.

    Each reads the server's name, sends a line, reads the echo and
    closes.  Returns a Counter of server names.
    """
    seen: "collections.Counter[str]" = collections.Counter()
    for _ in range(count):
        s, name = tcp_connect(self, address, port, source)
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


def hold(self: LabClient, address: str, port: int, count: int,
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
                    held.append(tcp_connect(self, address, port, source, port_from))
                    break
                except OSError as e:  # a port still taken (TIME_WAIT): the next
                    if not errors.address_taken(e) or attempt == 49:
                        raise
    except BaseException:
        for s, _ in held:
            s.close()
        raise
    return held


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


def _udp_port(lab: LabClient) -> int:
    # below the default ephemeral range (32768-60999): never picked by
    # the kernel for anyone else
    port = lab._next_udp_port
    lab._next_udp_port = port + 1 if port < 32767 else 20000
    return port


def run_udp(self: LabClient, address: str, port: int, count: int,
            source: Optional[str] = None, retries: int = 2) -> "collections.Counter[str]":
    """``count`` UDP exchanges, each from a new socket and a source port
    not used before by this lab (so each is a new IPVS connection: a
    random ephemeral port could repeat one and join its connection).
    Returns a Counter of server names."""
    seen: "collections.Counter[str]" = collections.Counter()
    family = _family(address)
    anywhere = "::" if family == socket.AF_INET6 else "0.0.0.0"
    for _ in range(count):
        with netns.enter(self.client):
            s = socket.socket(family, socket.SOCK_DGRAM)
        try:
            s.settimeout(self.timeout / (retries + 1))
            s.bind((source or anywhere, _udp_port(self)))
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


def http_get(self: LabClient, address: str, path: str = "/", port: Optional[int] = None,
             source: Optional[str] = None) -> Tuple[int, str]:
    """``GET path`` from the client namespace (default port
    ``http_port``): (status, body). Raises OSError when refused or
    unanswered within ``timeout``."""
    s = _client_connect(self, address, self.http_port if port is None else port, source)
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

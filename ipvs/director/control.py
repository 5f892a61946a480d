"""The control API: HTTP/1.1 with JSON bodies over a UNIX socket, and the
client side used by the subcommands (``ipvs-director status`` ...).

The server is deliberately small: one request per connection (the answer
closes it), a request line and headers of at most 8 KiB, a body of at most
64 KiB given by Content-Length.  ``curl --unix-socket PATH http://x/status``
works.
"""

from __future__ import annotations

import asyncio
import grp
import json
import os
import socket
import stat
from typing import TYPE_CHECKING, Any, Dict, Optional, Tuple

from ipvs.director._aio import within
from ipvs.director.config import ConfigError
from ipvs.director.events import end_stream
from ipvs.director.operations import NoAnnounce, NotFound
from ipvs.director.sync import NoSync

if TYPE_CHECKING:
    from ipvs.director.core import Director

__all__ = ["ControlServer", "request", "MAX_HEAD", "MAX_BODY"]

MAX_HEAD = 8192
MAX_BODY = 65536
READ_TIMEOUT = 10.0
REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
           408: "Request Timeout", 409: "Conflict", 411: "Length Required", 413: "Payload Too Large",
           422: "Unprocessable Entity", 431: "Request Header Fields Too Large",
           500: "Internal Server Error"}


class _HTTPError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


async def _read_request(reader: asyncio.StreamReader) -> Tuple[str, str, Dict[str, str], bytes]:
    head = b""
    while b"\r\n\r\n" not in head and b"\n\n" not in head:
        chunk = await reader.read(MAX_HEAD + 1 - len(head))
        if not chunk:
            raise _HTTPError(400, "incomplete request")
        head += chunk
        if len(head) > MAX_HEAD and b"\r\n\r\n" not in head[:MAX_HEAD + 4]:
            raise _HTTPError(431, "request head above %d bytes" % MAX_HEAD)
    sep = b"\r\n\r\n" if b"\r\n\r\n" in head else b"\n\n"
    head, _, rest = head.partition(sep)
    lines = head.decode("latin-1").replace("\r\n", "\n").split("\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise _HTTPError(400, "bad request line")
    method, target = parts[0], parts[1]
    headers: Dict[str, str] = {}
    for line in lines[1:]:
        if ":" not in line:
            raise _HTTPError(400, "bad header line")
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    if "transfer-encoding" in headers:
        raise _HTTPError(411, "send the body with Content-Length")
    body = b""
    if "content-length" in headers:
        try:
            length = int(headers["content-length"])
        except ValueError:
            raise _HTTPError(400, "bad Content-Length") from None
        if length < 0:
            raise _HTTPError(400, "bad Content-Length")
        if length > MAX_BODY:
            raise _HTTPError(413, "body above %d bytes" % MAX_BODY)
        body = rest[:length]
        if len(body) < length:
            body += await reader.readexactly(length - len(body))
    return method, target, headers, body


def _response(status: int, body: Any, *, stream: bool = False) -> bytes:
    head = "HTTP/1.1 %d %s\r\n" % (status, REASONS.get(status, ""))
    if stream:
        return (head + "Content-Type: application/x-ndjson\r\nCache-Control: no-store\r\n"
                "Connection: close\r\n\r\n").encode()
    data = (json.dumps(body, indent=None) + "\n").encode()
    return (head + "Content-Type: application/json\r\nContent-Length: %d\r\n"
            "Connection: close\r\n\r\n" % len(data)).encode() + data


class ControlServer:
    """Serves the control API of a :class:`~ipvs.director.core.Director`."""

    def __init__(self, director: "Director", path: str, group: Any = None) -> None:
        self.director = director
        self.path = path
        self.group = group
        self.server: Optional[asyncio.AbstractServer] = None
        self._streams: Dict[asyncio.StreamWriter, Any] = {}

    async def start(self) -> None:
        if os.path.exists(self.path) or os.path.islink(self.path):
            st = os.lstat(self.path)
            if not stat.S_ISSOCK(st.st_mode):
                raise OSError("control path %s exists and is not a socket" % self.path)
            # a live director answers on it: refuse to steal its socket
            probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                probe.connect(self.path)
            except OSError:
                os.unlink(self.path)  # stale, from a director that died
            else:
                raise OSError("another director answers on %s" % self.path)
            finally:
                probe.close()
        old = os.umask(0o177)  # the socket is born 0600: never a window wider
        try:
            self.server = await asyncio.start_unix_server(self._client, path=self.path,
                                                          limit=MAX_HEAD * 2)
        finally:
            os.umask(old)
        os.chmod(self.path, 0o600)
        if self.group is not None:
            gid = self.group if isinstance(self.group, int) else grp.getgrnam(self.group).gr_gid
            os.chown(self.path, -1, gid)
            os.chmod(self.path, 0o660)

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            for w, q in list(self._streams.items()):
                end_stream(q)       # ends the stream's handler
                w.close()
            for _ in range(100):
                if not self._streams:
                    break
                await asyncio.sleep(0.01)
            try:
                await asyncio.wait_for(self.server.wait_closed(), 2.0)
            except asyncio.TimeoutError:
                pass
            self.server = None
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            try:
                method, target, headers, body = await within(_read_request(reader),
                                                             READ_TIMEOUT)
            except _HTTPError as e:
                writer.write(_response(e.status, {"error": str(e)}))
                return
            except asyncio.TimeoutError:
                writer.write(_response(408, {"error": "request not complete in time"}))
                return
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            path = target.split("?", 1)[0]
            if path == "/events" and method == "GET":
                await self._events(reader, writer)
                return
            status, answer = await self._dispatch(method, path, body)
            writer.write(_response(status, answer))
            await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def _events(self, reader: asyncio.StreamReader,
                      writer: asyncio.StreamWriter) -> None:
        """Stream the events until the director stops or the client goes
        away (noticed at once, not at the next event's write)."""
        q = self.director.subscribe()
        self._streams[writer] = q
        gone = asyncio.ensure_future(_until_eof(reader))
        get: "Optional[asyncio.Future[Any]]" = None
        try:
            writer.write(_response(200, None, stream=True))
            await writer.drain()
            while True:
                get = asyncio.ensure_future(q.get())
                await asyncio.wait((get, gone), return_when=asyncio.FIRST_COMPLETED)
                if not get.done():
                    return         # the client closed its end
                ev = get.result()
                if ev is None:
                    return
                writer.write((json.dumps(ev) + "\n").encode())
                await writer.drain()
        finally:
            for t in (get, gone):
                if t is not None:
                    t.cancel()
            self._streams.pop(writer, None)
            self.director.unsubscribe(q)

    async def _dispatch(self, method: str, path: str, body: bytes) -> Tuple[int, Any]:
        d = self.director
        routes = {"/status": "GET", "/drain": "POST", "/undrain": "POST", "/weight": "POST",
                  "/reload": "POST", "/events": "GET", "/role": "POST", "/announce": "GET",
                  "/maintenance": "POST"}
        if path not in routes:
            return 404, {"error": "no such endpoint %s" % path}
        if method != routes[path]:
            return 405, {"error": "%s wants %s" % (path, routes[path])}
        if path == "/status":
            return 200, d.status()
        if path == "/announce":
            try:
                return 200, d.announce_status()
            except NoAnnounce as e:
                return 409, {"error": str(e)}
        args: Dict[str, Any] = {}
        if body.strip():
            try:
                args = json.loads(body.decode("utf-8"))
            except (ValueError, UnicodeDecodeError) as e:
                return 400, {"error": "bad JSON: %s" % e}
            if not isinstance(args, dict):
                return 400, {"error": "the body must be a JSON object"}
        try:
            if path == "/reload":
                return 200, await d.reload()
            if path == "/role":
                if "state" not in args:
                    return 400, {"error": "missing 'state'"}
                if set(args) - {"state"}:
                    return 400, {"error": "unknown keys: %s"
                                 % ", ".join(sorted(set(args) - {"state"}))}
                return 200, await d.role(args["state"])
            if path == "/maintenance":
                if "on" not in args:
                    return 400, {"error": "missing 'on'"}
                if set(args) - {"on"}:
                    return 400, {"error": "unknown keys: %s"
                                 % ", ".join(sorted(set(args) - {"on"}))}
                return 200, await d.maintenance(args["on"])
            for k in ("service", "address", "port") + (("weight",) if path == "/weight" else ()):
                if k not in args:
                    return 400, {"error": "missing %r" % k}
            extra = set(args) - {"service", "address", "port", "weight"}
            if extra:
                return 400, {"error": "unknown keys: %s" % ", ".join(sorted(extra))}
            if path == "/drain":
                return 200, await d.drain(args["service"], args["address"], args["port"])
            if path == "/undrain":
                return 200, await d.undrain(args["service"], args["address"], args["port"])
            return 200, await d.set_weight(args["service"], args["address"], args["port"],
                                           args["weight"])
        except ConfigError as e:
            return 422, {"error": str(e), "line": e.line, "key": e.key}
        except NotFound as e:
            return 404, {"error": str(e)}
        except (NoSync, NoAnnounce) as e:
            return 409, {"error": str(e)}
        except ValueError as e:
            return 400, {"error": str(e)}
        except Exception as e:  # the kernel refused: the director keeps running
            return 500, {"error": "%s: %s" % (type(e).__name__, e)}


def request(path: str, method: str, target: str, body: Optional[Any] = None, *,
            timeout: Optional[float] = 30.0, stream: Any = None) -> Tuple[int, bytes]:
    """One request to the control socket at ``path``: (status, body bytes).
    With ``stream`` (a callable), body lines are given to it as they come
    (for /events) until the server closes."""
    data = b"" if body is None else json.dumps(body).encode()
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(path)
        s.sendall(("%s %s HTTP/1.1\r\nHost: ipvs-director\r\nContent-Type: application/json\r\n"
                   "Content-Length: %d\r\nConnection: close\r\n\r\n"
                   % (method, target, len(data))).encode() + data)
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = s.recv(65536)
            if not chunk:
                raise ConnectionError("the director closed the connection")
            buf += chunk
        head, _, rest = buf.partition(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        if stream is not None and status == 200:
            s.settimeout(None)
            pending = rest
            while True:
                while b"\n" in pending:
                    line, _, pending = pending.partition(b"\n")
                    stream(line)
                chunk = s.recv(65536)
                if not chunk:
                    return status, b""
                pending += chunk
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            rest += chunk
        return status, rest
    finally:
        s.close()


async def _until_eof(reader: asyncio.StreamReader) -> None:
    """Returns when the client closes its end (what it sends is ignored)."""
    try:
        while await reader.read(4096):
            pass
    except (ConnectionError, OSError):
        pass

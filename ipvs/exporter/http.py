"""HTTP: the collector's fast text on ``/metrics`` (then a registry's own
metrics), as a WSGI app served by prometheus_client's threaded WSGI server."""

from __future__ import annotations

import logging
import re
import socket
import threading
import zlib
from typing import Any, Callable, Dict, List, Tuple

from ipvs.exporter.collector import IPVSCollector

__all__ = ["make_wsgi_app", "serve", "parse_listen", "DEFAULT_LISTEN", "CONTENT_TYPE"]

log = logging.getLogger("ipvs.exporter")

#: where ``python -m ipvs.exporter`` listens unless ``--listen`` says otherwise
DEFAULT_LISTEN = "127.0.0.1:9587"

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def make_wsgi_app(collector: IPVSCollector, registry: Any = None,
                  path: str = "/metrics") -> Callable[..., Any]:
    """A WSGI app serving, on ``GET path``, the collector's `render()` text
    followed by ``registry``'s metrics (``prometheus_client``'s text format;
    e.g. the director's own metrics; None: nothing more).  Do not also
    register ``collector`` on ``registry``: its series would appear twice."""
    from prometheus_client.exposition import generate_latest

    def app(environ: Dict[str, Any], start_response: Callable[..., Any]) -> List[bytes]:
        method = environ.get("REQUEST_METHOD", "GET")
        where = environ.get("PATH_INFO", "/")
        if where == "/" and method in ("GET", "HEAD"):
            body = ('<html><head><title>IPVS exporter</title></head><body>'
                    '<a href="%s">%s</a></body></html>\n' % (path, path)).encode()
            start_response("200 OK", [("Content-Type", "text/html; charset=utf-8"),
                                      ("Content-Length", str(len(body)))])
            return [body if method == "GET" else b""]
        if where != path:
            body = b"not found; metrics are at " + path.encode() + b"\n"
            start_response("404 Not Found", [("Content-Type", "text/plain"),
                                             ("Content-Length", str(len(body)))])
            return [body]
        if method not in ("GET", "HEAD"):
            body = b"use GET\n"
            start_response("405 Method Not Allowed", [("Allow", "GET, HEAD"),
                                                      ("Content-Length", str(len(body)))])
            return [body]
        try:
            chunks = _encode_parts(collector.render_parts())
            if registry is not None:
                chunks.append(generate_latest(registry))
        except Exception as e:  # a bug of ours must not kill the server
            log.exception("rendering /metrics failed")
            body = ("# rendering failed: %s\n" % e).encode()
            start_response("500 Internal Server Error",
                           [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
            return [body]
        headers = [("Content-Type", CONTENT_TYPE)]
        if "gzip" in environ.get("HTTP_ACCEPT_ENCODING", ""):
            z = zlib.compressobj(1, zlib.DEFLATED, 31)     # 31: gzip framing
            chunks = [c for c in (z.compress(c) for c in chunks) if c] + [z.flush()]
            headers.append(("Content-Encoding", "gzip"))
        headers.append(("Content-Length", str(sum(len(c) for c in chunks))))
        start_response("200 OK", headers)
        return chunks if method == "GET" else [b""]

    return app


def _encode_parts(parts: List[str], small: int = 1 << 16) -> List[bytes]:
    """UTF-8 of ``parts``, small neighbours merged (fewer socket writes)."""
    out: List[bytes] = []
    pending: List[str] = []
    size = 0
    for p in parts:
        if len(p) >= small:
            if pending:
                out.append("".join(pending).encode("utf-8"))
                pending, size = [], 0
            out.append(p.encode("utf-8"))
        else:
            pending.append(p)
            size += len(p)
            if size >= small:
                out.append("".join(pending).encode("utf-8"))
                pending, size = [], 0
    if pending:
        out.append("".join(pending).encode("utf-8"))
    return out


def parse_listen(text: str) -> Tuple[str, int]:
    """``ADDR:PORT`` (``[::1]:9587`` for IPv6; ``:9587`` for every address)
    -> (addr, port)."""
    m = re.match(r"^(?:\[([^\]]+)\]|([^:\[\]]*)):(\d+)$", text.strip())
    if not m or not 0 <= int(m.group(3)) <= 65535:
        raise ValueError("--listen %r: expected ADDR:PORT, e.g. 127.0.0.1:9587 or [::1]:9587"
                         % text)
    addr = m.group(1) if m.group(1) is not None else m.group(2)
    return (addr or "0.0.0.0", int(m.group(3)))


def serve(collector: IPVSCollector, listen: str = DEFAULT_LISTEN, registry: Any = None,
          ) -> Tuple[Any, threading.Thread]:
    """Serve ``make_wsgi_app(collector, registry)`` on ``listen``
    (``ADDR:PORT``) with prometheus_client's thread-per-request WSGI server,
    in a daemon thread.  Returns (server, thread); ``server.shutdown()``
    stops it and ``server.server_address`` tells the bound port (give port
    0 to pick a free one)."""
    from wsgiref.simple_server import WSGIRequestHandler, make_server

    from prometheus_client.exposition import ThreadingWSGIServer

    addr, port = parse_listen(listen)
    family = socket.getaddrinfo(addr, port, type=socket.SOCK_STREAM,
                                flags=socket.AI_PASSIVE)[0][0]

    class _Server(ThreadingWSGIServer):
        address_family = family

    class _Quiet(WSGIRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            log.debug("%s " + format, self.address_string(), *args)

    httpd = make_server(addr, port, make_wsgi_app(collector, registry), _Server,
                        handler_class=_Quiet)
    t = threading.Thread(target=httpd.serve_forever, name="ipvs-exporter-http", daemon=True)
    t.start()
    return httpd, t

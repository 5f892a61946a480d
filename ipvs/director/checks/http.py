"""The HTTP and HTTPS checks (keepalived's HTTP_GET and SSL_GET): one GET
with ``Connection: close``, the status (and optionally the body's match or
MD5 digest) judged."""

from __future__ import annotations

import asyncio
import hashlib
import re
import ssl
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

from ipvs.director.checks.common import CheckType, Fail, close
from ipvs.director.config_errors import Path, _Ctx
from ipvs.director.config_records import CheckConfig
from ipvs.director.config_values import _regex, _type
from ipvs.director.convert_read import ConvertError, Statement

__all__ = ["HTTP", "HTTPS", "MAX_BODY"]

MAX_BODY = 1 << 20          # bytes of an HTTP answer read at most


def _status_set(ctx: _Ctx, path: Path, value: Any) -> Tuple[Tuple[int, int], ...]:
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    _type(ctx, path, value, str, 'a status code or ranges such as "200-299,302"')
    out = []
    for part in value.split(","):
        part = part.strip()
        m = re.fullmatch(r"(\d{3})(?:\s*-\s*(\d{3}))?", part)
        if not m:
            raise ctx.error(path, "bad status %r (codes and ranges: \"200-299,302\")" % part)
        lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
        if not 100 <= lo <= hi <= 599:
            raise ctx.error(path, "bad status range %r" % part)
        out.append((lo, hi))
    return tuple(out)


def _dechunk(data: bytes) -> bytes:
    out = b""
    while True:
        line, sep, data = data.partition(b"\r\n")
        if not sep:
            raise Fail("truncated chunked body")
        try:
            size = int(line.split(b";")[0].strip(), 16)
        except ValueError:
            raise Fail("bad chunk size") from None
        if size == 0:
            return out
        out += data[:size]
        data = data[size + 2:]


class Http(CheckType):
    name = "http"
    keys: Tuple[str, ...] = ("path", "host", "expect_status", "expect_body", "expect_digest")
    keepalived = ("HTTP_GET",)

    def params(self, ctx: _Ctx, path: Path, spec: Mapping[str, Any],
               p: Callable[[str], Path]) -> Dict[str, Any]:
        params: Dict[str, Any] = {}
        path_ = spec.get("path", "/")
        _type(ctx, p("path"), path_, str, "a path")
        if not path_.startswith("/") or any(c in path_ for c in " \r\n"):
            raise ctx.error(p("path"), "must start with / and hold no spaces or line breaks")
        params["path"] = path_
        if "host" in spec:
            host = _type(ctx, p("host"), spec["host"], str, "a host name")
            if any(c in host for c in " \r\n"):
                raise ctx.error(p("host"), "holds spaces or line breaks")
            params["host"] = host
        params["expect_status"] = _status_set(ctx, p("expect_status"),
                                              spec.get("expect_status", "200-299"))
        if "expect_body" in spec:
            params["expect_body"] = _regex(ctx, p("expect_body"), spec["expect_body"])
        if "expect_digest" in spec:
            dg = _type(ctx, p("expect_digest"), spec["expect_digest"], str, "an MD5 hex digest")
            if not re.fullmatch(r"[0-9a-fA-F]{32}", dg):
                raise ctx.error(p("expect_digest"), "must be 32 hex digits (MD5)")
            params["expect_digest"] = dg.lower()
        return params

    async def run(self, c: CheckConfig) -> Tuple[str, Optional[int]]:
        ctx = None
        server_hostname = None
        host = c.param("host") or (("[%s]" % c.address) if ":" in c.address else c.address)
        if c.type == "https":
            ctx = ssl.create_default_context()
            if not c.param("verify", False):
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
            server_hostname = c.param("sni") or c.param("host") or c.address
        reader, writer = await asyncio.open_connection(c.address, c.port, ssl=ctx,
                                                       server_hostname=server_hostname)
        try:
            default_port = 443 if c.type == "https" else 80
            host_header = host if c.param("host") or c.port == default_port \
                else "%s:%d" % (host, c.port)
            req = ("GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: ipvs-director\r\n"
                   "Accept: */*\r\nConnection: close\r\n\r\n" % (c.param("path", "/"), host_header))
            writer.write(req.encode("latin-1"))
            await writer.drain()
            data = b""
            while len(data) <= MAX_BODY:
                try:
                    chunk = await reader.read(65536)
                except (ssl.SSLError, ConnectionResetError):
                    if data:
                        break
                    raise
                if not chunk:
                    break
                data += chunk
        finally:
            await close(writer)
        return _judge(c, data), None

    # ------------------------------------------------------------ keepalived.conf
    def convert_keyword(self, conv: Any, s: Statement, c: Dict[str, Any],
                        d: Dict[str, Any]) -> bool:
        if s.keyword == "url":
            d.setdefault("urls", []).append(s)
            return True
        return False

    def convert_retry_delay(self, interval: float) -> float:
        return 3

    def convert_finish(self, conv: Any, st: Statement, c: Dict[str, Any],
                       d: Dict[str, Any], rweight: int) -> List[Dict[str, Any]]:
        if "host" in d:
            c["host"] = d["host"]
        if d.get("sni") and self.name == "https":
            if "host" in d:
                c["sni"] = d["host"]
            else:
                conv.skip(next(s for s in st.block or [] if s.keyword == "enable_sni"),
                          "no virtualhost to send as the server name")
        urls = d.get("urls", [])
        if not urls:
            return [c]
        return [_url(conv, u, dict(c)) for u in urls]


class Https(Http):
    name = "https"
    keys: Tuple[str, ...] = Http.keys + ("sni", "verify")
    keepalived = ("SSL_GET",)

    def params(self, ctx: _Ctx, path: Path, spec: Mapping[str, Any],
               p: Callable[[str], Path]) -> Dict[str, Any]:
        params = super().params(ctx, path, spec, p)
        if "sni" in spec:
            params["sni"] = _type(ctx, p("sni"), spec["sni"], str, "a server name")
        params["verify"] = _type(ctx, p("verify"), spec.get("verify", False), bool,
                                 "true or false")
        return params

    def convert_keyword(self, conv: Any, s: Statement, c: Dict[str, Any],
                        d: Dict[str, Any]) -> bool:
        if s.keyword == "enable_sni":
            d["sni"] = True
            return True
        return super().convert_keyword(conv, s, c, d)


def _judge(c: CheckConfig, data: bytes) -> str:
    """The message of an answer that passes the check's tests (Fail: one
    does not)."""
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        raise Fail("no complete HTTP answer (%d bytes)" % len(data))
    lines = head.split(b"\r\n")
    m = re.match(rb"HTTP/\d\.\d (\d{3})", lines[0])
    if not m:
        raise Fail("not an HTTP status line: %r" % lines[0][:60])
    status = int(m.group(1))
    headers = {}
    for ln in lines[1:]:
        k, _, v = ln.partition(b":")
        headers[k.strip().lower()] = v.strip()
    if b"chunked" in headers.get(b"transfer-encoding", b"").lower():
        body = _dechunk(body)
    elif b"content-length" in headers:
        try:
            body = body[:int(headers[b"content-length"])]
        except ValueError:
            pass
    if not any(lo <= status <= hi for lo, hi in c.param("expect_status", ((200, 299),))):
        raise Fail("HTTP status %d" % status)
    if c.param("expect_body") is not None:
        if not re.search(c.param("expect_body").encode("latin-1"), body):
            raise Fail("HTTP %d, body does not match %r" % (status, c.param("expect_body")))
    if c.param("expect_digest") is not None:
        digest = hashlib.md5(body).hexdigest()
        if digest != c.param("expect_digest"):
            raise Fail("HTTP %d, body digest %s" % (status, digest))
    return "HTTP %d" % status


def _url(conv: Any, u: Statement, cu: Dict[str, Any]) -> Dict[str, Any]:
    """The check of one ``url`` block (its path, digest, status codes,
    virtual host and regex over the checker's check ``cu``)."""
    for s in u.block or []:
        k = s.keyword
        if k == "path":
            cu["path"] = conv.arg(s)
        elif k == "digest":
            dg = conv.arg(s)
            if not re.fullmatch(r"[0-9a-fA-F]{32}", dg):
                raise ConvertError("digest: not an MD5 hex digest: %r" % dg,
                                   s.filename, s.line)
            cu["expect_digest"] = dg.lower()
        elif k == "status_code":
            codes = []
            for w in s.args:
                if not re.fullmatch(r"\d{3}(-\d{3})?", w):
                    raise ConvertError("status_code: bad code or range %r" % w,
                                       s.filename, s.line)
                codes.append(w)
            if not codes:
                raise ConvertError("status_code needs a value", s.filename, s.line)
            cu["expect_status"] = ",".join(codes)
        elif k == "virtualhost":
            cu["host"] = conv.arg(s)
            if "sni" in cu:
                cu["sni"] = cu["host"]
        elif k == "regex":
            cu["expect_body"] = conv.arg(s)
            conv.warn(s, "a PCRE2 pattern taken as a Python regular expression: "
                         "check that it means the same")
        else:
            conv.skip(s, "unknown or unsupported in url (no regex_no_match, "
                         "regex options or offsets)")
    return cu


HTTP = Http()
HTTPS = Https()

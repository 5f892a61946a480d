"""The UDP check (keepalived's UDP_CHECK): a datagram sent, an answer
awaited (and optionally matched)."""

from __future__ import annotations

import re
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

from ipvs.director.checks.common import CheckType, Fail, exchange
from ipvs.director.config_errors import Path, _Ctx
from ipvs.director.config_records import CheckConfig
from ipvs.director.config_values import _regex, _type
from ipvs.director.convert_read import ConvertError, Statement

__all__ = ["CHECK"]


class Udp(CheckType):
    name = "udp"
    keys = ("send", "expect")
    keepalived = ("UDP_CHECK",)

    def params(self, ctx: _Ctx, path: Path, spec: Mapping[str, Any],
               p: Callable[[str], Path]) -> Dict[str, Any]:
        params: Dict[str, Any] = {}
        send = _type(ctx, p("send"), spec.get("send", ""), str, "a string")
        params["send"] = send
        if "expect" in spec:
            params["expect"] = _regex(ctx, p("expect"), spec["expect"])
        return params

    async def run(self, c: CheckConfig) -> Tuple[str, Optional[int]]:
        data = await exchange(c, c.param("send", "").encode("utf-8"))
        expect = c.param("expect")
        if expect is not None and not re.search(expect.encode("utf-8"), data):
            raise Fail("answer %r does not match %r" % (data[:60], expect))
        return "answered %d bytes" % len(data), None

    # ------------------------------------------------------------ keepalived.conf
    def convert_keyword(self, conv: Any, s: Statement, c: Dict[str, Any],
                        d: Dict[str, Any]) -> bool:
        k = s.keyword
        if k == "payload":
            data = bytes(int(x, 16) for x in _hex_pairs(s, " ".join(s.args)))
            try:
                c["send"] = data.decode("ascii")
            except UnicodeDecodeError:
                conv.skip(s, "the director's UDP check sends text; this payload is not ASCII")
        elif k == "require_reply":
            d["require_reply"] = True
            if s.args:
                rx = _hex_regex(conv, s, "".join(s.args))
                if rx is not None:
                    c["expect"] = rx
        elif k in ("min_reply_length", "max_reply_length"):
            conv.skip(s, "reply lengths are not checked; use require_reply")
        else:
            return False
        return True

    def convert_finish(self, conv: Any, st: Statement, c: Dict[str, Any],
                       d: Dict[str, Any], rweight: int) -> List[Dict[str, Any]]:
        if not d.get("require_reply"):
            conv.warn(st, "without require_reply keepalived counts silence as success; "
                          "the director's UDP check always waits for an answer")
        return [c]


def _hex_pairs(st: Statement, spec: str) -> List[str]:
    # keepalived's free format: whitespace separates groups, an odd group
    # ends with a single digit byte
    out: List[str] = []
    for group in spec.split():
        if not re.fullmatch(r"[0-9A-Fa-fXx]+", group):
            raise ConvertError("%s: not hex: %r" % (st.keyword, group), st.filename, st.line)
        for i in range(0, len(group), 2):
            out.append(group[i:i + 2])
    return out


def _hex_regex(conv: Any, st: Statement, spec: str) -> Optional[str]:
    rx = "^"
    for pair in _hex_pairs(st, spec):
        if "x" in pair.lower():
            conv.skip(st, "wildcard nibbles (X) are not supported; "
                          "the reply is not compared")
            return None
        b = int(pair, 16)
        if b >= 0x80:
            conv.skip(st, "the director's UDP check matches text; this reply is not ASCII")
            return None
        rx += re.escape(chr(b))
    return rx


CHECK = Udp()

"""The DNS check (keepalived's DNS_CHECK): one query over UDP, the answer's
rcode judged."""

from __future__ import annotations

import secrets
import struct
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

from ipvs.director.checks.common import CheckType, Fail, exchange
from ipvs.director.config_errors import Path, _Ctx
from ipvs.director.config_records import CheckConfig
from ipvs.director.config_values import _integer, _type
from ipvs.director.convert_read import Statement

__all__ = ["CHECK", "dns_query", "DNS_QTYPES", "DNS_RCODES"]

DNS_QTYPES = {"A": 1, "NS": 2, "CNAME": 5, "SOA": 6, "PTR": 12, "MX": 15, "TXT": 16,
              "AAAA": 28, "SRV": 33, "ANY": 255}
DNS_RCODES = {"NOERROR": 0, "FORMERR": 1, "SERVFAIL": 2, "NXDOMAIN": 3, "NOTIMP": 4,
              "REFUSED": 5}


def dns_query(name: str, qtype: int, ident: int) -> bytes:
    """A DNS query message (RFC 1035 section 4): header with recursion
    desired, one question of class IN."""
    header = struct.pack("!HHHHHH", ident, 0x0100, 1, 0, 0, 0)
    qname = b""
    for label in name.rstrip(".").split("."):
        if label:
            raw = label.encode("idna") if not label.isascii() else label.encode("ascii")
            qname += bytes([len(raw)]) + raw
    return header + qname + b"\x00" + struct.pack("!HH", qtype, 1)


class Dns(CheckType):
    name = "dns"
    keys = ("name", "qtype", "expect_rcode")
    keepalived = ("DNS_CHECK",)
    default_retry = 3

    def params(self, ctx: _Ctx, path: Path, spec: Mapping[str, Any],
               p: Callable[[str], Path]) -> Dict[str, Any]:
        params: Dict[str, Any] = {}
        name = _type(ctx, p("name"), spec.get("name", "."), str, "a domain name")
        labels = [x for x in name.rstrip(".").split(".") if x] if name != "." else []
        if any(len(x.encode()) > 63 for x in labels) or len(name) > 253:
            raise ctx.error(p("name"), "not a valid domain name")
        params["name"] = name
        qtype = spec.get("qtype", "A")
        if isinstance(qtype, str):
            if qtype.upper() not in DNS_QTYPES:
                raise ctx.error(p("qtype"), "unknown type %r (one of %s, or a number)"
                                % (qtype, ", ".join(DNS_QTYPES)))
            qtype = DNS_QTYPES[qtype.upper()]
        params["qtype"] = _integer(ctx, p("qtype"), qtype, 1, 65535)
        rcode = spec.get("expect_rcode", "NOERROR")
        if isinstance(rcode, str):
            if rcode.upper() not in DNS_RCODES:
                raise ctx.error(p("expect_rcode"), "unknown rcode %r" % rcode)
            rcode = DNS_RCODES[rcode.upper()]
        params["expect_rcode"] = _integer(ctx, p("expect_rcode"), rcode, 0, 15)
        return params

    async def run(self, c: CheckConfig) -> Tuple[str, Optional[int]]:
        ident = secrets.randbelow(65536)
        query = dns_query(c.param("name", "."), c.param("qtype", 1), ident)

        def ours(data: bytes) -> bool:
            return len(data) >= 12 and struct.unpack("!H", data[:2])[0] == ident \
                and bool(data[2] & 0x80)
        data = await exchange(c, query, ours)
        rcode = data[3] & 0x0F
        if rcode != c.param("expect_rcode", 0):
            raise Fail("DNS rcode %d, expected %d" % (rcode, c.param("expect_rcode", 0)))
        answers = struct.unpack("!H", data[6:8])[0]
        return "DNS rcode %d, %d answers" % (rcode, answers), None

    # ------------------------------------------------------------ keepalived.conf
    def convert_keyword(self, conv: Any, s: Statement, c: Dict[str, Any],
                        d: Dict[str, Any]) -> bool:
        if s.keyword == "type":
            c["qtype"] = conv.arg(s).upper()
        elif s.keyword == "name":
            c["name"] = conv.arg(s)
        else:
            return False
        return True

    def convert_retry_delay(self, interval: float) -> float:
        return interval

    def convert_finish(self, conv: Any, st: Statement, c: Dict[str, Any],
                       d: Dict[str, Any], rweight: int) -> List[Dict[str, Any]]:
        c.setdefault("qtype", "SOA")      # keepalived's default query type
        return [c]


CHECK = Dns()

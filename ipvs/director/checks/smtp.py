"""The SMTP check (keepalived's SMTP_CHECK): the banner (220), EHLO (250),
QUIT."""

from __future__ import annotations

import asyncio
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

from ipvs.director.checks.common import CheckType, Fail, close
from ipvs.director.config_errors import Path, _Ctx
from ipvs.director.config_records import CheckConfig
from ipvs.director.config_values import _type
from ipvs.director.convert_read import Statement

__all__ = ["CHECK"]

MAX_LINE = 8192


async def _reply(reader: asyncio.StreamReader) -> Tuple[int, str]:
    text = ""
    for _ in range(100):
        line = await reader.readline()
        if not line:
            raise Fail("connection closed during the reply")
        if len(line) > MAX_LINE:
            raise Fail("reply line too long")
        s = line.decode("latin-1").rstrip("\r\n")
        text += s + " "
        if len(s) < 3 or not s[:3].isdigit():
            raise Fail("not an SMTP reply: %r" % s[:60])
        if len(s) == 3 or s[3] == " ":
            return int(s[:3]), text.strip()
    raise Fail("reply with too many lines")


class Smtp(CheckType):
    name = "smtp"
    keys = ("helo",)
    keepalived = ("SMTP_CHECK",)

    def params(self, ctx: _Ctx, path: Path, spec: Mapping[str, Any],
               p: Callable[[str], Path]) -> Dict[str, Any]:
        return {"helo": _type(ctx, p("helo"), spec.get("helo", "ipvs-director"), str, "a name")}

    async def run(self, c: CheckConfig) -> Tuple[str, Optional[int]]:
        reader, writer = await asyncio.open_connection(c.address, c.port, limit=MAX_LINE * 2)
        try:
            code, text = await _reply(reader)
            if code != 220:
                raise Fail("banner %d: %s" % (code, text[:80]))
            writer.write(b"EHLO %s\r\n" % c.param("helo", "ipvs-director").encode("ascii",
                                                                                  "replace"))
            await writer.drain()
            code, text = await _reply(reader)
            if code != 250:
                raise Fail("EHLO answered %d: %s" % (code, text[:80]))
            writer.write(b"QUIT\r\n")
            await writer.drain()
        finally:
            await close(writer)
        return "SMTP 220, EHLO 250", None

    # ------------------------------------------------------------ keepalived.conf
    def convert_keyword(self, conv: Any, s: Statement, c: Dict[str, Any],
                        d: Dict[str, Any]) -> bool:
        if s.keyword == "helo_name":
            c["helo"] = conv.arg(s)
        elif s.keyword == "host":
            conv.skip(s, "SMTP host sub-blocks: write one check per target")
        else:
            return False
        return True


CHECK = Smtp()

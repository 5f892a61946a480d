"""The file check (keepalived's FILE_CHECK): a file holding the real
server's weight (an integer 1..2**31-1; 0 or anything else is a failure)."""

from __future__ import annotations

import dataclasses
import os
import re
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

from ipvs.director.checks.common import CheckType, Fail
from ipvs.director.config_errors import Path, _Ctx
from ipvs.director.config_records import CheckConfig
from ipvs.director.config_values import _type
from ipvs.director.convert_read import ConvertError, Statement

__all__ = ["CHECK"]


class File(CheckType):
    name = "file"
    keys = ("path",)
    needs_port = False
    keepalived = ("FILE_CHECK",)
    connects = False
    timed = False

    def params(self, ctx: _Ctx, path: Path, spec: Mapping[str, Any],
               p: Callable[[str], Path]) -> Dict[str, Any]:
        if "path" not in spec:
            raise ctx.error(path + ("type",), "a file check needs path")
        return {"path": _type(ctx, p("path"), spec["path"], str, "a file path")}

    async def run(self, c: CheckConfig) -> Tuple[str, Optional[int]]:
        path = c.param("path")
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            try:
                raw = os.read(fd, 64)
            finally:
                os.close(fd)
        except OSError as e:
            raise Fail("cannot read %s: %s" % (path, e.strerror)) from None
        text = raw.decode("ascii", "replace").strip()
        if not re.fullmatch(r"\d{1,10}", text):
            raise Fail("%s holds %r, not a weight" % (path, text[:20]))
        weight = int(text)
        if weight == 0 or weight > 0x7FFFFFFF:
            raise Fail("%s says weight %d" % (path, weight))
        return "weight %d" % weight, weight

    # ------------------------------------------------------------ keepalived.conf
    def convert_keyword(self, conv: Any, s: Statement, c: Dict[str, Any],
                        d: Dict[str, Any]) -> bool:
        k = s.keyword
        if k == "track_file":
            name = conv.arg(s)
            tf = conv.track_files.get(name)
            if tf is None:
                raise ConvertError("FILE_CHECK: no track_file %r defined" % name,
                                   s.filename, s.line)
            path = None
            for t in tf.block or []:
                if t.keyword == "file":
                    path = conv.arg(t)
                elif t.keyword == "weight":
                    d.setdefault("file_weight", (_multiplier(conv, t), t))
                else:
                    conv.skip(t, "the director never writes the tracked file")
            if path is None:
                raise ConvertError("track_file %r has no file" % name, tf.filename, tf.line)
            c["path"] = path
        elif k == "weight":
            d["file_weight"] = (_multiplier(conv, s), s)
        elif k == "dynamic":
            conv.skip(s, "the file's value does not count towards the quorum separately here")
        else:
            return False
        return True

    def convert_timeout(self, d: Dict[str, Any], interval: float) -> Optional[float]:
        return None

    def convert_retry(self, d: Dict[str, Any]) -> int:
        return 0

    def convert_finish(self, conv: Any, st: Statement, c: Dict[str, Any],
                       d: Dict[str, Any], rweight: int) -> List[Dict[str, Any]]:
        if "path" not in c:
            raise ConvertError("FILE_CHECK without track_file", st.filename, st.line)
        _semantics(conv, st, d, rweight)
        return [c]


def _multiplier(conv: Any, st: Statement) -> int:
    m: int = conv.integer(dataclasses.replace(st, args=st.args[:1]), -0x7FFFFFFF, 0x7FFFFFFF)
    if st.args[1:2] == ["reverse"]:
        m = -m
    return m


def _semantics(conv: Any, st: Statement, d: Dict[str, Any], rweight: int) -> None:
    """keepalived adds the file's value times the multiplier to the
    configured weight (a multiplier 0: any value but 0 is a failure); the
    director's file check makes the file's value the weight.  The two
    agree only for a configured weight 0 and the multiplier 1."""
    m, where = d.get("file_weight", (1, st))
    if m == 0:
        conv.warn(where, "cannot be carried over: with weight 0 keepalived takes a "
                         "file holding 0 as up; the director's file check takes 0 as "
                         "down and any other integer as the weight")
    elif m != 1 or rweight != 0:
        conv.warn(where, "keepalived's weight is the real server's weight %d plus %d "
                         "times the file's value; the director's file check makes the "
                         "file's value the weight (the same only for a real server of "
                         "weight 0 and the multiplier 1)" % (rweight, m))


CHECK = File()

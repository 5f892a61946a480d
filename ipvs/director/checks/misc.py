"""The exec check (keepalived's MISC_CHECK): a command (an argv, no shell)
in its own process group, exit 0 for success; with ``dynamic_weight``
exit 2..255 is success with the weight ``exit - 2``.  The target is in its
environment (``IPVS_DIRECTOR_ADDRESS``, ``IPVS_DIRECTOR_PORT``); at the
deadline the whole group is killed."""

from __future__ import annotations

import asyncio
import os
import signal
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

from ipvs.director.checks.common import CheckType, Fail
from ipvs.director.config_errors import Path, _Ctx
from ipvs.director.config_records import CheckConfig
from ipvs.director.config_values import _argv, _type
from ipvs.director.convert_read import ConvertError, Statement

__all__ = ["CHECK"]


class Exec(CheckType):
    name = "exec"
    keys = ("command", "dynamic_weight")
    needs_port = False
    keepalived = ("MISC_CHECK",)
    connects = False
    default_retry = 0

    def params(self, ctx: _Ctx, path: Path, spec: Mapping[str, Any],
               p: Callable[[str], Path]) -> Dict[str, Any]:
        if "command" not in spec:
            raise ctx.error(path + ("type",), "an exec check needs command (an argv list)")
        return {"command": _argv(ctx, p("command"), spec["command"]),
                "dynamic_weight": _type(ctx, p("dynamic_weight"),
                                        spec.get("dynamic_weight", False), bool,
                                        "true or false")}

    async def run(self, c: CheckConfig) -> Tuple[str, Optional[int]]:
        env = dict(os.environ)
        env.update(IPVS_DIRECTOR_ADDRESS=c.address, IPVS_DIRECTOR_PORT=str(c.port))
        proc = await asyncio.create_subprocess_exec(
            *c.param("command"), stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
            start_new_session=True, env=env)
        try:
            rc = await proc.wait()
        except BaseException:
            # the deadline (or a stop): kill the whole process group
            _kill_group(proc.pid)
            try:
                await asyncio.shield(proc.wait())
            except BaseException:
                pass
            raise
        else:
            _kill_group(proc.pid)     # children it left behind in its group
        if rc == 0:
            return "exit 0", None
        if c.param("dynamic_weight") and 2 <= rc <= 255:
            return "exit %d: weight %d" % (rc, rc - 2), rc - 2
        raise Fail("exit %d" % rc if rc >= 0 else "killed by signal %d" % -rc)

    # ------------------------------------------------------------ keepalived.conf
    def convert_keyword(self, conv: Any, s: Statement, c: Dict[str, Any],
                        d: Dict[str, Any]) -> bool:
        k = s.keyword
        if k == "misc_path":
            c["command"] = conv.argv(s, whole=True)
        elif k == "misc_timeout":
            d["misc_timeout"] = conv.timer(s)
        elif k == "misc_dynamic":
            c["dynamic_weight"] = True
        elif k == "user":
            conv.skip(s, "the command runs as the director's user")
        else:
            return False
        return True

    def convert_timeout(self, d: Dict[str, Any], interval: float) -> Optional[float]:
        timeout: Optional[float] = d.get("misc_timeout", interval)
        return timeout

    def convert_finish(self, conv: Any, st: Statement, c: Dict[str, Any],
                       d: Dict[str, Any], rweight: int) -> List[Dict[str, Any]]:
        if "command" not in c:
            raise ConvertError("MISC_CHECK without misc_path", st.filename, st.line)
        return [c]


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


CHECK = Exec()

"""``ipvs-director -c FILE diff``: what the director would write to the live
kernel for FILE now, as ``ipvsadm -R`` lines, writing nothing.

Real servers are taken as a running director on FILE's control socket last
knew them (its ``GET /status``); without one, as a director starting now
would find them (in the kernel with a weight: up; else their checks'
initial state).  Drains and API weights of the state file count as they do
at a start.  Exit 0: nothing differs; 1: something does; 2: an error (the
file does not validate, the kernel cannot be read).
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any, Dict, List, Optional, Tuple

from ipvs.director.config import Config, ConfigError, load

__all__ = ["diff", "running_states", "main"]

States = Dict[Tuple[str, str, int], Dict[str, Any]]


class _Null:
    """A stream that keeps nothing (the preview's events are not news)."""

    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        pass


def running_states(sock: str, timeout: float = 10.0) -> Optional[States]:
    """{(service, address, port): real server entry} of the director
    answering on ``sock``, or None when none answers there."""
    from ipvs.director.control import request
    import json
    try:
        status, data = request(sock, "GET", "/status", timeout=timeout)
        if status != 200:
            return None
        doc = json.loads(data)
    except (OSError, ValueError):
        return None
    out: States = {}
    for svc in doc.get("services", []):
        for rs in svc.get("real_servers", []):
            out[(svc["service"], rs["address"], rs["port"])] = rs
    return out


async def diff(cfg: Config, path: Optional[str] = None, states: Optional[States] = None,
               kernel: Any = None) -> List[Tuple[str, Any, Any]]:
    """The calls ([(method, Service, Destination or None)]) a director on
    ``cfg`` would send to the kernel now."""
    from ipvs.director.core import Director
    director = Director(cfg, path=path, stream=_Null(), kernel=kernel,
                        state_file=cfg.director.state_path)
    try:
        return await director.preview(states)
    finally:
        await director.kernel.close()


def main(path: str, sock: Optional[str] = None, out: Any = None, err: Any = None) -> int:
    """Print the ``ipvsadm -R`` lines of FILE's difference on ``out``
    (default stdout; errors on ``err``, default stderr); the exit status."""
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        cfg = load(path)
    except ConfigError as e:
        for line in str(e).splitlines():
            err.write("ipvs-director: %s\n" % line)
        return 2
    states = running_states(sock or cfg.director.control)
    from ipvs.cli import rules
    try:
        calls = asyncio.run(diff(cfg, path, states))
    except ConfigError as e:
        err.write("ipvs-director: %s\n" % e)
        return 2
    except (OSError, ValueError) as e:     # ipvs.IPVSError is an OSError
        err.write("ipvs-director: cannot read the kernel's table: %s\n" % (e,))
        return 2
    except Exception as e:   # never a traceback: name the problem
        err.write("ipvs-director: diff: %s: %s\n" % (type(e).__name__, e))
        return 2
    for line in rules(calls):
        out.write(line + "\n")
    out.flush()
    return 1 if calls else 0

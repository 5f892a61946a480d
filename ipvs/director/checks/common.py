"""What the check types share: the result record, the base every check
type's object derives from (its keys, their validation, its run, its
keepalived checker's conversion), the total deadline of a run and the
small socket helpers."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import socket
import ssl
import time
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Mapping, Optional, Tuple

from ipvs.director._aio import within
from ipvs.director.config_errors import Path, _Ctx
from ipvs.director.config_records import CheckConfig

if TYPE_CHECKING:  # pragma: no cover
    from ipvs.director.convert_read import Statement

__all__ = ["CheckResult", "CheckType", "Fail", "DEFAULT_CONNECT_TIMEOUT"]

#: keepalived's connect_timeout when none is given (man keepalived.conf)
DEFAULT_CONNECT_TIMEOUT = 5.0


@dataclasses.dataclass(frozen=True)
class CheckResult:
    """The outcome of one check: ``result`` is "success", "failure" or
    "timeout"; ``weight`` a weight the check asks for (exec with
    dynamic_weight, file), else None."""
    result: str
    message: str
    duration: float
    weight: Optional[int] = None

    @property
    def ok(self) -> bool:
        return self.result == "success"

    def as_dict(self) -> Dict[str, Any]:
        out: Dict[str, Any] = {"result": self.result, "message": self.message,
                               "duration": round(self.duration, 6)}
        if self.weight is not None:
            out["weight"] = self.weight
        return out


class Fail(Exception):
    """A run's failure, its text the result's message."""


class CheckType:
    """One check type.  A module of this package makes one object of a
    subclass for each type it runs; ``checks.TYPES`` lists them.

    The configuration (config_checks.py) takes the common keys itself and
    asks the type for the rest: ``keys`` are its own keys, ``params``
    validates them; ``needs_port``: a target without a port (a fwmark
    service's real server) needs ``port`` in the check.

    keepalived.conf (convert.py): ``keepalived`` are the checker keywords
    converted to this type; ``connects`` (connect_ip, connect_port) and
    ``timed`` (delay_loop, connect_timeout, retry, delay_before_retry,
    virtualhost, alpha) say which common keywords apply; ``convert_keyword``
    takes the type's own keywords, and ``convert_finish`` the check made.
    """
    name = ""
    keys: Tuple[str, ...] = ()
    needs_port = True
    keepalived: Tuple[str, ...] = ()
    connects = True
    timed = True
    #: keepalived's retry when none is given
    default_retry = 1

    # ------------------------------------------------------------ the file
    def params(self, ctx: _Ctx, path: Path, spec: Mapping[str, Any],
               p: Callable[[str], Path]) -> Dict[str, Any]:
        """The type's parameters of a check ``spec`` (``p(key)``: the path
        an error about ``key`` names; ``path``: the check's own)."""
        return {}

    # ------------------------------------------------------------ a run
    async def run(self, c: CheckConfig) -> Tuple[str, Optional[int]]:
        """One run: (message, weight or None); raises :class:`Fail` (or an
        OSError...) for a failure.  ``check`` puts the deadline on it."""
        raise NotImplementedError

    async def check(self, c: CheckConfig, limit: float) -> CheckResult:
        """One run within ``limit`` seconds in all, as a result."""
        start = time.monotonic()
        try:
            message, weight = await within(self.run(c), limit)
            return CheckResult("success", message, time.monotonic() - start, weight)
        except asyncio.TimeoutError:
            return timed_out(limit, start)
        except Fail as e:
            return CheckResult("failure", str(e), time.monotonic() - start)
        except (OSError, ssl.SSLError, EOFError, asyncio.IncompleteReadError, ValueError,
                UnicodeError) as e:
            if isinstance(e, OSError) and e.errno and not isinstance(e, ssl.SSLError):
                text = os.strerror(e.errno)
            else:
                text = str(e) or type(e).__name__
            return CheckResult("failure", text, time.monotonic() - start)

    # ------------------------------------------------------------ keepalived.conf
    def convert_keyword(self, conv: Any, s: "Statement", c: Dict[str, Any],
                        d: Dict[str, Any]) -> bool:
        """A keyword of the checker's block that is the type's own: put
        into the check ``c`` or the checker's settings ``d``; False when
        it is not one of the type's."""
        return False

    def convert_timeout(self, d: Dict[str, Any], interval: float) -> Optional[float]:
        """The check's timeout (None: it has none)."""
        timeout: Optional[float] = d.get("connect_timeout", DEFAULT_CONNECT_TIMEOUT)
        return timeout

    def convert_retry(self, d: Dict[str, Any]) -> int:
        retry: int = d.get("retry", self.default_retry)
        return retry

    def convert_retry_delay(self, interval: float) -> float:
        """keepalived's delay_before_retry when none is given."""
        return 1

    def convert_finish(self, conv: Any, st: "Statement", c: Dict[str, Any],
                       d: Dict[str, Any], rweight: int) -> List[Dict[str, Any]]:
        """The checks of the checker ``st`` once its keywords and timing
        are in ``c`` (one, or several: HTTP_GET's urls)."""
        return [c]


def timed_out(limit: float, start: float) -> CheckResult:
    return CheckResult("timeout", "no answer within %gs" % limit, time.monotonic() - start)


def os_text(e: OSError) -> str:
    return os.strerror(e.errno) if e.errno else str(e)


def family(address: str) -> int:
    return socket.AF_INET6 if ":" in address else socket.AF_INET


async def close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    try:
        await writer.wait_closed()
    except (OSError, ssl.SSLError):
        pass


class _Datagram(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.answer: "asyncio.Future[bytes]" = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if not self.answer.done():
            self.answer.set_result(data)

    def error_received(self, exc: Exception) -> None:
        if not self.answer.done():
            self.answer.set_exception(exc)


async def exchange(c: CheckConfig, payload: bytes, accept: Any = None) -> bytes:
    """``payload`` sent to the check's target over UDP, the first answer
    ``accept`` takes (any, without it) returned."""
    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_datagram_endpoint(
        _Datagram, remote_addr=(c.address, c.port), family=family(c.address))
    try:
        transport.sendto(payload)
        while True:
            data = await proto.answer
            if accept is None or accept(data):
                return data
            proto.answer = loop.create_future()  # not ours: wait for the next one
    finally:
        transport.close()

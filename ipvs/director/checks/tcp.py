"""The TCP check (keepalived's TCP_CHECK): a non-blocking connect, success
when it is accepted.

The one definition of the check: :func:`connect` starts it, :func:`connected`
reads its outcome once the socket is writable, :func:`timed_out` is its
deadline's result.  The scheduler waits on its own epoll set for thousands
of them at once (scheduler.py); :meth:`Tcp.check` (``run_check``) waits for
one on the loop.  A bare socket either way: no transport, protocol or
stream objects (a third of the CPU of a check at 5,000 checks a second).
"""

from __future__ import annotations

import asyncio
import errno
import os
import socket
import time
from typing import Tuple, Union

from ipvs.director.checks.common import CheckResult, CheckType, family, os_text, timed_out
from ipvs.director.config_records import CheckConfig

__all__ = ["CHECK", "connect", "connected", "timed_out", "failed"]

PENDING = (errno.EINPROGRESS, errno.EAGAIN, errno.EALREADY)
_FLAGS = getattr(socket, "SOCK_NONBLOCK", 0) | getattr(socket, "SOCK_CLOEXEC", 0)


def connect(c: CheckConfig) -> Union[CheckResult, Tuple[socket.socket, float]]:
    """Start the check ``c``: its result when it ended at once, else the
    socket whose connect is in progress (wait for it to be writable) and
    the start (``time.monotonic()``)."""
    start = time.monotonic()
    try:
        sock = socket.socket(family(c.address), socket.SOCK_STREAM | _FLAGS)
    except OSError as e:
        return CheckResult("failure", os_text(e), 0.0)
    try:
        if not _FLAGS:  # pragma: no cover - not Linux
            sock.setblocking(False)
        err = sock.connect_ex((c.address, c.port))
        if err in PENDING:
            return sock, start
    except OSError as e:
        sock.close()
        return failed(e, start)
    sock.close()
    return _result(err, time.monotonic() - start)


def connected(sock: socket.socket, start: float) -> CheckResult:
    """The result of a connect whose socket became writable; the socket
    is closed."""
    try:
        err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    except OSError as e:
        err = e.errno or errno.EIO
    sock.close()
    return _result(err, time.monotonic() - start)


def failed(e: OSError, start: float) -> CheckResult:
    """The result of a check whose socket could not be watched."""
    return CheckResult("failure", os_text(e), time.monotonic() - start)


def _result(err: int, duration: float) -> CheckResult:
    if err:
        return CheckResult("failure", os.strerror(err), duration)
    return CheckResult("success", "connected", duration)


class Tcp(CheckType):
    name = "tcp"
    keepalived = ("TCP_CHECK",)

    async def check(self, c: CheckConfig, limit: float) -> CheckResult:
        """One check on the loop's own primitives: one writer callback, one
        timer, one future (no task, no timeout context)."""
        started = connect(c)
        if isinstance(started, CheckResult):
            return started
        sock, start = started
        loop = asyncio.get_running_loop()
        fut: "asyncio.Future[bool]" = loop.create_future()
        fd = sock.fileno()

        def ready(expired: bool) -> None:
            if not fut.done():
                fut.set_result(expired)
        try:
            loop.add_writer(fd, ready, False)
        except OSError as e:
            sock.close()
            return failed(e, start)
        timer = loop.call_later(limit, ready, True)
        waited = False
        try:
            expired = await fut
            waited = True
        finally:
            timer.cancel()
            loop.remove_writer(fd)
            if not waited:
                sock.close()
        if expired:
            sock.close()
            return timed_out(limit, start)
        return connected(sock, start)


CHECK = Tcp()

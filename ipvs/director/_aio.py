"""The director's one deadline on an awaitable (`within`): on Python 3.11+
``asyncio.timeout`` on the running task; before it ``asyncio.wait_for``,
which makes a task for every wait (the director waits so on every health
check, every control request and every sleep of its writer)."""

from __future__ import annotations

import asyncio
from typing import Awaitable, TypeVar

__all__ = ["within"]

_T = TypeVar("_T")
_timeout = getattr(asyncio, "timeout", None)


async def within(aw: Awaitable[_T], limit: float) -> _T:
    """``await aw``, or ``asyncio.TimeoutError`` after ``limit`` seconds."""
    if _timeout is not None:
        async with _timeout(limit):
            return await aw
    return await asyncio.wait_for(aw, limit)  # pragma: no cover - Python < 3.11

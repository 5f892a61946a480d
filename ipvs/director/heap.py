"""The director's one say over the cyclic garbage collector.

At tens of thousands of real servers the configuration and the run-time
state are millions of objects: the collector's passes over them while they
are built were a third of a cold start (0.5-0.7 s of 1.5-2.3 s on the
host), and its full collections later would scan them all again, a stall
of a second at a time on the event loop.  So: no collection while a
configuration is read and built (`paused`, or `pause`/`resume` around a
span that is not one block), then what is alive is moved out of the
collector's sight (`settle`)."""

from __future__ import annotations

import contextlib
import gc
from typing import Iterator

__all__ = ["paused", "pause", "resume", "settle"]


def settle() -> None:
    """Move the objects alive now out of the collector's sight."""
    if hasattr(gc, "freeze"):
        gc.freeze()


@contextlib.contextmanager
def paused() -> Iterator[None]:
    """No cyclic garbage collection within (nesting is fine); the caller
    settles the heap after."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def pause() -> None:
    """No cyclic garbage collection until `resume`."""
    gc.disable()


def resume() -> None:
    gc.enable()

"""The director's events, on one bus: each goes to the log (a text or JSON
line on stderr), to the ``/events`` streams, and, for state changes, to the
real server's notify command.

A reload whose file the kernel has not accepted yet holds the events of its
own task (the servers it adds, ...): sent when the kernel took the file,
dropped when it refused it, so a refused file leaves no trace in the stream.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import time
from typing import Any, Callable, Dict, List, Mapping, Optional, Set, Tuple

__all__ = ["Events", "end_stream"]

log = logging.getLogger("ipvs.director")

NOTIFY_TIMEOUT = 30.0
QUEUE_SIZE = 10000        # events a stream may fall behind before it is dropped

Stream = "asyncio.Queue[Optional[Dict[str, Any]]]"


def end_stream(q: "asyncio.Queue[Optional[Dict[str, Any]]]") -> None:
    """Tell an events stream to end (dropping what it did not send yet)."""
    while not q.empty():
        q.get_nowait()
    q.put_nowait(None)


class Events:
    """The bus: ``emit``, the streams, the notify commands."""

    def __init__(self, log_format: str = "text", stream: Any = None) -> None:
        self.log_format = log_format
        self.stream = stream
        self.subscribers: List["asyncio.Queue[Optional[Dict[str, Any]]]"] = []
        self.notify_tasks: Set["asyncio.Task[Any]"] = set()
        self._held: Optional[List[Callable[[], Any]]] = None
        self._held_task: Optional["asyncio.Task[Any]"] = None

    # ------------------------------------------------------------ holding
    def hold(self) -> None:
        """Hold what the current task emits from now on."""
        self._held, self._held_task = [], asyncio.current_task()

    def release(self, send: bool) -> None:
        """Stop holding: send what was held (``send``) or drop it."""
        held, self._held, self._held_task = self._held or [], None, None
        if send:
            for f in held:
                f()

    def _holding(self) -> bool:
        if self._held is None:
            return False
        try:
            return asyncio.current_task() is self._held_task
        except RuntimeError:
            return False

    # ------------------------------------------------------------ emit
    def emit(self, event: str, service: Optional[str] = None, address: Any = None,
             port: Optional[int] = None, **extra: Any) -> Dict[str, Any]:
        """Send an event to the log and the /events subscribers."""
        if self._holding():
            assert self._held is not None
            self._held.append(lambda: self.emit(event, service, address, port, **extra))
            return {"event": event}
        ev: Dict[str, Any] = {"time": round(time.time(), 3), "event": event}
        if service is not None:
            ev["service"] = service
        if address is not None:
            ev["address"] = str(address)
            ev["port"] = port
        ev.update(extra)
        if self.log_format == "json":
            line = json.dumps(ev, sort_keys=False)
        else:
            stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ev["time"]))
            parts = [stamp, event]
            if service is not None:
                parts.append(service)
            if address is not None:
                host = "[%s]" % address if ":" in str(address) else str(address)
                parts.append("%s:%s" % (host, port))
            parts += ["%s=%s" % (k, v) for k, v in extra.items()]
            line = " ".join(parts)
        try:
            self.stream.write(line + "\n")
            self.stream.flush()
        except (OSError, ValueError):
            pass
        for q in list(self.subscribers):
            try:
                q.put_nowait(ev)
            except asyncio.QueueFull:  # a reader that does not keep up is dropped
                self.subscribers.remove(q)
                end_stream(q)
        return ev

    def subscribe(self) -> "asyncio.Queue[Optional[Dict[str, Any]]]":
        q: "asyncio.Queue[Optional[Dict[str, Any]]]" = asyncio.Queue(maxsize=QUEUE_SIZE)
        self.subscribers.append(q)
        return q

    def unsubscribe(self, q: "asyncio.Queue[Optional[Dict[str, Any]]]") -> None:
        if q in self.subscribers:
            self.subscribers.remove(q)

    def end_streams(self) -> None:
        for q in list(self.subscribers):
            end_stream(q)

    # ------------------------------------------------------------ notify
    def notify(self, argv: Optional[Tuple[str, ...]], env: Mapping[str, str]) -> None:
        """Run a notify command (an argv, no shell) with ``env`` added to
        the environment; killed with its process group after NOTIFY_TIMEOUT."""
        if not argv:
            return
        if self._holding():
            assert self._held is not None
            self._held.append(lambda: self.notify(argv, env))
            return

        async def run() -> None:
            full = dict(os.environ)
            full.update(env)
            try:
                proc = await asyncio.create_subprocess_exec(
                    *argv, stdin=asyncio.subprocess.DEVNULL, start_new_session=True, env=full)
            except OSError as e:
                log.warning("notify %s: %s", argv[0], e)
                return
            try:
                await asyncio.wait_for(proc.wait(), NOTIFY_TIMEOUT)
            except asyncio.TimeoutError:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except OSError:
                    pass
                await proc.wait()
        task = asyncio.get_running_loop().create_task(run())
        self.notify_tasks.add(task)
        task.add_done_callback(self.notify_tasks.discard)

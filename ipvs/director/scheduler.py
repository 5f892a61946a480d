"""The director's check scheduler: one timer wheel for every probe, and TCP
checks run straight on a private epoll set.

At tens of thousands of checks the per-check cost of asyncio (a task and a
sleep timer per probe, a writer callback and a timeout timer per connect,
a heap of as many timers as probes) was most of the director's CPU.  Here:

* A probe's next start sits in a bucket of a hashed timer wheel (one
  bucket per ``TICK`` of loop time); one loop timer, set for the earliest
  bucket holding anything, takes the due buckets, so the loop's own timer
  heap holds one entry, not one per probe, and an idle wheel wakes no one.
* A probe that is due while all ``slots`` (checks in flight) are taken
  waits in a FIFO and starts as soon as a check ends: open sockets stay
  bounded by the slots however far behind the loop falls.
* A TCP check (``checks.tcp``: its one definition, started by
  ``tcp.connect`` and read by ``tcp.connected``) is a non-blocking
  ``connect`` on a socket registered in the scheduler's own epoll set,
  whose one fd is the only thing the loop watches; finished connects are
  collected in batches.  Its timeout is a second wheel of deadlines.  No
  task, no future, no handle per check.
* Every other check type runs as before (``checks.run_check``), in one task
  per run (none between runs).

The scheduler calls ``finish(probe, result)`` for every result and then
puts the probe back on the wheel one period (``probe.period()``) after the
start was due (a fixed grid, no drift); a run that overran its period
starts again at once.  At most one run of a probe is in flight.
"""

from __future__ import annotations

import asyncio
import collections
import heapq
import logging
import random
import select
import socket
from typing import Any, Callable, Deque, Dict, List, Optional, Set, Tuple

from ipvs.director import checks as _checks
from ipvs.director.checks import CheckResult, tcp

__all__ = ["Scheduler", "TICK"]

log = logging.getLogger("ipvs.director")

TICK = 0.01               # seconds per wheel bucket
BATCH = 512               # checks started per loop callback at most


class Scheduler:
    """Runs the checks of probes on a timer wheel (see the module's text).

    A probe is any object with ``check`` (a ``CheckConfig``), ``due`` (loop
    time its run is due, set here), ``sched`` (an int token, set here) and
    ``period()`` (seconds to its next run after a result).  ``finish`` is
    called with each result of a probe still scheduled.
    """

    def __init__(self, slots: int, finish: Callable[[Any, CheckResult], None],
                 loop: Optional[asyncio.AbstractEventLoop] = None, tick: float = TICK) -> None:
        self.loop = loop or asyncio.get_running_loop()
        self.tick = tick
        self.free = max(1, slots)
        self.slots = self.free
        self.finish = finish
        #: a list to collect the lateness (start minus due) of every start; None: off
        self.late: Optional[List[float]] = None
        #: checks started, since the scheduler was made
        self.started = 0
        self._buckets: Dict[int, List[Tuple[Any, int]]] = {}
        self._deadlines: Dict[int, List[Tuple[int, socket.socket]]] = {}
        self._cursor = int(self.loop.time() / tick)      # next bucket to take
        self._ready: Deque[Tuple[Any, int]] = collections.deque()
        self._tcp: Dict[int, Tuple[Any, int, socket.socket, float]] = {}
        self._tasks: Set["asyncio.Task[None]"] = set()
        self._timer: Optional[asyncio.TimerHandle] = None
        self._armed: Optional[int] = None                # the bucket it is set for
        self._keys: List[int] = []    # a heap of the buckets holding entries
        self._soon: Optional[asyncio.Handle] = None
        self._token = 0
        self._closed = False
        self._ep = select.epoll()
        self.loop.add_reader(self._ep.fileno(), self._connected)

    # ------------------------------------------------------------ probes
    @property
    def inflight(self) -> int:
        """Checks running now."""
        return self.slots - self.free

    def add(self, probe: Any, delay: Optional[float] = None) -> None:
        """Schedule ``probe``'s first run ``delay`` seconds from now (default:
        a random point of its shorter period, so that a thousand probes
        loaded at once are not a herd)."""
        if delay is None:
            c = probe.check
            delay = random.uniform(0, min(c.interval, c.retry_interval))
        self._token += 1
        probe.sched = self._token
        self._put(probe, self.loop.time() + delay)

    def drop(self, probe: Any) -> None:
        """Unschedule ``probe``: its wheel entry and any result of a run in
        flight are ignored from now on."""
        probe.sched = 0

    def _put(self, probe: Any, due: float) -> None:
        probe.due = due
        k = int(due / self.tick)
        if k < self._cursor:
            k = self._cursor
        b = self._buckets.get(k)
        if b is None:
            self._buckets[k] = [(probe, probe.sched)]
            self._need(k)
        else:
            b.append((probe, probe.sched))

    def _need(self, k: int) -> None:
        """Bucket ``k`` (of starts or of deadlines) has entries now."""
        heapq.heappush(self._keys, k)
        if self._armed is None or k < self._armed:
            self._arm(self._keys[0])     # the timer is always for the heap's first

    def _arm(self, k: int) -> None:
        # one timer, for the earliest bucket holding anything: an idle
        # stretch costs no wake-ups (each is a system call, and in a
        # user-mode kernel a slow one)
        if self._closed:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._armed = k
        self._timer = self.loop.call_at((k + 1) * self.tick, self._on_tick)

    # ------------------------------------------------------------ the wheel
    def _on_tick(self) -> None:
        self._timer = None
        self._armed = None
        now = self.loop.time()
        last = int(now / self.tick)
        buckets, deadlines, ready, keys = self._buckets, self._deadlines, self._ready, self._keys
        drained = False
        while keys and keys[0] <= last:
            k = heapq.heappop(keys)
            due = buckets.pop(k, None)
            if due:
                ready.extend(due)
            expired = deadlines.pop(k, None)
            if expired:
                if not drained:
                    # connects that finished while the loop was busy are
                    # results, not timeouts: collect them first
                    self._connected()
                    drained = True
                self._expire(expired)
        self._cursor = last + 1
        self._start_ready()
        self._rearm()

    def _rearm(self) -> None:
        keys = self._keys
        if keys and (self._armed is None or keys[0] < self._armed):
            self._arm(keys[0])

    def _start_ready(self) -> None:
        self._soon = None
        ready = self._ready
        n = 0
        now = self.loop.time()
        late = self.late
        while ready and self.free > 0:
            probe, token = ready.popleft()
            if probe.sched != token:
                continue               # dropped (or rescheduled) since
            if n >= BATCH:
                # give the loop a turn (results, the API) between batches
                ready.appendleft((probe, token))
                if self._soon is None:
                    self._soon = self.loop.call_soon(self._start_ready)
                return
            n += 1
            self.free -= 1
            self.started += 1
            if late is not None:
                late.append(now - probe.due)
            if probe.check.type == "tcp":
                self._start_tcp(probe, token, now)
            else:
                t = self.loop.create_task(self._run(probe, token))
                self._tasks.add(t)
                t.add_done_callback(self._tasks.discard)

    @property
    def check_tasks(self) -> int:
        """Check runs in flight as asyncio tasks (every type but tcp, whose
        connects wait on the scheduler's own epoll set)."""
        return len(self._tasks)

    def _done(self, probe: Any, token: int, result: CheckResult) -> None:
        """A run ended: free its slot, hand its result on, schedule the next."""
        self.free += 1
        if probe.sched == token and not self._closed:
            try:
                self.finish(probe, result)
            except Exception:  # a bug there must not stop this probe or the batch
                log.exception("handling the result of %s %s:%s", probe.check.type,
                              probe.check.address, probe.check.port)
            if probe.sched == token:
                now = self.loop.time()
                due = probe.due + probe.period()
                self._put(probe, due if due > now else now)
        if self._ready and self._soon is None and not self._closed:
            self._soon = self.loop.call_soon(self._start_ready)

    # ------------------------------------------------------------ other checks
    async def _run(self, probe: Any, token: int) -> None:
        try:
            result = await _checks.run_check(probe.check)
        except asyncio.CancelledError:
            self.free += 1
            raise
        self._done(probe, token, result)

    # ------------------------------------------------------------ TCP
    def _start_tcp(self, probe: Any, token: int, now: float) -> None:
        c = probe.check
        started = tcp.connect(c)
        if isinstance(started, CheckResult):
            self._done(probe, token, started)         # ended at once
            return
        sock, start = started
        fd = sock.fileno()
        try:
            self._ep.register(fd, select.EPOLLOUT)
        except OSError as e:
            sock.close()
            self._done(probe, token, tcp.failed(e, start))
            return
        self._tcp[fd] = (probe, token, sock, start)
        k = int((now + c.timeout) / self.tick) + 1
        d = self._deadlines.get(k)
        if d is None:
            self._deadlines[k] = [(fd, sock)]
            self._need(k)
        else:
            d.append((fd, sock))

    def _connected(self) -> None:
        """The epoll set is readable: collect every finished connect."""
        inflight = self._tcp
        try:
            # all of them (poll's default is at most 1,023: after a stall of
            # the loop the rest would wait for the next turn, and the
            # deadlines' timer could call them timeouts first)
            events = self._ep.poll(0, len(inflight) + 1)
        except OSError:  # pragma: no cover - closed under us
            return
        for fd, _ in events:
            entry = inflight.pop(fd, None)
            if entry is None:
                continue
            probe, token, sock, start = entry
            # closing the socket (tcp.connected does) leaves the epoll set
            self._done(probe, token, tcp.connected(sock, start))

    def _expire(self, expired: List[Tuple[int, socket.socket]]) -> None:
        inflight = self._tcp
        for fd, sock in expired:
            entry = inflight.get(fd)
            if entry is None or entry[2] is not sock:
                continue                 # finished in time (the fd may be reused)
            del inflight[fd]
            probe, token, _, start = entry
            sock.close()
            self._done(probe, token, tcp.timed_out(probe.check.timeout, start))

    # ------------------------------------------------------------ end
    async def close(self) -> None:
        """Stop: no more starts, every socket closed, every task ended."""
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._soon is not None:
            self._soon.cancel()
            self._soon = None
        self._ready.clear()
        self._keys.clear()
        self._buckets.clear()
        self._deadlines.clear()
        for _, _, sock, _ in self._tcp.values():
            sock.close()
            self.free += 1
        self._tcp.clear()
        try:
            self.loop.remove_reader(self._ep.fileno())
        except (ValueError, OSError):  # pragma: no cover - loop closed
            pass
        self._ep.close()
        # asyncio.wait_for of Python < 3.12 may swallow a cancellation that
        # meets a finishing check: cancel again until every task is done
        for _ in range(50):
            pending = [t for t in self._tasks if not t.done()]
            if not pending:
                break
            for t in pending:
                t.cancel()
            await asyncio.wait(pending, timeout=0.1)


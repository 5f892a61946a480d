"""The director's engine: probes, the state machine, quorum, draining and
the kernel writer, on one asyncio loop.

* A :class:`Probe` is one check of one target (a resolved ``CheckConfig``):
  identical checks of one real server behind several services are one probe.
  The scheduler (``ipvs.director.scheduler``) starts its runs from one timer
  wheel, at most one run of it in flight; the first run of each starts at a
  random point of its interval.
* A real server's state follows its probes: ``up`` when all are up,
  ``falling`` while one of them is confirming a failure (still weighted),
  ``rising`` while it is confirming a recovery (weight 0), ``down``; or
  ``draining`` (removed from the file or drained through the API).
* The writer runs in rounds: one table dump (or none: a partial round
  plans against the mirror of what the director last read and wrote), then
  the library's ``apply()`` over the director's own services, one batch.
  Changes coming close together fall into one round.

The rooms around this one: ``wanted`` (what the services must be now),
``reloading`` (all-or-nothing reloads), ``operations`` (the control API's
verbs), ``events`` (the bus), ``state`` (the state file), ``views`` (the
status), ``sync`` (the sync daemon), ``drift``, ``heap`` (the collector),
``_kernel`` (the only door to the kernel).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
from typing import Any, Dict, List, Optional, Set, Tuple

import ipvs
from ipvs.director import checks as _checks
from ipvs.director import drift, heap, planner
from ipvs.director._aio import within
from ipvs.director.config import CheckConfig, Config, service_name
from ipvs.director.events import Events
from ipvs.director.operations import NoAnnounce, NotFound, Operations
from ipvs.director.planner import Change, Key, Table
from ipvs.director.reloading import KernelRefused, Reloading
from ipvs.director.runtime import HEALTHY, Probe, RealServer, ServiceState
from ipvs.director.scheduler import Scheduler
from ipvs.director.state import Saved, StateFile
from ipvs.director.sync import DirectorSync, FifoFollower, SyncKeeper
from ipvs.director.wanted import Wanted

__all__ = ["Director", "KernelRefused", "NoAnnounce", "NotFound", "Probe"]

log = logging.getLogger("ipvs.director")

CHUNK = 500               # services planned between two yields to the loop
CHUNK_SERVERS = 5000      # ... and about as many real servers at most
DRAIN_POLL = 1.0
WATCH_INTERVAL = 2.0


def _check_slots() -> int:
    """Checks allowed in flight by default: the open files limit (raised to
    its hard limit) less a reserve for the control API, /metrics and the
    kernel handle."""
    try:
        import resource
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard == resource.RLIM_INFINITY or hard > soft:
            target = 1 << 20 if hard == resource.RLIM_INFINITY else hard
            try:
                resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
                soft = target
            except (ValueError, OSError):
                pass
    except ImportError:  # pragma: no cover - not Linux
        return 1000
    return max(16, min(soft, 1 << 20) - 256)


def _now() -> float:
    return time.time()


class Director(Wanted, Reloading, Operations):
    """Keeps the services of a configuration in one namespace's IPVS table.

    ``kernel`` is an object with the coroutines ``table()``, ``services()``,
    ``apply(desired, current, changed, dry_run)``, ``reopen()`` and
    ``close()``, and ``sysctl_read``/``sysctl_write`` (see ``_kernel``); by
    default the real one of the configuration's namespace.
    """

    def __init__(self, config: Config, *, path: Optional[str] = None, kernel: Any = None,
                 log_format: str = "text", stream: Any = None,
                 sync_handles: Any = None, state_file: Optional[str] = None) -> None:
        self.config = config
        # drains and API weights kept across restarts (see ipvs.director.state);
        # ipvs-director passes [director] state_file, default beside the socket
        self.state_file = state_file
        self.statefile = StateFile(state_file, self.emit)
        self.path = path
        #: the event bus: the log lines, the /events streams, notify commands
        self.events = Events(log_format, stream if stream is not None else sys.stderr)
        self.stream = self.events.stream
        if kernel is None:
            from ipvs.director._kernel import Kernel
            kernel = Kernel(config.director.netns)
        self.kernel = kernel
        self.services: Dict[Tuple[Any, ...], ServiceState] = {}
        self.probes: Dict[CheckConfig, Probe] = {}
        self.table: Dict[Tuple[Any, ...], Tuple[ipvs.Service, Dict[Any, ipvs.Destination]]] = {}
        self.metrics: Any = None
        self.rounds = 0
        self.last_round_error: Optional[str] = None
        self._dirty: Optional[asyncio.Event] = None
        self._lock: Optional[asyncio.Lock] = None
        self._tasks: List["asyncio.Task[Any]"] = []
        self._stopped: Optional[asyncio.Event] = None
        self._next_resync = 0.0
        self._closing = False
        #: the sync daemon of [director.sync] and keepalived's FIFO
        #: (ipvs.director.sync); ``sync_handles`` makes the keeper's handles
        #: (default: AsyncIPVS on the netns)
        self.sync_room = DirectorSync(netns=config.director.netns, handles=sync_handles,
                                      emit=self.emit, save_state=self._save_state,
                                      metrics=lambda: self.metrics,
                                      saved_role=lambda: self.saved_role)
        # services whose real servers changed state since the last round: a
        # round for these only needs no table dump (see round(partial=True))
        self._changed: Set[Tuple[Any, ...]] = set()
        self._full = True         # the next writer round reads the whole table
        self._touched: Set[Tuple[Any, ...]] = set()   # services _build changed
        self.scheduler: Optional[Scheduler] = None   # starts the probes' runs
        self.max_checks_in_flight = 0
        #: the role of the state file (the last one keepalived or the API set)
        self.saved_role: Optional[str] = None
        self._round_began: Optional[float] = None   # monotonic start of a round in progress
        self._reloading: Optional[asyncio.Lock] = None
        self.sysctl_values: Dict[str, Optional[str]] = {}   # [director] sysctl as last read
        self._draining = False    # a drain goes on (the writer polls its connections)
        #: the VIP announcer of [director.announce] (ipvs.director.announce), or None
        self.announcer: Any = None
        with heap.paused():
            self._build(config, first=True)

    def _own(self) -> Set[Tuple[Any, ...]]:
        return set(self.services)

    # ------------------------------------------------------------ events
    def emit(self, event: str, service: Optional[str] = None, address: Any = None,
             port: Optional[int] = None, **extra: Any) -> dict:
        """Send an event to the log and the /events subscribers."""
        return self.events.emit(event, service, address, port, **extra)

    def subscribe(self) -> "asyncio.Queue[Optional[dict]]":
        return self.events.subscribe()

    def unsubscribe(self, q: "asyncio.Queue[Optional[dict]]") -> None:
        self.events.unsubscribe(q)

    @property
    def subscribers(self) -> List["asyncio.Queue[Optional[dict]]"]:
        return self.events.subscribers

    def _notify(self, argv: Optional[Tuple[str, ...]], st: ServiceState, rs: RealServer,
                state: str) -> None:
        self.events.notify(argv, {"IPVS_DIRECTOR_SERVICE": st.name,
                                  "IPVS_DIRECTOR_ADDRESS": str(rs.destination.address),
                                  "IPVS_DIRECTOR_PORT": str(rs.destination.port),
                                  "IPVS_DIRECTOR_STATE": state})

    # ------------------------------------------------------------ probes
    def _on_result(self, probe: Probe, result: _checks.CheckResult) -> None:
        probe.last, probe.last_time = result, _now()
        probe.fresh = False
        old_weight = probe.weight
        if self.metrics is not None:
            self.metrics.check_done(probe.check.type, result)
            if not result.ok:
                for st, rs in probe.users:
                    self.metrics.check_failed(st, rs)
        changed = probe.feed(result)
        if changed or probe.weight != old_weight:
            self._refresh_states(result, probe.users)
            for st, _ in probe.users:
                self._changed.add(st.service.key)
            self.wake()

    def _refresh_states(self, result: Optional[_checks.CheckResult] = None,
                        only: Optional[List[Tuple[ServiceState, RealServer]]] = None) -> None:
        """Follow the probes' states into the real servers' (``only``: just
        these pairs, the users of one probe; else all)."""
        if only is None:
            pairs = [(st, rs) for st in self.services.values()
                     for rs in st.real_servers.values()]
        else:
            pairs = only
        for st, rs in pairs:
            if rs.cfg is None or rs.draining:
                continue
            new = rs.health()
            if new != rs.state:
                old, rs.state = rs.state, new
                extra: Dict[str, Any] = {"previous": old}
                if result is not None:
                    extra["message"] = result.message
                self.emit(new, st.name, rs.destination.address, rs.destination.port, **extra)
                if new == "up" and old not in HEALTHY:
                    self._notify(rs.cfg.notify_up, st, rs, new)
                elif new == "down" and old in HEALTHY:
                    self._notify(rs.cfg.notify_down, st, rs, new)

    def _start_probes(self) -> None:
        sched = self.scheduler
        if sched is None:
            return                 # not started: start() schedules them
        for p in self.probes.values():
            # a "none" check is up and stays up: nothing to run
            if p.check.type != "none" and not p.sched:
                sched.add(p)

    def _stop_unused_probes(self, old: Dict[CheckConfig, Probe]) -> None:
        for chk, p in old.items():
            if self.probes.get(chk) is not p:
                p.sched = 0        # its wheel entry and a run in flight are void

    async def _apply(self, want: Table, current: Table, keys: Optional[List[Key]] = None,
                     dry_run: bool = False) -> List[Change]:
        """The library's ``apply()`` turning ``current`` into ``want`` (both
        of own services only; ``keys``: only these services, all of them
        the director's, changed)."""
        changed = None if keys is None else [self.services[k].service for k in keys]
        return await self.kernel.apply(planner.records(want), planner.records(current),
                                       changed, dry_run)

    # ------------------------------------------------------------ rounds
    def wake(self) -> None:
        """Ask for a round of kernel writes soon."""
        if self._dirty is not None:
            self._dirty.set()

    async def _read(self) -> None:
        table = await self.kernel.table()
        own = self._own()
        self.table = {}
        for svc, dests in table.items():
            if svc.key in own:
                self.table[svc.key] = (svc, {d.key: d for d in dests})

    def _chunks(self, order: List[Tuple[Any, ...]]) -> List[List[Tuple[Any, ...]]]:
        """``order`` cut into chunks of at most CHUNK services and about
        CHUNK_SERVERS real servers (50 services of 1,000 real servers in one
        chunk were a stall of a quarter second for the checks)."""
        out: List[List[Tuple[Any, ...]]] = []
        chunk: List[Tuple[Any, ...]] = []
        n = 0
        services = self.services
        for key in order:
            if chunk and (len(chunk) >= CHUNK or n >= CHUNK_SERVERS):
                out.append(chunk)
                chunk, n = [], 0
            chunk.append(key)
            st = services.get(key)
            n += len(st.real_servers) if st is not None else 0
        if chunk:
            out.append(chunk)
        return out

    async def round(self, partial: bool = False
                    ) -> List[Change]:
        """One round: read the own services back, finish drains, write the
        difference as one batch.  Returns the calls sent.

        ``partial``: only the services whose real servers changed state since
        the last round, planned against the table as the director last read
        and wrote it (no dump: at tens of thousands of real servers a full
        round takes a second of CPU); drift is repaired by the next full
        round (resync, drains, reloads, the control API)."""
        assert self._lock is not None
        async with self._lock:
            self._round_began = time.monotonic()
            try:
                return await self._round(partial)
            finally:
                self._round_began = None

    async def _round(self, partial: bool) -> List[Change]:
        keys: Optional[List[Key]] = None
        mirror = self.table       # as last read and written: what drift is seen against
        if partial:
            keys = [k for k in self._changed if k in self.services]
        else:
            await self._read()
            self._drains()
            self._sysctls()
        self._changed = set()
        want: Table = {}
        chunks = self._chunks(list(self.services) if keys is None else keys)
        for chunk in chunks:
            # in chunks, letting the checks run between them
            want.update(self.desired(chunk))
            if len(chunks) > 1:
                await asyncio.sleep(0)
        current = self.table if keys is None else {k: self.table[k] for k in keys
                                                   if k in self.table}
        calls = await self._apply(want, current, keys)
        if calls and keys is None and self.rounds:
            self._report_drift(mirror, calls)
        if keys is None:
            self.table = planner.written(self.table, want)
        else:
            planner.written_part(self.table, want, keys)
        for key in [k for k, st in self.services.items()
                    if st.cfg is None and k not in want
                    and (keys is None or k in keys)]:
            self.emit("removed", self.services.pop(key).name)
            self.table.pop(key, None)
        self.rounds += 1
        if keys is None:
            self._save_state()
        if self.metrics is not None:
            self.metrics.after_round(self)
        self._draining = any(rs.draining and not rs.gone for st in self.services.values()
                             for rs in st.real_servers.values())
        if self._draining and self._tasks and asyncio.current_task() is not self._tasks[0]:
            # a drain begun outside the writer (the control API, a
            # reload): the writer must poll it from now on, not sleep on
            # until the next resync
            self.wake()
        if self.announcer is not None:
            await self.announcer.update()
        return calls

    def _report_drift(self, mirror: Dict[Tuple[Any, ...], Tuple[ipvs.Service,
                                                                Dict[Any, ipvs.Destination]]],
                      calls: List[Change]) -> None:
        def name(svc: ipvs.Service) -> str:
            st = self.services.get(svc.key)
            return st.name if st is not None else service_name(svc)
        drift.report(mirror, self.table, calls, name, self.emit, self.metrics)

    def _sysctls(self, first: bool = False) -> Dict[str, Optional[str]]:
        return drift.keep_sysctls(self.config.director.sysctl, self.sysctl_values,
                                  self.kernel, self.emit, self.metrics, first)

    # ------------------------------------------------------------ state file
    def _role_to_keep(self) -> Optional[str]:
        keeper = self.sync
        if keeper is not None:
            return keeper.role if keeper.told else None
        # before the keeper is made at start: the role read stays
        return self.saved_role if self.config.director.sync is not None else None

    def _save_state(self) -> None:
        """Write the state file when what it keeps changed (atomically)."""
        self.statefile.save(self.services.values(), self._role_to_keep())

    async def _restore_services(self) -> Saved:
        saved = await self.statefile.restore_services(self.services, self.kernel)
        self.saved_role = saved[2]
        return saved

    def _restore_servers(self, saved: Saved) -> None:
        self.statefile.restore_servers(self.services, self.table, saved)

    async def _writer(self) -> None:
        assert self._dirty is not None
        loop = asyncio.get_running_loop()
        resync = self.config.director.resync_interval
        self._next_resync = loop.time() + resync
        failures = 0
        while not self._closing:
            timeout = self._next_resync - loop.time()
            if self._draining:
                timeout = min(timeout, DRAIN_POLL)
            if failures:
                timeout = min(timeout, min(2.0, 0.5 * failures))
            with contextlib.suppress(asyncio.TimeoutError):
                await within(self._dirty.wait(), max(0.0, timeout))
            self._dirty.clear()
            full = self._full or failures > 0
            if loop.time() >= self._next_resync:
                self._next_resync = loop.time() + self.config.director.resync_interval
                full = True
            if self._draining:
                full = True   # drains need the connection counters
            try:
                self._full = True
                await self.round(partial=not full)
                self._full = False
                await self._keep_sync()
                if failures:
                    self.emit("resync", reason="kernel reachable again")
                failures = 0
                self.last_round_error = None
            except (ipvs.IPVSError, OSError) as e:
                failures += 1
                self.last_round_error = str(e)
                if failures == 1:
                    self.emit("error", message=str(e))
                await self.kernel.reopen()

    async def _watch(self) -> None:
        """Notice an IPVS module reload (the table of the own services gone
        at once) sooner than the resync interval: a cheap listing of the
        services every few seconds."""
        while not self._closing:
            await asyncio.sleep(min(WATCH_INTERVAL, self.config.director.resync_interval))
            try:
                services = await self.kernel.services()
            except (ipvs.IPVSError, OSError):
                await self.kernel.reopen()
                self._full = True
                self.wake()
                continue
            keys = {s.key for s in services}
            if any(k not in keys for k in self.table) or not services and self.table:
                self._full = True
                self.wake()

    # ------------------------------------------------------------ life
    def writer_alive(self, stall: float = 30.0) -> bool:
        """True while the writer runs and no round has been in progress for
        ``stall`` seconds or more (what systemd's watchdog is fed on)."""
        if not self._tasks or self._tasks[0].done():
            return False
        began = self._round_began
        return began is None or time.monotonic() - began < stall

    async def preview(self, states: Optional[Dict[Tuple[str, str, int], Dict[str, Any]]] = None
                      ) -> List[Change]:
        """The calls a start would send to the live table now, without
        sending them (``ipvs-director diff``).  ``states``: real servers as
        a running director last knew them, {(service, address, port):
        its /status entry}; the others are as a start finds them."""
        saved = await self._restore_services()
        await self._read()
        self._adopt()
        self._restore_servers(saved)
        if states:
            now = time.monotonic()
            for st in self.services.values():
                for rs in st.real_servers.values():
                    known = states.get((st.name, str(rs.destination.address),
                                        rs.destination.port))
                    if known is None or rs.cfg is None:
                        continue
                    if known.get("state") == "draining":
                        rs.draining_since = now
                        rs.manual_drain = True
                    elif known.get("state") in ("up", "falling", "rising", "down"):
                        rs.state = known["state"]
                    rs.weight_override = known.get("weight_override")
        return await self._apply(self.desired(), self.table, dry_run=True)

    @property
    def started(self) -> bool:
        """True once start() has run (the control API and reloads work)."""
        return bool(self._tasks)

    async def start(self) -> None:
        """Adopt the live table, write the first round, start the probes."""
        self._dirty = asyncio.Event()
        self._lock = asyncio.Lock()
        self._reloading = asyncio.Lock()
        self._stopped = asyncio.Event()
        self.max_checks_in_flight = self.config.director.max_checks_in_flight or _check_slots()
        self.scheduler = Scheduler(self.max_checks_in_flight, self._on_result)
        if self.config.director.announce is not None:
            from ipvs.director.announce import Announcer
            self.announcer = Announcer(self, self.config.director.announce)
        with heap.paused():
            saved = await self._restore_services()
            await self._read()
            before = dict(self.table)       # the own services as found
            self._adopt()
            self._restore_servers(saved)
            sysctls = self._sysctls(first=True)
            try:
                await self.round()
                await self._keep_sync(config_changed=True)
            except BaseException:
                # a refused start leaves nothing of itself behind
                with contextlib.suppress(Exception):
                    await self._put_back(before, set(self.services) | set(before))
                with contextlib.suppress(Exception):
                    for name, value in sysctls.items():
                        if value is not None:
                            self.kernel.sysctl_write(name, value)
                raise
        self._full = False
        loop = asyncio.get_running_loop()
        self._start_probes()
        self._tasks.append(loop.create_task(self._writer()))
        self._tasks.append(loop.create_task(self._watch()))
        heap.settle()
        self.emit("started", services=len(self.services))

    async def stop(self) -> None:
        """Stop every task; the kernel table stays as it is."""
        self._closing = True
        if self.scheduler is not None:
            await self.scheduler.close()
        tasks = list(self._tasks)
        tasks += list(self.events.notify_tasks)
        # asyncio.wait_for of Python < 3.12 may swallow a cancellation that
        # meets a finishing check: cancel again until every task is done
        for _ in range(50):
            pending = [t for t in tasks if not t.done()]
            if not pending:
                break
            for t in pending:
                t.cancel()
            await asyncio.wait(pending, timeout=0.1)
        self._tasks = []
        self.events.end_streams()
        await self.sync_room.close()
        await self.kernel.close()
        if self._stopped is not None:
            self._stopped.set()

    # ------------------------------------------------------------ sync / role
    @property
    def sync(self) -> Optional[SyncKeeper]:
        """The keeper of [director.sync]'s daemon, or None."""
        return self.sync_room.keeper

    @property
    def sync_fifo(self) -> Optional[FifoFollower]:
        """The reader of keepalived's notify_fifo, or None."""
        return self.sync_room.fifo

    async def _keep_sync(self, config_changed: bool = False) -> None:
        """Keep the sync daemon of [director.sync] (see ipvs.director.sync)."""
        await self.sync_room.keep(self.config.director, config_changed)

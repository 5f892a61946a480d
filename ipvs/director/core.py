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
* The writer runs in rounds: one table dump, a plan limited to the
  director's own services, one batch.  Changes coming close together fall
  into one round.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import sys
import time
from typing import Any, Dict, Iterator, List, Optional, Set, Tuple

import ipvs
from ipvs.director import checks as _checks
from ipvs.director import drift, views
from ipvs.director import planner
from ipvs.director.planner import Change, Key, Table
from ipvs.director.scheduler import Scheduler
from ipvs.director.config import (CheckConfig, Config, ConfigError, canonical_service_name,
                                  load, service_name)
from ipvs.director.events import Events
from ipvs.director.runtime import HEALTHY, Probe, RealServer, ServiceState
from ipvs.director.state import Saved, StateFile
from ipvs.director.sync import DirectorSync, FifoFollower, SyncKeeper

__all__ = ["Director", "KernelRefused", "NoAnnounce", "NotFound", "Probe"]

log = logging.getLogger("ipvs.director")

CHUNK = 500               # services planned between two yields to the loop
CHUNK_SERVERS = 5000      # ... and about as many real servers at most
DRAIN_POLL = 1.0
WATCH_INTERVAL = 2.0


class NotFound(LookupError):
    """An unknown service or real server (the control API's 404)."""


class NoAnnounce(LookupError):
    """The file has no [director.announce] (the control API's 409)."""


class KernelRefused(ConfigError):
    """A reload the kernel refused: the running configuration stays (in the
    kernel, the status and the metrics); the message is the kernel's."""


def _settle_heap() -> None:
    """Move the objects alive now (the configuration, the run-time state:
    millions at tens of thousands of real servers) out of the cyclic
    garbage collector's sight: its full collections would otherwise scan
    them all, a stall of a second at a time on the event loop."""
    if hasattr(gc, "freeze"):
        gc.freeze()


@contextlib.contextmanager
def _bulk() -> Iterator[None]:
    """No cyclic garbage collection within: building the state of tens of
    thousands of real servers makes millions of objects, and the
    collector's passes over them were a third of a cold start (0.5-0.7 s
    of 1.5-2.3 s on the host).  The caller settles the heap after."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


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


class Director:
    """Keeps the services of a configuration in one namespace's IPVS table.

    ``kernel`` is an object with the coroutines ``table()``, ``run(calls)``,
    ``reopen()`` and ``close()`` (see ``_kernel``); by default the real one
    of the configuration's namespace.
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
        with _bulk():
            self._build(config, first=True)

    # ------------------------------------------------------------ building
    def _build(self, config: Config, first: bool) -> Dict[str, List[str]]:
        """Make the run-time state of ``config``, carrying over the probes,
        drains and weights of what did not change.  Returns what changed."""
        now = time.monotonic()
        old_probes = self.probes
        probes: Dict[CheckConfig, Probe] = {}
        changes: Dict[str, List[str]] = {"added": [], "removed": [], "changed": []}
        wanted: Set[Tuple[Any, ...]] = set()
        for sc in config.services:
            key = sc.service.key
            wanted.add(key)
            st = self.services.get(key)
            if st is None:
                st = ServiceState(sc.service, sc.name, sc)
                self.services[key] = st
                if not first:
                    changes["added"].append(sc.name)
            else:
                if st.cfg is sc:
                    # the very object of the last load (an unchanged block of
                    # the file): its real servers stay as they are
                    for kept in st.real_servers.values():
                        if kept.cfg is None:
                            continue
                        for probe in kept.probes:
                            if probe.check not in probes:
                                probe.users = []
                                probes[probe.check] = probe
                            probe.users.append((st, kept))
                    continue
                if st.cfg != sc:
                    changes["changed"].append(sc.name)
                st.service, st.cfg = sc.service, sc
            self._touched.add(key)
            seen: Set[Tuple[Any, ...]] = set()
            for rc in sc.real_servers:
                rkey = rc.key         # a new tuple each time: made once
                seen.add(rkey)
                plist = []
                for chk in rc.checks:
                    p = probes.get(chk)
                    if p is None:
                        p = old_probes.get(chk) or Probe(chk)
                        p.users = []
                        probes[chk] = p
                    plist.append(p)
                rs = st.real_servers.get(rkey)
                if rs is None:
                    rs = RealServer(rkey, rc.destination, rc, plist)
                    rs.state = rs.health()
                    st.real_servers[rkey] = rs
                    if not first:
                        self.emit("added", sc.name, rc.destination.address, rc.destination.port,
                                  state=rs.state)
                else:
                    rs.destination, rs.cfg, rs.probes = rc.destination, rc, plist
                    rs.gone = False
                    if rs.draining and not rs.manual_drain:
                        rs.draining_since = None  # back in the file: drain ends
                for p in plist:
                    p.users.append((st, rs))
            for rkey, rs in st.real_servers.items():
                if rkey not in seen and rs.cfg is not None:
                    rs.cfg, rs.probes = None, []
                    if not rs.draining:
                        rs.draining_since = now
        for key, st in self.services.items():
            if key not in wanted and st.cfg is not None:
                self._touched.add(key)
                st.cfg = None
                changes["removed"].append(st.name)
                for rs in st.real_servers.values():
                    rs.cfg, rs.probes = None, []
                    if not rs.draining:
                        rs.draining_since = now
        self.probes = probes
        return changes

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
                if self.metrics is not None:
                    self.metrics.server_state(st, rs)

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

    # ------------------------------------------------------------ desired
    def _quorum(self, st: ServiceState) -> None:
        sc = st.cfg
        if sc is None:
            st.sorry_active = False
            return
        total = sum(rs.weight() for rs in st.real_servers.values()
                    if rs.cfg is not None and not rs.draining and rs.state in HEALTHY)
        was = st.quorum_up
        if st.quorum_up is None:
            st.quorum_up = total >= sc.quorum
        elif st.quorum_up and total < sc.quorum - sc.hysteresis:
            st.quorum_up = False
        elif not st.quorum_up and total >= sc.quorum + sc.hysteresis:
            st.quorum_up = True
        if was is not None and was != st.quorum_up:
            self.emit("quorum_gained" if st.quorum_up else "quorum_lost", st.name,
                      healthy_weight=total, quorum=sc.quorum)
        elif was is None and not st.quorum_up:
            self.emit("quorum_lost", st.name, healthy_weight=total, quorum=sc.quorum)
        sorry = sc.sorry_server is not None and not st.quorum_up
        if sorry != st.sorry_active:
            st.sorry_active = sorry
        if self.metrics is not None:
            self.metrics.quorum(st)

    def desired(self, keys: Any = None
                ) -> Dict[Tuple[Any, ...], Tuple[ipvs.Service, Dict[Any, ipvs.Destination]]]:
        """{service key: (Service, {dest key: Destination})} of every own
        service (or of those of ``keys``) that must be in the kernel now."""
        out = {}
        items = (self.services.items() if keys is None else
                 [(k, self.services[k]) for k in keys if k in self.services])
        for key, st in items:
            self._quorum(st)
            dests: Dict[Any, ipvs.Destination] = {}
            # an mh service's real servers of the file are quiesced, never
            # deleted: deleting one would move other flows in the table
            mh = st.service.scheduler == "mh"
            for rkey, rs in st.real_servers.items():
                if rs.gone:
                    if mh and rs.cfg is not None:
                        dests[rkey] = rs.at(0)
                    continue
                if rs.draining:
                    dests[rkey] = rs.at(0)
                    continue
                if rs.cfg is None:
                    continue
                if rs.state in HEALTHY:
                    w = 0 if st.sorry_active else rs.weight()
                    dests[rkey] = rs.at(w)
                elif rs.cfg.on_failure == "quiesce" or mh:
                    dests[rkey] = rs.at(0)
            if st.sorry_active and st.cfg is not None and st.cfg.sorry_server is not None:
                dests[st.cfg.sorry_server.key] = st.cfg.sorry_server
            if st.cfg is None and not dests:
                continue  # a removed service, drained: delete it
            out[key] = (st.service, dests)
        return out

    async def _apply(self, want: Table, current: Table, keys: Optional[List[Key]] = None,
                     dry_run: bool = False) -> List[Change]:
        """The library's ``apply()`` turning ``current`` into ``want`` (both
        of own services only; ``keys``: only these services changed)."""
        changed = None
        if keys is not None:
            changed = [self.services[k].service if k in self.services else current[k][0]
                       for k in keys if k in self.services or k in current]
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

    def _adopt(self) -> None:
        """Real servers found in the kernel with a weight above 0 are trusted
        up when their probes have not run yet; destinations of own services
        that the file does not name are drained."""
        now = time.monotonic()
        for key, (svc, dests) in self.table.items():
            st = self.services[key]
            sorry = st.cfg.sorry_server.key if st.cfg and st.cfg.sorry_server else None
            for dkey, d in dests.items():
                rs = st.real_servers.get(dkey)
                if rs is None:
                    if dkey == sorry:
                        if d.weight > 0:
                            st.quorum_up = False  # it was serving: keep it until quorum
                        continue
                    rs = RealServer(dkey, d.replace(active_connections=0, inactive_connections=0,
                                                    persistent_connections=0, stats=None),
                                    None, [], draining_since=now, state="draining")
                    st.real_servers[dkey] = rs
                    self.emit("drain", st.name, d.address, d.port, reason="not in the file")
                    continue
                if d.weight > 0 and rs.cfg is not None and not rs.draining:
                    for p in rs.probes:
                        if p.fresh and p.state != "up":
                            p.state, p.count = "up", 0
        for st in self.services.values():
            for rs in st.real_servers.values():
                if rs.cfg is not None and not rs.draining:
                    rs.state = rs.health()

    def _drains(self) -> bool:
        """Finish drains whose connections are gone or whose time is up;
        True while some drain goes on."""
        now = time.monotonic()
        timeout = self.config.director.drain_timeout
        busy = False
        for key, st in list(self.services.items()):
            cur = self.table.get(key, (None, {}))[1]
            for rkey, rs in list(st.real_servers.items()):
                if not rs.draining or rs.gone:
                    continue
                d = cur.get(rkey)
                conns = 0 if d is None else (d.active_connections + d.inactive_connections
                                             + d.persistent_connections)
                expired = now - (rs.draining_since or now) >= timeout
                if (d is not None and d.weight == 0 and conns == 0) or d is None or expired:
                    if rs.cfg is None:
                        del st.real_servers[rkey]
                    else:
                        rs.gone = True
                    # an mh service keeps a drained server of its file at weight 0
                    kept = rs.cfg is not None and st.service.scheduler == "mh"
                    self.emit("quiesced" if kept else "removed", st.name,
                              rs.destination.address, rs.destination.port,
                              reason="drain timeout" if expired and conns else "drained",
                              connections=conns)
                else:
                    busy = True
            if st.cfg is None and not st.real_servers:
                pass  # deleted by this round's plan, forgotten after it
        return busy

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
            try:
                await asyncio.wait_for(self._dirty.wait(), max(0.0, timeout))
            except asyncio.TimeoutError:
                pass
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
                table = await self.kernel.table()
            except (ipvs.IPVSError, OSError):
                await self.kernel.reopen()
                self._full = True
                self.wake()
                continue
            keys = {s.key for s in table}
            if any(k not in keys for k in self.table) or not table and self.table:
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
        with _bulk():
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
        _settle_heap()
        self.emit("started", services=len(self.services))

    async def withdraw(self) -> None:
        """At SIGTERM, before the control socket closes: withdraw every VIP
        of [director.announce] and keep serving ``withdraw_grace`` seconds
        (the router moves the flows meanwhile)."""
        a = self.announcer
        if a is None or a.stopping:
            return
        assert self._lock is not None
        async with self._lock:
            await a.withdraw_all()
        await asyncio.sleep(a.cfg.withdraw_grace)

    async def maintenance(self, on: Any) -> Dict[str, Any]:
        """``POST /maintenance``: withdraw every VIP (``on``) or announce
        again as health says; the connections that still arrive are served."""
        if not isinstance(on, bool):
            raise ValueError('"on" must be true or false')
        if self.announcer is None:
            raise NoAnnounce("this director has no [director.announce]")
        assert self._lock is not None
        async with self._lock:
            return await self.announcer.set_maintenance(on)

    def announce_status(self) -> Dict[str, Any]:
        """``GET /announce``."""
        if self.announcer is None:
            raise NoAnnounce("this director has no [director.announce]")
        return self.announcer.status()

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

    async def reload(self, config: Optional[Config] = None) -> Dict[str, Any]:
        """Read the file again (or take ``config``) and bring the kernel to
        it; a file that does not validate raises ConfigError and changes
        nothing."""
        try:
            if config is None:
                if self.path is None:
                    raise ConfigError("no configuration file to reload")
                with _bulk():
                    config = load(self.path)
            if config.director.netns != self.config.director.netns:
                raise ConfigError("netns cannot change on reload (restart the director)",
                                  filename=config.filename, key="director.netns")
            old_a, new_a = self.config.director.announce, config.director.announce
            if (old_a is None) != (new_a is None) or (
                    old_a is not None and new_a is not None
                    and (old_a.via, old_a.interface) != (new_a.via, new_a.interface)):
                raise ConfigError("[director.announce] via and interface cannot change on "
                                  "reload (restart the director)", filename=config.filename,
                                  key="director.announce")
        except ConfigError as e:
            self.emit("reload_failed", message=str(e))
            if self.metrics is not None:
                self.metrics.reload(False)
            raise
        if self._reloading is None:
            self._reloading = asyncio.Lock()
        async with self._reloading:     # one reload at a time (SIGHUP storms)
            snapshot = self._snapshot()
            # the refused file's own events (servers added...) are never sent
            self.events.hold()
            try:
                result = await self._reload(config)
            except Exception as e:
                try:
                    await self._roll_back(snapshot)
                except Exception as again:
                    self.events.release(send=False)
                    self.emit("error", message="putting back the running configuration: %s"
                              % again)
                self.events.release(send=False)
                message = "the kernel refused %s: %s" % (config.filename, e)
                self.emit("reload_failed", message=message)
                if self.metrics is not None:
                    self.metrics.reload(False)
                raise KernelRefused(message, filename=config.filename) from e
            self.events.release(send=True)
            if self.metrics is not None:
                self.metrics.reload(True)
            return result

    def _snapshot(self) -> Dict[str, Any]:
        """What a refused reload puts back: the configuration, the probes,
        which services and real servers there were, their quorum states and
        the table as last read and written."""
        return {"config": self.config, "probes": self.probes,
                "services": {k: set(st.real_servers) for k, st in self.services.items()},
                "quorum": {k: (st.quorum_up, st.sorry_active)
                           for k, st in self.services.items()},
                "table": dict(self.table)}

    async def _roll_back(self, snap: Dict[str, Any]) -> None:
        """Back to ``snap`` after the kernel refused a reload's write: the
        run-time state of the old configuration (its own probes), then its
        table put back and written whole."""
        keys = set(self.services) | set(snap["services"])
        old = self.probes
        self.config = snap["config"]
        if self.announcer is not None and self.config.director.announce is not None:
            self.announcer.cfg = self.config.director.announce
        self.probes = {**old, **snap["probes"]}
        with _bulk():
            self._build(self.config, first=False)
        self._touched = set()
        self._stop_unused_probes(old)
        for key in [k for k in self.services if k not in snap["services"]]:
            del self.services[key]
        for key, st in self.services.items():
            had = snap["services"][key]
            for rkey in [r for r in st.real_servers if r not in had]:
                del st.real_servers[rkey]
            st.quorum_up, st.sorry_active = snap["quorum"][key]
        self._refresh_states()
        assert self._lock is not None
        async with self._lock:
            await self._put_back(snap["table"], keys)
        self._start_probes()
        await self.round()

    async def _put_back(self, before: Dict[Tuple[Any, ...], Tuple[ipvs.Service,
                                                                   Dict[Any, ipvs.Destination]]],
                        keys: Set[Tuple[Any, ...]]) -> None:
        """The services of ``keys`` written back as ``before`` has them (the
        table as read before a write the kernel refused; a key not in it is
        deleted)."""
        await self.kernel.reopen()
        now = {svc.key: (svc, {d.key: d for d in dests})
               for svc, dests in (await self.kernel.table()).items() if svc.key in keys}
        await self._apply({k: v for k, v in before.items() if k in keys}, now)
        self.table = {k: v for k, v in self.table.items() if k not in keys}
        self.table.update((k, v) for k, v in before.items() if k in keys)

    async def _reload(self, config: Config) -> Dict[str, Any]:
        if self.announcer is not None and config.director.announce is not None:
            self.announcer.cfg = config.director.announce     # when, withdraw_grace
        old = self.probes
        kept = {(key, rkey): rs.destination.weight for key, st in self.services.items()
                for rkey, rs in st.real_servers.items() if rs.weight_override is not None}
        self.config = config
        self._touched = set()
        with _bulk():
            changes = self._build(config, first=False)
        touched, self._touched = self._touched, set()
        self._stop_unused_probes(old)
        assert self._lock is not None
        if changes["added"]:
            # a new service may already be in the kernel (then it is adopted):
            # read the whole table back and write a full round
            async with self._lock:
                await self._read()
                self._adopt_new()
            self._refresh_states()
            calls = await self.round()
        else:
            # only what the file changed: planned against the table as last
            # read and written, no dump (drift waits for the next resync)
            async with self._lock:
                self._adopt_new(touched)
            self._refresh_states(None, [(st, rs) for key in touched
                                        for st in (self.services[key],)
                                        for rs in st.real_servers.values()])
            self._changed |= touched
            try:
                calls = await self.round(partial=True)
            except (ipvs.IPVSError, OSError):
                # the table is not what the director last saw (a module
                # reload, a hand-made change): read it back, write it whole
                await self.kernel.reopen()
                calls = await self.round()
            self._save_state()
        await self._keep_sync(config_changed=True)
        self._start_probes()
        _settle_heap()
        extra: Dict[str, Any] = {}
        kept_api = []
        for (key, rkey), weight in kept.items():
            rs = self.services[key].real_servers.get(rkey) if key in self.services else None
            if rs is not None and rs.cfg is not None and rs.weight_override is not None \
                    and rs.destination.weight != weight:
                kept_api.append({"service": self.services[key].name,
                                 "address": str(rs.destination.address),
                                 "port": rs.destination.port, "weight": rs.weight_override,
                                 "configured_weight": rs.destination.weight})
        if kept_api:
            # the file changed the weight of a server whose API weight stays
            extra["kept_api_weight"] = kept_api
        self.emit("reload", **changes, calls=len(calls), **extra)
        return {"reloaded": True, **changes, "calls": len(calls), **extra}

    def _adopt_new(self, keys: Optional[Set[Tuple[Any, ...]]] = None) -> None:
        for key, (svc, dests) in self.table.items():
            if keys is not None and key not in keys:
                continue
            st = self.services[key]
            for dkey, d in dests.items():
                rs = st.real_servers.get(dkey)
                if rs is not None and rs.cfg is not None and not rs.draining and d.weight > 0:
                    for p in rs.probes:
                        if p.fresh and p.last is None and p.state != "up":
                            p.state, p.count = "up", 0

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

    async def role(self, state: Any) -> Dict[str, Any]:
        """``POST /role``: switch the sync daemon to ``state`` ("master" or
        "backup").  ValueError for a bad state; ``ipvs.director.sync.NoSync``
        when the file has no [director.sync]."""
        return await self.sync_room.role(state)

    # ------------------------------------------------------------ control
    def _find(self, service: Any, address: Any, port: Any) -> Tuple[ServiceState, RealServer]:
        if not isinstance(service, str):
            raise ValueError('"service" must be a service string such as "TCP 10.0.0.1:80"')
        name = canonical_service_name(service)
        st = next((s for s in self.services.values() if s.name == name), None)
        if st is None:
            raise NotFound("unknown service %r" % service)
        try:
            import ipaddress
            addr = ipaddress.ip_address(address)
        except (ValueError, TypeError):
            raise ValueError('"address" must be an IP address') from None
        if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port <= 65535:
            raise ValueError('"port" must be an integer 0..65535')
        for rs in st.real_servers.values():
            if rs.destination.address == addr and rs.destination.port == port:
                return st, rs
        raise NotFound("no real server %s port %d in %s" % (addr, port, st.name))

    async def drain(self, service: Any, address: Any, port: Any) -> Dict[str, Any]:
        st, rs = self._find(service, address, port)
        if rs.cfg is None:
            raise ValueError("that real server is already leaving (not in the file)")
        if not rs.manual_drain:
            rs.manual_drain = True
            rs.draining_since = time.monotonic()
            rs.gone = False
            self.emit("drain", st.name, rs.destination.address, rs.destination.port)
            await self.round()
        return self.server_status(st, rs)

    async def undrain(self, service: Any, address: Any, port: Any) -> Dict[str, Any]:
        st, rs = self._find(service, address, port)
        if rs.cfg is None:
            raise ValueError("that real server is not in the file any more")
        if rs.manual_drain:
            rs.manual_drain = False
            rs.draining_since = None
            rs.gone = False
            rs.state = rs.health()
            self.emit("undrain", st.name, rs.destination.address, rs.destination.port,
                      state=rs.state)
            await self.round()
        return self.server_status(st, rs)

    async def set_weight(self, service: Any, address: Any, port: Any,
                         weight: Any) -> Dict[str, Any]:
        """``POST /weight``: an API weight for one real server; ``None``
        clears it (back to the configured weight)."""
        st, rs = self._find(service, address, port)
        if weight is not None and (not isinstance(weight, int) or isinstance(weight, bool)
                                   or not 0 <= weight <= 0x7FFFFFFF):
            raise ValueError('"weight" must be an integer 0..2147483647, or null to clear it')
        if rs.cfg is None:
            raise ValueError("that real server is not in the file any more")
        rs.weight_override = weight
        if weight is None:
            self.emit("weight", st.name, rs.destination.address, rs.destination.port,
                      weight=rs.destination.weight, cleared=True)
        else:
            self.emit("weight", st.name, rs.destination.address, rs.destination.port,
                      weight=weight)
        await self.round()
        return self.server_status(st, rs)

    def server_status(self, st: ServiceState, rs: RealServer) -> Dict[str, Any]:
        return views.real_server(st, rs, self.table)

    def status(self) -> Dict[str, Any]:
        """``GET /status``."""
        return views.status(self)

"""Reloads of the director: all or nothing.  A file that does not validate
changes nothing; a file the kernel refuses is rolled back (the old
configuration with its own probes, its table put back and written whole)
and its events are never sent.  One reload at a time."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Set

import ipvs
from ipvs.director import heap
from ipvs.director.config import CheckConfig, Config, ConfigError, load
from ipvs.director.events import Events
from ipvs.director.planner import Change, Key, Table
from ipvs.director.runtime import Probe, ServiceState

__all__ = ["Reloading", "KernelRefused"]


class KernelRefused(ConfigError):
    """A reload the kernel refused: the running configuration stays (in the
    kernel, the status and the metrics); the message is the kernel's."""


class Reloading:
    """The reload of `ipvs.director.core.Director` (a mixin: the attributes
    and methods below are the Director's)."""

    config: Config
    path: Optional[str]
    services: Dict[Key, ServiceState]
    probes: Dict[CheckConfig, Probe]
    table: Table
    events: Events
    metrics: Any
    announcer: Any
    kernel: Any
    _touched: Set[Key]
    _changed: Set[Key]
    _lock: Optional[asyncio.Lock]
    _reloading: Optional[asyncio.Lock]

    if TYPE_CHECKING:  # the Director's methods this uses (for the reader and mypy)
        def emit(self, event: str, *a: Any, **k: Any) -> Dict[str, Any]: ...
        def _build(self, config: Config, first: bool) -> Dict[str, List[str]]: ...
        def _stop_unused_probes(self, old: Dict[CheckConfig, Probe]) -> None: ...
        def _refresh_states(self, result: Any = None, only: Any = None) -> None: ...
        def _start_probes(self) -> None: ...
        def _adopt_new(self, keys: Optional[Set[Key]] = None) -> None: ...
        def _save_state(self) -> None: ...
        async def _read(self) -> None: ...
        async def round(self, partial: bool = False) -> List[Change]: ...
        async def _apply(self, want: Table, current: Table, keys: Any = None,
                         dry_run: bool = False) -> List[Change]: ...
        async def _keep_sync(self, config_changed: bool = False) -> None: ...

    async def reload(self, config: Optional[Config] = None) -> Dict[str, Any]:
        """Read the file again (or take ``config``) and bring the kernel to
        it; a file that does not validate raises ConfigError and changes
        nothing."""
        try:
            if config is None:
                if self.path is None:
                    raise ConfigError("no configuration file to reload")
                with heap.paused():
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
        with heap.paused():
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

    async def _put_back(self, before: Table, keys: Set[Key]) -> None:
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
        with heap.paused():
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
        heap.settle()
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

"""What the director's own services must be in the kernel now: the run-time
state of a configuration (carrying over probes, drains and weights of what
did not change), quorum and the sorry server, the table a round wants, the
live table adopted at start, and the drains finished.  No I/O: the round
(core.py) reads the table and hands what this wants to ``apply()``."""

from __future__ import annotations

import time
from typing import Any, Callable, Dict, List, Optional, Set, Tuple

import ipvs
from ipvs.director.config import CheckConfig, Config
from ipvs.director.planner import Key, Table
from ipvs.director.runtime import HEALTHY, Probe, RealServer, ServiceState

__all__ = ["Wanted"]


class Wanted:
    """The part of `ipvs.director.core.Director` that decides what its
    services must be (a mixin: the attributes below are the Director's)."""

    config: Config
    services: Dict[Key, ServiceState]
    probes: Dict[CheckConfig, Probe]
    table: Table
    _touched: Set[Key]
    emit: Callable[..., Any]

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

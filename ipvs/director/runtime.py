"""The director's run-time records: a probe (one check of one target,
shared by every real server using it), a real server and a service as the
director follows them.  Nothing here does I/O."""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, List, Optional, Tuple

import ipvs
from ipvs.director import checks as _checks
from ipvs.director.config import CheckConfig, RealServerConfig, ServiceConfig

__all__ = ["HEALTHY", "Probe", "RealServer", "ServiceState"]

#: the states in which a real server takes traffic
HEALTHY = ("up", "falling")


class Probe:
    """One check of one target, shared by every real server using it."""

    def __init__(self, check: CheckConfig) -> None:
        self.check = check
        # a server without a check (type none) is up from the start
        self.state = "up" if check.initial == "up" or check.type == "none" else "down"
        self.count = 0            # successes while rising, failures while falling
        self.last: Optional[_checks.CheckResult] = None
        self.last_time: Optional[float] = None
        self.weight: Optional[int] = None   # asked for by exec/file checks
        self.sched = 0            # the scheduler's token while it is scheduled
        self.fresh = True         # made by this config load, never run yet
        self.due: Optional[float] = None    # loop time the current run was due
        # the (service, real server) pairs using it: a change refreshes only these
        self.users: List[Tuple["ServiceState", "RealServer"]] = []

    @property
    def healthy(self) -> bool:
        return self.state in HEALTHY

    def period(self) -> float:
        """Seconds from one run's due time to the next: the retry interval
        while confirming a change, else the interval."""
        c = self.check
        return c.retry_interval if self.state in ("rising", "falling") else c.interval

    def feed(self, result: _checks.CheckResult) -> bool:
        """Apply one result; True when the state changed."""
        c = self.check
        old = self.state
        ok = result.ok
        if ok:
            self.weight = result.weight
        if self.state == "down":
            if ok:
                self.count = 1
                self.state = "up" if c.rise <= 1 else "rising"
        elif self.state == "rising":
            if ok:
                self.count += 1
                if self.count >= c.rise:
                    self.state = "up"
            else:
                self.state, self.count = "down", 0
        elif self.state == "up":
            if not ok:
                self.count = 1
                self.state = "down" if c.fall <= 1 else "falling"
        elif self.state == "falling":
            if ok:
                self.state, self.count = "up", 0
            else:
                self.count += 1
                if self.count >= c.fall:
                    self.state = "down"
        if self.state in ("up", "down"):
            self.count = 0
        return self.state != old


@dataclasses.dataclass
class RealServer:
    """A real server of one service at run time."""
    key: Tuple[Any, ...]
    destination: ipvs.Destination          # as configured (configured weight)
    cfg: Optional[RealServerConfig]        # None: not (any more) in the file
    probes: List[Probe] = dataclasses.field(default_factory=list)
    manual_drain: bool = False
    weight_override: Optional[int] = None
    draining_since: Optional[float] = None
    gone: bool = False                     # drained and deleted
    state: str = "down"
    # destination objects at other weights, made once: {weight: Destination}
    # of ``_at_of`` (rebuilt when the configured destination changes)
    _at: Dict[int, ipvs.Destination] = dataclasses.field(default_factory=dict, repr=False)
    _at_of: Optional[ipvs.Destination] = dataclasses.field(default=None, repr=False)

    def at(self, weight: int) -> ipvs.Destination:
        """The configured destination with ``weight`` (cached: a round over
        tens of thousands of real servers makes no new objects)."""
        d = self.destination
        if d.weight == weight:
            return d
        if self._at_of is not d:
            self._at, self._at_of = {}, d
        out = self._at.get(weight)
        if out is None:
            if len(self._at) > 4:
                self._at.clear()
            out = self._at[weight] = d.replace(weight=weight)
        return out

    @property
    def draining(self) -> bool:
        return self.draining_since is not None

    def health(self) -> str:
        states = [p.state for p in self.probes] or ["up"]
        if all(s == "up" for s in states):
            return "up"
        if "down" in states:
            return "down"
        if "rising" in states:
            return "rising"
        return "falling"

    def weight(self) -> int:
        w = self.weight_override if self.weight_override is not None else self.destination.weight
        asked = [p.weight for p in self.probes if p.weight is not None]
        if asked:
            w = min(asked)
        return w


@dataclasses.dataclass
class ServiceState:
    """A service at run time."""
    service: ipvs.Service
    name: str
    cfg: Optional[ServiceConfig]           # None: removed from the file, draining
    real_servers: Dict[Tuple[Any, ...], RealServer] = dataclasses.field(default_factory=dict)
    quorum_up: Optional[bool] = None
    sorry_active: bool = False

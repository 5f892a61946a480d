"""What the control API (and the subcommands) ask of a running director:
drain, undrain and weigh one real server, the status, the sync role,
maintenance and the announced VIPs."""

from __future__ import annotations

import asyncio
import ipaddress
import time
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple

from ipvs.director import views
from ipvs.director.config import Config, canonical_service_name
from ipvs.director.planner import Change, Key, Table
from ipvs.director.runtime import RealServer, ServiceState
from ipvs.director.sync import DirectorSync

__all__ = ["Operations", "NotFound", "NoAnnounce"]


class NotFound(LookupError):
    """An unknown service or real server (the control API's 404)."""


class NoAnnounce(LookupError):
    """The file has no [director.announce] (the control API's 409)."""


class Operations:
    """The control API's verbs of `ipvs.director.core.Director` (a mixin:
    the attributes and methods below are the Director's)."""

    config: Config
    services: Dict[Key, ServiceState]
    table: Table
    announcer: Any
    sync_room: DirectorSync
    _lock: Optional[asyncio.Lock]

    if TYPE_CHECKING:  # the Director's methods this uses (for the reader and mypy)
        def emit(self, event: str, *a: Any, **k: Any) -> Dict[str, Any]: ...
        async def round(self, partial: bool = False) -> List[Change]: ...

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

    async def role(self, state: Any) -> Dict[str, Any]:
        """``POST /role``: switch the sync daemon to ``state`` ("master" or
        "backup").  ValueError for a bad state; ``ipvs.director.sync.NoSync``
        when the file has no [director.sync]."""
        return await self.sync_room.role(state)

    def _find(self, service: Any, address: Any, port: Any) -> Tuple[ServiceState, RealServer]:
        if not isinstance(service, str):
            raise ValueError('"service" must be a service string such as "TCP 10.0.0.1:80"')
        name = canonical_service_name(service)
        st = next((s for s in self.services.values() if s.name == name), None)
        if st is None:
            raise NotFound("unknown service %r" % service)
        try:
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

"""What ``GET /status`` shows of a director: its services, real servers,
rounds, sync role, sysctl settings, announced VIPs and last kernel error."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, Dict, Tuple

import ipvs
from ipvs.director.runtime import RealServer, ServiceState

if TYPE_CHECKING:
    from ipvs.director.core import Director

__all__ = ["real_server", "status"]

Table = Dict[Tuple[Any, ...], Tuple[ipvs.Service, Dict[Any, ipvs.Destination]]]


def real_server(st: ServiceState, rs: RealServer, table: Table) -> Dict[str, Any]:
    """One real server of ``GET /status``."""
    cur = table.get(st.service.key, (None, {}))[1].get(rs.key)
    state = "draining" if rs.draining else rs.state
    last = None
    checks = []
    for p in rs.probes:
        item = {"type": p.check.type, "state": p.state, "target": "%s:%d" % (
            "[%s]" % p.check.address if ":" in p.check.address else p.check.address,
            p.check.port)}
        if p.last is not None:
            item.update(p.last.as_dict())
            item["time"] = round(p.last_time or 0, 3)
            if last is None or (p.last_time or 0) > last["time"]:
                last = item
        checks.append(item)
    out = {"address": str(rs.destination.address), "port": rs.destination.port,
           "weight": cur.weight if cur is not None else None,
           "configured_weight": rs.destination.weight,
           "forward": rs.destination.forward.name.lower(),
           "state": state, "last_check": last, "checks": checks,
           "in_file": rs.cfg is not None}
    if rs.weight_override is not None:
        out["weight_override"] = rs.weight_override
    if cur is not None:
        out["connections"] = {"active": cur.active_connections,
                              "inactive": cur.inactive_connections,
                              "persistent": cur.persistent_connections}
    return out


def status(d: "Director") -> Dict[str, Any]:
    """``GET /status``: every service and real server, the rounds, sync,
    sysctl, announce, the last kernel error."""
    out = []
    for st in d.services.values():
        sc = st.cfg
        item: Dict[str, Any] = {
            "service": st.name, "in_file": sc is not None,
            "in_kernel": st.service.key in d.table,
            "scheduler": st.service.scheduler,
            "quorum": sc.quorum if sc else None,
            "hysteresis": sc.hysteresis if sc else None,
            "quorum_up": st.quorum_up,
            "sorry_server": ("%s:%d" % (sc.sorry_server.address, sc.sorry_server.port)
                             if sc and sc.sorry_server else None),
            "sorry_active": st.sorry_active,
            "real_servers": [real_server(st, rs, d.table) for rs in st.real_servers.values()],
        }
        out.append(item)
    return {"services": out, "config": d.path, "rounds": d.rounds,
            "sync": d.sync_room.status(), "sysctl": dict(d.sysctl_values),
            "announce": d.announcer.status() if d.announcer is not None else None,
            "kernel_error": d.last_round_error, "event_streams": len(d.subscribers),
            "tasks": len(asyncio.all_tasks()),
            "check_tasks": d.scheduler.check_tasks if d.scheduler is not None else 0}

"""The director's mirror of its own services in the kernel: what a round
left there (what partial rounds plan against, and what drift is seen
against), and the form the library's ``apply()`` takes it in.  The
director plans nothing itself: ``apply()`` (ipvs/_plan.py) does."""

from __future__ import annotations

from typing import Any, Dict, Iterable, List, Tuple

import ipvs

__all__ = ["Table", "Key", "Change", "records", "written", "written_part"]

#: a service's key (``Service.key``)
Key = Tuple[Any, ...]
#: {service key: (Service, {destination key: Destination})}
Table = Dict[Key, Tuple[ipvs.Service, Dict[Any, ipvs.Destination]]]
#: one step of a plan: (method, service, destination or None)
Change = Tuple[str, ipvs.Service, Any]


def in_order(svc: ipvs.Service, dests: Dict[Any, ipvs.Destination]) -> Iterable[ipvs.Destination]:
    """The destinations as they are added: an ``mh`` service's in sorted
    (address, port) order, so that every director given the same file
    builds the same Maglev table (it depends on the order of adding)."""
    if svc.scheduler != "mh":
        return dests.values()
    return sorted(dests.values(), key=lambda d: (d.address.version, int(d.address), d.port))


def records(table: Table) -> Dict[ipvs.Service, Iterable[ipvs.Destination]]:
    """``table`` as ``apply()`` takes it: {Service: [Destination]}."""
    return {svc: in_order(svc, dests) for svc, dests in table.values()}


def written(mirror: Table, want: Table) -> Table:
    """The table as a round writing ``want`` left it (counters as last
    read in ``mirror``)."""
    table = {}
    for key, (svc, dests) in want.items():
        cur = mirror.get(key, (None, {}))[1]
        out = {}
        for dkey, d in dests.items():
            c = cur.get(dkey)
            if c is not None and c == d:
                out[dkey] = c  # unchanged: the object read, counters and all
                continue
            out[dkey] = d if c is None else d.replace(
                active_connections=c.active_connections,
                inactive_connections=c.inactive_connections,
                persistent_connections=c.persistent_connections)
        table[key] = (svc, out)
    return table


def written_part(mirror: Table, want: Table, keys: List[Tuple[Any, ...]]) -> None:
    """Like :func:`written` for the services of ``keys`` only, in place."""
    part = written({k: mirror[k] for k in keys if k in mirror}, want)
    for k in keys:
        if k in part:
            mirror[k] = part[k]
        else:
            mirror.pop(k, None)

"""The director's own table: the calls that turn what the kernel has into
what the director wants (for its own services only), in the order they are
sent, and the mirror of what a round left in the kernel (what partial
rounds plan against, and what drift is seen against)."""

from __future__ import annotations

from typing import Any, Dict, Iterable, List, Optional, Tuple

import ipvs

__all__ = ["Table", "Call", "plan", "ordered", "written", "written_part"]

Table = Dict[Tuple[Any, ...], Tuple[ipvs.Service, Dict[Any, ipvs.Destination]]]
Call = Tuple[str, ipvs.Service, Optional[ipvs.Destination]]

_ORDER = {"add_service": 0, "update_service": 0, "add_destination": 1,
          "update_destination": 2, "delete_destination": 3, "delete_service": 4}


def ordered(calls: List[Call]) -> List[Call]:
    """Plans of several chunks as one: services first, then new
    destinations, weights, removals, deleted services (a stable sort)."""
    return sorted(calls, key=lambda c: _ORDER[c[0]])


def in_order(svc: ipvs.Service, dests: Dict[Any, ipvs.Destination]) -> Any:
    """The destinations as they are added: an ``mh`` service's in sorted
    (address, port) order, so that every director given the same file
    builds the same Maglev table (it depends on the order of adding)."""
    if svc.scheduler != "mh":
        return dests.items()
    return sorted(dests.items(), key=lambda kv: (kv[1].address.version,
                                                 int(kv[1].address), kv[1].port))


def plan(current: Table, want: Table, keys: Iterable[Tuple[Any, ...]]) -> List[Call]:
    """The calls turning ``current`` into ``want`` for the services of
    ``keys`` only: a key in ``current`` but not in ``want`` is deleted."""
    head: List[Call] = []
    adds: List[Call] = []
    updates: List[Call] = []
    deletes: List[Call] = []
    tail: List[Call] = []
    for key in keys:
        have = current.get(key)
        if key not in want:
            if have is not None:
                tail.append(("delete_service", have[0], None))
            continue
        svc, dests = want[key]
        if have is None:
            head.append(("add_service", svc, None))
            adds += [("add_destination", svc, d) for _, d in in_order(svc, dests)]
            continue
        if have[0] != svc:
            head.append(("update_service", svc, None))
        for dkey, d in have[1].items():
            if dkey not in dests:
                deletes.append(("delete_destination", svc, d))
        for dkey, d in in_order(svc, dests):
            cd = have[1].get(dkey)
            if cd is None:
                adds.append(("add_destination", svc, d))
            elif cd != d:  # Destination equality leaves counters out
                updates.append(("update_destination", svc, d))
    # new weights first, removals last: no moment without a destination
    return head + adds + updates + deletes + tail


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

"""What someone else changed: the director's own services as the kernel
has them against what the director last read and wrote there, and the
net.ipv4.vs settings of ``[director] sysctl``.  Each repair is an event
``drift`` and a count of ``ipvs_director_drift_repairs_total``."""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Tuple

import ipvs

__all__ = ["report", "keep_sysctls", "SERVICE_FIELDS", "DEST_FIELDS"]

SERVICE_FIELDS = ("scheduler", "flags", "timeout", "netmask", "pe_name")
DEST_FIELDS = ("weight", "forward", "upper_threshold", "lower_threshold", "tunnel_type",
               "tunnel_port", "tunnel_flags")

Table = Dict[Tuple[Any, ...], Tuple[ipvs.Service, Dict[Any, ipvs.Destination]]]
Call = Tuple[str, ipvs.Service, Optional[ipvs.Destination]]
Emit = Callable[..., Any]


def plain(value: Any) -> Any:
    """A field's value for an event: enum members by name, addresses as text."""
    if isinstance(value, (int, float, str)) and not hasattr(value, "name"):
        return value
    name = getattr(value, "name", None)
    if isinstance(name, str):
        return name.lower()
    return str(value) if value is not None else None


def report(mirror: Table, now: Table, calls: List[Call], name: Callable[[ipvs.Service], str],
           emit: Emit, metrics: Any) -> None:
    """Event ``drift`` for each call of a round that repairs a change someone
    else made: the table just read (``now``) differs from what the director
    last read and wrote (``mirror``) where it writes now."""

    def drifted(svc: ipvs.Service, dest: Optional[ipvs.Destination], field: str,
                kernel: Any, wanted: Any) -> None:
        # counted before it is told: whoever sees the event sees the count
        if metrics is not None:
            metrics.drift(svc, field)
        emit("drift", name(svc), None if dest is None else dest.address,
             None if dest is None else dest.port, field=field, kernel=plain(kernel),
             wanted=plain(wanted))

    for method, svc, dest in calls:
        key = svc.key
        was, cur = mirror.get(key), now.get(key)
        if was is None:
            continue               # not in the kernel as the director's before
        if method == "add_service":
            drifted(svc, None, "service", "absent", "present")
        elif method == "update_service" and cur is not None:
            for f in SERVICE_FIELDS:
                k, w = getattr(cur[0], f), getattr(svc, f)
                if k != w and getattr(was[0], f) != k:
                    drifted(svc, None, f, k, w)
        elif dest is not None and cur is not None:
            have, had = cur[1].get(dest.key), was[1].get(dest.key)
            if method == "add_destination" and had is not None:
                drifted(svc, dest, "destination", "absent", "present")
            elif method == "delete_destination" and had is None:
                drifted(svc, dest, "destination", "present", "absent")
            elif method == "update_destination" and have is not None and had is not None:
                for f in DEST_FIELDS:
                    k, w = getattr(have, f), getattr(dest, f)
                    if k != w and getattr(had, f) != k:
                        drifted(svc, dest, f, k, w)


def keep_sysctls(wanted: Tuple[Tuple[str, str], ...], values: Dict[str, Optional[str]],
                 kernel: Any, emit: Emit, metrics: Any, first: bool = False
                 ) -> Dict[str, Optional[str]]:
    """Set the net.ipv4.vs settings ``wanted`` where they differ (at start;
    later a difference is drift, reported and repaired).  ``values`` (the
    settings as last read, kept by the caller) is updated.  Returns the
    values found before any write (None: unreadable)."""
    found: Dict[str, Optional[str]] = {}
    for name, value in wanted:
        try:
            cur = " ".join(kernel.sysctl_read(name).split())
        except OSError as e:
            if first or values.get(name) is not None:
                emit("error", message="sysctl %s: %s" % (name, e.strerror or e))
            values[name] = found[name] = None
            continue
        found[name] = cur
        if cur != value:
            try:
                kernel.sysctl_write(name, value)
            except OSError as e:
                emit("error", message="sysctl %s = %s: %s" % (name, value, e.strerror or e))
                values[name] = cur
                continue
            if first or name not in values:
                emit("sysctl", name=name, value=value, previous=cur)
            else:
                if metrics is not None:
                    metrics.drift(None, "sysctl")
                emit("drift", field="sysctl", name=name, kernel=cur, wanted=value)
        values[name] = value
    return found

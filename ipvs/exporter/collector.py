"""The collector: one scrape reads each namespace's table through the
library (``ipvs.IPVS``: ``info()``, ``table()`` and the whole-table
``stats()``), on pooled kernel sockets, into `Snapshot` records that
render.py turns into metrics."""

from __future__ import annotations

import logging
import os
import threading
from typing import (Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence,
                    Tuple, Union)

import ipvs
import ipvs.netns
from ipvs import Destination, Service, Stats, parse_service
from ipvs.exporter import render
from ipvs.exporter.families import ZERO

__all__ = ["IPVSCollector", "Snapshot", "ServiceFilter"]

log = logging.getLogger("ipvs.exporter")

class ServiceFilter:
    """Which services are exported: those named by ``include`` (all when it
    is empty), minus those named by ``exclude``; names are service strings
    (see `parse_service`)."""

    def __init__(self, include: Iterable[str] = (), exclude: Iterable[str] = ()) -> None:
        self.include = frozenset(parse_service(s) for s in include)
        self.exclude = frozenset(parse_service(s) for s in exclude)

    def __bool__(self) -> bool:
        return bool(self.include or self.exclude)

    def __call__(self, service: Service) -> bool:
        key = service.key
        if self.include and key not in self.include:
            return False
        return key not in self.exclude


class Snapshot:
    """What one scrape read from one namespace: ``up`` (False when the
    listing failed, then ``error`` says why), ``info`` (`ipvs.Info` or
    None), ``table`` ({Service: [Destination]}) and ``totals`` (`ipvs.Stats`
    of the whole table, or None)."""

    __slots__ = ("netns", "up", "error", "info", "table", "totals")

    def __init__(self, netns: Optional[str], up: bool, *, error: Optional[str] = None,
                 info: Any = None, table: Optional[Dict[Service, List[Destination]]] = None,
                 totals: Optional[Stats] = None) -> None:
        self.netns = netns
        self.up = up
        self.error = error
        self.info = info
        self.table = table if table is not None else {}
        self.totals = totals


def _netns_id(netns: Optional[str]) -> Optional[Tuple[int, int]]:
    """(st_dev, st_ino) of the namespace a name or path means now; None for
    the caller's own.  OSError when it does not exist."""
    if netns is None:
        return None
    fd = ipvs.netns.open_netns(netns)
    try:
        st = os.fstat(fd)
    finally:
        os.close(fd)
    return (st.st_dev, st.st_ino)


def _kernel_totals(handle: Any) -> Optional[Stats]:
    """The kernel's whole-table totals (``/proc/net/ip_vs_stats`` of the
    handle's namespace, through its ``stats()``); None when they cannot be
    read (no such file: no /proc, or IPVS not loaded yet; a handle of an
    opener without ``stats()``).  The file is opened afresh by every call:
    a failure here says nothing of the handle's socket, which stays pooled."""
    stats = getattr(handle, "stats", None)
    if stats is None:
        return None
    try:
        return stats()  # type: ignore[no-any-return]
    except (OSError, ValueError, IndexError):
        return None


def _sum_stats(table: Dict[Service, List[Destination]]) -> Stats:
    acc = [0] * 10
    for svc in table:
        st = svc.stats or ZERO
        for i, v in enumerate(st):
            acc[i] += v
    top = 0xFFFFFFFFFFFFFFFF
    return Stats(*(min(v, top) for v in acc))


NetnsArg = Union[None, str, Sequence[Optional[str]]]


class IPVSCollector:
    """The IPVS series of one or more network namespaces, for
    ``prometheus_client``.

    ``IPVSCollector(netns=None, *, rates=False, destination_labels="all",
    include=(), exclude=(), netns_label=None, totals="proc", timeout=5.0,
    opener=None)``

    - ``netns``: None (the namespace of the thread that scrapes), a name as
      ``ip netns`` uses, a path, or a list of those.
    - ``rates``: also export the kernel's rate estimates (gauges
      ``*_per_second``).
    - ``destination_labels``: "all" (per-real-server series too) or "none"
      (only per-service series and the totals: the cardinality control).
    - ``include``/``exclude``: service strings (``TCP 10.0.0.1:80``, ``FWM 7
      IPv6``...): export only the included services (all when empty), never
      the excluded ones.  The whole-table totals are never filtered.
    - ``netns_label``: add a ``netns`` label to every series; default: only
      when more than one namespace is given.
    - ``totals``: where the whole-table totals come from: "proc" (the
      kernel's own counters in the namespace's ``/proc/net/ip_vs_stats``,
      the handle's ``stats()``, which keep counting after a service is
      deleted; the sum over services when that file cannot be read) or
      "sum" (always the sum over services).
    - ``timeout``: seconds the kernel may take to answer (``ipvs.IPVS``).
    - ``opener``: ``opener(netns) -> handle`` with ``table()``, ``info()``
      and ``close()`` (and ``stats()`` for ``totals="proc"``); default ``ipvs.IPVS(netns=netns, timeout=timeout)``
      (tests pass the memory backend or a fake here).

    Every scrape (``collect()`` or ``render()``) takes a handle from a small
    pool (or opens a new one when all are busy), so scrapes never wait for
    each other; a handle whose call failed is closed, not reused, and so is
    a pooled one when its namespace's name has come to mean another
    namespace (removed and made again).
    """

    #: idle kernel sockets kept per namespace between scrapes
    POOL_SIZE = 4

    def __init__(self, netns: NetnsArg = None, *, rates: bool = False,
                 destination_labels: str = "all", include: Iterable[str] = (),
                 exclude: Iterable[str] = (), netns_label: Optional[bool] = None,
                 totals: str = "proc", timeout: float = 5.0,
                 opener: Optional[Callable[[Optional[str]], Any]] = None) -> None:
        if netns is None or isinstance(netns, (str, os.PathLike)):
            names: List[Optional[str]] = [None if netns is None else os.fspath(netns)]
        else:
            names = [None if n is None else os.fspath(n) for n in netns]
            if not names:
                raise ValueError("IPVSCollector: netns is an empty list")
        if len(set(names)) != len(names):
            raise ValueError("IPVSCollector: a namespace is given twice")
        if destination_labels not in ("all", "none"):
            raise ValueError("IPVSCollector: destination_labels must be 'all' or 'none', not %r"
                             % (destination_labels,))
        if totals not in ("proc", "sum"):
            raise ValueError("IPVSCollector: totals must be 'proc' or 'sum', not %r" % (totals,))
        self.namespaces = names
        self.rates = bool(rates)
        self.destination_labels = destination_labels
        self.filter = ServiceFilter(include, exclude)
        self.netns_label = len(names) > 1 if netns_label is None else bool(netns_label)
        self.totals = totals
        self.timeout = timeout
        self._opener = opener
        self._pool_lock = threading.Lock()
        self._pools: Dict[Optional[str], List[Tuple[Any, Any]]] = {n: [] for n in names}

    # ------------------------------------------------------------ reading
    def _open(self, netns: Optional[str]) -> Any:
        if self._opener is not None:
            return self._opener(netns)
        return ipvs.IPVS(netns=netns, timeout=self.timeout)

    def snapshot(self, netns: Optional[str]) -> Snapshot:
        """Read one namespace: one ``info()``, one ``table()`` and (totals
        "proc") one ``stats()``; never raises for a kernel or namespace
        error (``up`` False instead)."""
        handle = None
        try:
            # (an opener's netns is only its key: the memory backend's are names
            # of no real namespace)
            ident = _netns_id(netns) if self._opener is None else None
            with self._pool_lock:
                pool = self._pools[netns]
                handle, hid = pool.pop() if pool else (None, None)
            if handle is not None and hid != ident:
                # the name now means another namespace: a pooled socket
                # would go on reading the old one
                handle.close()
                handle = None
            if handle is None:
                handle = self._open(netns)
            info = handle.info()
            table = handle.table()
        except Exception as e:  # any failure: ipvs_up 0 and a log line
            if handle is not None:
                try:
                    handle.close()
                except Exception:
                    pass
            where = "" if netns is None else " (netns %s)" % netns
            msg = "%s: %s" % (type(e).__name__, e)
            log.error("IPVS scrape failed%s: %s", where, msg)
            return Snapshot(netns, False, error=msg)
        totals = _kernel_totals(handle) if self.totals == "proc" else None
        with self._pool_lock:
            pool = self._pools[netns]
            if len(pool) < self.POOL_SIZE:
                pool.append((handle, ident))
                handle = None
        if handle is not None:     # enough idle sockets already
            handle.close()
        if totals is None:
            totals = _sum_stats(table)
        return Snapshot(netns, True, info=info, table=table, totals=totals)

    def snapshots(self) -> List[Snapshot]:
        """One `Snapshot` per namespace, in the order given."""
        return [self.snapshot(n) for n in self.namespaces]

    def close(self) -> None:
        """Close the pooled kernel sockets."""
        with self._pool_lock:
            pools = [h for p in self._pools.values() for h, _ in p]
            for p in self._pools.values():
                p.clear()
        for h in pools:
            try:
                h.close()
            except Exception:
                pass

    def _services(self, snap: Snapshot) -> Iterator[Tuple[Service, List[Destination]]]:
        flt = self.filter
        for svc, dests in snap.table.items():
            if not flt or flt(svc):
                yield svc, dests

    # ------------------------------------------------------------ generic path
    def describe(self) -> List[Any]:
        """Nothing: the registry must not scrape the kernel at registration."""
        return []

    def collect(self, snapshots: Optional[List[Snapshot]] = None) -> Iterator[Any]:
        """The metric families of one scrape (prometheus_client's generic
        path); ``snapshots`` defaults to a fresh `snapshots()`."""
        snaps = self.snapshots() if snapshots is None else snapshots
        yield from render.families(self, snaps)

    # ------------------------------------------------------------ fast path
    def render(self, snapshots: Optional[List[Snapshot]] = None) -> str:
        """The same series as `collect`, as Prometheus text (format 0.0.4),
        built straight from the listing: what ``make_wsgi_app`` serves."""
        return "".join(self.render_parts(snapshots))

    def render_parts(self, snapshots: Optional[List[Snapshot]] = None) -> List[str]:
        """`render`'s text in pieces whose concatenation is the text (each
        family's lines in one piece): a server can send them one after the
        other without first copying megabytes into one string."""
        return render.text_parts(self, self.snapshots() if snapshots is None else snapshots)

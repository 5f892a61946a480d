"""A Prometheus exporter for IPVS: ``python -m ipvs.exporter`` (``ipvs-exporter``).

Install with the extra ``ipvs[exporter]`` (it brings ``prometheus_client``).

    python -m ipvs.exporter --listen 127.0.0.1:9587 [--netns NAME ...]
        [--destination-labels all|none] [--include SERVICE ...]
        [--exclude SERVICE ...] [--rates]

Every scrape makes one ``table()`` listing (plus one ``info()``) per
namespace, on a kernel socket of its own, so concurrent scrapes never wait
for each other.  A failing listing gives ``ipvs_up 0`` and a log line; the
exporter keeps running.

Two ways to use the collector in a program of your own (the director does):

- ``IPVSCollector`` is a ``prometheus_client`` collector: register it on any
  ``CollectorRegistry`` and it yields metric families as usual (the generic
  path: correct, but ~2-3 s for 140,000 series).
- ``IPVSCollector.render()`` returns the same series as Prometheus text
  (format 0.0.4) built straight from the listing, some ten times faster;
  ``make_wsgi_app(collector, registry)`` serves that text followed by the
  registry's own metrics on ``/metrics``, and ``serve(...)`` runs that app
  on prometheus_client's threaded WSGI server.

The metric names, labels and types are those of the API contract ("Metrics
(Prometheus)"); docs/metrics.md is the reference.
"""

from __future__ import annotations

import argparse
import logging
import operator
import os
import re
import signal
import socket
import sys
import threading
import zlib
from typing import (Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence,
                    Tuple, Union)

import ipvs
from ipvs import Destination, Protocol, Service, Stats, parse_service, service_string

__all__ = ["IPVSCollector", "Snapshot", "ServiceFilter", "parse_service", "service_string", "service_labels",
           "make_wsgi_app", "serve", "main", "DEFAULT_LISTEN"]

log = logging.getLogger("ipvs.exporter")

#: where ``python -m ipvs.exporter`` listens unless ``--listen`` says otherwise
DEFAULT_LISTEN = "127.0.0.1:9587"

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# ---------------------------------------------------------------------------
# service strings: "TCP 10.0.0.1:80", "UDP [2001:db8::1]:53", "FWM 7 IPv6"
# ---------------------------------------------------------------------------

ServiceKey = Tuple[Any, ...]


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


# ---------------------------------------------------------------------------
# one scrape's data
# ---------------------------------------------------------------------------

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


_ZERO = Stats()

_PROTO_LABEL = {Protocol.TCP: "tcp", Protocol.UDP: "udp", Protocol.SCTP: "sctp"}


def _family_label(family: int) -> str:
    return "ipv6" if family == socket.AF_INET6 else "ipv4"


def service_labels(service: Service) -> Tuple[str, str, str, str, str]:
    """(family, protocol, address, port, fwmark) label values of a service."""
    if service.fwmark:
        return (_family_label(service.family), "fwmark", "", "0", str(service.fwmark))
    proto = _PROTO_LABEL.get(service.protocol)
    if proto is None:
        proto = str(int(service.protocol))
    return (_family_label(service.family), proto, str(service.address), str(service.port), "0")


def _escape(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


# ---------------------------------------------------------------------------
# the metric families (names, help, type): the contract's, in one place
# ---------------------------------------------------------------------------

SERVICE_LABELS = ("family", "protocol", "address", "port", "fwmark")
DESTINATION_LABELS = SERVICE_LABELS + ("destination_address", "destination_port")

# (exposed name, help text, type, stats fields: one, or (in, out) for direction)
_STAT_FAMILIES = (
    ("connections_total", "Connections scheduled", "counter", ("connections",)),
    ("packets_total", "Packets, by direction (in: from clients, out: to clients)", "counter",
     ("packets_in", "packets_out")),
    ("bytes_total", "Bytes, by direction (in: from clients, out: to clients)", "counter",
     ("bytes_in", "bytes_out")),
)
_RATE_FAMILIES = (
    ("connections_per_second", "The kernel's estimate of connections per second", "gauge",
     ("cps",)),
    ("packets_per_second", "The kernel's estimate of packets per second, by direction",
     "gauge", ("pps_in", "pps_out")),
    ("bytes_per_second", "The kernel's estimate of bytes per second, by direction", "gauge",
     ("bps_in", "bps_out")),
)
_DEST_GAUGES = (
    ("ipvs_destination_weight", "Weight of the real server", "weight"),
    ("ipvs_destination_connections_active", "Active connections (established TCP)",
     "active_connections"),
    ("ipvs_destination_connections_inactive",
     "Inactive connections (closing TCP, UDP and other entries)", "inactive_connections"),
    ("ipvs_destination_connections_persistent", "Persistence templates",
     "persistent_connections"),
)
_GLOBAL = (
    ("ipvs_up", "1 when the IPVS table could be read in this scrape, else 0", "gauge"),
    ("ipvs_info", "IPVS version of the kernel (value 1)", "gauge"),
    ("ipvs_connection_table_size", "Size of the kernel's connection hash table", "gauge"),
)


def _counter_base(name: str) -> str:
    """prometheus_client names a counter family without its ``_total``."""
    return name[:-6] if name.endswith("_total") else name


# ---------------------------------------------------------------------------
# /proc/net/ip_vs_stats of a namespace: the kernel's whole-table totals
# ---------------------------------------------------------------------------

def _open_proc_stats(netns: Optional[str]) -> int:
    """An fd of ``/proc/net/ip_vs_stats`` bound to ``netns`` (a proc net
    file keeps the namespace it was opened in, so the fd can be read again
    at every scrape)."""
    path = "/proc/thread-self/net/ip_vs_stats"
    if netns is None:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    import ipvs.netns
    box: Dict[str, Any] = {}

    def work() -> None:  # a thread of its own may switch namespaces freely
        try:
            with ipvs.netns.enter(netns):
                box["fd"] = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except BaseException as e:  # re-raised below
            box["error"] = e

    t = threading.Thread(target=work, name="ipvs-exporter-proc", daemon=True)
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]
    return int(box["fd"])


def parse_proc_stats(text: str) -> Stats:
    """The totals of ``/proc/net/ip_vs_stats``: its third line holds
    connections, packets in, packets out, bytes in, bytes out in hex; its
    sixth the rates (conns/s, packets/s in and out, bytes/s in and out)."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    tot = [int(x, 16) for x in lines[2].split()]
    rates = [int(x, 16) for x in lines[4].split()] if len(lines) > 4 else [0] * 5
    if len(tot) != 5 or len(rates) != 5:
        raise ValueError("unexpected /proc/net/ip_vs_stats layout")
    return Stats(*tot, *rates)


def _netns_id(netns: Optional[str]) -> Optional[Tuple[int, int]]:
    """(st_dev, st_ino) of the namespace a name or path means now; None for
    the caller's own.  OSError when it does not exist."""
    if netns is None:
        return None
    import ipvs.netns
    st = os.stat(ipvs.netns.path(netns) if "/" not in netns else netns)
    return (st.st_dev, st.st_ino)


class _ProcTotals:
    """Reads the whole-table totals of one namespace; None when the file is
    missing (no /proc, or IPVS not loaded yet)."""

    def __init__(self, netns: Optional[str]) -> None:
        self.netns = netns
        self._lock = threading.Lock()
        self._fd: Optional[int] = None
        self._ino: Optional[Tuple[int, int]] = None

    def read(self) -> Optional[Stats]:
        for attempt in (0, 1):
            with self._lock:
                try:
                    ident = _netns_id(self.netns)
                except OSError:             # the namespace is gone
                    return None
                if self._fd is not None and ident != self._ino:
                    os.close(self._fd)      # the name now means another namespace
                    self._fd = None
                if self._fd is None:
                    try:
                        self._fd = _open_proc_stats(self.netns)
                    except OSError:
                        return None
                    self._ino = ident
                fd = self._fd
            try:
                return parse_proc_stats(os.pread(fd, 4096, 0).decode("ascii", "replace"))
            except (OSError, ValueError, IndexError):
                with self._lock:           # e.g. the module was reloaded: reopen once
                    if self._fd == fd:
                        os.close(fd)
                        self._fd = None
        return None

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None


def _sum_stats(table: Dict[Service, List[Destination]]) -> Stats:
    acc = [0] * 10
    for svc in table:
        st = svc.stats or _ZERO
        for i, v in enumerate(st):
            acc[i] += v
    top = 0xFFFFFFFFFFFFFFFF
    return Stats(*(min(v, top) for v in acc))


# ---------------------------------------------------------------------------
# the collector
# ---------------------------------------------------------------------------

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
      which keep counting after a service is deleted; the sum over services
      when that file cannot be read) or "sum" (always the sum over services).
    - ``timeout``: seconds the kernel may take to answer (``ipvs.IPVS``).
    - ``opener``: ``opener(netns) -> handle`` with ``table()``, ``info()``
      and ``close()``; default ``ipvs.IPVS(netns=netns, timeout=timeout)``
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
        self._proc = {n: _ProcTotals(n) for n in names}

    # ------------------------------------------------------------ reading
    def _open(self, netns: Optional[str]) -> Any:
        if self._opener is not None:
            return self._opener(netns)
        return ipvs.IPVS(netns=netns, timeout=self.timeout)

    def snapshot(self, netns: Optional[str]) -> Snapshot:
        """Read one namespace: one ``info()`` and one ``table()``; never
        raises for a kernel or namespace error (``up`` False instead)."""
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
        with self._pool_lock:
            pool = self._pools[netns]
            if len(pool) < self.POOL_SIZE:
                pool.append((handle, ident))
                handle = None
        if handle is not None:     # enough idle sockets already
            handle.close()
        totals = self._proc[netns].read() if self.totals == "proc" else None
        if totals is None:
            totals = _sum_stats(table)
        return Snapshot(netns, True, info=info, table=table, totals=totals)

    def snapshots(self) -> List[Snapshot]:
        """One `Snapshot` per namespace, in the order given."""
        return [self.snapshot(n) for n in self.namespaces]

    def close(self) -> None:
        """Close the pooled kernel sockets and the /proc files."""
        with self._pool_lock:
            pools = [h for p in self._pools.values() for h, _ in p]
            for p in self._pools.values():
                p.clear()
        for h in pools:
            try:
                h.close()
            except Exception:
                pass
        for totals in self._proc.values():
            totals.close()

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
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
        snaps = self.snapshots() if snapshots is None else snapshots
        nl = ["netns"] if self.netns_label else []

        def fam(name: str, doc: str, kind: str, labels: Sequence[str]) -> Any:
            if kind == "counter":
                return CounterMetricFamily(_counter_base(name), doc, labels=nl + list(labels))
            return GaugeMetricFamily(name, doc, labels=nl + list(labels))

        def ns(s: Snapshot) -> List[str]:
            return [s.netns or ""] if self.netns_label else []

        up = fam("ipvs_up", _GLOBAL[0][1], "gauge", [])
        info = fam("ipvs_info", _GLOBAL[1][1], "gauge", ["version"])
        size = fam("ipvs_connection_table_size", _GLOBAL[2][1], "gauge", [])
        for s in snaps:
            up.add_metric(ns(s), 1 if s.up else 0)
            if s.up and s.info is not None:
                info.add_metric(ns(s) + [str(s.info.version)], 1)
                size.add_metric(ns(s), s.info.conn_tab_size)
        yield up
        yield info
        yield size
        for name, doc, kind, fields in _STAT_FAMILIES:
            f = fam("ipvs_" + name, "Whole table: " + doc, kind,
                    ["direction"] if len(fields) == 2 else [])
            for s in snaps:
                if s.up and s.totals is not None:
                    _add_stats(f, ns(s), s.totals, fields)
            yield f
        groups = [("service", _STAT_FAMILIES)]
        if self.rates:
            groups.append(("service", _RATE_FAMILIES))
        for _, families in groups:
            for name, doc, kind, fields in families:
                f = fam("ipvs_service_" + name, "Per service: " + doc, kind,
                        list(SERVICE_LABELS) + (["direction"] if len(fields) == 2 else []))
                for s in snaps:
                    for svc, _d in self._services(s):
                        _add_stats(f, ns(s) + list(service_labels(svc)), svc.stats or _ZERO,
                                   fields)
                yield f
        if self.destination_labels != "all":
            return
        fams = _STAT_FAMILIES + (_RATE_FAMILIES if self.rates else ())
        for name, doc, kind, fields in fams:
            f = fam("ipvs_destination_" + name, "Per real server: " + doc, kind,
                    list(DESTINATION_LABELS) + (["direction"] if len(fields) == 2 else []))
            for s in snaps:
                for svc, dests in self._services(s):
                    sl = ns(s) + list(service_labels(svc))
                    for d in dests:
                        _add_stats(f, sl + [str(d.address), str(d.port)], d.stats or _ZERO,
                                   fields)
            yield f
        for name, doc, attr in _DEST_GAUGES:
            f = fam(name, doc, "gauge", DESTINATION_LABELS)
            for s in snaps:
                for svc, dests in self._services(s):
                    sl = ns(s) + list(service_labels(svc))
                    for d in dests:
                        f.add_metric(sl + [str(d.address), str(d.port)], getattr(d, attr))
            yield f

    # ------------------------------------------------------------ fast path
    def render(self, snapshots: Optional[List[Snapshot]] = None) -> str:
        """The same series as `collect`, as Prometheus text (format 0.0.4),
        built straight from the listing: what ``make_wsgi_app`` serves."""
        return "".join(self.render_parts(snapshots))

    def render_parts(self, snapshots: Optional[List[Snapshot]] = None) -> List[str]:
        """`render`'s text in pieces whose concatenation is the text (each
        family's lines in one piece): a server can send them one after the
        other without first copying megabytes into one string."""
        snaps = self.snapshots() if snapshots is None else snapshots
        out: List[str] = []
        emit = out.append

        def head(name: str, doc: str, kind: str) -> None:
            emit("# HELP %s %s\n# TYPE %s %s\n" % (name, doc, name, kind))

        def nsl(s: Snapshot) -> str:
            return 'netns="%s",' % _escape(s.netns or "") if self.netns_label else ""

        def plain(s: Snapshot) -> str:   # labels of a series with no others
            return '{netns="%s"}' % _escape(s.netns or "") if self.netns_label else ""

        head("ipvs_up", _GLOBAL[0][1], "gauge")
        for s in snaps:
            emit("ipvs_up%s %d\n" % (plain(s), 1 if s.up else 0))
        head("ipvs_info", _GLOBAL[1][1], "gauge")
        for s in snaps:
            if s.up and s.info is not None:
                emit('ipvs_info{%sversion="%s"} 1\n' % (nsl(s), _escape(str(s.info.version))))
        head("ipvs_connection_table_size", _GLOBAL[2][1], "gauge")
        for s in snaps:
            if s.up and s.info is not None:
                emit("ipvs_connection_table_size%s %d\n" % (plain(s), s.info.conn_tab_size))
        for name, doc, kind, fields in _STAT_FAMILIES:
            full = "ipvs_" + name
            head(full, "Whole table: " + doc, kind)
            for s in snaps:
                if not (s.up and s.totals is not None):
                    continue
                if len(fields) == 1:
                    emit("%s%s %d\n" % (full, plain(s), getattr(s.totals, fields[0])))
                else:
                    emit('%s{%sdirection="in"} %d\n%s{%sdirection="out"} %d\n'
                         % (full, nsl(s), getattr(s.totals, fields[0]),
                            full, nsl(s), getattr(s.totals, fields[1])))

        # Per service and per real server: one label string per object, then
        # each family is one %-format of a repeated template over a flat
        # tuple (labels and values interleaved): no Python-level work per
        # line, some four times faster than a loop formatting line by line.
        svc_labels: List[str] = []
        svc_stats: List[Stats] = []
        dest_labels: List[str] = []
        dests_all: List[Destination] = []
        want_dests = self.destination_labels == "all"
        ntoa = socket.inet_ntoa         # str() of an IPv4Address, 8x faster
        for s in snaps:
            prefix = nsl(s)
            for svc, dests in self._services(s):
                fam_l, proto, addr, port, mark = service_labels(svc)
                sl = '%sfamily="%s",protocol="%s",address="%s",port="%s",fwmark="%s"' % (
                    prefix, fam_l, proto, addr, port, mark)
                svc_labels.append(sl)
                svc_stats.append(svc.stats or _ZERO)
                if want_dests:
                    sl += ',destination_address="'
                    for d in dests:
                        a = d.address
                        text = ntoa(a.packed) if a.version == 4 else str(a)
                        dest_labels.append('%s%s",destination_port="%d"' % (sl, text, d.port))
                    dests_all.extend(dests)

        fams = _STAT_FAMILIES + (_RATE_FAMILIES if self.rates else ())
        for name, doc, kind, fields in fams:
            full = "ipvs_service_" + name
            head(full, "Per service: " + doc, kind)
            _render_family(out, full, svc_labels, svc_stats, fields)
        if not want_dests:
            return out
        dest_stats = [d.stats or _ZERO for d in dests_all]
        for name, doc, kind, fields in fams:
            full = "ipvs_destination_" + name
            head(full, "Per real server: " + doc, kind)
            _render_family(out, full, dest_labels, dest_stats, fields)
        for name, doc, attr in _DEST_GAUGES:
            head(name, doc, "gauge")
            _render_family(out, name, dest_labels, dests_all, (attr,))
        return out


def _add_stats(f: Any, labels: List[str], st: Stats, fields: Sequence[str]) -> None:
    if len(fields) == 1:
        f.add_metric(labels, getattr(st, fields[0]))
    else:
        f.add_metric(labels + ["in"], getattr(st, fields[0]))
        f.add_metric(labels + ["out"], getattr(st, fields[1]))


def _render_family(out: List[str], name: str, labels: List[str], objs: Sequence[Any],
                   fields: Sequence[str]) -> None:
    """Append the lines of one family: ``name{labels} value`` per object,
    or an ``in`` and an ``out`` line per object for two fields."""
    n = len(labels)
    if not n:
        return
    if len(fields) == 1:
        flat: List[Any] = [None] * (2 * n)
        flat[0::2] = labels
        flat[1::2] = list(map(operator.attrgetter(fields[0]), objs))
        out.append((name + "{%s} %d\n") * n % tuple(flat))
    else:
        flat = [None] * (4 * n)
        flat[0::4] = labels
        flat[1::4] = list(map(operator.attrgetter(fields[0]), objs))
        flat[2::4] = labels
        flat[3::4] = list(map(operator.attrgetter(fields[1]), objs))
        out.append((name + '{%s,direction="in"} %d\n' + name + '{%s,direction="out"} %d\n')
                   * n % tuple(flat))


# ---------------------------------------------------------------------------
# HTTP: prometheus_client's threaded WSGI server, our fast text first
# ---------------------------------------------------------------------------

def make_wsgi_app(collector: IPVSCollector, registry: Any = None,
                  path: str = "/metrics") -> Callable[..., Any]:
    """A WSGI app serving, on ``GET path``, the collector's `render()` text
    followed by ``registry``'s metrics (``prometheus_client``'s text format;
    e.g. the director's own metrics; None: nothing more).  Do not also
    register ``collector`` on ``registry``: its series would appear twice."""
    from prometheus_client.exposition import generate_latest

    def app(environ: Dict[str, Any], start_response: Callable[..., Any]) -> List[bytes]:
        method = environ.get("REQUEST_METHOD", "GET")
        where = environ.get("PATH_INFO", "/")
        if where == "/" and method in ("GET", "HEAD"):
            body = ('<html><head><title>IPVS exporter</title></head><body>'
                    '<a href="%s">%s</a></body></html>\n' % (path, path)).encode()
            start_response("200 OK", [("Content-Type", "text/html; charset=utf-8"),
                                      ("Content-Length", str(len(body)))])
            return [body if method == "GET" else b""]
        if where != path:
            body = b"not found; metrics are at " + path.encode() + b"\n"
            start_response("404 Not Found", [("Content-Type", "text/plain"),
                                             ("Content-Length", str(len(body)))])
            return [body]
        if method not in ("GET", "HEAD"):
            body = b"use GET\n"
            start_response("405 Method Not Allowed", [("Allow", "GET, HEAD"),
                                                      ("Content-Length", str(len(body)))])
            return [body]
        try:
            chunks = _encode_parts(collector.render_parts())
            if registry is not None:
                chunks.append(generate_latest(registry))
        except Exception as e:  # a bug of ours must not kill the server
            log.exception("rendering /metrics failed")
            body = ("# rendering failed: %s\n" % e).encode()
            start_response("500 Internal Server Error",
                           [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
            return [body]
        headers = [("Content-Type", CONTENT_TYPE)]
        if "gzip" in environ.get("HTTP_ACCEPT_ENCODING", ""):
            z = zlib.compressobj(1, zlib.DEFLATED, 31)     # 31: gzip framing
            chunks = [c for c in (z.compress(c) for c in chunks) if c] + [z.flush()]
            headers.append(("Content-Encoding", "gzip"))
        headers.append(("Content-Length", str(sum(len(c) for c in chunks))))
        start_response("200 OK", headers)
        return chunks if method == "GET" else [b""]

    return app


def _encode_parts(parts: List[str], small: int = 1 << 16) -> List[bytes]:
    """UTF-8 of ``parts``, small neighbours merged (fewer socket writes)."""
    out: List[bytes] = []
    pending: List[str] = []
    size = 0
    for p in parts:
        if len(p) >= small:
            if pending:
                out.append("".join(pending).encode("utf-8"))
                pending, size = [], 0
            out.append(p.encode("utf-8"))
        else:
            pending.append(p)
            size += len(p)
            if size >= small:
                out.append("".join(pending).encode("utf-8"))
                pending, size = [], 0
    if pending:
        out.append("".join(pending).encode("utf-8"))
    return out


def parse_listen(text: str) -> Tuple[str, int]:
    """``ADDR:PORT`` (``[::1]:9587`` for IPv6; ``:9587`` for every address)
    -> (addr, port)."""
    m = re.match(r"^(?:\[([^\]]+)\]|([^:\[\]]*)):(\d+)$", text.strip())
    if not m or not 0 <= int(m.group(3)) <= 65535:
        raise ValueError("--listen %r: expected ADDR:PORT, e.g. 127.0.0.1:9587 or [::1]:9587"
                         % text)
    addr = m.group(1) if m.group(1) is not None else m.group(2)
    return (addr or "0.0.0.0", int(m.group(3)))


def serve(collector: IPVSCollector, listen: str = DEFAULT_LISTEN, registry: Any = None,
          ) -> Tuple[Any, threading.Thread]:
    """Serve ``make_wsgi_app(collector, registry)`` on ``listen``
    (``ADDR:PORT``) with prometheus_client's thread-per-request WSGI server,
    in a daemon thread.  Returns (server, thread); ``server.shutdown()``
    stops it and ``server.server_address`` tells the bound port (give port
    0 to pick a free one)."""
    from wsgiref.simple_server import WSGIRequestHandler, make_server

    from prometheus_client.exposition import ThreadingWSGIServer

    addr, port = parse_listen(listen)
    family = socket.getaddrinfo(addr, port, type=socket.SOCK_STREAM,
                                flags=socket.AI_PASSIVE)[0][0]

    class _Server(ThreadingWSGIServer):
        address_family = family

    class _Quiet(WSGIRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            log.debug("%s " + format, self.address_string(), *args)

    httpd = make_server(addr, port, make_wsgi_app(collector, registry), _Server,
                        handler_class=_Quiet)
    t = threading.Thread(target=httpd.serve_forever, name="ipvs-exporter-http", daemon=True)
    t.start()
    return httpd, t


# ---------------------------------------------------------------------------
# python -m ipvs.exporter
# ---------------------------------------------------------------------------

def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ipvs-exporter",
        description="Prometheus exporter for Linux IPVS: per-service and per-real-server "
                    "64-bit counters, weights and connection counts on /metrics.")
    p.add_argument("--listen", default=DEFAULT_LISTEN, metavar="ADDR:PORT",
                   help="address to serve /metrics on (default %(default)s; "
                        "[::1]:9587 for IPv6, :9587 for every address)")
    p.add_argument("--netns", action="append", default=[], metavar="NAME",
                   help="network namespace whose IPVS table is read (as `ip netns` names "
                        "it, or a path); repeat for several: every series then has a "
                        "`netns` label (default: the exporter's own namespace)")
    p.add_argument("--destination-labels", choices=("all", "none"), default="all",
                   help="all: per-real-server series too (default); none: only per-service "
                        "series and the totals")
    p.add_argument("--include", action="append", default=[], metavar="SERVICE",
                   help="export only this service (repeatable), e.g. 'TCP 10.0.0.1:80', "
                        "'UDP [2001:db8::1]:53', 'FWM 7', 'FWM 7 IPv6'")
    p.add_argument("--exclude", action="append", default=[], metavar="SERVICE",
                   help="never export this service (repeatable; same strings)")
    p.add_argument("--rates", action="store_true",
                   help="also export the kernel's rate estimates (*_per_second gauges); "
                        "off by default: Prometheus computes rates from the counters")
    p.add_argument("--totals", choices=("proc", "sum"), default="proc",
                   help="whole-table totals from the kernel's /proc/net/ip_vs_stats "
                        "(default; the sum over services where it cannot be read) or always "
                        "the sum over the services")
    p.add_argument("--timeout", type=float, default=5.0, metavar="SECONDS",
                   help="seconds the kernel may take to answer one request (default 5)")
    p.add_argument("--log-level", default="INFO",
                   choices=("DEBUG", "INFO", "WARNING", "ERROR"), help="default INFO")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of ``ipvs-exporter``: serve until SIGTERM or SIGINT."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=getattr(logging, args.log_level),
                        format="%(asctime)s ipvs-exporter %(levelname)s %(message)s")
    try:
        import prometheus_client  # noqa: F401
    except ImportError:
        print("ipvs-exporter: prometheus_client is missing: pip install 'ipvs[exporter]'",
              file=sys.stderr)
        return 2
    try:
        parse_listen(args.listen)
        collector = IPVSCollector(args.netns or None, rates=args.rates,
                                  destination_labels=args.destination_labels,
                                  include=args.include, exclude=args.exclude,
                                  totals=args.totals, timeout=args.timeout)
    except (ValueError, TypeError) as e:
        print("ipvs-exporter: %s" % e, file=sys.stderr)
        return 2
    try:
        httpd, _t = serve(collector, args.listen)
    except OSError as e:
        print("ipvs-exporter: cannot listen on %s: %s" % (args.listen, e), file=sys.stderr)
        return 1
    host, port = httpd.server_address[:2]
    log.info("serving /metrics on %s:%d (namespaces: %s)",
             "[%s]" % host if ":" in str(host) else host, port,
             ", ".join(n or "own" for n in collector.namespaces))
    done = threading.Event()

    def stop(signum: int, frame: Any) -> None:
        done.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    while not done.wait(3600):
        pass
    httpd.shutdown()
    httpd.server_close()
    collector.close()
    log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""One scrape's snapshots as metrics: prometheus_client's metric families
(the generic path, `families`) or Prometheus text (format 0.0.4) built
straight from the listing (the fast path, `text_parts`); both give the same
series."""

from __future__ import annotations

import operator
import socket
from typing import TYPE_CHECKING, Any, Iterator, List, Sequence

from ipvs import Destination, Stats
from ipvs.exporter.families import (DEST_GAUGES, DESTINATION_LABELS, GLOBAL, PER_DESTINATION,
                                    PER_SERVICE, RATE_FAMILIES, SERVICE_LABELS, STAT_FAMILIES,
                                    WHOLE_TABLE, ZERO, counter_base, service_labels)

if TYPE_CHECKING:
    from ipvs.exporter.collector import IPVSCollector, Snapshot

__all__ = ["families", "text_parts"]


def _escape(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


# ---------------------------------------------------------------------------
# the generic path: prometheus_client's metric families
# ---------------------------------------------------------------------------

def families(c: "IPVSCollector", snaps: List["Snapshot"]) -> Iterator[Any]:
    """The metric families of ``snaps``, as ``c`` exports them."""
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
    nl = ["netns"] if c.netns_label else []

    def fam(name: str, doc: str, kind: str, labels: Sequence[str]) -> Any:
        if kind == "counter":
            return CounterMetricFamily(counter_base(name), doc, labels=nl + list(labels))
        return GaugeMetricFamily(name, doc, labels=nl + list(labels))

    def ns(s: "Snapshot") -> List[str]:
        return [s.netns or ""] if c.netns_label else []

    up = fam("ipvs_up", GLOBAL[0][1], "gauge", [])
    info = fam("ipvs_info", GLOBAL[1][1], "gauge", ["version"])
    size = fam("ipvs_connection_table_size", GLOBAL[2][1], "gauge", [])
    for s in snaps:
        up.add_metric(ns(s), 1 if s.up else 0)
        if s.up and s.info is not None:
            info.add_metric(ns(s) + [str(s.info.version)], 1)
            size.add_metric(ns(s), s.info.conn_tab_size)
    yield up
    yield info
    yield size
    for name, doc, kind, fields in STAT_FAMILIES:
        f = fam(WHOLE_TABLE[0] + name, WHOLE_TABLE[1] + doc, kind,
                ["direction"] if len(fields) == 2 else [])
        for s in snaps:
            if s.up and s.totals is not None:
                _add_stats(f, ns(s), s.totals, fields)
        yield f
    groups = [("service", STAT_FAMILIES)]
    if c.rates:
        groups.append(("service", RATE_FAMILIES))
    for _, fams in groups:
        for name, doc, kind, fields in fams:
            f = fam(PER_SERVICE[0] + name, PER_SERVICE[1] + doc, kind,
                    list(SERVICE_LABELS) + (["direction"] if len(fields) == 2 else []))
            for s in snaps:
                for svc, _d in c._services(s):
                    _add_stats(f, ns(s) + list(service_labels(svc)), svc.stats or ZERO,
                               fields)
            yield f
    if c.destination_labels != "all":
        return
    for name, doc, kind, fields in STAT_FAMILIES + (RATE_FAMILIES if c.rates else ()):
        f = fam(PER_DESTINATION[0] + name, PER_DESTINATION[1] + doc, kind,
                list(DESTINATION_LABELS) + (["direction"] if len(fields) == 2 else []))
        for s in snaps:
            for svc, dests in c._services(s):
                sl = ns(s) + list(service_labels(svc))
                for d in dests:
                    _add_stats(f, sl + [str(d.address), str(d.port)], d.stats or ZERO,
                               fields)
        yield f
    for name, doc, attr in DEST_GAUGES:
        f = fam(name, doc, "gauge", DESTINATION_LABELS)
        for s in snaps:
            for svc, dests in c._services(s):
                sl = ns(s) + list(service_labels(svc))
                for d in dests:
                    f.add_metric(sl + [str(d.address), str(d.port)], getattr(d, attr))
        yield f


def _add_stats(f: Any, labels: List[str], st: Stats, fields: Sequence[str]) -> None:
    if len(fields) == 1:
        f.add_metric(labels, getattr(st, fields[0]))
    else:
        f.add_metric(labels + ["in"], getattr(st, fields[0]))
        f.add_metric(labels + ["out"], getattr(st, fields[1]))


# ---------------------------------------------------------------------------
# the fast path: the text itself
# ---------------------------------------------------------------------------

def text_parts(c: "IPVSCollector", snaps: List["Snapshot"]) -> List[str]:
    """The Prometheus text of ``snaps`` as ``c`` exports them, in pieces
    whose concatenation is the text (each family's lines in one piece)."""
    out: List[str] = []
    emit = out.append

    def head(name: str, doc: str, kind: str) -> None:
        emit("# HELP %s %s\n# TYPE %s %s\n" % (name, doc, name, kind))

    def nsl(s: "Snapshot") -> str:
        return 'netns="%s",' % _escape(s.netns or "") if c.netns_label else ""

    def plain(s: "Snapshot") -> str:   # labels of a series with no others
        return '{netns="%s"}' % _escape(s.netns or "") if c.netns_label else ""

    head("ipvs_up", GLOBAL[0][1], "gauge")
    for s in snaps:
        emit("ipvs_up%s %d\n" % (plain(s), 1 if s.up else 0))
    head("ipvs_info", GLOBAL[1][1], "gauge")
    for s in snaps:
        if s.up and s.info is not None:
            emit('ipvs_info{%sversion="%s"} 1\n' % (nsl(s), _escape(str(s.info.version))))
    head("ipvs_connection_table_size", GLOBAL[2][1], "gauge")
    for s in snaps:
        if s.up and s.info is not None:
            emit("ipvs_connection_table_size%s %d\n" % (plain(s), s.info.conn_tab_size))
    for name, doc, kind, fields in STAT_FAMILIES:
        full = WHOLE_TABLE[0] + name
        head(full, WHOLE_TABLE[1] + doc, kind)
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
    want_dests = c.destination_labels == "all"
    ntoa = socket.inet_ntoa         # str() of an IPv4Address, 8x faster
    for s in snaps:
        prefix = nsl(s)
        for svc, dests in c._services(s):
            fam_l, proto, addr, port, mark = service_labels(svc)
            sl = '%sfamily="%s",protocol="%s",address="%s",port="%s",fwmark="%s"' % (
                prefix, fam_l, proto, addr, port, mark)
            svc_labels.append(sl)
            svc_stats.append(svc.stats or ZERO)
            if want_dests:
                sl += ',destination_address="'
                for d in dests:
                    a = d.address
                    text = ntoa(a.packed) if a.version == 4 else str(a)
                    dest_labels.append('%s%s",destination_port="%d"' % (sl, text, d.port))
                dests_all.extend(dests)

    fams = STAT_FAMILIES + (RATE_FAMILIES if c.rates else ())
    for name, doc, kind, fields in fams:
        full = PER_SERVICE[0] + name
        head(full, PER_SERVICE[1] + doc, kind)
        _render_family(out, full, svc_labels, svc_stats, fields)
    if not want_dests:
        return out
    dest_stats = [d.stats or ZERO for d in dests_all]
    for name, doc, kind, fields in fams:
        full = PER_DESTINATION[0] + name
        head(full, PER_DESTINATION[1] + doc, kind)
        _render_family(out, full, dest_labels, dest_stats, fields)
    for name, doc, attr in DEST_GAUGES:
        head(name, doc, "gauge")
        _render_family(out, name, dest_labels, dests_all, (attr,))
    return out


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

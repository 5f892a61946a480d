"""Unit tests of ipvs.exporter (no kernel): the fast renderer against
prometheus_client's generic path, series by series, the labels that keep
series apart, filters, errors, and the HTTP server."""

from __future__ import annotations

import collections
import gzip
import logging
import socket
import threading
import time
import urllib.request
from typing import Any, Dict, List, Optional

import pytest

prometheus_client = pytest.importorskip(
    "prometheus_client", reason="prometheus_client missing: pip install 'ipvs[exporter]'")
from prometheus_client.core import CollectorRegistry, Counter  # noqa: E402
from prometheus_client.exposition import generate_latest  # noqa: E402

import ipvs  # noqa: E402
from ipvs import Destination, Info, Service, Stats  # noqa: E402
import ipvs.exporter as ex  # noqa: E402
from tests.prometheus_text import series  # noqa: E402

SHARED = "192.168.9.9"   # one real server behind several services


def mixed_table() -> Dict[Service, List[Destination]]:
    """TCP, UDP, SCTP on one address and port, IPv6, fwmark 7 in both
    families, and a real server shared by all of them."""
    def st(k: int) -> Stats:
        return Stats(k, 10 * k, 20 * k, 1000 * k, 2000 * k, k, k + 1, k + 2, k + 3, k + 4)

    svcs = [
        Service(address="10.0.0.1", port=80, protocol="tcp", stats=st(1)),
        Service(address="10.0.0.1", port=80, protocol="udp", stats=st(2)),
        Service(address="10.0.0.1", port=80, protocol="sctp", stats=st(3)),
        Service(address="2001:db8::1", port=80, protocol="tcp", stats=st(4)),
        Service(fwmark=7, stats=st(5)),
        Service(fwmark=7, family=socket.AF_INET6, stats=st(6)),
    ]
    table: Dict[Service, List[Destination]] = {}
    for i, svc in enumerate(svcs):
        shared_port = 0 if svc.fwmark else 8080
        dests = [Destination(SHARED, shared_port, weight=i + 1, active_connections=i,
                             inactive_connections=2 * i, persistent_connections=3 * i,
                             stats=st(100 + i))]
        if svc.family == socket.AF_INET6:
            dests.append(Destination("2001:db8::10", 8080, weight=5,
                                     stats=Stats(7, 2**63 + 5, 1, 2**64 - 1, 3)))
        else:
            dests.append(Destination("192.168.1.%d" % (i + 1), 8080, weight=0,
                                     stats=st(200 + i)))
        table[svc] = dests
    return table


class FakeHandle:
    """What IPVSCollector needs of a handle: info(), table(), close()."""
    opened = 0

    def __init__(self, table: Dict[Service, List[Destination]], fail: Optional[Exception] = None,
                 delay: float = 0.0) -> None:
        self._table = table
        self._fail = fail
        self._delay = delay
        self.closed = False
        FakeHandle.opened += 1

    def info(self) -> Info:
        return Info(version="1.2.1", version_info=(1, 2, 1), conn_tab_size=4096)

    def table(self) -> Dict[Service, List[Destination]]:
        if self._delay:
            time.sleep(self._delay)
        if self._fail is not None:
            raise self._fail
        return dict(self._table)

    def close(self) -> None:
        self.closed = True


def collector(table: Optional[Dict[Service, List[Destination]]] = None, **kw: Any
              ) -> ex.IPVSCollector:
    t = mixed_table() if table is None else table
    kw.setdefault("totals", "sum")
    return ex.IPVSCollector(opener=lambda ns: FakeHandle(t), **kw)


def generic_text(c: ex.IPVSCollector, snaps: List[ex.Snapshot]) -> str:
    class Wrap:
        def collect(self) -> Any:
            return c.collect(snaps)

    reg = CollectorRegistry()
    reg.register(Wrap())  # type: ignore[arg-type]
    return generate_latest(reg).decode()




def families(text: str) -> Dict[str, str]:
    """{exposed family name: type} from the # TYPE lines."""
    return {ln.split()[2]: ln.split()[3] for ln in text.splitlines() if ln.startswith("# TYPE ")}


# ---------------------------------------------------------------------------

@pytest.mark.parametrize("rates", [False, True])
@pytest.mark.parametrize("dl", ["all", "none"])
@pytest.mark.parametrize("multi", [False, True])
def test_fast_renderer_equals_generic_path(rates: bool, dl: str, multi: bool) -> None:
    t = mixed_table()
    ns = ["a", "b"] if multi else None
    c = ex.IPVSCollector(ns, opener=lambda n: FakeHandle(t), totals="sum", rates=rates,
                         destination_labels=dl)
    snaps = c.snapshots()
    fast, generic = c.render(snaps), generic_text(c, snaps)
    fs, gs = series(fast), series(generic)
    assert fs.keys() == gs.keys()
    for k in fs:
        assert float(fs[k]) == float(gs[k]), k   # Prometheus stores float64
    assert families(fast) == families(generic)
    # the values are exact integers in our text (Prometheus reads them as
    # float64 anyway); the generic path rounds 2**63+5 to a float
    if dl == "all":
        assert ' %d\n' % (2**64 - 1) in fast
    if multi:
        assert all(dict(k[1]).get("netns") in ("a", "b") for k in fs)
    else:
        assert all("netns" not in dict(k[1]) for k in fs)


def test_names_types_and_labels_of_the_contract() -> None:
    text = collector(rates=True).render()
    fams = families(text)
    expected = {
        "ipvs_up": "gauge", "ipvs_info": "gauge", "ipvs_connection_table_size": "gauge",
        "ipvs_connections_total": "counter", "ipvs_packets_total": "counter",
        "ipvs_bytes_total": "counter",
    }
    for who in ("service", "destination"):
        expected.update({
            "ipvs_%s_connections_total" % who: "counter",
            "ipvs_%s_packets_total" % who: "counter",
            "ipvs_%s_bytes_total" % who: "counter",
            "ipvs_%s_connections_per_second" % who: "gauge",
            "ipvs_%s_packets_per_second" % who: "gauge",
            "ipvs_%s_bytes_per_second" % who: "gauge",
        })
    expected.update({"ipvs_destination_weight": "gauge",
                     "ipvs_destination_connections_active": "gauge",
                     "ipvs_destination_connections_inactive": "gauge",
                     "ipvs_destination_connections_persistent": "gauge"})
    assert fams == expected
    s = series(text)
    svc_labels = {"family", "protocol", "address", "port", "fwmark"}
    for (name, labels), _v in s.items():
        keys = {k for k, _ in labels}
        if name.startswith("ipvs_service_"):
            want = svc_labels
        elif name.startswith("ipvs_destination_"):
            want = svc_labels | {"destination_address", "destination_port"}
        elif name == "ipvs_info":
            want = {"version"}
        else:
            want = set()
        if name.split("_")[-1] in ("packets", "bytes") or "_packets_" in name \
                or "_bytes_" in name:
            want = want | {"direction"}
        assert keys == want, (name, keys)
    # fwmark 7 in both families, SCTP and the shared real server are all apart
    fw = {(dict(lb)["family"], dict(lb)["fwmark"]) for (n, lb) in s
          if n == "ipvs_service_connections_total" and dict(lb)["protocol"] == "fwmark"}
    assert fw == {("ipv4", "7"), ("ipv6", "7")}
    protos = sorted(dict(lb)["protocol"] for (n, lb) in s
                    if n == "ipvs_service_connections_total")
    assert protos == ["fwmark", "fwmark", "sctp", "tcp", "tcp", "udp"]
    shared = [lb for (n, lb) in s if n == "ipvs_destination_weight"
              and dict(lb)["destination_address"] == SHARED]
    assert len(shared) == 6 and len(set(shared)) == 6
    # label values of an unused field: "" / "0"
    v4mark = [dict(lb) for (n, lb) in s if n == "ipvs_service_connections_total"
              and dict(lb)["protocol"] == "fwmark" and dict(lb)["family"] == "ipv4"][0]
    assert v4mark["address"] == "" and v4mark["port"] == "0"
    tcp6 = [dict(lb) for (n, lb) in s if n == "ipvs_service_connections_total"
            and dict(lb)["family"] == "ipv6" and dict(lb)["protocol"] == "tcp"][0]
    assert tcp6 == {"family": "ipv6", "protocol": "tcp", "address": "2001:db8::1",
                    "port": "80", "fwmark": "0"}


def test_values_follow_the_listing() -> None:
    t = mixed_table()
    s = series(collector(t).render())
    for svc, dests in t.items():
        f, p, a, port, mark = ex.service_labels(svc)
        base = (("address", a), ("family", f), ("fwmark", mark), ("port", port), ("protocol", p))
        assert svc.stats is not None
        assert s[("ipvs_service_connections_total", base)] == svc.stats.connections
        assert s[("ipvs_service_bytes_total", tuple(sorted(base + (("direction", "out"),))))] \
            == svc.stats.bytes_out
        for d in dests:
            lb = tuple(sorted(base + (("destination_address", str(d.address)),
                                      ("destination_port", str(d.port)))))
            assert d.stats is not None
            assert s[("ipvs_destination_weight", lb)] == d.weight
            assert s[("ipvs_destination_connections_persistent", lb)] == d.persistent_connections
            assert s[("ipvs_destination_packets_total",
                      tuple(sorted(lb + (("direction", "in"),))))] == d.stats.packets_in  # exact
    tot = [svc.stats for svc in t]
    assert s[("ipvs_connections_total", ())] == sum(x.connections for x in tot if x)
    assert s[("ipvs_packets_total", (("direction", "in"),))] == sum(x.packets_in for x in tot if x)
    assert s[("ipvs_up", ())] == 1
    assert s[("ipvs_info", (("version", "1.2.1"),))] == 1
    assert s[("ipvs_connection_table_size", ())] == 4096


def test_service_strings() -> None:
    for text, svc in [
        ("TCP 10.0.0.1:80", Service(address="10.0.0.1", port=80)),
        ("UDP [2001:db8::1]:53", Service(address="2001:db8::1", port=53, protocol="udp")),
        ("SCTP 10.0.0.1:9000", Service(address="10.0.0.1", port=9000, protocol="sctp")),
        ("FWM 7", Service(fwmark=7)),
        ("FWM 7 IPv6", Service(fwmark=7, family=socket.AF_INET6)),
    ]:
        assert ex.parse_service(text) == svc.key
        assert ex.service_string(svc) == text
    assert ex.parse_service("tcp  10.0.0.1:80") == Service(address="10.0.0.1", port=80).key
    for bad in ["TCP 10.0.0.1", "ICMP 10.0.0.1:80", "TCP 2001:db8::1:53", "FWM x",
                "TCP 10.0.0.1:70000", "FWM 7 IPv5", "TCP 999.0.0.1:80", ""]:
        with pytest.raises(ValueError):
            ex.parse_service(bad)


def test_include_and_exclude() -> None:
    s = series(collector(include=["FWM 7 IPv6", "SCTP 10.0.0.1:80"]).render())
    svcs = {(dict(lb)["protocol"], dict(lb)["family"]) for (n, lb) in s
            if n == "ipvs_service_connections_total"}
    assert svcs == {("fwmark", "ipv6"), ("sctp", "ipv4")}
    dests = {dict(lb)["protocol"] for (n, lb) in s if n == "ipvs_destination_weight"}
    assert dests == {"fwmark", "sctp"}
    s = series(collector(exclude=["FWM 7", "TCP [2001:db8::1]:80"]).render())
    svcs = {(dict(lb)["protocol"], dict(lb)["family"]) for (n, lb) in s
            if n == "ipvs_service_connections_total"}
    assert svcs == {("tcp", "ipv4"), ("udp", "ipv4"), ("sctp", "ipv4"), ("fwmark", "ipv6")}
    # the whole-table totals are not filtered
    full = series(collector().render())
    assert s[("ipvs_connections_total", ())] == full[("ipvs_connections_total", ())]
    with pytest.raises(ValueError):
        collector(include=["HTTP 1.2.3.4:80"])


def test_destination_labels_none_keeps_only_service_series() -> None:
    s = series(collector(destination_labels="none").render())
    assert not [n for n, _ in s if n.startswith("ipvs_destination_")]
    assert len([n for n, _ in s if n == "ipvs_service_connections_total"]) == 6
    with pytest.raises(ValueError):
        collector(destination_labels="some")


def test_a_failing_namespace_is_up_0_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    good = mixed_table()
    handles: List[FakeHandle] = []

    def opener(ns: Optional[str]) -> FakeHandle:
        if ns == "gone":
            raise FileNotFoundError(2, "no such namespace", "/run/netns/gone")
        h = FakeHandle(good, fail=OSError(5, "boom") if ns == "bad" else None)
        handles.append(h)
        return h

    c = ex.IPVSCollector(["ok", "bad", "gone"], opener=opener, totals="sum")
    with caplog.at_level(logging.ERROR, logger="ipvs.exporter"):
        text = c.render()
        generic = generic_text(c, c.snapshots())
    s = series(text)
    assert s[("ipvs_up", (("netns", "ok"),))] == 1
    assert s[("ipvs_up", (("netns", "bad"),))] == 0
    assert s[("ipvs_up", (("netns", "gone"),))] == 0
    assert {dict(lb)["netns"] for (n, lb) in s if n.startswith("ipvs_service_")} == {"ok"}
    assert series(generic).keys() == s.keys()
    assert any("netns bad" in r.getMessage() and "boom" in r.getMessage()
               for r in caplog.records)
    assert any("netns gone" in r.getMessage() for r in caplog.records)
    # the failed handle was closed, never reused
    assert all(h.closed for h in handles if h._fail is not None)


def test_handles_are_pooled_and_scrapes_run_in_parallel() -> None:
    t = mixed_table()
    FakeHandle.opened = 0
    c = ex.IPVSCollector(opener=lambda ns: FakeHandle(t, delay=0.3), totals="sum")
    results: List[str] = []
    threads = [threading.Thread(target=lambda: results.append(c.render())) for _ in range(4)]
    t0 = time.monotonic()
    for th in threads:
        th.start()
    for th in threads:
        th.join(10)
    elapsed = time.monotonic() - t0
    assert len(results) == 4
    assert elapsed < 1.0, "4 scrapes of 0.3 s each took %.2f s: they waited for each other" \
        % elapsed
    opened = FakeHandle.opened
    assert opened == 4
    c.render()
    assert FakeHandle.opened == opened   # a pooled handle was reused


PROC_STATS = ("   Total Incoming Outgoing         Incoming         Outgoing\n"
              "   Conns  Packets  Packets            Bytes            Bytes\n"
              "      14       8C        0             3A98                0\n\n"
              " Conns/s   Pkts/s   Pkts/s          Bytes/s          Bytes/s\n"
              "       1        2        0               10                0\n")


def test_proc_stats_parser() -> None:
    """The exporter's whole-table totals are the library's ``IPVS.stats()``:
    its parser of /proc/net/ip_vs_stats reads the kernel's layout."""
    from ipvs._handle import parse_global_stats
    assert parse_global_stats(PROC_STATS) == Stats(20, 140, 0, 15000, 0, 1, 2, 0, 16, 0)
    big = PROC_STATS.replace("3A98", "FFFFFFFFFFFFFFFF")
    assert parse_global_stats(big).bytes_in == 2**64 - 1


class StatsHandle(FakeHandle):
    """A FakeHandle with the library's ``stats()``: the given text parsed
    as ``IPVS.stats()`` parses /proc/net/ip_vs_stats, or its failure."""
    stats_calls = 0

    def __init__(self, table: Dict[Service, List[Destination]], proc: Any) -> None:
        super().__init__(table)
        self._proc = proc

    def stats(self) -> Stats:
        from ipvs._handle import parse_global_stats
        StatsHandle.stats_calls += 1
        if isinstance(self._proc, Exception):
            raise self._proc
        return parse_global_stats(self._proc)


def test_totals_proc_are_the_handles_stats_else_the_sum() -> None:
    t = mixed_table()
    summed = series(collector(t).render())
    ours = [("ipvs_connections_total", ()), ("ipvs_packets_total", (("direction", "in"),)),
            ("ipvs_bytes_total", (("direction", "in"),))]
    # the kernel's counters (they keep counting after a service is deleted)
    c = ex.IPVSCollector(opener=lambda ns: StatsHandle(t, PROC_STATS))
    s = series(c.render())
    assert [s[k] for k in ours] == [20, 140, 15000]
    assert s.keys() == summed.keys()
    generic = series(generic_text(c, c.snapshots()))
    assert generic.keys() == s.keys() and [generic[k] for k in ours] == [20, 140, 15000]
    # the file cannot be read (no /proc, IPVS not loaded yet: the library's
    # IPVSUnavailableError; or an unknown layout): the sum over services,
    # and the handle stays pooled (its socket is fine)
    for failure in (ipvs.IPVSUnavailableError(2, "no /proc/net/ip_vs_stats"),
                    ValueError("unexpected /proc/net/ip_vs_stats format")):
        before = FakeHandle.opened
        calls = StatsHandle.stats_calls
        c = ex.IPVSCollector(opener=lambda ns: StatsHandle(t, failure))
        assert series(c.render()) == summed
        assert series(c.render()) == summed
        assert StatsHandle.stats_calls == calls + 2
        assert FakeHandle.opened == before + 1
        assert len(c._pools[None]) == 1 and not c._pools[None][0][0].closed
    # an opener's handle without stats(): the sum; totals="sum": stats() unasked
    assert series(collector(t, totals="proc").render()) == summed
    calls = StatsHandle.stats_calls
    c = ex.IPVSCollector(opener=lambda ns: StatsHandle(t, PROC_STATS), totals="sum")
    assert series(c.render()) == summed
    assert StatsHandle.stats_calls == calls


def test_wsgi_server_serves_fast_text_and_registry() -> None:
    reg = CollectorRegistry()
    extra = Counter("ipvs_director_reloads", "reloads", ["result"], registry=reg)
    extra.labels("success").inc()
    c = collector()
    httpd, thread = ex.serve(c, "127.0.0.1:0", registry=reg)
    try:
        port = httpd.server_address[1]
        with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=10) as r:
            assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            body = r.read().decode()
        s = series(body)
        assert s[("ipvs_director_reloads_total", (("result", "success"),))] == 1
        assert s[("ipvs_up", ())] == 1
        assert len([n for n, _ in s if n == "ipvs_destination_weight"]) == 12
        req = urllib.request.Request("http://127.0.0.1:%d/metrics" % port,
                                     headers={"Accept-Encoding": "gzip"})
        with urllib.request.urlopen(req, timeout=10) as r:
            assert r.headers["Content-Encoding"] == "gzip"
            assert series(gzip.decompress(r.read()).decode()) == s
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen("http://127.0.0.1:%d/nothing" % port, timeout=10)
        assert e.value.code == 404
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_registered_on_a_registry_it_is_a_plain_collector() -> None:
    reg = CollectorRegistry()
    reg.register(collector())
    s = series(generate_latest(reg).decode())
    assert s[("ipvs_up", ())] == 1
    assert collections.Counter(n for n, _ in s)["ipvs_destination_connections_total"] == 12


def test_fast_path_speed_1000x10() -> None:
    """The renderer alone, 1000 services x 10 real servers (95,000 series):
    well under the 0.5 s scrape budget, and far faster than the generic
    path (the kernel listing is measured by benchmarks/bench_exporter.py)."""
    from ipvs import Stats as S
    t: Dict[Service, List[Destination]] = {}
    for i in range(1000):
        svc = Service(address="10.%d.%d.1" % (i // 250, i % 250), port=80, stats=S(i))
        t[svc] = [Destination("192.168.%d.%d" % (j, i % 250), 8080, weight=j, stats=S(j))
                  for j in range(10)]
    c = collector(t)
    snaps = c.snapshots()
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        text = c.render(snaps)
        times.append(time.perf_counter() - t0)
    assert text.count("\n") > 95000
    assert min(times) < 0.4, times


def test_listen_addresses() -> None:
    assert ex.parse_listen("127.0.0.1:9587") == ("127.0.0.1", 9587)
    assert ex.parse_listen("[::1]:9587") == ("::1", 9587)
    assert ex.parse_listen(":9587") == ("0.0.0.0", 9587)
    for bad in ["127.0.0.1", "127.0.0.1:99999", "::1:9587", "[::1]", "host:port"]:
        with pytest.raises(ValueError):
            ex.parse_listen(bad)


def test_command_line_refuses_bad_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    assert ex.main(["--include", "HTTP 10.0.0.1:80"]) == 2
    assert "HTTP 10.0.0.1:80" in capsys.readouterr().err
    assert ex.main(["--listen", "nowhere"]) == 2
    assert "--listen" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        ex.main(["--destination-labels", "some"])
    assert e.value.code == 2

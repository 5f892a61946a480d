"""The exporter against the kernel, in the lab: after real traffic every
per-real-server counter equals ``ipvsadm -Ln --stats --exact`` and every
weight ``ipvsadm -Ln``; a mixed table (TCP, UDP, SCTP, fwmark 7 in both
families, IPv6, one real server behind several services) has no duplicate
series; a real Prometheus scrapes ``python -m ipvs.exporter`` and its HTTP
API answers the counters that ipvsadm shows."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from typing import Dict, List, Tuple

import pytest

pytest.importorskip("prometheus_client",
                    reason="prometheus_client missing: pip install 'ipvs[exporter]'")

import ipvs  # noqa: E402
import ipvs.exporter as ex  # noqa: E402

from tests.lab.harness import ipvsadm, prometheus_binary  # noqa: E402
from tests.prometheus_text import Series, series  # noqa: E402



_SVC_RE = re.compile(r"^(TCP|UDP|SCTP|FWM)\s+(\S+)\s+(.*)$")
_DST_RE = re.compile(r"^\s+->\s+(\S+)\s+(.*)$")


def _split_hostport(text: str) -> Tuple[str, str]:
    if text.startswith("["):
        host, _, port = text[1:].rpartition("]:")
        return host, port
    host, _, port = text.rpartition(":")
    return host, port


def parse_ipvsadm(text: str) -> Dict[Tuple[Tuple[str, str], ...], List[str]]:
    """{labels of our series (service, plus destination for real servers):
    the numeric columns} from ``ipvsadm -Ln`` or ``-Ln --stats --exact``."""
    out: Dict[Tuple[Tuple[str, str], ...], List[str]] = {}
    svc: Dict[str, str] = {}
    for line in text.splitlines():
        m = _SVC_RE.match(line)
        if m:
            proto, what, rest = m.groups()
            if proto == "FWM":
                # "FWM  7 IPv6 ..." or "FWM  7 ..." (ipvsadm's AF word)
                words = rest.split()
                family = "ipv4"
                if words and words[0] in ("IPv6", "IPv4"):
                    family = "ipv6" if words[0] == "IPv6" else "ipv4"
                    words = words[1:]
                svc = {"family": family, "protocol": "fwmark", "address": "", "port": "0",
                       "fwmark": what}
                rest = " ".join(words)
            else:
                host, port = _split_hostport(what)
                svc = {"family": "ipv6" if ":" in host else "ipv4", "protocol": proto.lower(),
                       "address": host, "port": port, "fwmark": "0"}
            out[tuple(sorted(svc.items()))] = rest.split()
            continue
        m = _DST_RE.match(line)
        if m and svc and not m.group(1).startswith("RemoteAddress"):
            host, port = _split_hostport(m.group(1))
            lb = dict(svc, destination_address=host, destination_port=port)
            out[tuple(sorted(lb.items()))] = m.group(2).split()
    return out


def one(s: Series, name: str, labels: Tuple[Tuple[str, str], ...], **extra: str) -> float:
    return s[(name, tuple(sorted(labels + tuple(extra.items()))))]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _stable_stats(ns: str, connections: int, tries: int = 60) -> str:
    """ipvsadm's exact stats once the services count ``connections`` in all
    and two reads 1 s apart agree (some kernels publish the counters from
    their estimator, every 2 s)."""
    prev = None
    for _ in range(tries):
        cur = ipvsadm(ns, "-Ln", "--stats", "--exact")
        total = sum(int(v[0]) for k, v in parse_ipvsadm(cur).items()
                    if "destination_address" not in dict(k))
        if cur == prev and total == connections:
            return cur
        prev = cur
        time.sleep(1.0)
    raise AssertionError("the IPVS counters never reached %d connections:\n%s"
                         % (connections, prev))


def build_traffic_table(lab: object) -> List[ipvs.Service]:
    svcs = [ipvs.Service(address=lab.vip, port=80, protocol="tcp", scheduler="rr"),
            ipvs.Service(address=lab.vip, port=80, protocol="udp", scheduler="rr"),
            ipvs.Service(address=lab.vip6, port=80, protocol="tcp", scheduler="rr")]
    with lab.ipvs() as lb:
        for svc in svcs:
            addrs = lab.server_addresses6 if svc.family == socket.AF_INET6 \
                else lab.server_addresses
            lb.add_service(svc)
            for i, rip in enumerate(addrs):
                lb.add_destination(svc, ipvs.Destination(rip, lab.port, weight=i + 1,
                                                         forward=ipvs.Forward.MASQ))
    return svcs


def test_counters_and_weights_equal_ipvsadm(lab: object) -> None:
    build_traffic_table(lab)
    assert sum(lab.run_tcp(lab.vip, 80, 12).values()) == 12
    assert sum(lab.run_udp(lab.vip, 80, 9).values()) == 9
    assert sum(lab.run_tcp(lab.vip6, 80, 6).values()) == 6
    held = lab.hold(lab.vip, 80, 3)          # active connections while we look
    try:
        stats_text = _stable_stats(lab.director, 12 + 9 + 6 + 3)
        c = ex.IPVSCollector(lab.director)
        try:
            text = c.render()
        finally:
            c.close()
        after = ipvsadm(lab.director, "-Ln", "--stats", "--exact")
        listing = ipvsadm(lab.director, "-Ln")
    finally:
        for s, _ in held:
            s.close()
    assert after == stats_text, "the counters moved during the scrape"
    s = series(text)
    assert one(s, "ipvs_up", ()) == 1
    stats = parse_ipvsadm(stats_text)
    dests = [k for k in stats if "destination_address" in dict(k)]
    assert len(dests) == 9
    assert len(stats) == 12
    checked = 0
    for labels, cols in stats.items():
        conns, inpkts, outpkts, inbytes, outbytes = (int(x) for x in cols[:5])
        who = "destination" if "destination_address" in dict(labels) else "service"
        assert one(s, "ipvs_%s_connections_total" % who, labels) == conns, labels
        assert one(s, "ipvs_%s_packets_total" % who, labels, direction="in") == inpkts
        assert one(s, "ipvs_%s_packets_total" % who, labels, direction="out") == outpkts
        assert one(s, "ipvs_%s_bytes_total" % who, labels, direction="in") == inbytes
        assert one(s, "ipvs_%s_bytes_total" % who, labels, direction="out") == outbytes
        checked += 1
    assert checked == 12
    # the traffic really is in there: 12 + 9 + 6 connections
    assert sum(one(s, "ipvs_destination_connections_total", k) for k in dests) == 27 + 3
    # weights and connection counts against `ipvsadm -Ln`
    # (Forward Weight ActiveConn InActConn)
    plain = {k: v for k, v in parse_ipvsadm(listing).items() if "destination_address" in dict(k)}
    assert plain.keys() == set(dests)
    for labels, cols in plain.items():
        assert one(s, "ipvs_destination_weight", labels) == int(cols[1]), labels
        assert one(s, "ipvs_destination_connections_active", labels) == int(cols[2]), labels
        assert one(s, "ipvs_destination_connections_inactive", labels) == int(cols[3]), labels
    assert sum(one(s, "ipvs_destination_connections_active", k) for k in dests) >= 3
    # whole-table totals: the kernel's /proc/net/ip_vs_stats, equal to the
    # sum over the services while none was deleted
    svc_keys = [k for k in stats if "destination_address" not in dict(k)]
    assert one(s, "ipvs_connections_total", ()) == \
        sum(one(s, "ipvs_service_connections_total", k) for k in svc_keys)
    for d in ("in", "out"):
        assert one(s, "ipvs_bytes_total", (), direction=d) == \
            sum(one(s, "ipvs_service_bytes_total", k, direction=d) for k in svc_keys)
    # ... and unlike that sum, they keep counting after a service is deleted
    with lab.ipvs() as lb:
        lb.delete_service(ipvs.Service(address=lab.vip, port=80, protocol="udp"))
    c = ex.IPVSCollector(lab.director)
    try:
        s2 = series(c.render())
    finally:
        c.close()
    assert one(s2, "ipvs_connections_total", ()) == one(s, "ipvs_connections_total", ())
    assert one(s2, "ipvs_bytes_total", (), direction="in") == \
        one(s, "ipvs_bytes_total", (), direction="in")
    assert not [k for k in s2 if dict(k[1]).get("protocol") == "udp"]


def test_mixed_table_has_no_duplicate_series(lab: object) -> None:
    shared = lab.server_addresses[0]
    shared6 = lab.server_addresses6[0]
    v4 = [ipvs.Service(address=lab.vip, port=80, protocol=p) for p in ("tcp", "udp", "sctp")]
    v4.append(ipvs.Service(fwmark=7))
    v6 = [ipvs.Service(address=lab.vip6, port=80, protocol="tcp"),
          ipvs.Service(fwmark=7, family=socket.AF_INET6)]
    with lab.ipvs() as lb:
        for svc in v4:
            lb.add_service(svc)
            port = 0 if svc.fwmark else lab.port
            lb.add_destination(svc, ipvs.Destination(shared, port, weight=2))
            lb.add_destination(svc, ipvs.Destination(lab.server_addresses[1], port))
        for svc in v6:
            lb.add_service(svc)
            port = 0 if svc.fwmark else lab.port
            lb.add_destination(svc, ipvs.Destination(shared6, port, weight=3))
    c = ex.IPVSCollector(lab.director, rates=True)
    httpd, _t = ex.serve(c, "127.0.0.1:0")
    try:
        url = "http://127.0.0.1:%d/metrics" % httpd.server_address[1]
        with urllib.request.urlopen(url, timeout=30) as r:
            text = r.read().decode()
        s = series(text)                          # fails on any duplicate
        generic = series(_generic(c))             # the generic path agrees
    finally:
        httpd.shutdown()
        httpd.server_close()
        c.close()
    assert s.keys() == generic.keys()
    svcs = [dict(lb) for (n, lb) in s if n == "ipvs_service_connections_total"]
    assert len(svcs) == 6
    assert sorted((d["family"], d["protocol"], d["fwmark"]) for d in svcs) == [
        ("ipv4", "fwmark", "7"), ("ipv4", "sctp", "0"), ("ipv4", "tcp", "0"),
        ("ipv4", "udp", "0"), ("ipv6", "fwmark", "7"), ("ipv6", "tcp", "0")]
    weights = {lb: v for (n, lb), v in s.items() if n == "ipvs_destination_weight"}
    assert len(weights) == 4 * 2 + 2
    behind_shared = [lb for lb in weights if dict(lb)["destination_address"] == shared]
    assert len(behind_shared) == 4 and all(weights[lb] == 2 for lb in behind_shared)
    # per real server: 9 series without rates, 5 more with them
    per_dest = [n for (n, lb) in s if "destination_address" in dict(lb)]
    assert len(per_dest) == 10 * 14
    # what ipvsadm lists is exactly what we export
    assert set(parse_ipvsadm(ipvsadm(lab.director, "-Ln"))) == \
        {lb for (n, lb) in s if n in ("ipvs_service_connections_total",
                                      "ipvs_destination_weight")}


def _generic(c: ex.IPVSCollector) -> str:
    from prometheus_client.core import CollectorRegistry
    from prometheus_client.exposition import generate_latest
    reg = CollectorRegistry()
    reg.register(c)
    return generate_latest(reg).decode()


def test_broken_namespace_gives_up_0_and_the_exporter_lives(lab: object) -> None:
    c = ex.IPVSCollector([lab.director, "ipvs-exporter-no-such-ns"])
    try:
        s = series(c.render())
    finally:
        c.close()
    assert one(s, "ipvs_up", (("netns", lab.director),)) == 1
    assert one(s, "ipvs_up", (("netns", "ipvs-exporter-no-such-ns"),)) == 0


# ---------------------------------------------------------------------------
# a real Prometheus
# ---------------------------------------------------------------------------

def _get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.loads(r.read().decode())


def test_prometheus_scrapes_the_exporter(lab: object) -> None:
    binary = prometheus_binary()
    build_traffic_table(lab)
    assert sum(lab.run_tcp(lab.vip, 80, 15).values()) == 15
    stats_text = _stable_stats(lab.director, 15)
    expected = {k: int(v[0]) for k, v in parse_ipvsadm(stats_text).items()
                if "destination_address" in dict(k)}
    expected_bytes = {k: int(v[3]) for k, v in parse_ipvsadm(stats_text).items()
                      if "destination_address" in dict(k)}
    exp_port, prom_port = _free_port(), _free_port()
    with tempfile.TemporaryDirectory(prefix="ipvs-prom-") as tmp:
        cfg = os.path.join(tmp, "prometheus.yml")
        with open(cfg, "w") as f:
            f.write("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
                    "scrape_configs:\n  - job_name: ipvs\n    static_configs:\n"
                    "      - targets: ['127.0.0.1:%d']\n" % exp_port)
        exporter = subprocess.Popen(
            [sys.executable, "-m", "ipvs.exporter", "--listen", "127.0.0.1:%d" % exp_port,
             "--netns", lab.director], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        prom = subprocess.Popen(
            [binary, "--config.file=" + cfg, "--storage.tsdb.path=" + os.path.join(tmp, "db"),
             "--web.listen-address=127.0.0.1:%d" % prom_port, "--log.level=warn"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            api = "http://127.0.0.1:%d/api/v1/query?query=" % prom_port

            def query(q: str) -> list:
                try:
                    res = _get_json(api + urllib.parse.quote(q))
                except OSError:
                    return []
                return res["data"]["result"] if res.get("status") == "success" else []

            deadline = time.monotonic() + 120
            got: list = []
            while time.monotonic() < deadline:
                assert exporter.poll() is None, exporter.stderr.read().decode()  # type: ignore
                assert prom.poll() is None, prom.stderr.read().decode()  # type: ignore
                got = query('ipvs_destination_connections_total{job="ipvs"}')
                if len(got) == len(expected) and query('ipvs_up{job="ipvs"} == 1'):
                    break
                time.sleep(1.0)
            assert len(got) == len(expected), got
            seen = {}
            for r in got:
                m = r["metric"]
                lb = tuple(sorted((k, m[k]) for k in ex.DESTINATION_LABELS))
                seen[lb] = int(float(r["value"][1]))
            assert seen == expected
            assert sum(seen.values()) == 15
            byts = query('ipvs_destination_bytes_total{job="ipvs",direction="in"}')
            assert {tuple(sorted((k, r["metric"][k]) for k in ex.DESTINATION_LABELS)):
                    int(float(r["value"][1])) for r in byts} == expected_bytes
            # the counter type reached Prometheus too
            meta = _get_json("http://127.0.0.1:%d/api/v1/metadata?metric="
                             "ipvs_destination_connections_total" % prom_port)
            types = {m["type"] for m in meta["data"].get("ipvs_destination_connections_total",
                                                          [])}
            assert types == {"counter"}
        finally:
            for p in (prom, exporter):
                p.terminate()
            for p in (prom, exporter):
                try:
                    p.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(timeout=10)
        assert exporter.returncode == 0, exporter.stderr.read().decode()  # type: ignore


def test_a_namespace_made_again_under_its_name_is_read_afresh() -> None:
    from ipvs import netns
    name = "ipvs-exp-again-%d" % os.getpid()
    first = ipvs.Service(address="10.9.0.1", port=80)
    second = ipvs.Service(address="10.9.0.2", port=443, protocol="udp")
    netns.create(name)
    c = ex.IPVSCollector(name)
    try:
        with ipvs.IPVS(netns=name) as lb:
            lb.add_service(first)
        s = series(c.render())                 # leaves a pooled socket in there
        assert [dict(lb)["address"] for n, lb in s if n == "ipvs_service_connections_total"] \
            == ["10.9.0.1"]
        netns.remove(name)
        s = series(c.render())
        assert one(s, "ipvs_up", ()) == 0
        netns.create(name)
        with ipvs.IPVS(netns=name) as lb:
            lb.add_service(second)
        s = series(c.render())
        assert one(s, "ipvs_up", ()) == 1
        assert [(dict(lb)["address"], dict(lb)["protocol"]) for n, lb in s
                if n == "ipvs_service_connections_total"] == [("10.9.0.2", "udp")]
    finally:
        c.close()
        if netns.exists(name):
            netns.remove(name)

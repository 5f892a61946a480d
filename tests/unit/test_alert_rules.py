"""The shipped Prometheus alert rules, Grafana dashboard and systemd unit
(contrib/): ``promtool check rules`` and ``promtool test rules`` pass, every
alert has a unit test that makes it fire and one that must not, every
expression of the dashboard parses with Prometheus's own parser, and every
metric name used in the rules and the dashboard is one that
ipvs/director/metrics.py or ipvs/exporter/ defines.

promtool comes from Debian's ``prometheus`` package; without it these
tests skip, except in CI (``CI=true``), where they fail.  Installed from a
wheel (tests/ copied alone, no contrib/), they skip.

tests/lab/test_prometheus_rules.py evaluates the same expressions in a real
Prometheus scraping a director in the lab; the readers both use are in
tests/contrib_rules.py.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from typing import Any, Dict, List, Set

import pytest

from tests.contrib_rules import (ALERTS, ROOT, RULES, RULES_TEST, UNIT, VARIABLES,
                                  _literals, _panels, dashboard_exprs, defined, metric_names,
                                  promtool, read_dashboard, read_rule_tests, read_rules,
                                  substitute)
from tests.contrib_rules import pytestmark  # noqa: F401  (skip without contrib/)


def _run(args: List[str], cwd: str = ROOT) -> "subprocess.CompletedProcess[str]":
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=120)


# ---------------------------------------------------------------- promtool

def test_promtool_check_rules() -> None:
    r = _run([promtool(), "check", "rules", RULES])
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    m = re.search(r"SUCCESS: (\d+) rules found", out)
    assert m, out
    assert int(m.group(1)) == len(read_rules()) == len(ALERTS), out


def test_promtool_test_rules() -> None:
    r = _run([promtool(), "test", "rules", os.path.basename(RULES_TEST)],
             cwd=os.path.dirname(RULES_TEST))
    out = r.stdout + r.stderr
    assert r.returncode == 0 and "SUCCESS" in out and "FAILED" not in out, out


def test_dashboard_expressions_parse(tmp_path: Any) -> None:
    """Every dashboard expression, as a recording rule: promtool check rules
    parses it with Prometheus's own PromQL parser."""
    exprs = dashboard_exprs(read_dashboard())
    lines = ["groups:", "  - name: dashboard", "    rules:"]
    for i, (_where, expr) in enumerate(exprs):
        lines.append("      - record: dashboard:expr_%d" % i)
        lines.append("        expr: %s" % json.dumps(substitute(expr)))
    path = tmp_path / "dashboard-exprs.yml"
    path.write_text("\n".join(lines) + "\n")
    r = _run([promtool(), "check", "rules", str(path)])
    out = r.stdout + r.stderr
    assert r.returncode == 0 and "SUCCESS: %d rules found" % len(exprs) in out, \
        out + "\n" + "\n".join("%d %s: %s" % (i, w, e) for i, (w, e) in enumerate(exprs))


# ---------------------------------------------------------------- the rules

def test_every_alert_is_there_with_labels_and_annotations() -> None:
    rules = read_rules()
    assert sorted(r["alert"] for r in rules) == sorted(ALERTS)
    for r in rules:
        assert r["labels"].get("severity") in ("warning", "critical"), r
        assert r["annotations"].get("summary") and r["annotations"].get("description"), r
        # the message names what the labels say
        text = r["annotations"]["summary"] + r["annotations"]["description"]
        assert "$labels.instance" in text, r["alert"]
        if r["alert"] not in ("IPVSDirectorReloadFailed", "IPVSDirectorNotScraped"):
            for lb in ("family", "protocol", "address", "port", "fwmark"):
                assert "$labels.%s" % lb in r["annotations"]["summary"], (r["alert"], lb)
    by = {r["alert"]: r for r in rules}
    assert "$labels.destination_address" in by["IPVSDirectorRealServerDown"]["annotations"][
        "summary"]
    # states that come and go within a round or two do not page anyone
    for name in ("IPVSDirectorRealServerDown", "IPVSDirectorQuorumLost",
                 "IPVSDirectorSorryServerActive", "IPVSDirectorNotScraped"):
        assert re.match(r"^\d+[ms]$", by[name].get("for", "")), name
    assert "absent(" in by["IPVSDirectorNotScraped"]["expr"]


def test_every_alert_has_a_test_that_fires_and_one_that_does_not() -> None:
    tests = read_rule_tests()
    for name in ALERTS:
        assert tests.get(name) == {"fires", "silent"}, (name, tests.get(name))
    assert set(tests) == set(ALERTS), sorted(set(tests) - set(ALERTS))


# ---------------------------------------------------------------- the dashboard

def test_dashboard_parses_and_takes_its_datasource_from_a_variable() -> None:
    dash = read_dashboard()
    assert dash["uid"] and dash["title"] and dash["schemaVersion"] >= 30
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    ds = variables["datasource"]
    assert ds["type"] == "datasource" and ds["query"] == "prometheus"
    ids = [p["id"] for p in _panels(dash)]
    assert len(ids) == len(set(ids)), "panel ids repeat"
    targets = 0
    for p in _panels(dash):
        assert 0 <= p["gridPos"]["x"] and p["gridPos"]["x"] + p["gridPos"]["w"] <= 24, p["title"]
        if p["type"] == "row":
            continue
        assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, p["title"]
        assert p["targets"], p["title"]
        for t in p["targets"]:
            assert t["datasource"]["uid"] == "${datasource}", p["title"]
            targets += 1
    for v in variables.values():
        if v["type"] == "query":
            assert v["datasource"]["uid"] == "${datasource}", v["name"]
    # every variable an expression uses is defined (or one of Grafana's own)
    for where, expr in dashboard_exprs(dash):
        for m in re.finditer(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)", expr):
            var = m.group(1) or m.group(2)
            assert var in variables or var in VARIABLES, (where, var)
    assert targets >= 20


def test_dashboard_shows_what_the_contract_asks() -> None:
    names: Set[str] = set()
    for _where, expr in dashboard_exprs(read_dashboard()):
        names |= metric_names(expr)
    for name in ("ipvs_director_real_server_up", "ipvs_director_quorum_up",
                 "ipvs_director_sorry_active", "ipvs_service_connections_total",
                 "ipvs_service_bytes_total", "ipvs_service_packets_total",
                 "ipvs_destination_connections_total", "ipvs_destination_bytes_total",
                 "ipvs_destination_packets_total", "ipvs_director_checks_total",
                 "ipvs_director_check_duration_seconds_bucket", "ipvs_director_reloads_total",
                 "ipvs_director_drift_repairs_total", "ipvs_director_role"):
        assert name in names, name
    exprs = " ".join(e for _w, e in dashboard_exprs(read_dashboard()))
    assert "histogram_quantile(0.99," in exprs and "histogram_quantile(0.5," in exprs


# ---------------------------------------------------------------- metric names

def test_every_metric_name_is_one_the_code_defines() -> None:
    used: Dict[str, List[str]] = {}
    for r in read_rules():
        for n in metric_names(r["expr"]):
            used.setdefault(n, []).append("alert " + r["alert"])
    for where, expr in dashboard_exprs(read_dashboard()):
        for n in metric_names(expr):
            used.setdefault(n, []).append(where)
    assert "ipvs_director_real_server_up" in used and "up" in used
    literals = _literals()
    unknown = {n: w for n, w in used.items() if n != "up" and not defined(n, literals)}
    assert not unknown, "metric names no source defines: %s" % unknown


def test_the_name_check_catches_a_typo() -> None:
    literals = _literals()
    assert defined("ipvs_director_quorum_up", literals)
    assert defined("ipvs_service_bytes_total", literals)          # prefix + suffix
    assert defined("ipvs_director_check_duration_seconds_bucket", literals)
    assert not defined("ipvs_director_quorum_upp", literals)
    assert not defined("ipvs_service_byte_total", literals)
    assert metric_names('sum by (address) (rate(ipvs_x_total{job="up"}[1m])) or up{a="b"}') \
        == {"ipvs_x_total", "up"}
    assert substitute('rate(x{a=~"$address",i=~"${instance}"}[$__rate_interval])') == \
        'rate(x{a=~".*",i=~".*"}[1m])'


# ---------------------------------------------------------------- the systemd unit

def _unit() -> Dict[str, Dict[str, List[str]]]:
    sections: Dict[str, Dict[str, List[str]]] = {}
    cur: Dict[str, List[str]] = {}
    for line in open(UNIT, encoding="utf-8"):
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            cur = sections.setdefault(line.strip("[]"), {})
            continue
        k, _, v = line.partition("=")
        cur.setdefault(k.strip(), []).append(v.strip())
    return sections


def _seconds(text: str) -> float:
    m = re.match(r"^(\d+(?:\.\d+)?)\s*(ms|s|min|m)?$", text)
    assert m, text
    return float(m.group(1)) * {"ms": 0.001, "s": 1, "min": 60, "m": 60, None: 1}[m.group(2)]


def test_systemd_unit() -> None:
    svc = _unit()["Service"]
    one = {k: v[-1] for k, v in svc.items()}
    assert one["Type"] == "notify"
    assert one["ExecStart"] == "/usr/bin/ipvs-director -c /etc/ipvs-director/director.toml"
    assert one["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert _seconds(one["WatchdogSec"]) == 30
    assert one["Restart"] == "on-failure"
    assert one["KillMode"] in ("mixed", "process")
    assert "CAP_NET_ADMIN" in one["CapabilityBoundingSet"].split()
    assert "CAP_NET_ADMIN" in one["AmbientCapabilities"].split()
    assert "AF_NETLINK" in one["RestrictAddressFamilies"].split()
    # the director withdraws and waits its grace before it exits
    grace = 5.0                                 # the contract's default withdraw_grace
    try:
        from ipvs.director import config as _config
        for cls in vars(_config).values():
            fields = getattr(cls, "__dataclass_fields__", {})
            if "withdraw_grace" in fields and isinstance(fields["withdraw_grace"].default,
                                                         (int, float)):
                grace = max(grace, float(fields["withdraw_grace"].default))
    except ImportError:  # pragma: no cover - the director's extras missing
        pass
    assert _seconds(one["TimeoutStopSec"]) > grace + 5
    assert "ProtectKernelTunables" not in svc, "[director] sysctl writes /proc/sys"


def test_systemd_unit_verifies(tmp_path: Any) -> None:
    """systemd-analyze verify (where systemd is installed) finds no unknown
    key or bad value (the Exec paths pointed at a program that exists)."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze not installed")
    text = open(UNIT, encoding="utf-8").read().replace("/usr/bin/ipvs-director", "/bin/true")
    path = tmp_path / "ipvs-director.service"
    path.write_text(text)
    r = _run([analyze, "verify", str(path)])
    assert r.returncode == 0 and not r.stderr.strip(), r.stdout + r.stderr

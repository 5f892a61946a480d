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
Prometheus scraping a director in the lab, and imports the helpers below.
"""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import subprocess
from typing import Any, Dict, Iterator, List, Set, Tuple

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONTRIB = os.path.join(ROOT, "contrib")
RULES = os.path.join(CONTRIB, "prometheus", "ipvs-director-alerts.yml")
RULES_TEST = os.path.join(CONTRIB, "prometheus", "ipvs-director-alerts.test.yml")
DASHBOARD = os.path.join(CONTRIB, "grafana", "ipvs-director.json")
UNIT = os.path.join(CONTRIB, "systemd", "ipvs-director.service")
SOURCES = [os.path.join(ROOT, "ipvs", "director", "metrics.py")] + sorted(
    glob.glob(os.path.join(ROOT, "ipvs", "exporter", "*.py")))

#: the alerts the rules must have (docs/alerts.md explains each)
ALERTS = ("IPVSDirectorRealServerDown", "IPVSDirectorQuorumLost",
          "IPVSDirectorSorryServerActive", "IPVSDirectorReloadFailed",
          "IPVSDirectorNotScraped", "IPVSDirectorDriftRepaired")

#: what the dashboard's template variables become outside Grafana
VARIABLES = {"__rate_interval": "1m", "__interval": "15s", "__range": "1h",
             "__range_s": "3600"}

pytestmark = pytest.mark.skipif(not os.path.isdir(CONTRIB),
                                reason="needs the source tree (contrib/)")


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() not in ("", "0", "false", "no")


def promtool() -> str:
    path = shutil.which("promtool") or ("/usr/bin/promtool"
                                        if os.path.exists("/usr/bin/promtool") else None)
    if path is None:
        if _in_ci():
            pytest.fail("promtool is missing in CI: apt-get install prometheus")
        pytest.skip("promtool not installed: apt-get install prometheus")
    return path


# ---------------------------------------------------------------- reading the files

def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _scalar(lines: List[str], i: int, indent: int, value: str) -> Tuple[str, int]:
    """The value of the key on line i-1: plain (``value``) or a block scalar
    (``|``, ``>-``) whose lines follow, more indented than ``indent``."""
    if value not in ("|", "|-", ">", ">-"):
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        return value, i
    body: List[str] = []
    while i < len(lines) and (not lines[i].strip() or _indent(lines[i]) > indent):
        body.append(lines[i].strip())
        i += 1
    while body and not body[-1]:
        body.pop()
    sep = "\n" if value.startswith("|") else " "
    return sep.join(body), i


def read_rules(path: str = RULES) -> List[Dict[str, Any]]:
    """The alerting rules of the shipped file: [{"alert", "expr", "for",
    "labels", "annotations"}].  Not a YAML parser (PyYAML is not a test
    dependency): it reads the subset the file is written in, and the count is
    checked against promtool's."""
    lines = open(path, encoding="utf-8").read().splitlines()
    rules: List[Dict[str, Any]] = []
    i = 0
    while i < len(lines):
        m = re.match(r"^(\s*)- alert: (\S+)\s*$", lines[i])
        i += 1
        if not m:
            continue
        key_indent = len(m.group(1)) + 2
        rule: Dict[str, Any] = {"alert": m.group(2), "labels": {}, "annotations": {}}
        while i < len(lines) and (not lines[i].strip() or lines[i].lstrip().startswith("#")
                                  or _indent(lines[i]) >= key_indent):
            line = lines[i]
            i += 1
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            assert _indent(line) == key_indent, "unexpected line in %s: %r" % (path, line)
            key, _, value = line.strip().partition(":")
            value = value.strip()
            if key in ("labels", "annotations"):
                assert value == "", line
                while i < len(lines) and lines[i].strip() and _indent(lines[i]) > key_indent:
                    sub = lines[i]
                    i += 1
                    k, _, v = sub.strip().partition(":")
                    rule[key][k], i = _scalar(lines, i, _indent(sub), v.strip())
            else:
                rule[key], i = _scalar(lines, i, key_indent, value)
        rules.append(rule)
    return rules


def read_rule_tests(path: str = RULES_TEST) -> Dict[str, Set[str]]:
    """{alertname: {"fires", "silent"}}: which of the two kinds of
    expectation the promtool unit tests hold for each alert."""
    seen: Dict[str, Set[str]] = {}
    name = None
    for line in open(path, encoding="utf-8"):
        s = line.split("#", 1)[0].strip()
        m = re.match(r"^alertname:\s*(\S+)$", s)
        if m:
            name = m.group(1)
            continue
        if s.startswith("exp_alerts:") and name is not None:
            kind = "silent" if s.split(":", 1)[1].strip() == "[]" else "fires"
            seen.setdefault(name, set()).add(kind)
            name = None
    return seen


def read_dashboard(path: str = DASHBOARD) -> Dict[str, Any]:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _panels(dash: Dict[str, Any]) -> Iterator[Dict[str, Any]]:
    for p in dash.get("panels", []):
        yield p
        yield from p.get("panels", [])        # the panels of collapsed rows


def dashboard_exprs(dash: Dict[str, Any]) -> List[Tuple[str, str]]:
    """(where, PromQL) of every panel target and every query variable
    (``label_values(SELECTOR, label)`` stands for SELECTOR)."""
    out = []
    for p in _panels(dash):
        for t in p.get("targets", []):
            out.append(("panel %r %s" % (p.get("title"), t.get("refId")), t["expr"]))
    for v in dash.get("templating", {}).get("list", []):
        if v.get("type") != "query":
            continue
        q = v.get("query")
        q = q.get("query") if isinstance(q, dict) else q
        m = re.match(r"^\s*label_values\((.*),\s*\w+\s*\)\s*$", q or "")
        out.append(("variable %r" % v["name"], m.group(1) if m else q))
    return out


def substitute(expr: str, default: str = ".*") -> str:
    """A dashboard expression with Grafana's variables replaced: the
    intervals by durations, every other variable (a label regex) by
    ``default``."""
    def repl(m: "re.Match[str]") -> str:
        return VARIABLES.get(m.group(1) or m.group(2), default)
    return re.sub(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)", repl, expr)


_IDENT = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")


def metric_names(expr: str) -> Set[str]:
    """The metric names an expression selects: ``ipvs_*`` identifiers, and
    any identifier directly followed by a ``{`` selector."""
    stripped = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)          # no label values
    stripped = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "",
                      stripped)
    names = set(re.findall(r"\bipvs_[A-Za-z0-9_:]+", stripped))
    names |= {m.group(0) for m in _IDENT.finditer(stripped)
              if stripped[m.end():].lstrip().startswith("{")}
    return names


def _literals() -> Dict[str, Set[str]]:
    out = {}
    for path in SOURCES:
        text = open(path, encoding="utf-8").read()
        out[path] = set(re.findall(r"[\"']([A-Za-z_:][A-Za-z0-9_:]*)[\"']", text))
    return out


def defined(name: str, literals: Dict[str, Set[str]]) -> bool:
    """Whether the sources define metric ``name``: as one string literal, or
    as a literal prefix ending in ``_`` joined to a literal suffix (the
    exporter's ``"ipvs_service_" + "connections_total"``); a counter also
    by its name without ``_total`` (prometheus_client adds it), a
    histogram's ``_bucket``/``_sum``/``_count`` by the histogram's name."""
    wanted = {name}
    for suffix in ("_bucket", "_sum", "_count"):
        if name.endswith(suffix):
            wanted.add(name[:-len(suffix)])
    wanted |= {w[:-len("_total")] for w in wanted if w.endswith("_total")}
    for lits in literals.values():
        if wanted & lits:
            return True
        prefixes = [p for p in lits if p.endswith("_")]
        for w in wanted:
            if any(w.startswith(p) and w[len(p):] in lits for p in prefixes):
                return True
    return False


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

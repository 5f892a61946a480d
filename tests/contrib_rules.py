"""Readers of the shipped Prometheus rules and Grafana dashboard (contrib/),
shared by tests/unit/test_alert_rules.py (promtool, names, the dashboard's
expressions) and tests/lab/test_prometheus_rules.py (the same expressions in
a real Prometheus scraping a lab director)."""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
from typing import Any, Dict, Iterator, List, Set, Tuple

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
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

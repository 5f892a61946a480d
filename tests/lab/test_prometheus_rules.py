"""The shipped alert rules and Grafana dashboard (contrib/) in a real
Prometheus scraping a real director in the lab.

A director process keeps one TCP service of two real servers (quorum 2, a
sorry server) with ``[director] metrics`` on; Debian's prometheus runs in
the director's namespace, scrapes it every second under the job
``ipvs-director`` (plus a second target of that job where nothing listens)
and loads contrib/prometheus/ipvs-director-alerts.yml as it ships.  After
traffic, a drift repair, a refused reload, a drained real server and a
failing one:

- Prometheus loaded every rule and evaluates each without error;
- every expression of the rules and of the dashboard (Grafana's variables
  substituted) answers /api/v1/query without error, and with data except
  ``ipvs_director_role`` (the lab's director has no ``[director.sync]``);
- /api/v1/alerts shows each of the six alerts: pending (those with a
  ``for:``) or firing, on the right labels, with the rendered summary; none
  for the drained real server (up 0 too, but its checks pass).

Run inside the sandbox:
    python -m ipvs.sandbox -- .venv/bin/python -m pytest -q -p no:cacheprovider \
        tests/lab/test_prometheus_rules.py
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Dict, List, Tuple

import pytest

import ipvs
from ipvs import netns
from tests.lab.harness import all_up, config, prometheus_binary, timed, wait_until, weights
from tests.contrib_rules import (ALERTS, RULES, dashboard_exprs, read_dashboard,
                                         substitute)

METRICS_PORT = 19587      # the director's /metrics, in the director's namespace
DEAD_PORT = 19588         # a target of the job where nothing listens
PROM_PORT = 19090         # Prometheus's API, in the same namespace
BOUND = 30.0              # s for anything to show up (2 cores, shared)
#: expressions without data in this lab, and why
EMPTY_HERE = {"ipvs_director_role": "no [director.sync] in the lab's director"}

pytestmark = pytest.mark.skipif(not os.path.exists(RULES), reason="needs contrib/ (source tree)")


class Prometheus:
    """Debian's prometheus in a namespace, with its HTTP API."""

    def __init__(self, ns: str, tmp: str, targets: List[str]) -> None:
        self.ns = ns
        cfg = os.path.join(tmp, "prometheus.yml")
        with open(cfg, "w") as f:
            f.write("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
                    "  evaluation_interval: 1s\n"
                    "rule_files:\n  - %s\n"
                    "scrape_configs:\n  - job_name: ipvs-director\n    static_configs:\n"
                    "      - targets: [%s]\n"
                    % (json.dumps(RULES), ", ".join("'%s'" % t for t in targets)))
        self.log = open(os.path.join(tmp, "prometheus.log"), "wb")
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, prometheus_binary(), "--config.file=" + cfg,
             "--storage.tsdb.path=" + os.path.join(tmp, "db"),
             "--web.listen-address=127.0.0.1:%d" % PROM_PORT, "--log.level=warn"],
            stdout=subprocess.DEVNULL, stderr=self.log)

    def stderr(self) -> str:
        with open(self.log.name, errors="replace") as f:
            return f.read()

    def get(self, path: str, **params: str) -> Dict[str, Any]:
        """The JSON answer of the API (an error answer too)."""
        assert self.proc.poll() is None, "prometheus died: " + self.stderr()
        data = urllib.parse.urlencode(params).encode() if params else None
        req = urllib.request.Request("http://127.0.0.1:%d%s" % (PROM_PORT, path), data=data)
        with netns.enter(self.ns):
            try:
                with urllib.request.urlopen(req, timeout=10) as r:
                    return json.loads(r.read().decode())
            except urllib.error.HTTPError as e:
                code, body = e.code, e.read().decode(errors="replace")
        try:
            return json.loads(body)
        except ValueError:        # "Service Unavailable" while it starts
            return {"status": "error", "error": "HTTP %d: %s" % (code, body)}

    def query(self, expr: str) -> Dict[str, Any]:
        return self.get("/api/v1/query", query=expr)

    def result(self, expr: str) -> List[Dict[str, Any]]:
        try:
            ans = self.query(expr)
        except OSError:
            return []
        return ans["data"]["result"] if ans.get("status") == "success" else []

    def alerts(self) -> List[Dict[str, Any]]:
        try:
            ans = self.get("/api/v1/alerts")
        except OSError:
            return []
        return ans["data"]["alerts"] if ans.get("status") == "success" else []

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.log.close()


def _expressions(prom: Prometheus) -> List[Tuple[str, str]]:
    """(where, PromQL): the rules as Prometheus loaded them, then the
    dashboard's, variables substituted."""
    out = []
    for g in prom.get("/api/v1/rules")["data"]["groups"]:
        for r in g["rules"]:
            out.append(("alert " + r["name"], r["query"]))
    for where, expr in dashboard_exprs(read_dashboard()):
        out.append((where, substitute(expr)))
    return out


def _why_empty(expr: str) -> str:
    for name, why in EMPTY_HERE.items():
        if name in expr:
            return why
    return ""


def test_rules_and_dashboard_in_a_real_prometheus(lab, tmp_path, director_factory):
    t0 = time.monotonic()
    sorry = "%s:%d" % (lab.server_addresses[2], lab.port)
    text = config(lab, tmp_path, servers={"rs1": "", "rs2": ""},
                  service_extra='quorum = 2\nsorry_server = "%s"' % sorry,
                  director_extra='metrics = "127.0.0.1:%d"' % METRICS_PORT)
    d = director_factory(text).start()
    timed(all_up(lab, {"rs1": 1, "rs2": 1}), 10)
    live, dead = "127.0.0.1:%d" % METRICS_PORT, "127.0.0.1:%d" % DEAD_PORT
    prom = Prometheus(lab.director, str(tmp_path), [live, dead])
    try:
        # scraped, with samples enough for rate() (two in the window)
        assert wait_until(lambda: prom.result(
            'count_over_time(ipvs_director_checks_total{instance="%s"}[1m]) >= 3' % live),
            BOUND, 0.5), "never scraped:\n" + prom.stderr()
        assert sum(lab.run_tcp(lab.vip, 80, 10).values()) == 10

        # a drift, repaired by the next resync (1 s)
        with lab.ipvs() as lb:
            own = [s for s in lb.services() if s.port == 80][0]
            lb.update_destination(own, ipvs.Destination(lab.server_addresses[1], lab.port,
                                                        weight=9, forward=ipvs.Forward.MASQ))
        timed(lambda: weights(lab).get("rs2") == 1, 10)
        # a reload the director refuses
        with open(d.path, "w") as f:
            f.write(text.replace('forward = "masq"', 'forward = "masq"\nweight = "heavy"', 1))
        st, _body = d.call("POST", "/reload")
        assert 400 <= st < 500
        with open(d.path, "w") as f:
            f.write(text)
        # a real server drained through the API: up 0, its checks pass
        rs1, rs2 = lab.server_addresses[0], lab.server_addresses[1]
        service = "TCP %s:80" % lab.vip
        st, body = d.call("POST", "/drain", {"service": service, "address": rs2,
                                             "port": lab.port})
        assert st == 200, body
        # a real server whose check fails: down, quorum lost, sorry server on
        lab.set_http_status("rs1", 500)
        timed(lambda: weights(lab).get("rs1") == 0 and weights(lab).get("rs3") == 1, 10)
        assert wait_until(lambda: len(prom.result(
            'ipvs_director_real_server_up{instance="%s"} == 0' % live)) == 2, BOUND, 0.5)

        # every expression evaluates, and has data where the lab has some
        exprs = _expressions(prom)
        loaded = sorted(w[len("alert "):] for w, _ in exprs if w.startswith("alert "))
        assert loaded == sorted(ALERTS)

        def all_have_data() -> bool:
            return all(prom.result(e) or _why_empty(e) for _w, e in exprs)
        wait_until(all_have_data, BOUND, 0.5)
        errors, empty, counts = [], [], {}
        for where, expr in exprs:
            ans = prom.query(expr)
            if ans.get("status") != "success":
                errors.append((where, expr, ans.get("error")))
                continue
            counts[where] = len(ans["data"]["result"])
            if not ans["data"]["result"]:
                empty.append((where, expr, _why_empty(expr)))
        print("\n%d expressions evaluated (%d of the rules, %d of the dashboard); series each:"
              % (len(exprs), len(loaded), len(exprs) - len(loaded)))
        for where, n in counts.items():
            print("  %3d  %s" % (n, where))
        print("empty: %s" % ([(w, why) for w, _e, why in empty] or "none"))
        assert not errors, errors
        assert not [e for e in empty if not e[2]], empty
        assert [w for w, _e, _why in empty] == [w for w, e in exprs if _why_empty(e)]

        # Prometheus's own evaluation of the loaded rules: no error
        for g in prom.get("/api/v1/rules")["data"]["groups"]:
            for r in g["rules"]:
                assert r["health"] == "ok" and not r.get("lastError"), r

        # the drained real server is not down: the rule's expression has
        # the failing one only
        down = [e for w, e in exprs if w == "alert IPVSDirectorRealServerDown"][0]
        assert [r["metric"]["destination_address"] for r in prom.result(down)] == [rs1]

        # the alerts, pending or firing, on the right labels
        want = {
            "IPVSDirectorRealServerDown": {"destination_address": rs1, "instance": live},
            "IPVSDirectorQuorumLost": {"address": lab.vip, "instance": live},
            "IPVSDirectorSorryServerActive": {"address": lab.vip, "instance": live},
            "IPVSDirectorReloadFailed": {"instance": live},
            "IPVSDirectorDriftRepaired": {"address": lab.vip, "field": "weight",
                                          "instance": live},
            "IPVSDirectorNotScraped": {"instance": dead},
        }

        def seen() -> Dict[str, Dict[str, Any]]:
            out = {}
            for a in prom.alerts():
                lb = a["labels"]
                exp = want.get(lb.get("alertname", ""))
                if exp and all(lb.get(k) == v for k, v in exp.items()):
                    out[lb["alertname"]] = a
            return out
        wait_until(lambda: len(seen()) == len(want), BOUND, 0.5)
        got = seen()
        print("alerts: " + ", ".join("%s %s" % (n, got[n]["state"]) for n in sorted(got)))
        assert sorted(got) == sorted(want), (sorted(got), prom.alerts())
        for name, a in got.items():
            assert a["state"] in ("pending", "firing"), a
        # those without `for:` fire at once
        assert got["IPVSDirectorReloadFailed"]["state"] == "firing"
        assert got["IPVSDirectorDriftRepaired"]["state"] == "firing"
        # none about the drained real server
        assert not [a for a in prom.alerts()
                    if a["labels"].get("destination_address") == rs2], prom.alerts()
        # the messages as Prometheus renders them
        assert got["IPVSDirectorRealServerDown"]["annotations"]["summary"] == \
            "Real server %s:%d of %s is down" % (rs1, lab.port, service)
        assert got["IPVSDirectorQuorumLost"]["annotations"]["summary"] == \
            "Service %s lost its quorum" % service
        assert got["IPVSDirectorDriftRepaired"]["annotations"]["summary"] == \
            "ipvs-director on %s repaired the weight of %s" % (live, service)
        print("lab test took %.1fs" % (time.monotonic() - t0))
    finally:
        prom.stop()
    assert d.stop() == 0

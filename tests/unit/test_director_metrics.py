"""The director's own Prometheus series (prometheus_client, extra
``ipvs[director]``)."""

from __future__ import annotations

import asyncio
import io

import pytest

prometheus_client = pytest.importorskip(
    "prometheus_client", reason="prometheus_client (extra ipvs[director]) is not installed")

from prometheus_client.parser import text_string_to_metric_families  # noqa: E402
from ipvs.director import parse  # noqa: E402
from ipvs.director._kernel import MemoryKernel  # noqa: E402
from ipvs.director.checks import CheckResult  # noqa: E402
from ipvs.director.core import Director  # noqa: E402
from ipvs.director.metrics import DirectorMetrics  # noqa: E402

TEXT = '''
[[service]]
address = "10.0.0.1"
port = 80
quorum = 2
sorry_server = "10.0.9.9:80"
[service.check]
type = "tcp"
rise = 1
fall = 1
[[service.real_server]]
address = "10.0.1.1"
[[service.real_server]]
address = "10.0.1.2"
[[service]]
fwmark = 7
family = "ipv6"
[[service.real_server]]
address = "2001:db8::1"
'''


def sample(text, name, **labels):
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
    return None


def test_director_series():
    async def go():
        d = Director(parse(TEXT), kernel=MemoryKernel(), stream=io.StringIO())
        m = DirectorMetrics()
        d.metrics = m
        d._dirty, d._lock, d._stopped = asyncio.Event(), asyncio.Lock(), asyncio.Event()
        await d._read()
        await d.round()
        p1 = next(p for p in d.probes.values() if p.check.address == "10.0.1.1")
        d._on_result(p1, CheckResult("success", "ok", 0.003))
        d._on_result(p1, CheckResult("timeout", "slow", 1.0))
        d._on_result(p1, CheckResult("success", "ok", 0.003))
        await d.round()
        m.reload(False)
        return prometheus_client.generate_latest(m.registry).decode()
    text = asyncio.run(go())
    svc = dict(family="ipv4", protocol="tcp", address="10.0.0.1", port="80", fwmark="0")
    assert sample(text, "ipvs_director_real_server_up", destination_address="10.0.1.1",
                  destination_port="80", **svc) == 1
    assert sample(text, "ipvs_director_real_server_up", destination_address="10.0.1.2",
                  **svc) == 0
    fw = dict(family="ipv6", protocol="fwmark", address="", port="0", fwmark="7")
    assert sample(text, "ipvs_director_real_server_up", destination_address="2001:db8::1",
                  destination_port="0", **fw) == 1      # type none: always up
    assert sample(text, "ipvs_director_checks_total", type="tcp", result="success") == 2
    assert sample(text, "ipvs_director_checks_total", type="tcp", result="timeout") == 1
    assert sample(text, "ipvs_director_check_duration_seconds_count", type="tcp") == 3
    assert sample(text, "ipvs_director_quorum_up", **svc) == 0   # 1 < quorum 2
    assert sample(text, "ipvs_director_sorry_active", **svc) == 1
    assert sample(text, "ipvs_director_quorum_up", **fw) == 1
    assert sample(text, "ipvs_director_reloads_total", result="failure") == 1
    assert sample(text, "ipvs_director_last_reload_success_timestamp_seconds") > 0
    # no two samples share a name and labels
    seen = set()
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            key = (s.name, tuple(sorted(s.labels.items())))
            assert key not in seen, key
            seen.add(key)

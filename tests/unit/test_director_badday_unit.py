"""The director's bad days without a kernel: every error of a file with its
line, scheduler names and address-family rules, quorum above what a file
can give, a reload the kernel refuses (nothing of it stays), drift events,
API weights cleared and kept across reloads, sysctl settings, service
strings in any case."""

from __future__ import annotations

import asyncio

import pytest

import ipvs
from ipvs.director import parse
from ipvs.director._kernel import MemoryKernel
from ipvs.director.config import ConfigError, ConfigErrors, canonical_service_name
from ipvs.director.core import KernelRefused
from tests.unit.test_director_core import OK, SVC, THREE, Harness, conf, rs, run


# ------------------------------------------------------------ --check

BAD_FILE = """\
[director]
sysctl = { expire_nodest_conn = 1, sloppy_tpc = 1 }

[[service]]
address = "10.0.0.1"
port = 80
scheduler = "wrrr"

[[service.real_server]]
address = "2001:db8::1"
forward = "masq"

[[service.real_server]]
address = "10.0.1.1"
weight = -1

[[service]]
address = "10.0.0.2"
port = 80
quorum = 100

[[service.real_server]]
address = "10.0.2.1"
weight = 3

[[service.real_server]]
address = "10.0.2.2"
weight = 3
"""


def test_every_error_of_a_file_with_its_line():
    with pytest.raises(ConfigErrors) as ei:
        parse(BAD_FILE, "d.toml")
    got = [(e.line, e.key) for e in ei.value.errors]
    assert got == [(2, "director.sysctl.sloppy_tpc"), (7, "service[0].scheduler"),
                   (10, "service[0].real_server[0].address"),
                   (15, "service[0].real_server[1].weight"), (20, "service[1].quorum")]
    lines = str(ei.value).splitlines()
    assert len(lines) == 5 and all(l.startswith("d.toml:") for l in lines)
    assert "'wrrr'" in lines[1] and "mh" in lines[1]
    assert 'forward = "tunnel"' in lines[2]
    assert "quorum 100 is above 6" in lines[4]
    assert isinstance(ei.value, ValueError) and ei.value.line == 2


def test_one_error_is_a_plain_config_error():
    with pytest.raises(ConfigError) as ei:
        parse('[[service]]\naddress = "10.0.0.1"\nport = 80\nscheduler = "twoss"\n', "x")
    assert not isinstance(ei.value, ConfigErrors) and ei.value.line == 4


@pytest.mark.parametrize("name", ["rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed",
                                  "nq", "fo", "ovf", "mh", "twos"])
def test_every_kernel_scheduler_name_passes(name):
    assert parse('[[service]]\naddress = "10.0.0.1"\nport = 80\nscheduler = "%s"\n'
                 % name).services[0].service.scheduler == name


def test_family_mix_only_with_tunnel_and_never_with_sync():
    base = '[[service]]\naddress = "10.0.0.1"\nport = 80\n[[service.real_server]]\n' \
           'address = "2001:db8::1"\nforward = "%s"\n'
    assert parse(base % "tunnel").services[0].real_servers[0].destination.forward \
        == ipvs.Forward.TUNNEL
    for fwd in ("masq", "route"):
        with pytest.raises(ConfigError, match="tunnel"):
            parse(base % fwd)
    sync = '[director.sync]\nstate = "master"\ninterface = "eth0"\n'
    with pytest.raises(ConfigError, match="sync daemon") as ei:
        parse(sync + base % "tunnel")
    assert ei.value.key == "service[0].real_server[0].address"
    # the sorry server follows the same rule
    with pytest.raises(ConfigError, match="tunnel"):
        parse('[[service]]\naddress = "10.0.0.1"\nport = 80\nsorry_server = "[2001:db8::9]:80"\n')


def test_quorum_at_most_the_sum_of_weights():
    ok = parse('[[service]]\naddress = "10.0.0.1"\nport = 80\nquorum = 6\n'
               + rs("10.0.1.1") + rs("10.0.1.2", "weight = 5"))
    assert ok.services[0].quorum == 6
    with pytest.raises(ConfigError) as ei:
        parse('[[service]]\naddress = "10.0.0.1"\nport = 80\nquorum = 7\n'
              + rs("10.0.1.1") + rs("10.0.1.2", "weight = 5"))
    assert "quorum 7 is above 6" in str(ei.value) and ei.value.line == 4
    # the default quorum (1) of a service without real servers stays valid
    assert parse('[[service]]\naddress = "10.0.0.1"\nport = 80\n').services[0].quorum == 1


def test_sysctl_values():
    d = parse('[director]\nsysctl = { expire_nodest_conn = 1, sync_threshold = "3  50" }\n')
    assert d.director.sysctl == (("expire_nodest_conn", "1"), ("sync_threshold", "3 50"))
    for bad in ("true", '"x"', "1.5", "[1]"):
        with pytest.raises(ConfigError, match="integer"):
            parse("[director]\nsysctl = { sloppy_tcp = %s }\n" % bad)
    with pytest.raises(ConfigError, match="table"):
        parse('[director]\nsysctl = "sloppy_tcp=1"\n')


def test_service_strings_in_any_case():
    assert canonical_service_name("tcp 10.0.0.1:80") == "TCP 10.0.0.1:80"
    assert canonical_service_name("  udp   [2001:DB8::1]:53 ") == "UDP [2001:db8::1]:53"
    assert canonical_service_name("fwm 7 ipv6") == "FWM 7 IPv6"
    assert canonical_service_name("Fwm 7") == "FWM 7"
    assert canonical_service_name("nonsense") == "nonsense"


# ------------------------------------------------------------ atomic reload

def test_reload_the_kernel_refuses_leaves_nothing():
    async def go():
        h = Harness(conf(THREE, check='type = "none"'), MemoryKernel())
        await h.start()
        h.d.path = None
        before = {k: (s, dict(d)) for k, (s, d) in h.kernel.tables.items()}
        status = h.d.status()
        refused = parse(
            '[director]\ndrain_timeout = 30\n[[service]]\naddress = "10.0.0.9"\nport = 80\n'
            + rs("10.0.9.1")
            + '[[service]]\naddress = "10.0.0.1"\nport = 80\nscheduler = "twos"\n'
            + rs("10.0.1.1", "weight = 7") + rs("10.0.1.4"))
        with pytest.raises(KernelRefused) as ei:
            await h.d.reload(refused)
        # the memory backend refuses "twos" as a kernel without ip_vs_twos
        # does, after applying the calls before it (a batch is not a transaction)
        assert "scheduler 'twos' not found" in str(ei.value)
        assert isinstance(ei.value, ConfigError)
        assert {k: (s, dict(d)) for k, (s, d) in h.kernel.tables.items()} == before
        assert h.d.status()["services"] == status["services"]
        evs = [e["event"] for e in h.events()]
        assert evs[-1] == "reload_failed" and "added" not in evs and "reload" not in evs
        # the old configuration goes on: a change is written as before
        await h.d.set_weight("tcp 10.0.0.1:80", "10.0.1.3", 8080, 9)
        assert h.weights() == {"10.0.1.1": 1, "10.0.1.2": 2, "10.0.1.3": 9}
    run(go())


def test_api_weight_clear_and_kept_on_reload():
    async def go():
        h = Harness(conf(THREE, check='type = "none"'))
        await h.start()
        h.d.path = None
        await h.d.set_weight("TCP 10.0.0.1:80", "10.0.1.2", 8080, 5)
        assert h.weights()["10.0.1.2"] == 5
        ans = await h.d.reload(conf(rs("10.0.1.1") + rs("10.0.1.2", "weight = 4")
                                    + rs("10.0.1.3", "weight = 3"), check='type = "none"'))
        assert ans["kept_api_weight"] == [{"service": "TCP 10.0.0.1:80", "address": "10.0.1.2",
                                           "port": 8080, "weight": 5, "configured_weight": 4}]
        assert [e for e in h.events() if e["event"] == "reload"][-1]["kept_api_weight"]
        assert h.weights()["10.0.1.2"] == 5
        out = await h.d.set_weight("TCP 10.0.0.1:80", "10.0.1.2", 8080, None)
        assert "weight_override" not in out and h.weights()["10.0.1.2"] == 4
        with pytest.raises(ValueError, match="null"):
            await h.d.set_weight("TCP 10.0.0.1:80", "10.0.1.2", 8080, "5")
    run(go())


# ------------------------------------------------------------ drift

def test_drift_events_name_field_kernel_and_wanted_values():
    async def go():
        h = Harness(conf(THREE, check='type = "none"'))
        await h.start()
        await h.d.round()
        svc, dests = h.kernel.tables[SVC.key]
        key = next(k for k, d in dests.items() if str(d.address) == "10.0.1.3")
        extra = ipvs.Destination("10.0.1.99", 8080, weight=1)
        with h.kernel.handle() as k:             # someone else changes the table
            k.modify_destination(svc, dests[key], weight=30, forward=ipvs.Forward.ROUTE)
            k.add_destination(svc, extra)
        calls = await h.d.round()
        assert len(calls) == 2
        drift = sorted((e["address"], e["field"], str(e["kernel"]), str(e["wanted"]))
                       for e in h.events() if e["event"] == "drift")
        assert drift == [("10.0.1.3", "forward", "route", "masq"),
                         ("10.0.1.3", "weight", "30", "3"),
                         ("10.0.1.99", "destination", "present", "absent")]
        # the director's own changes are not drift
        h.d.services[SVC.key].real_servers[key].weight_override = 1
        await h.d.round()
        assert len([e for e in h.events() if e["event"] == "drift"]) == 3
    run(go())


def test_sysctl_set_then_drift_repaired():
    async def go():
        k = MemoryKernel()
        k.sysctl.update(expire_nodest_conn="0", sloppy_tcp="0")
        h = Harness(conf(THREE, director='sysctl = { expire_nodest_conn = 1, sloppy_tcp = 1 }'),
                    k)
        h.d._sysctls(first=True)
        await h.start()
        assert k.sysctl == {"expire_nodest_conn": "1", "sloppy_tcp": "1"}
        assert [e["name"] for e in h.events() if e["event"] == "sysctl"] == [
            "expire_nodest_conn", "sloppy_tcp"]
        k.sysctl["sloppy_tcp"] = "0"
        await h.d.round()
        assert k.sysctl["sloppy_tcp"] == "1"
        drift = [e for e in h.events() if e["event"] == "drift"]
        assert [(e["field"], e["name"], e["kernel"], e["wanted"]) for e in drift] == [
            ("sysctl", "sloppy_tcp", "0", "1")]
        assert h.d.status()["sysctl"] == {"expire_nodest_conn": "1", "sloppy_tcp": "1"}
    run(go())

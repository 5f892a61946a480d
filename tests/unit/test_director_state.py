"""The director's state file (ipvs.director.state) and what survives a
restart of the director: manual drains, weights set through the API, drains
of real servers and services that left the file.  A stand-in kernel
(MemoryKernel) outlives the directors, as the real kernel table does."""

from __future__ import annotations

import asyncio
import io
import json
import os
import stat

import pytest

import ipvs
from ipvs.director import parse
from ipvs.director._kernel import MemoryKernel
from ipvs.director.core import Director
from ipvs.director.state import StateError, default_path, read_state, write_state

SVC = ipvs.Service(address="10.0.0.1", port=80, scheduler="wrr")
SVC2 = ipvs.Service(address="10.0.0.2", port=80, scheduler="wrr")


def rs(addr, extra=""):
    return '[[service.real_server]]\naddress = "%s"\nport = 8080\nforward = "masq"\n%s\n' % (
        addr, extra)


def conf(two_services=True, servers=("10.0.1.1", "10.0.1.2")):
    text = '[director]\ndrain_timeout = 100\n'
    text += '[[service]]\naddress = "10.0.0.1"\nport = 80\nscheduler = "wrr"\n'
    text += "".join(rs(a, "weight = 2") for a in servers)
    if two_services:
        text += '[[service]]\naddress = "10.0.0.2"\nport = 80\nscheduler = "wrr"\n'
        text += rs("10.0.2.1")
    return parse(text)


def counters(kernel, svc, dest, **counts):
    """Connection counters of one destination, as traffic would make them."""
    ipvs.testing.set_counters(svc, dest, netns=kernel.netns, **counts)


def weights(kernel, svc=SVC):
    return {str(d.address): d.weight for d in kernel.tables[svc.key][1].values()}


def entry(**kw):
    out = {"service": "TCP 10.0.0.1:80", "address": "10.0.1.1", "port": 8080,
           "drain": None, "since": None, "weight": None}
    out.update(kw)
    return out


# ------------------------------------------------------------ the file

def test_default_path_is_beside_the_control_socket():
    assert default_path("/run/ipvs-director.sock") == "/run/ipvs-director.state"
    assert default_path("/tmp/ctl") == "/tmp/ctl.state"
    cfg = parse('[director]\ncontrol = "/run/x/d.sock"\n')
    assert cfg.director.state_path == "/run/x/d.state"
    assert parse('[director]\nstate_file = "/var/lib/d.json"\n').director.state_path == \
        "/var/lib/d.json"
    assert parse('[director]\nstate_file = ""\n').director.state_path is None
    with pytest.raises(Exception, match="absolute"):
        parse('[director]\nstate_file = "rel/d.json"\n')


def test_round_trip_mode_and_no_temporary_left(tmp_path):
    path = str(tmp_path / "d.state")
    servers = [entry(drain="manual", since=1764550000.0), entry(address="10.0.1.2", weight=7)]
    write_state(path, ["TCP 10.0.0.9:80"], servers)
    assert read_state(path) == {"services": ["TCP 10.0.0.9:80"], "servers": servers,
                                "role": None}
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert os.listdir(tmp_path) == ["d.state"]
    assert json.loads(open(path).read())["version"] == 1


def test_missing_file_is_empty_state(tmp_path):
    assert read_state(str(tmp_path / "none")) == {"services": [], "servers": [], "role": None}


@pytest.mark.parametrize("text,match", [
    ("{", "not JSON"),
    ('{"version": 2, "servers": []}', "version 1"),
    ('[1]', "version 1"),
    ('{"version": 1, "services": [1]}', "service strings"),
    ('{"version": 1, "servers": [{"service": "TCP 10.0.0.1:80", "address": "10.0.1.1",'
     ' "port": 70000}]}', "port"),
    ('{"version": 1, "servers": [{"service": "TCP 10.0.0.1:80", "address": "10.0.1.1",'
     ' "port": 1, "drain": "maybe"}]}', "drain"),
    ('{"version": 1, "servers": [{"service": "TCP 10.0.0.1:80", "address": "10.0.1.1",'
     ' "port": 1, "weight": -1}]}', "weight"),
    ('{"version": 1, "role": "leader"}', "role"),
])
def test_bad_files_are_refused(tmp_path, text, match):
    path = tmp_path / "d.state"
    path.write_text(text)
    with pytest.raises(StateError, match=match):
        read_state(str(path))


def test_a_failed_write_leaves_the_old_file_whole(tmp_path, monkeypatch):
    path = str(tmp_path / "d.state")
    write_state(path, [], [entry(weight=3)])

    def boom(src, dst):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        write_state(path, [], [entry(weight=4)])
    assert read_state(path)["servers"] == [entry(weight=3)]
    assert os.listdir(tmp_path) == ["d.state"]


# ------------------------------------------------------------ restarts

async def started(cfg, kernel, path, out=None):
    d = Director(cfg, kernel=kernel, stream=out or io.StringIO(), log_format="json",
                 state_file=path)
    await d.start()
    return d


def server(d, addr, name="TCP 10.0.0.1:80"):
    st = next(s for s in d.status()["services"] if s["service"] == name)
    return next(r for r in st["real_servers"] if r["address"] == addr)


def test_manual_drain_and_weight_survive_a_restart(tmp_path):
    path = str(tmp_path / "d.state")

    async def go():
        kernel = MemoryKernel()
        d = await started(conf(), kernel, path)
        assert not os.path.exists(path)            # nothing to keep: no file
        dest = ipvs.Destination("10.0.1.1", 8080)
        counters(kernel, SVC, dest, active=3)                   # keeps it draining
        await d.drain("TCP 10.0.0.1:80", "10.0.1.1", 8080)
        await d.set_weight("TCP 10.0.0.1:80", "10.0.1.2", 8080, 5)
        saved = read_state(path)["servers"]
        assert [(e["address"], e["drain"], e["weight"]) for e in saved] == [
            ("10.0.1.1", "manual", None), ("10.0.1.2", None, 5)]
        await d.stop()
        batches = len(kernel.batches)

        d2 = await started(conf(), kernel, path)
        try:
            assert weights(kernel) == {"10.0.1.1": 0, "10.0.1.2": 5}
            assert len(kernel.batches) == batches   # nothing to write: all as it was
            a, b = server(d2, "10.0.1.1"), server(d2, "10.0.1.2")
            assert a["state"] == "draining" and a["weight"] == 0
            assert b["weight"] == 5 and b["weight_override"] == 5
            # the drain ends when its connections are gone, after the restart too
            counters(kernel, SVC, dest, active=0)
            await d2.round()
            assert weights(kernel) == {"10.0.1.2": 5}
            assert server(d2, "10.0.1.1")["state"] == "draining"
        finally:
            await d2.stop()

        # drained and deleted: a third director does not add it back
        d3 = await started(conf(), kernel, path)
        try:
            assert weights(kernel) == {"10.0.1.2": 5}
            assert server(d3, "10.0.1.1")["state"] == "draining"
            await d3.undrain("TCP 10.0.0.1:80", "10.0.1.1", 8080)
            assert [e["address"] for e in read_state(path)["servers"]] == ["10.0.1.2"]
        finally:
            await d3.stop()
    asyncio.run(go())


def test_without_the_state_file_a_restart_forgets(tmp_path):
    """What the file adds: the same restart with no state file undoes the
    manual drain (the real server is in the file and healthy)."""
    async def go():
        kernel = MemoryKernel()
        d = await started(conf(), kernel, None)
        await d.set_weight("TCP 10.0.0.1:80", "10.0.1.2", 8080, 5)
        await d.drain("TCP 10.0.0.1:80", "10.0.1.1", 8080)
        await d.stop()
        d2 = await started(conf(), kernel, None)
        try:
            assert weights(kernel) == {"10.0.1.1": 2, "10.0.1.2": 2}
        finally:
            await d2.stop()
    asyncio.run(go())


def test_a_service_that_left_the_file_keeps_draining_across_a_restart(tmp_path):
    path = str(tmp_path / "d.state")

    async def go():
        kernel = MemoryKernel()
        d = await started(conf(), kernel, path)
        dest = ipvs.Destination("10.0.2.1", 8080)
        counters(kernel, SVC2, dest, inactive=1)
        await d.reload(conf(two_services=False))
        assert weights(kernel, SVC2) == {"10.0.2.1": 0}
        saved = read_state(path)
        assert saved["services"] == ["TCP 10.0.0.2:80"]
        since = saved["servers"][0]["since"]
        await d.stop()

        d2 = await started(conf(two_services=False), kernel, path)
        try:
            # still owned and draining (without the file it would be foreign)
            assert server(d2, "10.0.2.1", "TCP 10.0.0.2:80")["state"] == "draining"
            assert read_state(path)["servers"][0]["since"] == since   # clock goes on
            counters(kernel, SVC2, dest, inactive=0)
            await d2.round()
            await d2.round()
            assert SVC2.key not in kernel.tables     # drained, then deleted
            assert read_state(path) == {"services": [], "servers": [], "role": None}
        finally:
            await d2.stop()
    asyncio.run(go())


def test_drain_timeout_counts_the_time_before_the_restart(tmp_path):
    path = str(tmp_path / "d.state")
    old = 1_000_000_000.0     # a drain that began long ago (beyond drain_timeout)
    write_state(path, [], [entry(drain="manual", since=old)])

    async def go():
        kernel = MemoryKernel()
        d = await started(conf(), kernel, None)
        counters(kernel, SVC, ipvs.Destination("10.0.1.1", 8080), active=9)
        await d.stop()
        d2 = await started(conf(), kernel, path)
        try:
            # restored as a manual drain whose time is up: deleted at once
            assert "10.0.1.1" not in weights(kernel)
            assert server(d2, "10.0.1.1")["state"] == "draining"
        finally:
            await d2.stop()
    asyncio.run(go())


def test_a_bad_state_file_is_reported_and_not_used(tmp_path):
    path = tmp_path / "d.state"
    path.write_text("{garbage")

    async def go():
        out = io.StringIO()
        kernel = MemoryKernel()
        d = await started(conf(), kernel, str(path), out)
        try:
            assert weights(kernel) == {"10.0.1.1": 2, "10.0.1.2": 2}
            events = [json.loads(x) for x in out.getvalue().splitlines()]
            assert any(e["event"] == "error" and "state file not used" in e["message"]
                       for e in events)
        finally:
            await d.stop()
    asyncio.run(go())


def test_partial_rounds_write_changed_services_without_a_dump():
    """A probe's state change is written by a round over its services only,
    without reading the table back."""
    async def go():
        text = ('[[service]]\naddress = "10.0.0.1"\nport = 80\n[service.check]\ntype = "tcp"\n'
                'rise = 1\nfall = 1\n' + rs("10.0.1.1") + rs("10.0.1.2")
                + '[[service]]\naddress = "10.0.0.2"\nport = 80\n' + rs("10.0.2.1"))
        kernel = MemoryKernel()
        reads = []
        real_table = kernel.table

        async def table():
            reads.append(1)
            return await real_table()
        kernel.table = table
        d = Director(parse(text), kernel=kernel, stream=io.StringIO())
        d._dirty, d._lock = asyncio.Event(), asyncio.Lock()
        await d._read()
        d._adopt()
        await d.round()
        from ipvs.director.checks import CheckResult
        probe = next(p for p in d.probes.values() if p.check.address == "10.0.1.1")
        d._on_result(probe, CheckResult("success", "ok", 0.0))
        n = len(reads)
        calls = await d.round(partial=True)
        assert len(reads) == n
        assert [(c[0], str(c[2].address), c[2].weight) for c in calls] == [
            ("update_destination", "10.0.1.1", 1)]
        assert await d.round(partial=True) == []
        assert await d.round() == []       # a full round agrees: nothing drifted
    asyncio.run(go())


# ------------------------------------------------------------ reload at scale

def _services_text(n, weights=None, tail=""):
    weights = weights or {}
    out = '[director]\ncontrol = "/tmp/unused.sock"\n'
    for s in range(n):
        out += ('[[service]]\naddress = "10.0.%d.1"\nport = 80\n[service.check]\ntype = "tcp"\n'
                % s)
        out += rs("10.1.%d.1" % s, "weight = %d" % weights.get(s, 1))
    return out + tail


def test_unchanged_service_blocks_are_reused_and_equal_to_a_whole_parse():
    cache = {}
    a = parse(_services_text(5), "f.toml", cache)
    assert a == parse(_services_text(5), "f.toml") and len(cache) == 5
    b = parse(_services_text(5, {3: 9}), "f.toml", cache)
    assert b == parse(_services_text(5, {3: 9}), "f.toml")
    same = [x is y for x, y in zip(a.services, b.services)]
    assert same == [True, True, True, False, True]
    # checks of real servers sharing a spec: each with its own target
    assert [s.real_servers[0].checks[0].address for s in b.services] == [
        "10.1.%d.1" % i for i in range(5)]


def test_a_bad_block_gives_the_whole_file_error_with_its_line():
    cache = {}
    parse(_services_text(3), "f.toml", cache)
    bad = _services_text(3, {2: 0}).replace("weight = 0", 'weight = "x"')
    with pytest.raises(Exception) as e:
        parse(bad, "f.toml", cache)
    line = bad.splitlines().index('weight = "x"') + 1
    assert str(e.value).startswith("f.toml:%d: service[2].real_server[0].weight" % line)
    # a [director] table after the services is parsed whole, the same
    text = _services_text(2).replace('[director]\ncontrol = "/tmp/unused.sock"\n', "")
    text += '[director]\ncontrol = "/tmp/other.sock"\n'
    assert parse(text, "f.toml", cache).director.control == "/tmp/other.sock"
    dup = _services_text(2) + '[[service]]\naddress = "10.0.0.1"\nport = 80\n'
    with pytest.raises(Exception, match="given twice"):
        parse(dup, "f.toml", cache)


def test_a_no_change_reload_writes_nothing_and_one_change_one_call(tmp_path):
    path = tmp_path / "d.toml"
    path.write_text(_services_text(40).replace("type = \"tcp\"", "type = \"none\""))

    async def go():
        from ipvs.director.config import load
        kernel = MemoryKernel()
        d = Director(load(str(path)), path=str(path), kernel=kernel, stream=io.StringIO())
        await d.start()
        try:
            n = len(kernel.batches)
            assert (await d.reload())["calls"] == 0 and len(kernel.batches) == n
            path.write_text(_services_text(40, {7: 4}).replace("type = \"tcp\"",
                                                                "type = \"none\""))
            ans = await d.reload()
            assert ans["calls"] == 1 and ans["changed"] == ["TCP 10.0.7.1:80"]
            assert kernel.batches[-1][0][0] == "update_destination"
            assert kernel.batches[-1][0][2].weight == 4
        finally:
            await d.stop()
    asyncio.run(go())


def test_a_reload_against_a_table_that_changed_underneath_falls_back_to_a_full_round():
    async def go():
        text = _services_text(3).replace('type = "tcp"', 'type = "none"')
        kernel = MemoryKernel()
        d = Director(parse(text), kernel=kernel, stream=io.StringIO())
        await d.start()
        try:
            victim = ipvs.Service(address="10.0.1.1", port=80)
            with kernel.handle() as h:
                h.delete_service(victim)           # gone behind the director's back
            text2 = _services_text(3, {1: 6}).replace('type = "tcp"', 'type = "none"')
            ans = await d.reload(parse(text2))
            assert ans["calls"] == 2                # add_service + add_destination
            assert [d_.weight for d_ in kernel.tables[victim.key][1].values()] == [6]
        finally:
            await d.stop()
    asyncio.run(go())

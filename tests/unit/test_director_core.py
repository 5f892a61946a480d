"""The director's engine without a kernel: the state machine, quorum with
hysteresis and the sorry server, draining, adoption of a live table,
reload carry-over, one batch per round, foreign services left alone.

The probes' tasks are not started (``start_probes=False`` below): the tests
feed results by hand, so every step is deterministic.
"""

from __future__ import annotations

import asyncio
import io
import json

import pytest

import ipvs
from ipvs.director import parse
from ipvs.director._kernel import MemoryKernel
from ipvs.director.checks import CheckResult
from ipvs.director.config import CheckConfig
from ipvs.director.core import Director, NotFound, Probe

OK = CheckResult("success", "ok", 0.001)
BAD = CheckResult("failure", "bad", 0.001)

SVC = ipvs.Service(address="10.0.0.1", port=80, scheduler="wrr")


def conf(servers='', service='', director='', check='type = "tcp"\nrise = 2\nfall = 3'):
    text = '[director]\ndrain_timeout = 30\n%s\n[[service]]\naddress = "10.0.0.1"\nport = 80\n' \
           'scheduler = "wrr"\n%s\n[service.check]\n%s\n' % (director, service, check)
    return parse(text + servers)


def rs(addr, extra=""):
    return '[[service.real_server]]\naddress = "%s"\nport = 8080\nforward = "masq"\n%s\n' % (
        addr, extra)


THREE = rs("10.0.1.1") + rs("10.0.1.2", "weight = 2") + rs("10.0.1.3", "weight = 3")


class Harness:
    def __init__(self, cfg, kernel=None):
        self.kernel = kernel or MemoryKernel()
        self.out = io.StringIO()
        self.d = Director(cfg, kernel=self.kernel, stream=self.out, log_format="json")

    async def start(self):
        d = self.d
        d._dirty, d._lock, d._stopped = asyncio.Event(), asyncio.Lock(), asyncio.Event()
        await d._read()
        d._adopt()
        await d.round()

    def probe(self, addr):
        return next(p for p in self.d.probes.values() if p.check.address == addr)

    def feed(self, addr, result, n=1):
        for _ in range(n):
            self.d._on_result(self.probe(addr), result)

    def counters(self, dest, svc=SVC, **counts):
        """Connection counters of one destination, as traffic would make them."""
        ipvs.testing.set_counters(svc, dest, netns=self.kernel.netns, **counts)

    def weights(self, svc=SVC):
        return {str(d.address): d.weight for d in self.kernel.tables[svc.key][1].values()}

    def events(self):
        return [json.loads(x) for x in self.out.getvalue().splitlines()]


def load(kernel, calls):
    """Write ``calls`` into the table behind the director's back."""
    with kernel.handle() as h, h.batch() as b:
        for method, svc, dest in calls:
            getattr(b, method)(*((svc,) if dest is None else (svc, dest)))


def run(coro):
    return asyncio.run(coro)


def test_probe_state_machine():
    p = Probe(CheckConfig("tcp", "10.0.0.1", 80, rise=3, fall=2))
    assert p.state == "down"
    seq = []
    for r in (OK, OK, BAD, OK, OK, OK, BAD, OK, BAD, BAD, OK):
        p.feed(r)
        seq.append(p.state)
    assert seq == ["rising", "rising", "down", "rising", "rising", "up",
                   "falling", "up", "falling", "down", "rising"]
    assert Probe(CheckConfig("tcp", "10.0.0.1", 80, initial="up")).state == "up"
    q = Probe(CheckConfig("tcp", "10.0.0.1", 80, rise=1, fall=1))
    q.feed(OK)
    assert q.state == "up"
    q.feed(BAD)
    assert q.state == "down"


def test_new_servers_start_down_then_rise_and_fall_one_batch_per_round():
    async def go():
        h = Harness(conf(THREE))
        await h.start()
        assert len(h.kernel.batches) == 1            # service and 3 destinations: one batch
        assert h.weights() == {"10.0.1.1": 0, "10.0.1.2": 0, "10.0.1.3": 0}
        for a in ("10.0.1.1", "10.0.1.2", "10.0.1.3"):
            h.feed(a, OK, 2)
        await h.d.round()
        assert len(h.kernel.batches) == 2            # three changes, one round
        assert h.weights() == {"10.0.1.1": 1, "10.0.1.2": 2, "10.0.1.3": 3}
        h.feed("10.0.1.2", BAD, 2)
        await h.d.round()
        assert h.weights()["10.0.1.2"] == 2          # falling: still weighted
        h.feed("10.0.1.2", BAD)
        await h.d.round()
        assert h.weights()["10.0.1.2"] == 0          # down after fall=3
        assert [b for b in h.kernel.batches[-1]] == [
            ("update_destination", SVC, ipvs.Destination("10.0.1.2", 8080, weight=0,
                                                          forward=ipvs.Forward.MASQ))]
        events = [(e["event"], e.get("address")) for e in h.events()]
        assert ("falling", "10.0.1.2") in events and ("down", "10.0.1.2") in events
        st = h.d.status()["services"][0]["real_servers"][1]
        assert st["state"] == "down" and st["configured_weight"] == 2 and st["weight"] == 0
        assert st["last_check"]["result"] == "failure"
        assert await h.d.round() == []               # nothing left to do: no call at all
    run(go())


def test_remove_mode_and_initial_up():
    async def go():
        cfg = conf(rs("10.0.1.1", 'on_failure = "remove"') + rs("10.0.1.2"),
                   check='type = "tcp"\ninitial = "up"\nfall = 1')
        h = Harness(cfg)
        await h.start()
        assert h.weights() == {"10.0.1.1": 1, "10.0.1.2": 1}
        h.feed("10.0.1.1", BAD)
        h.feed("10.0.1.2", BAD)
        await h.d.round()
        assert h.weights() == {"10.0.1.2": 0}
        h.feed("10.0.1.1", OK, 2)
        await h.d.round()
        assert h.weights() == {"10.0.1.1": 1, "10.0.1.2": 0}
    run(go())


def test_quorum_hysteresis_and_sorry_server():
    async def go():
        cfg = conf(THREE, service='quorum = 4\nhysteresis = 1\nsorry_server = "10.0.9.9:8080"',
                   check='type = "tcp"\nrise = 1\nfall = 1')
        h = Harness(cfg)
        await h.start()
        sorry = {"10.0.1.1": 0, "10.0.1.2": 0, "10.0.1.3": 0, "10.0.9.9": 1}
        assert h.weights() == sorry                  # nothing up yet: sorry server
        h.feed("10.0.1.3", OK)                       # 3 < quorum + hysteresis (5)
        await h.d.round()
        assert h.weights() == sorry
        h.feed("10.0.1.2", OK)                       # 5: quorum back
        await h.d.round()
        assert h.weights() == {"10.0.1.1": 0, "10.0.1.2": 2, "10.0.1.3": 3}
        h.feed("10.0.1.2", BAD)                      # 3: not below 4 - 1
        await h.d.round()
        assert h.weights() == {"10.0.1.1": 0, "10.0.1.2": 0, "10.0.1.3": 3}
        h.feed("10.0.1.3", BAD)
        h.feed("10.0.1.1", OK)                       # 1 < 3: sorry again
        await h.d.round()
        assert h.weights() == sorry
        ev = [e["event"] for e in h.events()]
        assert ev.count("quorum_gained") == 1 and ev.count("quorum_lost") == 2
        svc = h.d.status()["services"][0]
        assert svc["sorry_active"] is True and svc["quorum_up"] is False
        # the sorry server leaves in the same batch that restores the weights,
        # after them
        h.feed("10.0.1.3", OK)
        h.feed("10.0.1.2", OK)
        calls = await h.d.round()
        assert calls[-1][0] == "delete_destination" and str(calls[-1][2].address) == "10.0.9.9"
    run(go())


def test_drain_waits_for_active_inactive_and_persistent_connections():
    async def go():
        h = Harness(conf(rs("10.0.1.1") + rs("10.0.1.2"), check='type = "none"'))
        await h.start()
        h.feed("10.0.1.1", OK, 2)
        h.feed("10.0.1.2", OK, 2)
        await h.d.round()
        dest = ipvs.Destination("10.0.1.1", 8080)
        h.counters(dest, persistent=1)
        ans = await h.d.drain("TCP 10.0.0.1:80", "10.0.1.1", 8080)
        assert ans["state"] == "draining" and h.weights()["10.0.1.1"] == 0
        for field in ("persistent", "inactive", "active"):
            await h.d.round()
            assert "10.0.1.1" in h.weights(), field
            h.counters(dest, **{field: 0})
            nxt = {"persistent": "inactive", "inactive": "active"}.get(field)
            if nxt:
                h.counters(dest, **{nxt: 2})
        await h.d.round()
        assert h.weights() == {"10.0.1.2": 1}
        st = h.d.status()["services"][0]["real_servers"][0]
        assert st["state"] == "draining" and st["weight"] is None
        # undrain: back with its weight (its check is up)
        await h.d.undrain("TCP 10.0.0.1:80", "10.0.1.1", 8080)
        assert h.weights() == {"10.0.1.1": 1, "10.0.1.2": 1}
        with pytest.raises(NotFound):
            await h.d.drain("TCP 10.0.0.1:81", "10.0.1.1", 8080)
        with pytest.raises(NotFound):
            await h.d.drain("TCP 10.0.0.1:80", "10.0.1.9", 8080)
        with pytest.raises(ValueError):
            await h.d.drain("TCP 10.0.0.1:80", "not-an-ip", 8080)
    run(go())


def test_drain_timeout(monkeypatch):
    async def go():
        h = Harness(conf(rs("10.0.1.1"), check='type = "none"', director="").__class__(
            director=conf(rs("10.0.1.1")).director.__class__(drain_timeout=0.2),
            services=conf(rs("10.0.1.1"), check='type = "none"').services))
        await h.start()
        h.feed("10.0.1.1", OK, 2)
        await h.d.round()
        h.counters(ipvs.Destination("10.0.1.1", 8080), active=5)
        await h.d.drain("TCP 10.0.0.1:80", "10.0.1.1", 8080)
        await h.d.round()
        assert "10.0.1.1" in h.weights()
        await asyncio.sleep(0.25)
        await h.d.round()
        assert h.weights() == {}
        removed = [e for e in h.events() if e["event"] == "removed"][-1]
        assert removed["reason"] == "drain timeout" and removed["connections"] == 5
    run(go())


def test_adopt_live_table_changes_nothing_and_foreign_services_stay():
    async def go():
        k = MemoryKernel()
        foreign = ipvs.Service(address="10.0.0.1", port=443)
        load(k, [("add_service", foreign, None),
                 ("add_destination", foreign, ipvs.Destination("10.0.1.1", 443, weight=9)),
                 ("add_service", SVC, None),
                 ("add_destination", SVC, ipvs.Destination("10.0.1.1", 8080, weight=1,
                                                           forward=ipvs.Forward.MASQ)),
                 ("add_destination", SVC, ipvs.Destination("10.0.1.2", 8080, weight=2,
                                                           forward=ipvs.Forward.MASQ)),
                 ("add_destination", SVC, ipvs.Destination("10.0.1.3", 8080, weight=0,
                                                           forward=ipvs.Forward.MASQ))])
        n = len(k.batches)
        h = Harness(conf(THREE), kernel=k)
        await h.start()
        assert len(k.batches) == n                   # nothing written at all
        assert h.weights() == {"10.0.1.1": 1, "10.0.1.2": 2, "10.0.1.3": 0}
        states = [r["state"] for r in h.d.status()["services"][0]["real_servers"]]
        assert states == ["up", "up", "down"]
        # a destination of its own service that the file does not name drains;
        # the foreign service is never part of a plan
        load(k, [("add_destination", SVC, ipvs.Destination("10.0.1.7", 8080, weight=4))])
        await h.d.round()
        await h.d.round()
        assert "10.0.1.7" not in h.weights()
        for batch in k.batches[n + 1:]:
            assert all(svc.key == SVC.key for _, svc, _ in batch), batch
        assert k.tables[foreign.key][1][ipvs.Destination("10.0.1.1", 443).key].weight == 9
    run(go())


def test_resync_repairs_drift_and_recreates_lost_service():
    async def go():
        h = Harness(conf(THREE, check='type = "none"\nrise = 1'))
        await h.start()
        for a in ("10.0.1.1", "10.0.1.2", "10.0.1.3"):
            h.feed(a, OK)
        await h.d.round()
        want = h.weights()
        with h.kernel.handle() as k:
            k.modify_destination(SVC, ipvs.Destination("10.0.1.2", 8080), weight=50)
        await h.d.round()
        assert h.weights() == want
        with h.kernel.handle() as k:
            k.flush()                                # as after an IPVS module reload
        await h.d.round()
        assert h.weights() == want
    run(go())


def test_shared_probe_for_identical_checks_behind_several_services():
    text = ('[[service]]\naddress = "10.0.0.1"\nport = 80\n[service.check]\ntype = "http"\n'
            'port = 8080\n[[service.real_server]]\naddress = "10.0.1.1"\n'
            '[[service]]\naddress = "10.0.0.1"\nport = 443\n[service.check]\ntype = "http"\n'
            'port = 8080\n[[service.real_server]]\naddress = "10.0.1.1"\n'
            '[[service]]\naddress = "10.0.0.2"\nport = 80\n[service.check]\ntype = "http"\n'
            'port = 8080\npath = "/other"\n[[service.real_server]]\naddress = "10.0.1.1"\n')
    d = Director(parse(text), kernel=MemoryKernel(), stream=io.StringIO())
    assert len(d.probes) == 2
    s80, s443, other = d.services.values()
    assert s80.real_servers[next(iter(s80.real_servers))].probes[0] is \
        s443.real_servers[next(iter(s443.real_servers))].probes[0]


def test_reload_carries_state_and_adds_removes():
    async def go():
        h = Harness(conf(THREE, check='type = "tcp"\nrise = 1\nfall = 2'))
        await h.start()
        for a in ("10.0.1.1", "10.0.1.2", "10.0.1.3"):
            h.feed(a, OK)
        h.feed("10.0.1.1", BAD)                      # falling: carried over too
        await h.d.round()
        new = conf(rs("10.0.1.1", "weight = 7") + rs("10.0.1.2") + rs("10.0.1.4"),
                   check='type = "tcp"\nrise = 1\nfall = 2')
        ans = await h.d.reload(new)
        assert ans["reloaded"] is True
        assert h.probe("10.0.1.1").state == "falling"
        assert h.weights() == {"10.0.1.1": 7, "10.0.1.2": 1, "10.0.1.3": 0, "10.0.1.4": 0}
        await h.d.round()                            # 10.0.1.3 drained (no connections)
        assert h.weights() == {"10.0.1.1": 7, "10.0.1.2": 1, "10.0.1.4": 0}
        h.feed("10.0.1.1", BAD)
        await h.d.round()
        assert h.weights()["10.0.1.1"] == 0          # the carried count went on
        # a changed check is a new probe: the old state does not carry
        new2 = conf(rs("10.0.1.1", "weight = 7") + rs("10.0.1.2"),
                    check='type = "tcp"\nport = 9\nrise = 1\nfall = 2')
        await h.d.reload(new2)
        assert h.probe("10.0.1.2").state == "up"     # adopted: weight 1 in the kernel
        assert h.probe("10.0.1.1").state == "down"   # weight 0 in the kernel
        # a removed service drains, then is deleted
        other = parse('[[service]]\naddress = "10.0.0.9"\nport = 80\n'
                      '[[service.real_server]]\naddress = "10.0.1.1"\n')
        await h.d.reload(other)
        await h.d.round()
        assert SVC.key not in h.kernel.tables
        assert [s["service"] for s in h.d.status()["services"]] == ["TCP 10.0.0.9:80"]
    run(go())


def test_dynamic_weight_from_check():
    async def go():
        h = Harness(conf(rs("10.0.1.1", "weight = 5"), check='type = "none"\nrise = 1'))
        await h.start()
        h.d._on_result(h.probe("10.0.1.1"), CheckResult("success", "w", 0.0, weight=3))
        await h.d.round()
        assert h.weights() == {"10.0.1.1": 3}
    run(go())


def test_several_checks_all_must_pass():
    async def go():
        cfg = conf(rs("10.0.1.1", 'checks = [ { port = 1 }, { port = 2 } ]'),
                   check='type = "tcp"\nrise = 1\nfall = 1')
        h = Harness(cfg)
        await h.start()
        p1, p2 = h.d.probes.values()
        h.d._on_result(p1, OK)
        await h.d.round()
        assert h.weights() == {"10.0.1.1": 0}
        assert h.d.status()["services"][0]["real_servers"][0]["state"] == "down"
        h.d._on_result(p2, OK)
        await h.d.round()
        assert h.weights() == {"10.0.1.1": 1}
        h.d._on_result(p1, BAD)
        await h.d.round()
        assert h.weights() == {"10.0.1.1": 0}
    run(go())


def test_notify_up_and_down_run_argv(tmp_path):
    out = tmp_path / "notify"
    script = 'echo "$0 $IPVS_DIRECTOR_SERVICE $IPVS_DIRECTOR_ADDRESS $IPVS_DIRECTOR_STATE" >> %s' % out

    async def go():
        extra = 'notify_up = ["sh", "-c", %s, "UP"]\nnotify_down = ["sh", "-c", %s, "DOWN"]' % (
            json.dumps(script), json.dumps(script))
        h = Harness(conf(rs("10.0.1.1", extra), check='type = "tcp"\nrise = 1\nfall = 1'))
        await h.start()
        h.feed("10.0.1.1", OK)
        await asyncio.gather(*h.d.events.notify_tasks)
        h.feed("10.0.1.1", BAD)
        await asyncio.gather(*h.d.events.notify_tasks)
    run(go())
    assert out.read_text().splitlines() == ["UP TCP 10.0.0.1:80 10.0.1.1 up",
                                            "DOWN TCP 10.0.0.1:80 10.0.1.1 down"]


def test_probes_run_once_per_interval_never_overlapping(tmp_path):
    """A check slower than its interval: still one run at a time; two
    services sharing the check run it once."""
    log = tmp_path / "runs"
    cmd = json.dumps(["sh", "-c", 'echo start >> %s; sleep 0.3; echo end >> %s' % (log, log)])
    text = ('[[service]]\naddress = "10.0.0.1"\nport = 80\n'
            '[service.check]\ntype = "exec"\ncommand = %s\ninterval = 0.1\nretry_interval = 0.1\ntimeout = 1\n'
            '[[service.real_server]]\naddress = "10.0.1.1"\n'
            '[[service]]\naddress = "10.0.0.1"\nport = 443\n'
            '[service.check]\ntype = "exec"\ncommand = %s\ninterval = 0.1\nretry_interval = 0.1\ntimeout = 1\n'
            '[[service.real_server]]\naddress = "10.0.1.1"\n' % (cmd, cmd))

    async def go():
        # the same real server, but port 80 and 443: the check's target
        # differs, so pin the check's port to share it
        d = Director(parse(text.replace('timeout = 1\n', 'timeout = 1\nport = 9\n')),
                     kernel=MemoryKernel(), stream=io.StringIO())
        assert len(d.probes) == 1
        await d.start()
        await asyncio.sleep(1.2)
        await d.stop()
    run(go())
    lines = log.read_text().split()
    # strictly alternating start/end: never two runs at once
    assert lines[:len(lines) // 2 * 2] == ["start", "end"] * (len(lines) // 2)
    assert 2 <= lines.count("start") <= 5


def test_first_runs_spread_over_the_interval(monkeypatch):
    starts = {}

    async def fake_run(check, timeout=None):
        starts.setdefault(check.address, asyncio.get_running_loop().time())
        return OK
    monkeypatch.setattr("ipvs.director.core._checks.run_check", fake_run)
    servers = "".join(rs("10.0.2.%d" % i) for i in range(1, 21))
    # an http check goes through checks.run_check (a TCP check runs on the
    # scheduler's own epoll set: tests/unit/test_director_scheduler.py)
    cfg = conf(servers, check='type = "http"\ninterval = 1.0')

    async def go():
        d = Director(cfg, kernel=MemoryKernel(), stream=io.StringIO())
        t0 = asyncio.get_running_loop().time()
        await d.start()
        # the times the first runs are due (what the scheduler decided: a
        # loaded host runs them late, and late runs bunch up by themselves)
        due = [p.due - t0 for p in d.probes.values()]
        await asyncio.sleep(1.1)
        await d.stop()
        return due
    times = sorted(run(go()))
    assert len(times) == 20 and len(starts) > 0
    assert all(0 <= t <= 1.0 + 0.1 for t in times), times
    assert times[-1] - times[0] > 0.5, times          # not a herd
    assert max(sum(1 for t in times if a <= t < a + 0.1) for a in times) <= 8, times


def test_events_reader_that_falls_behind_is_dropped():
    async def go():
        d = Director(conf(rs("10.0.1.1")), kernel=MemoryKernel(), stream=io.StringIO())
        q = d.subscribe()
        for i in range(q.maxsize + 1):
            d.emit("weight", "TCP 10.0.0.1:80", "10.0.1.1", 8080, weight=i)
        assert d.subscribers == []
        assert q.qsize() == 1 and q.get_nowait() is None    # told to end
    run(go())

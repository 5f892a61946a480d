"""[director.sync] and the role switch: the table's validation (line and
key), the sync daemon kept and switched on the memory backend (which models
daemons), the role event and metric, POST /role and ``ipvs-director role``."""

from __future__ import annotations

import asyncio
import io
import json
import subprocess
import sys
import threading

import pytest

import ipvs
from ipvs.director import parse
from ipvs.director._kernel import MemoryKernel
from ipvs.director.config import ConfigError
from ipvs.director.control import ControlServer, request
from ipvs.director.core import Director
from ipvs.testing import add_interface, reset_memory

NS = "sync-unit"
SERVICE = '''
[[service]]
address = "10.0.0.1"
port = 80
[[service.real_server]]
address = "10.0.1.1"
port = 80
forward = "route"
'''
SYNC = '''
[director.sync]
state = "master"
interface = "eth0"
sync_id = 7
'''


def text(sync: str = SYNC) -> str:
    return "[director]\ncontrol = \"/tmp/x.sock\"\n" + sync + SERVICE


# ------------------------------------------------------------ config

def test_sync_table_parsed_into_a_daemon():
    cfg = parse(text('''
[director.sync]
state = "backup"
interface = "eth1"
sync_id = 3
max_len = 1400
mcast_group = "239.1.2.3"
mcast_port = 9000
mcast_ttl = 2
'''))
    d = cfg.director.sync
    assert d == ipvs.Daemon("backup", "eth1", 3, 1400, "239.1.2.3", 9000, 2)
    assert parse(text("")).director.sync is None
    assert parse(text()).director.sync == ipvs.Daemon("master", "eth0", sync_id=7)


@pytest.mark.parametrize("body, line, key, words", [
    ('state = "leader"\ninterface = "eth0"', 4, "director.sync.state", "master"),
    ('state = "master"', 3, "director.sync", "needs interface"),
    ('interface = "eth0"', 3, "director.sync", "needs state"),
    ('state = "master"\ninterface = "eth0"\nsync_id = 300', 6, "director.sync.sync_id", "0..255"),
    ('state = "master"\ninterface = "eth0"\nmcast_group = "10.0.0.1"', 6,
     "director.sync.mcast_group", "multicast"),
    ('state = "master"\ninterface = "eth0"\nmcast_group = "nope"', 6,
     "director.sync.mcast_group", "not an IP"),
    ('state = "master"\ninterface = "eth0"\nmcast_port = 70000', 6,
     "director.sync.mcast_port", "0..65535"),
    ('state = "master"\ninterface = "a/b"', 5, "director.sync.interface", "interface"),
    ('state = "master"\ninterface = "eth0"\npeer = "x"', 6, "director.sync.peer", "unknown key"),
    ('state = "master"\ninterface = 3', 5, "director.sync.interface", "interface name"),
])
def test_sync_table_errors_name_line_and_key(body, line, key, words):
    src = "[director]\ncontrol = \"/tmp/x.sock\"\n[director.sync]\n" + body + "\n" + SERVICE
    # the header is line 3; its keys follow from line 4
    with pytest.raises(ConfigError) as ei:
        parse(src, "d.toml")
    e = ei.value
    assert e.key == key, str(e)
    assert words in str(e)
    assert e.line == line, str(e)
    assert str(e).startswith("d.toml:%d: %s: " % (line, key))


def test_sync_not_a_table():
    with pytest.raises(ConfigError) as ei:
        parse('[director]\nsync = "master"\n')
    assert ei.value.key == "director.sync" and ei.value.line == 2


# ------------------------------------------------------------ keeper on memory

def _handles():
    return ipvs.AsyncIPVS(backend="memory", netns=NS)


def _daemons():
    with ipvs.IPVS(backend="memory", netns=NS) as h:
        return {d.state.name.lower(): d for d in h.daemons()}


class FakeMetrics:
    def __init__(self):
        self.roles = []

    def role(self, state):
        self.roles.append(state)

    def __getattr__(self, name):
        return lambda *a, **k: None


@pytest.fixture
def mem():
    reset_memory()
    add_interface("eth0", netns=NS)
    yield
    reset_memory()


def _director(src: str, path=None, metrics=None, state_file=None) -> Director:
    d = Director(parse(src, str(path) if path else "<config>"), path=str(path) if path else None,
                 kernel=MemoryKernel(), log_format="json", stream=io.StringIO(),
                 sync_handles=_handles, state_file=state_file)
    d.metrics = metrics
    return d


def _events(d: Director):
    return [json.loads(line) for line in d.stream.getvalue().splitlines()]


def test_started_kept_and_switched(mem):
    async def go():
        m = FakeMetrics()
        d = _director(text(), metrics=m)
        await d.start()
        try:
            assert set(_daemons()) == {"master"}
            assert _daemons()["master"].interface == "eth0"
            assert _daemons()["master"].sync_id == 7
            assert m.roles[-1] == "master"
            assert d.status()["sync"]["state"] == "master"
            # stopped by hand: the next round starts it again
            with ipvs.IPVS(backend="memory", netns=NS) as h:
                h.stop_daemon("master")
            assert _daemons() == {}
            d.wake()
            for _ in range(100):
                await asyncio.sleep(0.02)
                if _daemons():
                    break
            assert set(_daemons()) == {"master"}
            # switch: backup starts, master stops
            out = await d.role("backup")
            assert out["state"] == "backup" and out["previous"] == "master"
            assert set(_daemons()) == {"backup"}
            assert _daemons()["backup"].sync_id == 7
            assert m.roles[-1] == "backup"
            roles = [e for e in _events(d) if e["event"] == "role"]
            assert roles == [dict(roles[0], state="backup", previous="master")]
            # the same role again: nothing changes, no event
            out = await d.role("backup")
            assert out["state"] == "backup" and set(_daemons()) == {"backup"}
            assert len([e for e in _events(d) if e["event"] == "role"]) == 1
            await d.role("master")
            assert set(_daemons()) == {"master"}
            assert d.status()["sync"]["switches"] == 2
            with pytest.raises(ValueError):
                await d.role("leader")
        finally:
            await d.stop()
        # stopping the director leaves the daemon running (like the table)
        assert set(_daemons()) == {"master"}
    asyncio.run(go())


def test_missing_interface_is_reported_and_retried(mem):
    async def go():
        d = _director(text(SYNC.replace("eth0", "eth9")))
        await d.start()
        try:
            assert _daemons() == {}
            assert "eth9" in (d.status()["sync"]["error"] or "")
            errors = [e for e in _events(d) if e["event"] == "error"]
            assert errors and "eth9" in errors[0]["message"]
            add_interface("eth9", netns=NS)
            await d._keep_sync()
            assert set(_daemons()) == {"master"}
            assert d.status()["sync"]["error"] is None
        finally:
            await d.stop()
    asyncio.run(go())


def test_no_sync_table_no_daemon_and_role_refused(mem):
    async def go():
        from ipvs.director.sync import NoSync
        d = _director(text(""))
        await d.start()
        try:
            assert _daemons() == {}
            assert d.status()["sync"] is None
            with pytest.raises(NoSync):
                await d.role("master")
        finally:
            await d.stop()
    asyncio.run(go())


def test_reload_changes_and_removes_the_sync_table(mem, tmp_path):
    async def go():
        path = tmp_path / "d.toml"
        path.write_text(text())
        m = FakeMetrics()
        d = _director(text(), path, metrics=m)
        await d.start()
        try:
            await d.role("backup")
            path.write_text(text(SYNC.replace("sync_id = 7", "sync_id = 9")))
            await d.reload()
            # the role set by POST /role stays; the new sync id is in force
            assert set(_daemons()) == {"backup"} and _daemons()["backup"].sync_id == 9
            path.write_text(text(""))
            await d.reload()
            assert _daemons() == {}
            assert d.sync is None and m.roles[-1] is None
            path.write_text(text())
            await d.reload()
            assert set(_daemons()) == {"master"}
        finally:
            await d.stop()
    asyncio.run(go())


def test_role_metric_series():
    pytest.importorskip("prometheus_client")
    from prometheus_client import generate_latest

    from ipvs.director.metrics import DirectorMetrics
    m = DirectorMetrics(netns=None)
    m.role("backup")
    out = generate_latest(m.registry).decode()
    assert 'ipvs_director_role{state="backup"} 1.0' in out
    assert 'ipvs_director_role{state="master"} 0.0' in out
    m.role("master")
    out = generate_latest(m.registry).decode()
    assert 'ipvs_director_role{state="master"} 1.0' in out
    assert 'ipvs_director_role{state="backup"} 0.0' in out
    m.role(None)
    assert "ipvs_director_role{" not in generate_latest(m.registry).decode()


# ------------------------------------------------------------ control API

@pytest.fixture
def api(tmp_path, mem):
    sock = str(tmp_path / "ctl.sock")
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    box = {}

    async def main():
        srvs = []
        for name, src in (("sync", text()), ("nosync", text(""))):
            d = _director(src)
            await d.start()
            srv = ControlServer(d, sock + "." + name)
            await srv.start()
            srvs.append((d, srv))
        box.update(d=srvs[0][0], stop=asyncio.Event())
        ready.set()
        await box["stop"].wait()
        for d, srv in srvs:
            await srv.close()
            await d.stop()

    t = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
    t.start()
    assert ready.wait(10)
    yield sock, box["d"]
    loop.call_soon_threadsafe(box["stop"].set)
    t.join(10)
    loop.close()


def call(sock, method, target, body=None):
    st, data = request(sock, method, target, body, timeout=10)
    return st, json.loads(data)


def test_post_role(api):
    sock, d = api
    st, body = call(sock + ".sync", "POST", "/role", {"state": "backup"})
    assert st == 200 and body["state"] == "backup" and body["previous"] == "master"
    assert set(_daemons()) == {"backup"}
    st, body = call(sock + ".sync", "GET", "/status")
    assert body["sync"]["state"] == "backup"
    for bad, words in (({"state": "leader"}, "master"), ({}, "missing"),
                       ({"state": "master", "x": 1}, "unknown keys")):
        st, body = call(sock + ".sync", "POST", "/role", bad)
        assert st == 400 and words in body["error"]
    st, body = call(sock + ".sync", "GET", "/role")
    assert st == 405
    st, body = call(sock + ".nosync", "POST", "/role", {"state": "master"})
    assert st == 409 and "[director.sync]" in body["error"]


def test_role_subcommand(api):
    sock, d = api
    r = subprocess.run([sys.executable, "-m", "ipvs.director", "-s", sock + ".sync", "role",
                        "backup"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["state"] == "backup"
    assert set(_daemons()) == {"backup"}
    r = subprocess.run([sys.executable, "-m", "ipvs.director", "-s", sock + ".sync", "role",
                        "leader"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "master or backup" in r.stderr
    r = subprocess.run([sys.executable, "-m", "ipvs.director", "-s", sock + ".nosync", "role",
                        "master"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "[director.sync]" in r.stderr and not r.stdout


def test_the_pair_example_of_the_docs_validates():
    import os
    import re
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    page_path = os.path.join(root, "docs", "director.md")
    if not os.path.exists(page_path):
        pytest.skip("not a source tree (docs/ is not installed with the wheel)")
    with open(page_path, encoding="utf-8") as f:
        page = f.read()
    section = page.split("## Director pairs", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"^```toml\n(.*?)^```", section, re.S | re.M)
    assert len(blocks) == 1
    a = parse(blocks[0], "director-a.toml")
    b = parse(blocks[0].replace('state = "backup"', 'state = "master"'), "director-b.toml")
    assert a.director.sync == ipvs.Daemon("backup", "eth0", sync_id=5)
    assert b.director.sync.state == ipvs.DaemonState.MASTER
    assert a.director.sync_fifo == "/run/ipvs-director.fifo"
    assert a.director.sync_vrrp_instance == "VI_1"
    assert "notify_fifo /run/ipvs-director.fifo" in section
    assert "vrrp_instance" in section and "role master" in section


def test_quick_switch_back_waits_for_the_pending_stop(mem):
    """master -> backup with the master's stop still going on, then back to
    master: the pending stop must not take away the new master daemon."""
    async def go():
        from ipvs.director import sync as _sync

        class SlowStop:
            def __init__(self):
                self.h = _handles()

            async def stop_daemon(self, state):
                await asyncio.sleep(0.5)
                await self.h.stop_daemon(state)

            def __getattr__(self, name):
                return getattr(self.h, name)

        d = Director(parse(text()), kernel=MemoryKernel(), log_format="json",
                     stream=io.StringIO(), sync_handles=SlowStop)
        old_wait = _sync.STOP_WAIT
        _sync.STOP_WAIT = 0.05
        try:
            await d.start()
            out = await d.role("backup")
            assert out.get("stopping") == "master"
            assert set(_daemons()) == {"master", "backup"}
            await d.role("master")
            await asyncio.sleep(0.8)
            assert "master" in _daemons()
            await d._keep_sync()
            await asyncio.sleep(0.8)
            assert set(_daemons()) == {"master"}
        finally:
            _sync.STOP_WAIT = old_wait
            await d.stop()
    asyncio.run(go())


# ------------------------------------------------------------ keepalived's notify_fifo

@pytest.mark.parametrize("line, role", [
    ('INSTANCE "VI_1" MASTER 150', "master"),
    ('INSTANCE "VI_1" BACKUP 150', "backup"),
    ('INSTANCE "VI_1" FAULT 0', "backup"),
    ('INSTANCE "VI_1" STOP 150\n', "backup"),
    ('GROUP "VI_1" MASTER', "master"),
    ('INSTANCE "VI_2" MASTER 150', None),          # another instance
    ('INSTANCE "VI_1x" MASTER 150', None),
    ('VS "10.0.0.1:80" UP', None),                  # a virtual server's line
    ('INSTANCE "VI_1" DELETED 150', None),          # says nothing of the role
    ('garbage', None),
    ('', None),
])
def test_vrrp_role_of_fifo_lines(line, role):
    from ipvs.director.sync import vrrp_role
    assert vrrp_role(line, "VI_1") == role


@pytest.mark.parametrize("body, key, words", [
    ('keepalived_fifo = "/run/k.fifo"', "director.sync.keepalived_fifo", "vrrp_instance"),
    ('vrrp_instance = "VI_1"', "director.sync.vrrp_instance", "keepalived_fifo"),
    ('keepalived_fifo = "k.fifo"\nvrrp_instance = "VI_1"', "director.sync.keepalived_fifo",
     "absolute"),
    ('keepalived_fifo = "/run/k.fifo"\nvrrp_instance = "V I"', "director.sync.vrrp_instance",
     "not a VRRP instance"),
    ('keepalived_fifo = "/run/k.fifo"\nvrrp_instance = 1', "director.sync.vrrp_instance",
     "name"),
])
def test_fifo_keys_errors(body, key, words):
    src = ('[director]\ncontrol = "/tmp/x.sock"\n[director.sync]\nstate = "backup"\n'
           'interface = "eth0"\n' + body + "\n" + SERVICE)
    with pytest.raises(ConfigError) as ei:
        parse(src, "d.toml")
    assert ei.value.key == key, str(ei.value)
    assert words in str(ei.value)


def _fifo_text(path) -> str:
    return text(SYNC + 'keepalived_fifo = "%s"\nvrrp_instance = "VI_1"\n' % path)


def test_fifo_keys_parsed():
    cfg = parse(_fifo_text("/run/k.fifo"))
    assert cfg.director.sync_fifo == "/run/k.fifo"
    assert cfg.director.sync_vrrp_instance == "VI_1"
    assert parse(text()).director.sync_fifo is None


def _write_fifo(path, data: bytes) -> None:
    import os
    fd = os.open(str(path), os.O_WRONLY | os.O_NONBLOCK)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


async def _until(pred, timeout=5.0):
    for _ in range(int(timeout / 0.02)):
        if pred():
            return True
        await asyncio.sleep(0.02)
    return pred()


def test_fifo_lines_switch_the_role_in_order(mem, tmp_path):
    """The director makes the FIFO, follows its instance's lines (a line
    cut in two writes included), ignores other instances, and survives a
    writer that comes and goes (keepalived restarting)."""
    import os
    import stat
    fifo = tmp_path / "notify.fifo"

    async def go():
        d = _director(_fifo_text(fifo))
        await d.start()
        try:
            assert stat.S_ISFIFO(os.stat(fifo).st_mode)
            assert stat.S_IMODE(os.stat(fifo).st_mode) == 0o600
            assert set(_daemons()) == {"master"}
            _write_fifo(fifo, b'INSTANCE "VI_2" BACKUP 100\nINSTANCE "VI_1" BAC')
            await asyncio.sleep(0.2)
            assert set(_daemons()) == {"master"}        # nothing whole of VI_1 yet
            _write_fifo(fifo, b'KUP 150\n')
            assert await _until(lambda: set(_daemons()) == {"backup"}), _daemons()
            st = d.status()["sync"]
            assert st["state"] == "backup" and st["keepalived_fifo"] == str(fifo)
            assert st["vrrp_instance"] == "VI_1"
            assert st["vrrp_last"] == 'INSTANCE "VI_1" BACKUP 150'
            # several lines at once: the last one wins, each switch in order
            _write_fifo(fifo, b'INSTANCE "VI_1" MASTER 150\nINSTANCE "VI_1" STOP 150\n'
                              b'INSTANCE "VI_1" MASTER 150\n')
            assert await _until(lambda: d.sync.switches == 4 and set(_daemons()) == {"master"})
            roles = [(e["previous"], e["state"]) for e in _events(d) if e["event"] == "role"]
            assert roles == [("master", "backup"), ("backup", "master"), ("master", "backup"),
                             ("backup", "master")]
        finally:
            await d.stop()
        assert d.sync_fifo is None and stat.S_ISFIFO(os.stat(fifo).st_mode)
    asyncio.run(go())


def test_fifo_path_that_is_not_a_fifo_is_an_error_event(mem, tmp_path):
    f = tmp_path / "plain"
    f.write_text("x")

    async def go():
        d = _director(_fifo_text(f))
        await d.start()
        try:
            errs = [e for e in _events(d) if e["event"] == "error"]
            assert any("not a FIFO" in e["message"] for e in errs), errs
            assert d.sync_fifo is None and d.status()["sync"]["state"] == "master"
        finally:
            await d.stop()
    asyncio.run(go())


def test_reload_moves_and_drops_the_fifo(mem, tmp_path):
    a, b = tmp_path / "a.fifo", tmp_path / "b.fifo"
    conf = tmp_path / "d.toml"
    conf.write_text(_fifo_text(a))

    async def go():
        d = _director(conf.read_text(), path=conf)
        await d.start()
        try:
            assert d.sync_fifo.path == str(a)
            conf.write_text(_fifo_text(b))
            await d.reload()
            assert d.sync_fifo.path == str(b)
            _write_fifo(b, b'INSTANCE "VI_1" BACKUP 150\n')
            assert await _until(lambda: set(_daemons()) == {"backup"})
            conf.write_text(text())
            await d.reload()
            assert d.sync_fifo is None
        finally:
            await d.stop()
    asyncio.run(go())


def test_the_role_set_survives_a_restart_in_the_state_file(mem, tmp_path):
    """keepalived does not repeat its state to a restarted director: the
    role it (or the API) last set is kept in the state file and taken at
    the next start over the file's ``state``; a role only taken from the
    file is not written."""
    from ipvs.director.state import read_state
    state = tmp_path / "d.state"
    src = text(SYNC)

    async def go():
        d = _director(src, state_file=str(state))
        await d.start()
        try:
            assert d.status()["sync"]["state"] == "master"
        finally:
            await d.stop()
        assert not state.exists()            # nothing was set: nothing kept
        d = _director(src, state_file=str(state))
        await d.start()
        try:
            await d.role("backup")
            assert read_state(str(state))["role"] == "backup"
        finally:
            await d.stop()
        d = _director(src, state_file=str(state))   # the file still says master
        await d.start()
        try:
            assert d.status()["sync"]["state"] == "backup"
            assert set(_daemons()) == {"backup"}
            ev = [e for e in _events(d) if e["event"] == "role"]
            assert ev and ev[-1]["state"] == "backup" and ev[-1]["previous"] == "master"
            await d.role("backup")           # told the same: kept as it is
            assert read_state(str(state))["role"] == "backup"
            await d.role("master")
            assert read_state(str(state))["role"] == "master"
        finally:
            await d.stop()
    asyncio.run(go())

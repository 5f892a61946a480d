"""A director pair: two ``ipvs-director`` processes on ``Lab(directors=2)``
(one segment, direct routing), the kernel's sync daemon between them
(``[director.sync]``), the VIP moved by ``lab.move_vip`` or by Debian's
keepalived (VRRP, ``vrrp_instance`` only) whose notify scripts switch the
directors' roles.  An established TCP connection survives the move with the
sync daemon, and breaks without it.

Run inside the sandbox:
    python -m ipvs.sandbox -- .venv/bin/python -m pytest -q -p no:cacheprovider \\
        tests/lab/test_director_pair.py
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from typing import Dict, List, Optional

import pytest

import ipvs
from ipvs.lab import Lab, wait_for
from tests.lab.harness import KEEPALIVED, DirectorProc, KeepalivedProc

FAILOVER: Dict[str, float] = {}


def director_text(lab: Lab, i: int, tmp_path, state: Optional[str],
                  fifo: Optional[str] = None) -> str:
    lines = ["[director]",
             'netns = "%s"' % lab.directors[i],
             'control = "%s"' % (tmp_path / ("d%d.sock" % i)),
             "resync_interval = 2"]
    if state is not None:
        lines += ["[director.sync]", 'state = "%s"' % state, 'interface = "eth0"', "sync_id = 5"]
        if fifo is not None:
            lines += ['keepalived_fifo = "%s"' % fifo, 'vrrp_instance = "VI_1"']
    lines += ["[[service]]", 'address = "%s"' % lab.vip, "port = %d" % lab.port, 'scheduler = "rr"',
              "[service.check]", 'type = "tcp"', "interval = 1.0", "timeout = 0.5",
              'initial = "up"']
    for addr in lab.server_addresses:
        lines += ["[[service.real_server]]", 'address = "%s"' % addr, "port = %d" % lab.port,
                  'forward = "route"']
    return "\n".join(lines) + "\n"


def daemons(lab: Lab, i: int) -> Dict[str, ipvs.Daemon]:
    with lab.ipvs(director=i) as h:
        return {d.state.name.lower(): d for d in h.daemons()}


def synced(lab: Lab, i: int, client_port: int) -> Optional[ipvs.Connection]:
    """The connection of the client's port in director i's table."""
    with lab.ipvs(director=i) as h:
        for c in h.connections():
            if c.client_port == client_port and str(c.virtual_address) == lab.vip:
                return c
    return None


@pytest.fixture
def pair(tmp_path):
    """A two-director lab and a factory of director processes; everything
    stopped and removed afterwards."""
    made: List[DirectorProc] = []
    with Lab(servers=2, directors=2, timeout=5.0) as lab:
        def start(i: int, state: Optional[str], fifo: Optional[str] = None) -> DirectorProc:
            name = "d%d" % i
            path = tmp_path / (name + ".toml")
            path.write_text(director_text(lab, i, tmp_path, state, fifo))
            d = DirectorProc(path, tmp_path / (name + ".sock"), tmp_path / (name + ".log"),
                             name="director " + name)
            made.append(d)
            return d.start()
        try:
            yield lab, start
        finally:
            for d in made:
                d.close()
            for d in made:
                if d.proc is not None and d.proc.returncode not in (0, None):
                    print("---- %s stderr ----\n%s" % (d.name, d.stderr()[-3000:]))


def held_connection(lab: Lab):
    """A TCP connection through the VIP that has echoed a few times (the
    sync daemon sends an entry after its third packet)."""
    s, name = lab.tcp_connect(lab.vip, lab.port)
    for k in range(4):
        assert lab.echo(s, b"before %d\n" % k) == b"before %d\n" % k
    return s, name


def echo_or_error(s: socket.socket, data: bytes, timeout: float) -> Optional[BaseException]:
    """None when ``data`` came back within ``timeout`` s, else the error."""
    s.settimeout(timeout)
    try:
        got = Lab.echo(s, data)
    except (OSError, ConnectionError) as e:  # reset, closed or timed out
        return e
    return None if got == data else AssertionError("echo %r != %r" % (got, data))


# ------------------------------------------------------------ move_vip alone

def test_move_vip_with_sync_keeps_the_connection(pair):
    lab, start = pair
    a, b = start(0, "master"), start(1, "backup")
    assert wait_for(lambda: set(daemons(lab, 0)) == {"master"}, 10)
    assert wait_for(lambda: set(daemons(lab, 1)) == {"backup"}, 10)
    assert daemons(lab, 0)["master"].interface == "eth0"
    assert daemons(lab, 1)["backup"].sync_id == 5

    s, name = held_connection(lab)
    try:
        port = s.getsockname()[1]
        server = lab.server_addresses[lab.names.index(name)]
        # the backup learnt the connection from the master's sync daemon
        c = wait_for(lambda: synced(lab, 1, port), 15, 0.25)
        assert c is not None, "the backup never received the connection"
        assert str(c.destination_address) == server

        t0 = time.monotonic()
        lab.move_vip(1)
        assert b.role("master")["state"] == "master"
        assert a.role("backup")["state"] == "backup"
        err = echo_or_error(s, b"after the move\n", 10)
        FAILOVER["move_vip"] = time.monotonic() - t0
        assert err is None, "the connection broke: %r" % err
        for k in range(3):
            assert echo_or_error(s, b"through B %d\n" % k, 5) is None
        # it went through B, to the same real server
        c = synced(lab, 1, port)
        assert c is not None and str(c.destination_address) == server
        assert lab.active_director == 1
        # the roles switched the daemons, and said so
        # (a backup daemon's stop may outlast these waits in UML: B's
        # backup is not required gone; A's master stops at once)
        assert wait_for(lambda: "master" in daemons(lab, 1), 10, 0.2), daemons(lab, 1)
        assert wait_for(lambda: set(daemons(lab, 0)) == {"backup"}, 10, 0.2), daemons(lab, 0)
        roles = [e for e in b.events() if e["event"] == "role"]
        assert roles and roles[-1]["state"] == "master" and roles[-1]["previous"] == "backup"
        st, body = b.call("GET", "/status")
        assert body["sync"]["state"] == "master"
    finally:
        s.close()
    print("failover (move_vip + role switch -> echo back): %.3f s" % FAILOVER["move_vip"])


def test_move_vip_without_sync_breaks_the_connection(pair):
    lab, start = pair
    start(0, None), start(1, None)
    s, name = held_connection(lab)
    try:
        port = s.getsockname()[1]
        time.sleep(2.5)   # as long as the sync daemon had in the other test
        assert synced(lab, 1, port) is None
        lab.move_vip(1)
        err = echo_or_error(s, b"after the move\n", 5)
        assert err is not None, "the connection survived without the sync daemon"
        assert isinstance(err, (ConnectionResetError, socket.timeout, ConnectionError)), err
        print("without the sync daemon: %r" % err)
        # B itself serves new connections
        s2, _ = lab.tcp_connect(lab.vip, lab.port)
        try:
            assert lab.echo(s2, b"new\n") == b"new\n"
        finally:
            s2.close()
    finally:
        s.close()


# ------------------------------------------------------------ keepalived

KEEPALIVED_CONF = """\
global_defs {{
    router_id {name}
    script_user root
    enable_script_security{fifo}
}}

vrrp_instance VI_1 {{
    state BACKUP
    interface eth0
    virtual_router_id 51
    priority {priority}
    advert_int 1
    virtual_ipaddress {{
        {vip}/32 dev eth0
    }}{notify}
}}
"""
NOTIFY_SCRIPTS = """
    notify_master "{cmd} master"
    notify_backup "{cmd} backup"
    notify_fault "{cmd} backup"
    notify_stop "{cmd} backup\""""


def keepalived(tmp_path, lab: Lab, i: int, director: DirectorProc,
               fifo: Optional[str] = None) -> KeepalivedProc:
    """Debian's keepalived, VRRP only, in director i's namespace.  With
    ``fifo``, keepalived writes its notify_fifo there and runs no notify
    command (the director reads it: keepalived_fifo); without, the notify
    commands as docs/director.md shows them (no shell)."""
    name = "ka%d" % i
    d = tmp_path / name
    d.mkdir()
    os.chmod(d, 0o755)
    if fifo is not None:
        extra = "\n    notify_fifo %s" % fifo
        notify = ""
    else:
        extra = ""
        notify = NOTIFY_SCRIPTS.format(cmd="%s -m ipvs.director -s %s role"
                                       % (sys.executable, director.sock))
    conf = d / "keepalived.conf"
    conf.write_text(KEEPALIVED_CONF.format(name=name, priority=150 - 50 * i, vip=lab.vip,
                                           notify=notify, fifo=extra))
    os.chmod(conf, 0o644)
    return KeepalivedProc(lab.directors[i], ["--vrrp", "-n", "-l", "-D", "-f", str(conf),
                                             "-p", str(d / "k.pid"), "-r", str(d / "v.pid"),
                                             "-c", str(d / "c.pid")],
                          d / "keepalived.log", session=True)


def has_vip(lab: Lab, i: int) -> bool:
    out = subprocess.run(["ip", "-n", lab.directors[i], "-4", "addr", "show", "dev", "eth0"],
                         capture_output=True, text=True, timeout=10).stdout
    return (" %s/32 " % lab.vip) in out


@pytest.mark.skipif(not os.path.exists(KEEPALIVED),
                    reason="Debian's keepalived is not installed (apt-get install keepalived)")
@pytest.mark.parametrize("how, sync, fifo", [("stop", True, True), ("crash", True, False),
                                             ("stop", False, False)],
                         ids=["stop-sync-fifo", "crash-sync-scripts", "stop-nosync"])
def test_keepalived_vrrp_moves_the_vip(pair, tmp_path, how, sync, fifo):
    """A's keepalived stops (SIGTERM: it gives the VIP up and tells B at
    once) or dies with A (SIGKILL and the VIP gone: B takes over when A's
    adverts stop, after about 3 advert intervals).  With [director.sync]
    the held connection keeps echoing through B; without, it breaks.  The
    roles come from keepalived's notify_fifo read by the directors
    (``fifo``) or from its notify commands.  (A stop told by notify_stop
    commands is not tested: keepalived kills its notify commands still
    running about a second after it starts stopping, and a loaded CI
    machine made A's `ipvs-director role backup` miss that second.)"""
    lab, start = pair
    # keepalived owns the VIP: take away the one the lab put on director 1
    subprocess.run(["ip", "-n", lab.directors[0], "addr", "del", "%s/32" % lab.vip, "dev",
                    "eth0"], check=True, timeout=10)
    state = "backup" if sync else None
    fifos = [str(tmp_path / ("notify%d.fifo" % i)) if fifo else None for i in (0, 1)]
    a, b = start(0, state, fifos[0]), start(1, state, fifos[1])
    kas: List[KeepalivedProc] = []
    try:
        kas = [keepalived(tmp_path, lab, 0, a, fifos[0]), keepalived(tmp_path, lab, 1, b, fifos[1])]
        # A (priority 150) wins the election: the VIP and the master role
        assert wait_for(lambda: has_vip(lab, 0), 15, 0.1), kas[0].output()[-3000:]
        if sync:
            # (the backup daemon A started with stops in the background: in
            # UML that may take longer than this wait)
            assert wait_for(lambda: "master" in daemons(lab, 0), 15, 0.2), \
                (daemons(lab, 0), kas[0].output()[-3000:])
            assert wait_for(lambda: a.call("GET", "/status")[1]["sync"]["state"] == "master",
                            15, 0.2)
            # the election settles (B may have been master for a moment
            # before A's first advert reached it: its notify_backup follows)
            assert wait_for(lambda: b.call("GET", "/status")[1]["sync"]["state"] == "backup"
                            and "backup" in daemons(lab, 1), 15, 0.2), daemons(lab, 1)
            if fifo:
                # A's director restarts while keepalived runs (which tells
                # it nothing): the state file gives back the master role
                a.close()
                a = start(0, state, fifos[0])
                assert a.call("GET", "/status")[1]["sync"]["state"] == "master"
                assert wait_for(lambda: "master" in daemons(lab, 0), 15, 0.2), daemons(lab, 0)
        else:
            assert daemons(lab, 0) == {} and daemons(lab, 1) == {}
        assert wait_for(lambda: not has_vip(lab, 1), 10, 0.1)
        # the client learns the VIP's owner (keepalived's gratuitous ARP)
        subprocess.run(["ip", "-n", lab.client, "neigh", "flush", "to", lab.vip, "dev", "eth0"],
                       check=True, timeout=10)

        s, name = held_connection(lab)
        try:
            port = s.getsockname()[1]
            server = lab.server_addresses[lab.names.index(name)]
            if sync:
                c = wait_for(lambda: synced(lab, 1, port), 15, 0.25)
                assert c is not None and str(c.destination_address) == server
            else:
                time.sleep(2.5)
                assert synced(lab, 1, port) is None

            t_signal = time.monotonic()
            if how == "stop":   # A's keepalived stops: it gives the VIP to B
                kas[0].stop()
            else:               # A dies: no more adverts, its VIP gone with it
                os.killpg(kas[0].proc.pid, signal.SIGKILL)
                kas[0].proc.wait(10)
                subprocess.run(["ip", "-n", lab.directors[0], "addr", "del", "%s/32" % lab.vip,
                                "dev", "eth0"], check=True, timeout=10)
            t_gone = time.monotonic()
            assert not has_vip(lab, 0)
            err = echo_or_error(s, b"after failover\n", 20)
            t_back = time.monotonic()
            assert wait_for(lambda: has_vip(lab, 1), 10, 0.1), kas[1].output()[-3000:]
            if not sync:
                assert err is not None, "the connection survived without the sync daemon"
                print("without the sync daemon: %r" % err)
                return
            assert err is None, "the connection broke: %r\n%s" % (err, kas[1].output()[-3000:])
            FAILOVER["keepalived-" + how] = t_back - t_gone
            FAILOVER["keepalived-" + how + "-from-signal"] = t_back - t_signal
            for k in range(3):
                assert echo_or_error(s, b"through B %d\n" % k, 5) is None
            c = synced(lab, 1, port)
            assert c is not None and str(c.destination_address) == server
            # B's notify_master made it master (and A's notify_stop backup)
            assert wait_for(lambda: "master" in daemons(lab, 1), 15, 0.2)
            assert wait_for(lambda: b.call("GET", "/status")[1]["sync"]["state"] == "master",
                            15, 0.2)
            if how == "stop":
                # keepalived wrote A's STOP line to the FIFO as it stopped
                assert wait_for(
                    lambda: a.call("GET", "/status")[1]["sync"]["state"] == "backup", 15, 0.2)
                st = a.call("GET", "/status")[1]["sync"]
                assert st["vrrp_last"] == 'INSTANCE "VI_1" STOP 150', st
            assert [e for e in b.events() if e["event"] == "role"][-1]["state"] == "master"
        finally:
            s.close()
    finally:
        for k in kas:
            k.stop()
    print("failover (%s: VIP gone from A -> echo back through B): %.3f s; from the signal "
          "to A's keepalived: %.3f s" % (how, FAILOVER["keepalived-" + how],
                                         FAILOVER["keepalived-" + how + "-from-signal"]))

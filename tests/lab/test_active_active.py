"""Active-active directors behind ECMP, with real director processes: three
`ipvs-director`s keep the same `mh` service (their files list the real
servers in different orders), set `sloppy_tcp`, and tell a real BGP speaker
what to announce (`via = "interface"` with BIRD on each director, and
`via = "exabgp"` with ExaBGP running `ipvs-director announce`); the lab's
router runs BIRD with ECMP.  Held connections through the VIP survive a
director stopped, killed or cut off, because every director sends a flow
to the same real server; the same run without `sloppy_tcp` breaks the
moved connections.  Figures are printed (pytest -s)."""

from __future__ import annotations

import os
import signal
import socket
import sys
import time
from typing import Dict, List, Tuple

import pytest

import ipvs
from ipvs.lab import Lab, MissingTool, wait_for
from tests.lab.harness import DirectorProc, ipvsadm, missing_tool

N = 3
HELD = 60
HOLD = 3            # the router's BGP hold time, s
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(ipvs.__file__)))


def _say(capsys, text: str) -> None:
    with capsys.disabled():
        sys.stdout.write("\n[active-active] %s" % text)


def config(lab: Lab, i: int, tmp, via: str, sloppy: int = 1) -> str:
    order = sorted(lab.server_addresses, key=socket.inet_aton)
    if i % 2:
        order.reverse()       # the file's order must not matter
    text = """
[director]
netns = "%s"
control = "%s/ctl%d.sock"
state_file = ""
resync_interval = 1
drain_timeout = 2
sysctl = { sloppy_tcp = %d }

[director.announce]
via = "%s"
withdraw_grace = 1

[[service]]
address = "%s"
port = %d
scheduler = "mh"
flags = ["mh-fallback", "mh-port"]

[service.check]
type = "tcp"
interval = 0.5
retry_interval = 0.5
timeout = 0.5
rise = 1
fall = 2
""" % (lab.directors[i], tmp, i, sloppy, via, lab.vip, lab.port)
    for addr in order:
        text += '\n[[service.real_server]]\naddress = "%s"\nport = %d\nforward = "route"\n' % (
            addr, lab.port)
    return text


class Directors:
    """N director processes, one per lab director namespace."""

    def __init__(self, lab: Lab, tmp, via: str, sloppy: int = 1) -> None:
        self.lab, self.tmp, self.via, self.sloppy = lab, tmp, via, sloppy
        self.procs: List[DirectorProc] = []
        for i in range(N):
            path = tmp / ("d%d.toml" % i)
            path.write_text(config(lab, i, tmp, via, sloppy))
            self.procs.append(DirectorProc(str(path), "%s/ctl%d.sock" % (tmp, i),
                                           str(tmp / ("d%d.log" % i))))

    def start(self, i: int) -> None:
        self.procs[i].start()
        if self.via == "exabgp":
            argv = [sys.executable, "-c",
                    "import sys; sys.path.insert(0, %r); from ipvs.director.cli import main; "
                    "sys.exit(main(['-s', %r, 'announce']))" % (ROOT, self.procs[i].sock)]
            self.lab.start_exabgp(i, argv)
        else:
            self.lab.start_director_bird(i, interface="ipvs-vips")

    def close(self) -> None:
        for p in self.procs:
            p.kill()


def paths(lab: Lab, want: List[str], timeout: float) -> float:
    t0 = time.monotonic()
    ok = wait_for(lambda: lab.router_paths() == want, timeout=timeout, interval=0.05)
    assert ok, "router paths %s, wanted %s\n%s" % (lab.router_paths(), want,
                                                   lab.birdc("show protocols"))
    return time.monotonic() - t0


def per_director(lab: Lab, held) -> Dict[int, int]:
    ports = {s.getsockname()[1] for s, _ in held}
    out = {}
    for i in range(N):
        with lab.ipvs(director=i) as lb:
            out[i] = sum(1 for c in lb.connections()
                         if c.client_port in ports and c.state == "ESTABLISHED")
    return out


def echoes(lab: Lab, held) -> Tuple[int, List[int]]:
    """How many held connections echo; the client ports of those that do not."""
    ok, bad = 0, []
    for s, _ in held:
        try:
            s.settimeout(3)
            if lab.echo(s, b"again\n") == b"again\n":
                ok += 1
                continue
        except OSError:
            pass
        bad.append(s.getsockname()[1])
    return ok, bad


def tables(lab: Lab) -> List[str]:
    return [ipvsadm(ns, "-Sn") for ns in lab.directors]


@pytest.fixture
def lab():
    try:
        lb = Lab(3, directors=N, router=True, bgp_hold=HOLD, lifetime=600).start()
    except MissingTool as e:
        missing_tool(e)     # skip, or fail under CI=true
    with lb:
        yield lb


def _up(lab: Lab, d: Directors, capsys) -> float:
    t0 = time.monotonic()
    try:
        for i in range(N):
            d.start(i)
    except MissingTool as e:
        missing_tool(e)
    paths(lab, lab.director_addresses, 40)
    total = time.monotonic() - t0
    _say(capsys, "%s: three next hops %.1f s after the first director started"
         % (d.via, total))
    return total


def test_interface_bird_stop_kill_cut_restart(lab, tmp_path, capsys):
    d = Directors(lab, tmp_path, "interface")
    try:
        total = _up(lab, d, capsys)
        assert total < 10 + 3 * 2, total       # 10 s once the directors run
        assert len(set(tables(lab))) == 1, tables(lab)   # the same table everywhere
        held = lab.hold(lab.vip, lab.port, HELD)
        spread = per_director(lab, held)
        _say(capsys, "%d held connections per director: %s" % (HELD, spread))
        assert sum(spread.values()) == HELD and sum(1 for n in spread.values() if n) >= 2

        # SIGTERM: withdrawn first, then the director exits (table left)
        assert d.procs[0].proc is not None
        d.procs[0].proc.send_signal(signal.SIGTERM)
        took = paths(lab, lab.director_addresses[1:], 15)
        assert d.procs[0].stop() == 0
        ok, bad = echoes(lab, held)
        _say(capsys, "director 1 stopped: path withdrawn %.2f s after SIGTERM, %d/%d held "
             "connections echo" % (took, ok, HELD))
        assert ok == HELD, bad
        new = lab.run_tcp(lab.vip, lab.port, 12)
        assert sum(new.values()) == 12
        events = [e["event"] for e in d.procs[0].events()]
        assert "withdraw" in events and "announce" in events

        # back into the ECMP set after a restart
        d.procs[0].start()
        took = paths(lab, lab.director_addresses, 15)
        _say(capsys, "director 1 restarted: back in the ECMP set after %.2f s" % took)
        assert len(set(tables(lab))) == 1

        # SIGKILL: nothing withdraws (interface mode), the kernel keeps forwarding
        d.procs[1].kill()
        ok, bad = echoes(lab, held)
        assert ok == HELD, bad
        assert lab.router_paths() == lab.director_addresses

        # the host lost: its link cut, the router drops the path within the hold time
        lab.cut_director(2)
        try:
            took = paths(lab, lab.director_addresses[:2], HOLD + 10)
            ok, bad = echoes(lab, held)
            _say(capsys, "director 3 cut: path dropped after %.2f s (hold %d s), %d/%d "
                 "held connections echo" % (took, HOLD, ok, HELD))
            assert took <= HOLD + 2
            assert ok >= 0.95 * HELD, bad
        finally:
            lab.restore_director(2)
        paths(lab, lab.director_addresses, 20)
        for s, _ in held:
            s.close()
    finally:
        d.close()


def test_real_server_failure_keeps_every_other_flow(lab, tmp_path, capsys):
    """A real server fails: quiesced (weight 0) on every director, never
    deleted, so the other flows keep their real server even when ECMP moves
    them to another director."""
    d = Directors(lab, tmp_path, "interface")
    try:
        _up(lab, d, capsys)
        held = lab.hold(lab.vip, lab.port, HELD)
        victim = "rs2"
        lab.stop_server(victim)
        addr = lab.server_addresses[1]

        def quiesced() -> bool:
            for i in range(N):
                with lab.ipvs(director=i) as lb:
                    svc = next(iter(lb.services()))
                    w = {str(x.address): x.weight for x in lb.destinations(svc)}
                    if w.get(addr) != 0 or len(w) != 3:
                        return False
            return True
        assert wait_for(quiesced, timeout=15)
        others = [(s, n) for s, n in held if n != victim]
        # a director cut off: its flows move to the others (sloppy_tcp, same mh table)
        lab.cut_director(0)
        try:
            paths(lab, lab.director_addresses[1:], HOLD + 10)
            ok, bad = echoes(lab, others)
            _say(capsys, "%s failed, director 1 cut: %d/%d flows of the other real "
                 "servers echo on their real server" % (victim, ok, len(others)))
            assert ok == len(others), bad
        finally:
            lab.restore_director(0)
        for s, _ in held:
            s.close()
    finally:
        d.close()


def test_without_sloppy_tcp_moved_connections_break(lab, tmp_path, capsys):
    d = Directors(lab, tmp_path, "interface", sloppy=0)
    try:
        _up(lab, d, capsys)
        held = lab.hold(lab.vip, lab.port, HELD)
        spread = per_director(lab, held)
        on_first = spread[0]
        assert on_first > 0, spread
        d.procs[0].stop(signal.SIGTERM)
        paths(lab, lab.director_addresses[1:], 15)
        ok, bad = echoes(lab, held)
        _say(capsys, "sloppy_tcp = 0: director 1 (%d flows) stopped, %d/%d held connections "
             "echo" % (on_first, ok, HELD))
        assert len(bad) >= on_first, (spread, bad)
        for s, _ in held:
            s.close()
    finally:
        d.close()


def test_exabgp_announce_process(lab, tmp_path, capsys):
    d = Directors(lab, tmp_path, "exabgp")
    try:
        _up(lab, d, capsys)
        held = lab.hold(lab.vip, lab.port, HELD)
        # the director killed: its announce process withdraws at once
        d.procs[2].kill()
        took = paths(lab, lab.director_addresses[:2], 10)
        ok, bad = echoes(lab, held)
        _say(capsys, "exabgp: director 3 killed, withdrawn %.2f s later (its announce "
             "process), %d/%d held connections echo" % (took, ok, HELD))
        assert took < HOLD, took          # not the hold time: withdrawn
        assert ok == HELD, bad
        # maintenance through the API withdraws, the connections still served
        st, ans = d.procs[0].call("POST", "/maintenance", {"on": True})
        assert st == 200 and not any(v["announced"] for v in ans["vips"])
        paths(lab, lab.director_addresses[1:2], 10)
        ok, bad = echoes(lab, held)
        assert ok == HELD, bad
        for s, _ in held:
            s.close()
    finally:
        d.close()

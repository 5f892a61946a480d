"""[director.announce] without a kernel or a router: which VIPs are
announced and why, the addresses kept on lo and the dummy interface, the
events and the metric; mh services in a canonical order, quiesced and
never deleted; ExaBGP's process lines."""

from __future__ import annotations

import io
import json
import os
import socket
import threading

import pytest

import ipvs
from ipvs.director import parse
from ipvs.director._kernel import MemoryKernel
from ipvs.director.config import ConfigError
from tests.unit.test_director_core import BAD, OK, Harness, run

ANNOUNCE = '[director.announce]\nvia = "%s"\nwhen = "%s"\nwithdraw_grace = 0\n'


def two_services(via="interface", when="all", extra=""):
    text = '[director]\ndrain_timeout = 30\n%s\n' % extra + ANNOUNCE % (via, when)
    for port in (80, 443):
        text += ('[[service]]\naddress = "10.0.0.1"\nport = %d\nscheduler = "mh"\n'
                 '[service.check]\ntype = "tcp"\nport = %d\nrise = 1\nfall = 1\n'
                 % (port, 8000 + port))
        for addr in ("10.0.1.3", "10.0.1.1", "10.0.1.2"):
            text += ('[[service.real_server]]\naddress = "%s"\nport = 8080\n' % addr)
    text += ('[[service]]\naddress = "10.0.0.2"\nport = 53\nprotocol = "udp"\n'
             '[[service.real_server]]\naddress = "10.0.2.1"\n')
    return parse(text)


class Ip:
    """A stand-in for `ip`: records argv, keeps the addresses per device."""

    def __init__(self):
        self.calls = []
        self.addrs = {"lo": set()}

    async def __call__(self, args):
        self.calls.append(list(args))
        if args[:2] == ["link", "add"]:
            self.addrs.setdefault(args[2], set())
        elif args[0] == "addr" and args[1] in ("replace", "del"):
            dev = self.addrs.setdefault(args[4], set())
            (dev.add if args[1] == "replace" else dev.discard)(args[2])
        elif args[:2] == ["addr", "flush"]:
            self.addrs[args[3]] = set()
        return 0, ""


def harness(cfg):
    h = Harness(cfg, MemoryKernel())
    from ipvs.director.announce import Announcer
    ip = Ip()
    h.d.announcer = Announcer(h.d, cfg.director.announce, ip=ip)
    return h, ip


def announced(h):
    return {v["vip"]: v["announced"] for v in h.d.announce_status()["vips"]}


def test_config_keys_and_refusals():
    cfg = two_services()
    a = cfg.director.announce
    assert (a.via, a.interface, a.when, a.withdraw_grace) == ("interface", "ipvs-vips", "all", 0)
    for bad, key in (('via = "bird"', "via"), ('via = "interface"\nwhen = "most"', "when"),
                     ('via = "interface"\ninterface = "lo"', "interface"),
                     ('via = "exabgp"\nspeaker = 1', "speaker"),
                     ('via = "exabgp"\nwithdraw_grace = -1', "withdraw_grace")):
        with pytest.raises(ConfigError) as ei:
            parse("[director.announce]\n" + bad + "\n")
        assert ei.value.key == "director.announce." + key, str(ei.value)
    # mh services get the kernel's mh-fallback flag unless the file says otherwise
    assert cfg.services[0].service.flags == ipvs.ServiceFlags.MH_FALLBACK
    assert parse('[[service]]\naddress = "10.0.0.1"\nport = 80\nscheduler = "mh"\n'
                 'flags = ["mh-port"]\n').services[0].service.flags == ipvs.ServiceFlags.MH_PORT


def test_vip_follows_health_all_and_any():
    async def go(when):
        h, ip = harness(two_services(when=when))
        await h.start()
        # checks not run yet: every real server down, nothing announced
        assert announced(h) == {"10.0.0.1": False, "10.0.0.2": True}
        assert ip.addrs["lo"] == {"10.0.0.1/32", "10.0.0.2/32"}
        assert ip.addrs.get("ipvs-vips") == {"10.0.0.2/32"}
        # port 80's servers up, 443's still down
        for p in h.d.probes.values():
            if p.check.port == 8080 and p.check.address == "10.0.1.1":
                h.d._on_result(p, OK)
        await h.d.round()
        return h, ip
    h, ip = run(go("all"))
    assert announced(h)["10.0.0.1"] is False    # all: port 443 has no healthy server yet
    h, ip = run(go("any"))
    assert announced(h)["10.0.0.1"] is True
    assert ip.addrs["ipvs-vips"] == {"10.0.0.1/32", "10.0.0.2/32"}
    evs = [(e["event"], e.get("vip")) for e in h.events() if e["event"] in ("announce",
                                                                            "withdraw")]
    assert evs == [("announce", "10.0.0.2"), ("announce", "10.0.0.1")]


def test_maintenance_and_stop_withdraw_everything_and_keep_lo():
    async def go():
        h, ip = harness(two_services(when="any"))
        await h.start()
        for p in list(h.d.probes.values()):
            h.d._on_result(p, OK)
        await h.d.round()
        assert announced(h) == {"10.0.0.1": True, "10.0.0.2": True}
        st = await h.d.maintenance(True)
        assert st["maintenance"] is True and not any(v["announced"] for v in st["vips"])
        assert {v["reason"] for v in st["vips"]} == {"maintenance"}
        assert ip.addrs["ipvs-vips"] == set()
        assert ip.addrs["lo"] == {"10.0.0.1/32", "10.0.0.2/32"}    # still served
        await h.d.maintenance(False)
        assert announced(h) == {"10.0.0.1": True, "10.0.0.2": True}
        with pytest.raises(ValueError):
            await h.d.maintenance("yes")
        await h.d.withdraw()
        assert announced(h) == {"10.0.0.1": False, "10.0.0.2": False}
        assert ip.addrs["lo"] == {"10.0.0.1/32", "10.0.0.2/32"}
        withdrawn = [e for e in h.events() if e["event"] == "withdraw"]
        assert [e["reason"] for e in withdrawn][-2:] == ["stopping", "stopping"]
    run(go())


def test_mh_servers_added_in_sorted_order_and_quiesced_not_deleted():
    async def go():
        cfg = parse('[[service]]\naddress = "10.0.0.1"\nport = 80\nscheduler = "mh"\n'
                    'on_failure = "remove"\n[service.check]\ntype = "tcp"\nrise = 1\n'
                    'fall = 1\ninitial = "up"\n'
                    + "".join('[[service.real_server]]\naddress = "%s"\nport = 8080\n' % a
                              for a in ("10.0.1.10", "10.0.1.9", "10.0.1.100", "10.0.1.1")))
        h = Harness(cfg)
        await h.start()
        adds = [str(d.address) for m, s, d in h.kernel.batches[0] if m == "add_destination"]
        assert adds == ["10.0.1.1", "10.0.1.9", "10.0.1.10", "10.0.1.100"]
        p = next(p for p in h.d.probes.values() if p.check.address == "10.0.1.9")
        h.d._on_result(p, BAD)
        await h.d.round()
        weights = {str(d.address): d.weight
                   for d in h.kernel.tables[cfg.services[0].service.key][1].values()}
        assert weights["10.0.1.9"] == 0 and len(weights) == 4   # on_failure=remove ignored
    run(go())


# ------------------------------------------------------------ ExaBGP's process

class FakeDirector(threading.Thread):
    """A control socket answering /events (a stream) and /announce."""

    def __init__(self, path, vips, events):
        super().__init__(daemon=True)
        self.srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.srv.bind(path)
        self.srv.listen(8)
        self.vips, self.events = vips, events

    def run(self):
        stream = None
        while True:
            try:
                c, _ = self.srv.accept()
            except OSError:
                return
            req = c.recv(4096)
            if req.startswith(b"GET /events"):
                c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\n\r\n")
                stream = c
                continue
            body = json.dumps({"vips": self.vips}).encode()
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
            c.close()
            for ev in self.events:
                stream.sendall((json.dumps(ev) + "\n").encode())
            stream.close()          # the director stops
            self.srv.close()
            return


def test_exabgp_process_announces_follows_and_withdraws_when_the_director_goes(tmp_path):
    from ipvs.director.announce import exabgp_process
    path = str(tmp_path / "ctl.sock")
    fake = FakeDirector(path, [{"vip": "10.0.0.1", "announced": True, "reason": "healthy"},
                               {"vip": "fd00::1", "announced": False, "reason": "x"}],
                        [{"event": "announce", "vip": "fd00::1"},
                         {"event": "up", "service": "TCP 10.0.0.1:80"},
                         {"event": "withdraw", "vip": "10.0.0.1"},
                         {"event": "announce", "vip": "10.0.0.1"}])
    fake.start()
    out = io.StringIO()
    assert exabgp_process(path, out, retry=0, forever=False) == 0
    assert out.getvalue().splitlines() == [
        "announce route 10.0.0.1/32 next-hop self",
        "announce route fd00::1/128 next-hop self",
        "withdraw route 10.0.0.1/32 next-hop self",
        "announce route 10.0.0.1/32 next-hop self",
        # the socket closed: every VIP withdrawn at once
        "withdraw route 10.0.0.1/32 next-hop self",
        "withdraw route fd00::1/128 next-hop self"]
    # no director at all: nothing announced, nothing printed, no exit
    out = io.StringIO()
    assert exabgp_process(str(tmp_path / "none.sock"), out, retry=0, forever=False) == 0
    assert out.getvalue() == ""
    assert not os.path.exists(str(tmp_path / "none.sock"))

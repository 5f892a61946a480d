"""ipvs-director in the traffic lab: a real director process (``python -m
ipvs.director``) keeping the table of the lab's director namespace, with HTTP
health endpoints on the real servers and traffic from the client.

Run inside the sandbox:
    python -m ipvs.sandbox -- .venv/bin/python -m pytest -q -p no:cacheprovider \
        tests/lab/test_director.py
"""

from __future__ import annotations

import json
import os
import signal
import socket
import struct
import subprocess
import sys
import time
from typing import Dict, List

import ipvs
from tests.lab.harness import (INTERVAL, QUIESCE_BOUND, RECOVER_BOUND, RISE, TIMEOUT, all_up,
                               config, metrics_text, timed, wait_until, weights)

TIMES: Dict[str, List[float]] = {}


# ------------------------------------------------------------ tests

def test_http_failure_quiesces_and_recovers_in_time(lab, tmp_path, director_factory):
    d = director_factory(config(lab, tmp_path)).start()
    up = {"rs1": 1, "rs2": 1, "rs3": 1}
    timed(all_up(lab, up), 10)
    lab.set_http_status("rs2", 500)
    t_down = timed(lambda: weights(lab).get("rs2") == 0, 10)
    assert weights(lab) == {"rs1": 1, "rs2": 0, "rs3": 1}   # quiesced, not removed
    st = d.status()["services"][0]
    rs2 = [r for r in st["real_servers"] if r["address"] == lab.server_addresses[1]][0]
    assert rs2["state"] == "down" and rs2["weight"] == 0 and rs2["configured_weight"] == 1
    assert rs2["last_check"]["result"] == "failure" and "500" in rs2["last_check"]["message"]
    lab.set_http_status("rs2", 200)
    t_up = timed(all_up(lab, up), 10)
    TIMES.setdefault("http quiesce", []).append(t_down)
    TIMES.setdefault("http recover", []).append(t_up)
    print("\nHTTP: failure -> weight 0 in %.3fs (bound %.2fs); recovery -> weight back in "
          "%.3fs (bound %.2fs)" % (t_down, QUIESCE_BOUND, t_up, RECOVER_BOUND))
    assert t_down <= QUIESCE_BOUND
    assert t_up <= RECOVER_BOUND
    names = [(e["event"], e.get("address")) for e in d.events()]
    addr = lab.server_addresses[1]
    seq = [ev for ev, a in names if a == addr]
    assert seq[-4:] == ["falling", "down", "rising", "up"], seq
    assert d.stop() == 0


def test_stopped_server_tcp_check(lab, tmp_path, director_factory):
    check = 'type = "tcp"\nport = %d' % lab.http_port
    d = director_factory(config(lab, tmp_path, check=check)).start()
    up = {"rs1": 1, "rs2": 1, "rs3": 1}
    timed(all_up(lab, up), 10)
    lab.stop_server("rs1")
    t_down = timed(lambda: weights(lab).get("rs1") == 0, 10)
    lab.start_server("rs1")
    t_up = timed(all_up(lab, up), 10)
    print("\nTCP: stop -> weight 0 in %.3fs; start -> weight back in %.3fs" % (t_down, t_up))
    TIMES.setdefault("tcp quiesce", []).append(t_down)
    TIMES.setdefault("tcp recover", []).append(t_up)
    assert t_down <= QUIESCE_BOUND and t_up <= RECOVER_BOUND
    d.stop()


def test_client_traffic_follows_weights(lab, tmp_path, director_factory):
    servers = {"rs1": "weight = 1", "rs2": "weight = 2", "rs3": "weight = 3"}
    d = director_factory(config(lab, tmp_path, servers=servers,
                                director_extra='metrics = "127.0.0.1:19587"')).start()
    timed(all_up(lab, {"rs1": 1, "rs2": 2, "rs3": 3}), 10)
    seen = lab.run_tcp(lab.vip, 80, 60)
    assert seen == {"rs1": 10, "rs2": 20, "rs3": 30}, seen
    lab.set_http_status("rs3", 503)
    timed(lambda: weights(lab).get("rs3") == 0, 10)
    # /metrics, served in the director's namespace
    text = metrics_text(lab.director, 19587)
    labels = ('address="%s",destination_address="%s",destination_port="%d",family="ipv4",'
              'fwmark="0",port="80",protocol="tcp"')
    assert "ipvs_director_real_server_up{%s} 0.0" % (
        labels % (lab.vip, lab.server_addresses[2], lab.port)) in text
    assert "ipvs_director_real_server_up{%s} 1.0" % (
        labels % (lab.vip, lab.server_addresses[0], lab.port)) in text
    assert 'ipvs_director_checks_total{result="failure",type="http"}' in text
    # the IPVS table's own series, from the exporter's collector, on the same page
    assert "\nipvs_up 1\n" in text
    assert "ipvs_destination_weight{" in text and "ipvs_service_connections_total{" in text
    seen = lab.run_tcp(lab.vip, 80, 30)
    assert seen == {"rs1": 10, "rs2": 20}, seen
    # the control API's weight
    st, body = d.call("POST", "/weight", {"service": "TCP %s:80" % lab.vip,
                                          "address": lab.server_addresses[0], "port": lab.port,
                                          "weight": 4})
    assert st == 200 and body["weight"] == 4, body
    seen = lab.run_tcp(lab.vip, 80, 30)
    assert seen == {"rs1": 20, "rs2": 10}, seen
    d.stop()


def test_remove_mode(lab, tmp_path, director_factory):
    d = director_factory(config(lab, tmp_path, service_extra='on_failure = "remove"',
                                servers={"rs1": "", "rs2": "", "rs3": 'on_failure = "quiesce"'})
                         ).start()
    timed(all_up(lab, {"rs1": 1, "rs2": 1, "rs3": 1}), 10)
    lab.set_http_status("rs1", 500)
    lab.set_http_status("rs3", 500)
    timed(lambda: weights(lab) == {"rs2": 1, "rs3": 0}, 10)   # rs1 removed, rs3 quiesced
    seen = lab.run_tcp(lab.vip, 80, 6)
    assert seen == {"rs2": 6}
    lab.set_http_status("rs1", 200)
    timed(lambda: weights(lab) == {"rs1": 1, "rs2": 1, "rs3": 0}, 10)
    d.stop()


def test_quorum_sorry_server_and_back(lab, tmp_path, director_factory):
    sorry = "%s:%d" % (lab.server_addresses[2], lab.port)
    d = director_factory(config(lab, tmp_path, servers={"rs1": "", "rs2": ""},
                                service_extra='quorum = 2\nhysteresis = 0\nsorry_server = "%s"'
                                % sorry)).start()
    timed(all_up(lab, {"rs1": 1, "rs2": 1}), 10)
    assert lab.run_tcp(lab.vip, 80, 4) == {"rs1": 2, "rs2": 2}
    lab.set_http_status("rs1", 500)
    timed(lambda: weights(lab) == {"rs1": 0, "rs2": 0, "rs3": 1}, 10)
    assert lab.run_tcp(lab.vip, 80, 5) == {"rs3": 5}
    svc = d.status()["services"][0]
    assert svc["quorum_up"] is False and svc["sorry_active"] is True
    lab.set_http_status("rs1", 200)
    timed(lambda: weights(lab) == {"rs1": 1, "rs2": 1}, 10)
    assert lab.run_tcp(lab.vip, 80, 4) == {"rs1": 2, "rs2": 2}
    events = [e["event"] for e in d.events()]
    assert "quorum_lost" in events and "quorum_gained" in events
    d.stop()


def test_drain_keeps_open_connection_until_close_or_timeout(lab, tmp_path, director_factory):
    d = director_factory(config(lab, tmp_path, servers={"rs1": "", "rs2": ""},
                                director_extra="")).start()
    timed(all_up(lab, {"rs1": 1, "rs2": 1}), 10)
    svc = "TCP %s:80" % lab.vip
    held = lab.hold(lab.vip, 80, 2)
    sock = [s for s, n in held if n == "rs1"][0]
    for s, n in held:
        if s is not sock:
            s.close()
    body = {"service": svc, "address": lab.server_addresses[0], "port": lab.port}
    st, ans = d.call("POST", "/drain", body)
    assert st == 200 and ans["state"] == "draining", ans
    timed(lambda: weights(lab).get("rs1") == 0, 5)
    # the open connection keeps working; new ones go elsewhere
    t0 = time.monotonic()
    while time.monotonic() - t0 < 2.5:
        assert lab.echo(sock, b"still there\n") == b"still there\n"
        assert "rs1" in weights(lab)
        time.sleep(0.25)
    assert lab.run_tcp(lab.vip, 80, 3) == {"rs2": 3}
    # closed with a reset: the kernel's entry goes to CLOSE (10 s), then the
    # real server is deleted -- well before drain_timeout (20 s)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()
    t_gone = timed(lambda: "rs1" not in weights(lab), 18)
    print("\ndrain: deleted %.1fs after the last connection closed (drain_timeout 20 s)" % t_gone)
    assert [e for e in d.events() if e["event"] == "removed"][-1]["reason"] == "drained"
    # undrain: back with its weight once its check says up
    st, ans = d.call("POST", "/undrain", body)
    assert st == 200, ans
    timed(all_up(lab, {"rs1": 1, "rs2": 1}), 10)
    # drain_timeout: a connection that never closes ends the drain at 3 s
    text = open(d.path).read().replace("drain_timeout = 20", "drain_timeout = 3")
    open(d.path, "w").write(text)
    assert d.call("POST", "/reload")[0] == 200
    held = lab.hold(lab.vip, 80, 2)
    try:
        assert {n for _, n in held} == {"rs1", "rs2"}
        t = time.monotonic()
        assert d.call("POST", "/drain", body)[0] == 200
        timed(lambda: "rs1" not in weights(lab), 8)
        took = time.monotonic() - t
        print("drain_timeout 3 s: deleted after %.1fs with the connection still open" % took)
        assert 2.5 <= took <= 5.0
        assert [e for e in d.events() if e["event"] == "removed"][-1]["reason"] == "drain timeout"
    finally:
        for s, _ in held:
            s.close()
    d.stop()


def test_reload_adds_removes_changes_with_state_carried(lab, tmp_path, director_factory):
    d = director_factory(config(lab, tmp_path, servers={"rs1": "", "rs2": ""})).start()
    timed(all_up(lab, {"rs1": 1, "rs2": 1}), 10)
    n_events = len(d.events())
    # rs1 changes weight, rs2 leaves, rs3 comes
    text = config(lab, tmp_path, servers={"rs1": "weight = 5", "rs3": ""})
    open(d.path, "w").write(text)
    d.proc.send_signal(signal.SIGHUP)
    # rs1 keeps its health (up): its new weight at once, never 0 on the way
    seen_rs1 = []
    ok = wait_until(lambda: seen_rs1.append(weights(lab).get("rs1")) or
                    weights(lab) == {"rs1": 5, "rs3": 1}, 10)
    assert ok, weights(lab)
    assert 0 not in seen_rs1 and None not in seen_rs1, seen_rs1
    new = d.events()[n_events:]
    kinds = [(e["event"], e.get("address")) for e in new]
    assert ("reload", None) in kinds
    assert not [k for k in kinds if k[1] == lab.server_addresses[0] and
                k[0] in ("down", "rising", "falling")], kinds
    assert ("removed", lab.server_addresses[1]) in kinds          # drained, deleted
    assert ("up", lab.server_addresses[2]) in kinds               # new: rose
    # the same through the API, another service added, the old one removed
    text = config(lab, tmp_path, servers={"rs1": "weight = 5", "rs3": ""}, port=81)
    open(d.path, "w").write(text)
    st, body = d.call("POST", "/reload")
    assert st == 200 and body["added"] == ["TCP %s:81" % lab.vip], body
    assert body["removed"] == ["TCP %s:80" % lab.vip]
    timed(lambda: weights(lab, 81) == {"rs1": 5, "rs3": 1}, 10)

    def port80_gone():
        with lab.ipvs() as lb:
            return not [s for s in lb.services() if s.port == 80]
    timed(port80_gone, 10)              # drained (no connections), then deleted
    d.stop()


def test_bad_file_refused_table_stays(lab, tmp_path, director_factory):
    d = director_factory(config(lab, tmp_path)).start()
    up = {"rs1": 1, "rs2": 1, "rs3": 1}
    timed(all_up(lab, up), 10)
    good = open(d.path).read()
    bad = good.replace('forward = "masq"', 'forward = "masq"\nweight = "heavy"', 1)
    open(d.path, "w").write(bad)
    line = bad.splitlines().index('weight = "heavy"') + 1
    st, body = d.call("POST", "/reload")
    assert 400 <= st < 500, (st, body)
    assert body["line"] == line and body["key"] == "service[0].real_server[0].weight", body
    assert ":%d:" % line in body["error"]
    # the same refusal from the subcommand and --check
    r = subprocess.run([sys.executable, "-m", "ipvs.director", "-s", d.sock, "reload"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 1 and "real_server[0].weight" in r.stderr
    r = subprocess.run([sys.executable, "-m", "ipvs.director", "-c", d.path, "--check"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 1 and ":%d: service[0].real_server[0].weight" % line in r.stderr
    # a syntax error: the parser's line
    open(d.path, "w").write(good + "\n[[service\n")
    st, body = d.call("POST", "/reload")
    assert 400 <= st < 500 and body["line"] == len(good.splitlines()) + 2, body
    d.proc.send_signal(signal.SIGHUP)
    time.sleep(1.0)
    assert d.proc.poll() is None
    assert weights(lab) == up
    lab.set_http_status("rs3", 500)           # still running the old config
    timed(lambda: weights(lab).get("rs3") == 0, 10)
    assert [e["event"] for e in d.events()].count("reload_failed") >= 3
    d.stop()


def test_restart_changes_nothing_and_sigterm_leaves_table(lab, tmp_path, director_factory):
    servers = {"rs1": "weight = 2", "rs2": "weight = 3", "rs3": ""}
    text = config(lab, tmp_path, servers=servers)
    d = director_factory(text).start()
    up = {"rs1": 2, "rs2": 3, "rs3": 1}
    timed(all_up(lab, up), 10)
    with lab.ipvs() as lb:
        before = lb.table()
    assert d.stop() == 0                       # SIGTERM
    with lab.ipvs() as lb:
        assert lb.table() == before
    assert not os.path.exists(d.sock)
    # a new director on the same file: the healthy servers keep their weights
    d2 = director_factory(text, "again.toml").start()
    seen = []
    t = time.monotonic()
    while time.monotonic() - t < 3 * INTERVAL * RISE + 1:
        seen.append(weights(lab))
        time.sleep(0.02)
    assert all(w == up for w in seen), [w for w in seen if w != up][:3]
    states = {r["address"]: r["state"] for r in d2.status()["services"][0]["real_servers"]}
    assert set(states.values()) == {"up"}, states
    d2.stop()


def test_foreign_service_never_touched_and_drift_repaired(lab, tmp_path, director_factory):
    foreign = ipvs.Service(address=lab.vip, port=9999, scheduler="rr")
    fdest = ipvs.Destination(lab.server_addresses[0], lab.port, weight=7,
                             forward=ipvs.Forward.MASQ)
    with lab.ipvs() as lb:
        lb.add_service(foreign)
        lb.add_destination(foreign, fdest)
        foreign_before = {s: d for s, d in lb.table().items() if s.port == 9999}
    d = director_factory(config(lab, tmp_path)).start()
    timed(all_up(lab, {"rs1": 1, "rs2": 1, "rs3": 1}), 10)
    # drift by hand in the director's own service: undone by the resync (1 s)
    with lab.ipvs() as lb:
        own = [s for s in lb.services() if s.port == 80][0]
        lb.update_destination(own, ipvs.Destination(lab.server_addresses[1], lab.port, weight=9,
                                                     forward=ipvs.Forward.MASQ))
    assert weights(lab)["rs2"] == 9
    timed(lambda: weights(lab).get("rs2") == 1, 5)
    # a reload and a stop later, the foreign service is exactly as it was
    assert d.call("POST", "/reload")[0] == 200
    lab.set_http_status("rs1", 500)
    timed(lambda: weights(lab).get("rs1") == 0, 10)
    d.stop()
    with lab.ipvs() as lb:
        assert {s: d for s, d in lb.table().items() if s.port == 9999} == foreign_before


def test_events_stream_and_status_subcommand(lab, tmp_path, director_factory):
    d = director_factory(config(lab, tmp_path, servers={"rs1": ""})).start()
    timed(all_up(lab, {"rs1": 1}), 10)
    proc = subprocess.Popen([sys.executable, "-m", "ipvs.director", "-s", d.sock, "events"],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert wait_until(lambda: d.status()["event_streams"] == 1, 10)
        lab.set_http_status("rs1", 500)
        lines = []
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            lines.append(json.loads(line))
            if lines[-1]["event"] == "down":
                break
        assert [e["event"] for e in lines][-2:] == ["falling", "down"], lines
        assert lines[-1]["service"] == "TCP %s:80" % lab.vip
        assert lines[-1]["address"] == lab.server_addresses[0] and lines[-1]["port"] == lab.port
    finally:
        proc.kill()
        proc.wait(5)
    r = subprocess.run([sys.executable, "-m", "ipvs.director", "-c", d.path, "status",
                        "--json"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0
    assert json.loads(r.stdout)["services"][0]["real_servers"][0]["state"] == "down"
    r = subprocess.run([sys.executable, "-m", "ipvs.director", "-s", d.sock, "drain",
                        "TCP 10.9.9.9:80", lab.server_addresses[0], str(lab.port)],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 1 and "unknown service" in r.stderr
    d.stop()


def test_udp_and_ipv6_services(lab, tmp_path, director_factory):
    """A UDP service with udp checks (the servers' UDP name answers) and an
    IPv6 TCP service with tcp checks, in one file."""
    text = """
[director]
netns = "%s"
control = "%s"

[[service]]
address = "%s"
port = 53
protocol = "udp"
scheduler = "rr"
[service.check]
type = "udp"
send = "who"
expect = "^rs[0-9]+"
interval = %s
timeout = %s
""" % (lab.director, tmp_path / "ctl.sock", lab.vip, INTERVAL, TIMEOUT)
    for addr in lab.server_addresses:
        text += '[[service.real_server]]\naddress = "%s"\nport = %d\nforward = "masq"\n' % (
            addr, lab.port)
    text += """
[[service]]
address = "%s"
port = 80
scheduler = "rr"
[service.check]
type = "tcp"
interval = %s
timeout = %s
""" % (lab.vip6, INTERVAL, TIMEOUT)
    for addr in lab.server_addresses6:
        text += '[[service.real_server]]\naddress = "%s"\nport = %d\nforward = "masq"\n' % (
            addr, lab.port)
    d = director_factory(text).start()

    def ready():
        st = d.status()["services"]
        return all(r["state"] == "up" and r["weight"] == 1 for s in st for r in s["real_servers"])
    timed(ready, 10)
    names = [s["service"] for s in d.status()["services"]]
    assert names == ["UDP %s:53" % lab.vip, "TCP [%s]:80" % lab.vip6]
    assert lab.run_udp(lab.vip, 53, 6) == {"rs1": 2, "rs2": 2, "rs3": 2}
    assert lab.run_tcp(lab.vip6, 80, 6) == {"rs1": 2, "rs2": 2, "rs3": 2}
    st, body = d.call("POST", "/drain", {"service": "TCP [%s]:80" % lab.vip6,
                                         "address": lab.server_addresses6[0], "port": lab.port})
    assert st == 200, body
    timed(lambda: lab.run_tcp(lab.vip6, 80, 4) == {"rs2": 2, "rs3": 2}, 10)
    d.stop()

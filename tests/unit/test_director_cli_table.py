"""ipvs-director's subcommands: --help lists every one, the status table,
weight clear (subcommand and JSON null), service strings in any case, and
no traceback on the documented failure paths (missing socket, an error
answer, a reader that goes away)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from ipvs.director import cli
from tests.unit.test_director_control import SVC, TEXT, api, call  # noqa: F401 (fixture)

CLI = [sys.executable, "-m", "ipvs.director"]


def run(*args, timeout=60):
    return subprocess.run(CLI + list(args), capture_output=True, text=True, timeout=timeout)


def one_line_error(r, words):
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("ipvs-director: "), lines
    assert words in lines[0], lines


# ------------------------------------------------------------ help

def test_help_lists_every_subcommand(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for name in ("status", "reload", "events", "drain", "undrain", "weight", "role",
                 "maintenance", "announce", "diff", "convert"):
        assert "\n    %s " % name in out, name
    assert "--check" in out and "--log-format" in out


def test_subcommand_help_and_usage_errors(capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["weight", "--help"])
    assert e.value.code == 0
    assert "N|clear" in capsys.readouterr().out
    with pytest.raises(SystemExit) as e:
        cli.main(["-s", "/nowhere", "drain", "TCP 10.0.0.1:80"])   # too few arguments
    assert e.value.code == 2
    assert cli.main(["-s", "/nowhere", "weight", SVC, "10.0.1.1", "80", "lots"]) == 2
    assert cli.main(["-s", "/nowhere", "role", "leader"]) == 2
    assert cli.main(["-s", "/nowhere", "maintenance", "maybe"]) == 2
    assert cli.main(["diff"]) == 2
    err = capsys.readouterr().err
    assert "N must be an integer or clear" in err and "master or backup" in err
    assert "maintenance takes on or off" in err
    assert "diff needs -c FILE" in err


# ------------------------------------------------------------ the table

DOC = {
    "config": "/etc/ipvs-director.toml", "rounds": 12, "kernel_error": "Timer expired",
    "sync": {"state": "master", "interface": "eth1", "sync_id": 7, "switches": 1,
             "error": None},
    "services": [
        {"service": "TCP 10.200.0.100:80", "in_file": True, "in_kernel": True,
         "scheduler": "wrr", "quorum": 3, "hysteresis": 0, "quorum_up": False,
         "sorry_server": "10.200.1.9:8000", "sorry_active": True,
         "real_servers": [
             {"address": "10.200.1.1", "port": 8000, "weight": 0, "configured_weight": 1,
              "state": "down", "in_file": True, "forward": "masq",
              "last_check": {"result": "failure", "message": "HTTP status 500"},
              "connections": {"active": 0, "inactive": 2, "persistent": 0}},
             {"address": "10.200.1.2", "port": 8000, "weight": 0, "configured_weight": 2,
              "state": "draining", "in_file": True, "forward": "masq",
              "last_check": None,
              "connections": {"active": 3, "inactive": 1, "persistent": 0}},
             {"address": "10.200.1.3", "port": 8000, "weight": 0, "configured_weight": 1,
              "weight_override": 5, "state": "rising", "in_file": True, "forward": "masq",
              "last_check": {"result": "success", "message": "HTTP 200"},
              "connections": {"active": 0, "inactive": 0, "persistent": 0}},
         ]},
        {"service": "FWM 7 IPv6", "in_file": False, "in_kernel": True, "scheduler": "sh",
         "quorum": None, "quorum_up": None, "sorry_server": None, "sorry_active": False,
         "real_servers": [
             {"address": "2001:db8::5", "port": 0, "weight": 1, "configured_weight": 1,
              "state": "up", "in_file": True, "forward": "route",
              "connections": {"active": 1, "inactive": 0, "persistent": 0}},
             {"address": "2001:db8::6", "port": 0, "weight": None, "configured_weight": 1,
              "state": "down", "in_file": True, "forward": "route"},
         ]},
    ],
}


def test_status_table():
    lines = cli.status_table(DOC).splitlines()
    assert lines[0] == ("ipvs-director /etc/ipvs-director.toml: 2 services, 1 of 5 real "
                        "servers up, 1 draining (12 rounds)")
    assert lines[1] == "role master (sync daemon on eth1, syncid 7)"
    assert lines[2] == "kernel error: Timer expired"
    assert lines[3] == "Prot LocalAddress:Port Scheduler Quorum Sorry"
    assert lines[4] == ("  -> RemoteAddress:Port           Forward Weight ActiveConn "
                        "InActConn State")
    assert lines[5] == "TCP  10.200.0.100:80 wrr  quorum 3 lost  sorry 10.200.1.9:8000 active"
    assert lines[6] == ("  -> 10.200.1.1:8000              Masq    0      0          2"
                        "          down  (HTTP status 500)")
    assert lines[7] == ("  -> 10.200.1.2:8000              Masq    0      3          1"
                        "          draining")
    assert lines[8] == ("  -> 10.200.1.3:8000              Masq    0      0          0"
                        "          rising  (api weight 5, file 1)")
    assert lines[9] == "FWM  7 IPv6 sh  leaving (not in the file)"
    assert lines[10] == ("  -> [2001:db8::5]:0              Route   1      1          0"
                         "          up")
    assert lines[11] == ("  -> [2001:db8::6]:0              Route   -      -          -"
                         "          down (not in the kernel)")
    assert len(lines) == 12


def test_status_table_announce_and_sysctl():
    doc = {"config": "d.toml", "rounds": 2, "sync": None, "kernel_error": None,
           "sysctl": {"expire_nodest_conn": 1, "conn_reuse_mode": 0},
           "announce": {"via": "exabgp", "when": "all", "maintenance": True,
                        "vips": [{"vip": "10.200.0.100", "announced": False,
                                  "reason": "maintenance"},
                                 {"vip": "10.200.0.101", "announced": True, "reason": "ok"}]},
           "services": []}
    lines = cli.status_table(doc).splitlines()
    assert lines[1] == "sysctl conn_reuse_mode=0 expire_nodest_conn=1"
    assert lines[2] == ("announce via exabgp, maintenance: 10.200.0.100 withdrawn "
                        "(maintenance); 10.200.0.101 announced")
    assert len(lines) == 5


def test_status_table_quiet_parts_left_out():
    doc = {"config": "d.toml", "rounds": 1, "sync": None, "kernel_error": None,
           "services": [{"service": "UDP 10.0.0.1:53", "scheduler": "rr", "quorum": 1,
                         "quorum_up": True, "sorry_server": "10.0.0.9:53",
                         "sorry_active": False, "in_file": True, "in_kernel": True,
                         "real_servers": []}]}
    lines = cli.status_table(doc).splitlines()
    assert lines[0] == "ipvs-director d.toml: 1 service, 0 of 0 real servers up (1 round)"
    assert lines[3] == "UDP  10.0.0.1:53 rr  sorry 10.0.0.9:53 standby"
    assert len(lines) == 4


# ------------------------------------------------------------ through the control API

def test_status_subcommand_table_and_json(api):
    sock = api[0]
    r = run("-s", sock, "status")
    assert r.returncode == 0 and not r.stderr, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].endswith("1 service, 2 of 2 real servers up (%s)" % lines[0].split("(")[1]
                             .rstrip(")")), lines
    assert lines[3] == "TCP  10.0.0.1:80 wlc"
    assert lines[4].split() == ["->", "10.0.1.1:8080", "Route", "1", "0", "0", "up"]
    assert lines[5].split() == ["->", "10.0.1.2:8080", "Route", "2", "0", "0", "up"]
    r = run("status", "--json", "-s", sock)       # -s after the subcommand works too
    assert r.returncode == 0
    doc = json.loads(r.stdout)
    assert doc["services"][0]["service"] == SVC
    assert doc["services"][0]["real_servers"][0]["forward"] == "route"


def test_weight_clear_subcommand_and_json_null(api):
    sock = api[0]
    r = run("-s", sock, "weight", "tcp 10.0.0.1:80", "10.0.1.2", "8080", "6")
    assert r.returncode == 0, r.stderr
    body = json.loads(r.stdout)
    assert body["weight"] == 6 and body["weight_override"] == 6
    r = run("-s", sock, "weight", "Tcp  10.0.0.1:80", "10.0.1.2", "8080", "clear")
    assert r.returncode == 0, r.stderr
    body = json.loads(r.stdout)
    assert body["weight"] == 2 and "weight_override" not in body
    st, body = call(sock, "POST", "/weight", {"service": SVC, "address": "10.0.1.2",
                                              "port": 8080, "weight": 9})
    assert st == 200 and body["weight"] == 9
    st, body = call(sock, "POST", "/weight", {"service": SVC, "address": "10.0.1.2",
                                              "port": 8080, "weight": None})
    assert st == 200 and body["weight"] == 2 and "weight_override" not in body
    # the key is still needed: null clears, missing is an error
    st, body = call(sock, "POST", "/weight", {"service": SVC, "address": "10.0.1.2",
                                              "port": 8080})
    assert st == 400 and "weight" in body["error"]


@pytest.mark.parametrize("service", ["tcp 10.0.0.1:80", "TCP 10.0.0.1:80", " tcp  10.0.0.1:80 "])
def test_service_string_in_any_case(api, service):
    sock = api[0]
    st, body = call(sock, "POST", "/drain", {"service": service, "address": "10.0.1.1",
                                             "port": 8080})
    assert st == 200 and body["state"] == "draining", body
    r = run("-s", sock, "undrain", service, "10.0.1.1", "8080")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["state"] == "up"


def test_error_answers_are_one_line(api):
    sock, path, _, _ = api
    one_line_error(run("-s", sock, "drain", SVC, "10.0.1.7", "8080"), "no real server")
    one_line_error(run("-s", sock, "drain", "TCP 10.9.9.9:80", "10.0.1.1", "8080"),
                   "unknown service")
    one_line_error(run("-s", sock, "role", "master"), "no [director.sync]")
    one_line_error(run("-s", sock, "maintenance", "on"), "no [director.announce]")
    st, body = call(sock, "GET", "/announce")
    assert st == 409 and "[director.announce]" in body["error"]
    st, body = call(sock, "POST", "/maintenance", {"on": True, "off": False})
    assert st == 400 and "unknown keys: off" in body["error"]
    with open(path, "w") as f:
        f.write(TEXT.replace("weight = 2", 'weight = 2\nforward = "sideways"'))
    r = run("-s", sock, "reload")
    one_line_error(r, "reload failed: ")
    assert "forward" in r.stderr and ":15:" in r.stderr and not r.stdout


def test_missing_or_refusing_socket(tmp_path):
    missing = str(tmp_path / "none.sock")
    r = run("-s", missing, "status")
    one_line_error(r, "ipvs-director: %s: No such file or directory" % missing)
    import socket
    dead = str(tmp_path / "dead.sock")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(dead)        # bound, never listening: connections are refused
    try:
        one_line_error(run("-s", dead, "events"), "%s: Connection refused" % dead)
    finally:
        s.close()


def test_reader_gone_no_traceback(api):
    """The reader of stdout closes it before the answer is written (| head)."""
    sock = api[0]
    for args in (["status"], ["status", "--json"], ["events"]):
        p = subprocess.Popen(CLI + ["-s", sock] + args, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        p.stdout.close()
        if args == ["events"]:
            # the stream's first line comes with the next event: once the
            # subcommand's stream is open (a slow host, qemu: not at once)
            import time
            deadline = time.monotonic() + 60
            while call(sock, "GET", "/status")[1]["event_streams"] < 1:
                assert time.monotonic() < deadline and p.poll() is None, "no event stream"
                time.sleep(0.05)
            call(sock, "POST", "/drain", {"service": SVC, "address": "10.0.1.1", "port": 8080})
            call(sock, "POST", "/undrain", {"service": SVC, "address": "10.0.1.1",
                                            "port": 8080})
        _, err = p.communicate(timeout=60)
        assert p.returncode == 0, (args, err)
        assert err == "", (args, err)


def test_reader_gone_through_head(api):
    r = subprocess.run("%s -m ipvs.director -s %s status | head -1" % (sys.executable, api[0]),
                       shell=True, capture_output=True, text=True, timeout=60)
    assert r.stdout.startswith("ipvs-director ") and r.stdout.count("\n") == 1
    assert r.stderr == ""

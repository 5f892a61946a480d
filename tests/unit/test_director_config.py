"""The director's TOML file: defaults, model objects, and errors naming the
line and the key."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

import ipvs
from ipvs.director.config import ConfigError, load, parse, service_name

FULL = '''\
[director]
netns = "lab-director"
control = "/run/test.sock"
metrics = "127.0.0.1:9587"
drain_timeout = 30

[[service]]
address = "10.200.0.100"
port = 80
protocol = "tcp"
scheduler = "wrr"
flags = ["persistent"]
timeout = 300
on_failure = "quiesce"
quorum = 2
hysteresis = 1
sorry_server = "10.200.3.2:8000"

[service.check]
type = "http"
path = "/health"
expect_status = "200-299,302"
interval = 2.0
timeout = 1.0

[[service.real_server]]
address = "10.200.1.2"
port = 8000
weight = 3
forward = "masq"

[[service.real_server]]
address = "10.200.2.2"
port = 8000
on_failure = "remove"
check = { type = "tcp" }
notify_up = ["/bin/echo", "up"]

[[service.real_server]]
address = "10.200.4.2"
checks = [ { path = "/a" }, { type = "exec", command = ["/bin/true"] } ]

[[service]]
fwmark = 7
family = "ipv6"
scheduler = "mh"

[[service.real_server]]
address = "2001:db8::10"
check = { type = "tcp", port = 443 }
'''


def test_full_example():
    cfg = parse(FULL)
    d = cfg.director
    assert (d.netns, d.control, d.metrics, d.drain_timeout, d.resync_interval) == (
        "lab-director", "/run/test.sock", ("127.0.0.1", 9587), 30.0, 60.0)
    s = cfg.services[0]
    assert s.service == ipvs.Service(address="10.200.0.100", port=80, scheduler="wrr",
                                     flags=ipvs.ServiceFlags.PERSISTENT, timeout=300)
    assert s.name == "TCP 10.200.0.100:80"
    assert (s.quorum, s.hysteresis, s.on_failure) == (2, 1, "quiesce")
    assert s.sorry_server == ipvs.Destination("10.200.3.2", 8000, weight=1,
                                              forward=ipvs.Forward.MASQ)
    r1, r2, r3 = s.real_servers
    assert r1.destination == ipvs.Destination("10.200.1.2", 8000, weight=3,
                                              forward=ipvs.Forward.MASQ)
    c = r1.checks[0]
    assert (c.type, c.address, c.port, c.interval, c.retry_interval, c.timeout, c.rise,
            c.fall, c.initial) == ("http", "10.200.1.2", 8000, 2.0, 2.0, 1.0, 2, 2, "down")
    assert c.param("path") == "/health" and c.param("expect_status") == ((200, 299), (302, 302))
    assert c.param("verify") is None
    # per real server: merged over the service's check; a new type drops http keys
    assert r2.on_failure == "remove" and r2.checks[0].type == "tcp"
    assert r2.checks[0].params == () and r2.checks[0].interval == 2.0
    assert r2.notify_up == ("/bin/echo", "up")
    assert r3.destination.port == 80                     # the service's port
    assert [x.type for x in r3.checks] == ["http", "exec"]
    assert r3.checks[0].param("path") == "/a"
    fw = cfg.services[1]
    assert fw.name == "FWM 7 IPv6" and fw.service.family == socket.AF_INET6
    assert fw.real_servers[0].destination.port == 0
    assert fw.real_servers[0].checks[0].port == 443


def test_defaults_and_none_check():
    cfg = parse('[[service]]\naddress = "10.0.0.1"\nport = 53\nprotocol = "udp"\n'
                '[[service.real_server]]\naddress = "10.0.1.1"\n')
    d = cfg.director
    assert (d.control, d.metrics, d.drain_timeout, d.netns) == (
        "/run/ipvs-director.sock", None, 300.0, None)
    s = cfg.services[0]
    assert (s.on_failure, s.quorum, s.hysteresis, s.sorry_server) == ("quiesce", 1, 0, None)
    assert s.service.scheduler == "wlc"
    c = s.real_servers[0].checks[0]
    assert (c.type, c.rise, c.fall, c.initial, c.interval, c.timeout) == (
        "none", 2, 2, "down", 2.0, 1.0)
    assert s.real_servers[0].destination.forward == ipvs.Forward.ROUTE


def test_service_strings():
    assert service_name(ipvs.Service(address="10.0.0.1", port=80)) == "TCP 10.0.0.1:80"
    assert service_name(ipvs.Service(address="2001:db8::1", port=53,
                                     protocol="udp")) == "UDP [2001:db8::1]:53"
    assert service_name(ipvs.Service(address="10.0.0.1", port=9000,
                                     protocol="sctp")) == "SCTP 10.0.0.1:9000"
    assert service_name(ipvs.Service(fwmark=7)) == "FWM 7"
    assert service_name(ipvs.Service(fwmark=7, family=socket.AF_INET6)) == "FWM 7 IPv6"


BASE = '[[service]]\naddress = "10.0.0.1"\nport = 80\n\n[[service.real_server]]\naddress = "10.0.1.1"\n'


@pytest.mark.parametrize("extra,line,key,words", [
    ('weight = -1\n', 7, "service[0].real_server[0].weight", "0..2147483647"),
    ('forward = "nat"\n', 7, "service[0].real_server[0].forward", "masq"),
    ('colour = "red"\n', 7, "service[0].real_server[0].colour", "unknown key"),
    ('check = { type = "ping" }\n', 7, "service[0].real_server[0].check.type", "unknown check type"),
    ('check = { type = "http", expect_status = "2xx" }\n', 7,
     "service[0].real_server[0].check.expect_status", "bad status"),
    ('check = { type = "tcp", timeout = 0 }\n', 7, "service[0].real_server[0].check.timeout",
     "above 0"),
    ('check = { type = "exec", command = "true" }\n', 7,
     "service[0].real_server[0].check.command", "argv"),
    ('check = { type = "exec" }\n', 7, "service[0].real_server[0].check.type", "command"),
    ('check = { type = "http", expect_body = "(" }\n', 7,
     "service[0].real_server[0].check.expect_body", "regular expression"),
    ('check = { type = "tcp", initial = "maybe" }\n', 7,
     "service[0].real_server[0].check.initial", '"down" or "up"'),
    ('notify_up = "/bin/true"\n', 7, "service[0].real_server[0].notify_up", "argv"),
])
def test_semantic_errors_name_line_and_key(extra, line, key, words):
    with pytest.raises(ConfigError) as ei:
        parse(BASE + extra, "f.toml")
    e = ei.value
    assert (e.line, e.key) == (line, key), str(e)
    assert words in str(e) and str(e).startswith("f.toml:%d: %s: " % (line, key))


def test_errors_in_second_table_and_service_level():
    text = BASE + '\n[[service]]\nfwmark = 3\nport = 80\n'
    with pytest.raises(ConfigError) as ei:
        parse(text)
    assert (ei.value.line, ei.value.key) == (10, "service[1].port")
    text = BASE + '\n[[service]]\naddress = "10.0.0.1"\nport = 80\n'
    with pytest.raises(ConfigError, match="given twice") as ei:
        parse(text)
    assert ei.value.line == 8
    text = BASE.replace('port = 80\n', 'port = 80\nscheduler = "a-very-long-scheduler-name"\n')
    with pytest.raises(ConfigError) as ei:
        parse(text)
    assert (ei.value.line, ei.value.key) == (4, "service[0].scheduler")
    text = '[director]\ndrain_timeout = "long"\n' + BASE
    with pytest.raises(ConfigError) as ei:
        parse(text)
    assert (ei.value.line, ei.value.key) == (2, "director.drain_timeout")
    text = BASE + '[service.check]\ntype = "tcp"\nrise = 0\n'
    with pytest.raises(ConfigError) as ei:
        parse(text)
    assert (ei.value.line, ei.value.key) == (9, "service[0].check.rise")


def test_fwmark_real_server_check_needs_port():
    text = ('[[service]]\nfwmark = 1\n[service.check]\ntype = "tcp"\n'
            '[[service.real_server]]\naddress = "10.0.1.1"\n')
    with pytest.raises(ConfigError, match="needs port") as ei:
        parse(text)
    assert ei.value.key == "service[0].check.port"


def test_syntax_error_line():
    with pytest.raises(ConfigError) as ei:
        parse(BASE + "weight = \n", "x.toml")
    assert ei.value.line == 7 and "TOML syntax" in str(ei.value)
    assert str(ei.value).startswith("x.toml:7:")


def test_load_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load(str(tmp_path / "nope.toml"))


def test_check_option_of_the_command(tmp_path):
    good = tmp_path / "good.toml"
    good.write_text(FULL)
    r = subprocess.run([sys.executable, "-m", "ipvs.director", "-c", str(good), "--check"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    bad = tmp_path / "bad.toml"
    bad.write_text(BASE + "weight = 1.5\n")
    r = subprocess.run([sys.executable, "-m", "ipvs.director", "-c", str(bad), "--check"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    assert "bad.toml:7: service[0].real_server[0].weight:" in r.stderr


def test_example_file_validates():
    import os
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    path = os.path.join(root, "examples", "director.toml")
    if not os.path.exists(path):
        pytest.skip("examples/director.toml is not in this tree (installed-wheel run)")
    cfg = load(path)
    assert cfg.services

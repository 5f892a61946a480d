"""``ipvs.cli.rules`` (table calls as ``ipvsadm -R`` lines) and
``ipvs-director -c FILE diff`` on a stand-in kernel: its lines, exit
codes 0/1/2, health from a running director, and nothing written."""

from __future__ import annotations

import io

import pytest

import ipvs
from ipvs import Destination, Forward, Service
from ipvs._cli_parse import parse_args
from ipvs.cli import _api_call, rules
from ipvs.director import parse
from ipvs.director import diff as diff_mod
from ipvs.director._kernel import MemoryKernel
from tests.unit.test_director_control import api  # noqa: F401 (fixture)

SVC = Service(address="10.0.0.1", port=80, protocol="tcp", scheduler="wrr")
D1 = Destination(address="10.0.1.1", port=8080, weight=3, forward=Forward.MASQ)


# ------------------------------------------------------------ rules()

def test_rules_each_method():
    persistent = Service(address="10.0.0.2", port=443, protocol="tcp", scheduler="sh",
                         flags=ipvs.ServiceFlags.PERSISTENT, timeout=300)
    fw6 = Service(fwmark=7, family=10, scheduler="rr")
    calls = [
        ("add_service", SVC, None),
        ("update_service", persistent, None),
        ("delete_service", persistent, None),
        ("add_destination", SVC, D1),
        ("update_destination", SVC, D1.replace(weight=0)),
        ("delete_destination", SVC, D1),
        ("add_service", fw6, None),
        ("add_destination", fw6, Destination(address="2001:db8::1", port=0, weight=1,
                                             forward=Forward.ROUTE)),
        ("delete_destination", fw6, Destination(address="2001:db8::1", port=0, weight=1,
                                                forward=Forward.ROUTE)),
        ("delete_service", fw6, None),
        ("update_destination", SVC, D1.replace(upper_threshold=100, lower_threshold=10)),
    ]
    assert rules(calls) == [
        "-A -t 10.0.0.1:80 -s wrr",
        "-E -t 10.0.0.2:443 -s sh -p 300",
        "-D -t 10.0.0.2:443",
        "-a -t 10.0.0.1:80 -r 10.0.1.1:8080 -m -w 3",
        "-e -t 10.0.0.1:80 -r 10.0.1.1:8080 -m -w 0",
        "-d -t 10.0.0.1:80 -r 10.0.1.1:8080",
        "-A -f 7 -6 -s rr",
        "-a -f 7 -6 -r [2001:db8::1]:0 -g -w 1",
        "-d -f 7 -6 -r [2001:db8::1]:0",
        "-D -f 7 -6",
        "-e -t 10.0.0.1:80 -r 10.0.1.1:8080 -m -w 3 -x 100 -y 10",
    ]


def test_rules_parse_back_to_the_same_calls():
    """What ipvs -R (and ipvsadm -R) makes of the lines is the calls given."""
    calls = [("add_service", SVC, None), ("add_destination", SVC, D1),
             ("update_destination", SVC, D1.replace(weight=7, upper_threshold=9)),
             ("delete_destination", SVC, D1), ("delete_service", SVC, None)]
    for (method, svc, dest), line in zip(calls, rules(calls)):
        back = _api_call(parse_args(line.split(), in_restore=True))
        assert back is not None and back[0] == method, line
        assert back[1][0].key == svc.key
        if method in ("add_service", "update_service"):
            assert back[1][0] == svc
        if dest is not None:
            assert back[1][1].address == dest.address and back[1][1].port == dest.port
            if method != "delete_destination":
                assert back[1][1] == dest, line


def test_rules_refuses_other_calls():
    with pytest.raises(ValueError):
        rules([("flush", SVC, None)])
    with pytest.raises(ValueError):
        rules([("add_destination", SVC, None)])
    assert rules([]) == []


# ------------------------------------------------------------ diff

TEXT = '''
[director]
control = "%(dir)s/ctl.sock"
[[service]]
address = "10.0.0.1"
port = 80
scheduler = "wrr"
[service.check]
type = "none"
[[service.real_server]]
address = "10.0.1.1"
port = 8080
forward = "masq"
[[service.real_server]]
address = "10.0.1.2"
port = 8080
weight = 2
forward = "masq"
'''


@pytest.fixture
def kernel(monkeypatch):
    """The stand-in kernel every Director of the test opens."""
    k = MemoryKernel()
    monkeypatch.setattr("ipvs.director._kernel.Kernel", lambda netns=None: k)
    return k


def run_diff(path, sock=None):
    out, err = io.StringIO(), io.StringIO()
    rc = diff_mod.main(str(path), sock, out=out, err=err)
    return rc, out.getvalue().splitlines(), err.getvalue().splitlines()


def load_into(k, lines):
    """Apply -A/-a lines to the stand-in kernel, as ipvs -R would."""
    with k.handle() as h, h.batch() as b:
        for line in lines:
            method, args = _api_call(parse_args(line.split(), in_restore=True))
            getattr(b, method)(*args)


def test_diff_empty_kernel_then_same_then_changed(tmp_path, kernel):
    path = tmp_path / "d.toml"
    path.write_text(TEXT % {"dir": tmp_path})
    rc, out, err = run_diff(path)
    assert (rc, err) == (1, [])
    assert out == ["-A -t 10.0.0.1:80 -s wrr",
                   "-a -t 10.0.0.1:80 -r 10.0.1.1:8080 -m -w 1",
                   "-a -t 10.0.0.1:80 -r 10.0.1.2:8080 -m -w 2"]
    assert kernel.batches == []            # nothing written
    load_into(kernel, out)
    kernel.batches.clear()
    assert run_diff(path) == (0, [], [])
    path.write_text((TEXT % {"dir": tmp_path}).replace("weight = 2", "weight = 5")
                    .replace('scheduler = "wrr"', 'scheduler = "rr"'))
    rc, out, _ = run_diff(path)
    assert rc == 1
    assert out == ["-E -t 10.0.0.1:80 -s rr",
                   "-e -t 10.0.0.1:80 -r 10.0.1.2:8080 -m -w 5"]
    # a real server the file no longer names is drained first (weight 0)
    path.write_text((TEXT % {"dir": tmp_path}).split("[[service.real_server]]")[0]
                    + "[[service.real_server]]" + (TEXT % {"dir": tmp_path})
                    .split("[[service.real_server]]")[1])
    rc, out, _ = run_diff(path)
    assert (rc, out) == (1, ["-e -t 10.0.0.1:80 -r 10.0.1.2:8080 -m -w 0"])
    assert kernel.batches == []
    assert [p.name for p in tmp_path.iterdir()] == ["d.toml"]     # no state file either


def test_diff_bad_file_and_kernel_error(tmp_path, kernel):
    path = tmp_path / "d.toml"
    path.write_text((TEXT % {"dir": tmp_path}).replace('forward = "masq"',
                                                       'forward = "sideways"', 1))
    rc, out, err = run_diff(path)
    assert rc == 2 and out == []
    assert len(err) >= 1 and "forward" in err[0] and err[0].startswith("ipvs-director: ")
    rc, out, err = run_diff(tmp_path / "missing.toml")
    assert rc == 2 and "cannot read" in err[0]
    path.write_text(TEXT % {"dir": tmp_path})
    kernel.fail = ipvs.IPVSUnavailableError(2, "no IPVS here")
    rc, out, err = run_diff(path)
    assert rc == 2 and out == [] and err == [
        "ipvs-director: cannot read the kernel's table: no IPVS here [ENOENT]"]


def test_diff_takes_health_from_a_running_director(tmp_path, kernel, monkeypatch):
    path = tmp_path / "d.toml"
    path.write_text(TEXT % {"dir": tmp_path})
    rc, out, _ = run_diff(path)
    load_into(kernel, out)
    states = {("TCP 10.0.0.1:80", "10.0.1.1", 8080): {"state": "down"},
              ("TCP 10.0.0.1:80", "10.0.1.2", 8080): {"state": "up", "weight_override": 4}}
    asked = []

    def running(sock, timeout=10.0):
        asked.append(sock)
        return states
    monkeypatch.setattr(diff_mod, "running_states", running)
    rc, out, _ = run_diff(path)
    assert asked == [str(tmp_path / "ctl.sock")]
    assert (rc, out) == (1, ["-e -t 10.0.0.1:80 -r 10.0.1.1:8080 -m -w 0",
                             "-e -t 10.0.0.1:80 -r 10.0.1.2:8080 -m -w 4"])
    run_diff(path, sock="/elsewhere.sock")
    assert asked[-1] == "/elsewhere.sock"


def test_running_states_of_a_live_control_socket(api):
    NAME = "TCP 10.0.0.1:80"
    states = diff_mod.running_states(api[0])
    assert set(states) == {(NAME, "10.0.1.1", 8080), (NAME, "10.0.1.2", 8080)}
    assert states[(NAME, "10.0.1.1", 8080)]["state"] == "up"
    assert diff_mod.running_states(api[0] + ".none") is None


def test_rules_of_a_plan():
    """The Changes of apply(dry_run=True) are calls too."""
    web = Service(address="10.0.0.1", port=80, scheduler="wrr")
    rs = Destination("192.168.1.10", 8080, weight=3, forward=Forward.MASQ)
    with ipvs.IPVS(backend="memory") as lb:
        plan = lb.apply({web: [rs]}, dry_run=True)
        assert rules(plan.changes) == ["-A -t 10.0.0.1:80 -s wrr",
                                       "-a -t 10.0.0.1:80 -r 192.168.1.10:8080 -m -w 3"]
        assert lb.services() == []

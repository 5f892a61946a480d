"""ipvs.cli's parsing against Debian ipvsadm 1.31 (tests/unit/golden/errors.json).

Every invocation ipvsadm rejected before talking to the kernel must be
rejected here with the same message and exit status -- without a kernel:
the command line is fully checked before the handle is opened.  Every
invocation ipvsadm accepted must parse.
"""

import io
import json
import os
import socket

import pytest

from ipvs import Forward, Protocol, ServiceFlags, TunnelFlags, TunnelType
import ipvs.errors
from ipvs import cli

GOLDEN = os.path.join(os.path.dirname(__file__), "golden")
with open(os.path.join(GOLDEN, "errors.json")) as _f:
    CASES = json.load(_f)

# ipvsadm takes "-M 24" as the mask 0.0.0.24 (inet_aton); the model only has
# prefix lengths, so ipvs refuses non-contiguous masks.
KNOWN_DIFFERENT = {"-A -t 10.0.0.50:80 -p 10 -M 24"}
_KERNEL_ONLY = ("nosuchhost.invalid",)  # needs a resolver; ipvsadm rejects it


def _parse_level(case):
    """Did ipvsadm reject this before asking the kernel?"""
    if case["stdin"] is not None or case["args"][:1] == ["-R"]:
        return False
    err = case["stderr"]
    return case["rc"] == 2 or err.startswith("Try `ipvsadm") or err.endswith(
        (": unknown option\n", ": missing argument\n"))


def _run(args, stdin=""):
    out, err = io.StringIO(), io.StringIO()
    rc = cli.main(args, stdin=io.StringIO(stdin), stdout=out, stderr=err)
    return rc, out.getvalue(), err.getvalue()


PARSE_ERRORS = [c for c in CASES if _parse_level(c) and " ".join(c["args"]) not in KNOWN_DIFFERENT]
ACCEPTED = [c for c in CASES if not _parse_level(c) and c["stdin"] is None
            and c["args"][:1] != ["-R"] and " ".join(c["args"]) not in KNOWN_DIFFERENT]


@pytest.mark.parametrize("case", PARSE_ERRORS, ids=lambda c: " ".join(c["args"]) or "(none)")
def test_parse_errors_like_ipvsadm(case, monkeypatch):
    if any(k in " ".join(case["args"]) for k in _KERNEL_ONLY):
        monkeypatch.setattr(socket, "gethostbyname", _no_dns)
    def boom(*a, **k):
        raise AssertionError("the kernel must not be asked")
    monkeypatch.setattr(cli, "_open", boom)
    rc, out, err = _run(case["args"])
    assert (rc, out, err) == (case["rc"], case["stdout"], case["stderr"])


def _no_dns(name):
    if name == "localhost":
        return "127.0.0.1"
    raise socket.gaierror(-2, "Name or service not known")


@pytest.mark.parametrize("case", ACCEPTED, ids=lambda c: " ".join(c["args"]) or "(none)")
def test_accepted_commands_parse(case):
    try:
        a = cli.parse_args(case["args"])
    except cli.CliError as e:  # refused early, but exactly as the kernel made ipvsadm say
        assert (e.status, e.message + "\n") == (case["rc"], case["stderr"])
    else:
        assert a.command


def test_defaults():
    a = cli.parse_args(["-A", "-t", "10.0.0.1:80"])
    svc = cli.build_service(a)
    assert svc.scheduler == "wlc" and svc.timeout == 0 and svc.flags == ServiceFlags.NONE
    a = cli.parse_args(["-A", "-u", "10.0.0.1:53", "-p"])
    svc = cli.build_service(a)
    assert svc.timeout == 360 and svc.flags & ServiceFlags.PERSISTENT  # ipvsadm 1.31's default
    assert svc.protocol == Protocol.UDP
    a = cli.parse_args(["-a", "-t", "10.0.0.1:80", "-r", "192.168.1.10"])
    d = cli.build_destination(a, cli.build_service(a, full=False))
    assert (d.forward, d.weight, d.port) == (Forward.ROUTE, 1, 80)


def test_route_and_tunnel_keep_the_service_port():
    a = cli.parse_args(["-a", "-t", "10.0.0.1:80", "-r", "192.168.1.10:8080", "-g"])
    assert cli.build_destination(a, cli.build_service(a, full=False)).port == 80
    a = cli.parse_args(["-a", "-t", "10.0.0.1:80", "-r", "192.168.1.10:8080", "-m", "-w", "3"])
    d = cli.build_destination(a, cli.build_service(a, full=False))
    assert (d.port, d.forward, d.weight) == (8080, Forward.MASQ, 3)


def test_bundled_and_long_options():
    a = cli.parse_args(["-Lcn"])
    assert a.command == "list" and {"connection", "numeric"} <= set(a.seen)
    a = cli.parse_args(["--add-service", "--tcp-service=[2001:db8::1]:https", "--scheduler", "rr",
                        "--persistent", "--netmask", "64", "--pe", "sip"])
    svc = cli.build_service(a)
    assert svc.family == socket.AF_INET6 and svc.port == 443 and svc.netmask == 64
    assert svc.pe_name == "sip" and svc.timeout == 360


def test_fwmark_ipv6_and_masks():
    a = cli.parse_args(["-A", "-f", "8", "-6", "-s", "lc", "-p", "100", "-M", "64"])
    svc = cli.build_service(a)
    assert (svc.fwmark, svc.family, svc.netmask, svc.timeout) == (8, socket.AF_INET6, 64, 100)
    a = cli.parse_args(["-A", "-t", "10.0.0.1:443", "-p", "600", "-M", "255.255.255.0",
                        "-s", "sh", "-b", "sh-fallback,sh-port"])
    svc = cli.build_service(a)
    assert svc.netmask == 24 and svc.flags & ServiceFlags.SH_PORT and svc.flags & ServiceFlags.SH_FALLBACK


def test_tunnels():
    a = cli.parse_args(["-a", "-t", "10.0.0.1:80", "-r", "2001:db8::5", "-i", "--tun-type", "gue",
                        "--tun-port", "6080", "--tun-remcsum"])
    d = cli.build_destination(a, cli.build_service(a, full=False))
    assert (d.tunnel_type, d.tunnel_port, d.tunnel_flags) == (TunnelType.GUE, 6080, TunnelFlags.REMCSUM)
    assert d.port == 80 and d.family == socket.AF_INET6


def test_restore_parse_error_stops_there_like_ipvsadm(monkeypatch):
    # ipvsadm -R runs the lines before a bad one, prints only the bad line's
    # message and exits with its status
    lb = FakeLB()
    monkeypatch.setattr(cli, "_open", lambda *a: lb)
    rc, out, err = _run(["-R"], "-A -t 10.0.0.65:80 -s rr\n\n-a -t 10.0.0.65:80 -r 300.0.0.1\n"
                                "-A -t 10.0.0.66:80 -s rr\n")
    assert rc == 2 and err == "illegal real server address[:port] specified\n"
    assert [c[0] for c in lb.calls] == ["batch", "close"]
    rc, out, err = _run(["-R"], "-A -t 10.0.0.1:80\n-R\n")
    assert rc == 255 and err == "Try `ipvsadm -h' or 'ipvsadm --help' for more information.\n"
    rc, out, err = _run(["-R", "--line-numbers"], "-A -t 10.0.0.1:80\n-R\n")
    assert rc == 255 and err.startswith("line 2: Try `ipvsadm -h'")


def test_help_and_version():
    rc, out, err = _run(["-h"])
    assert rc == 0 and "--json" in out and out.startswith("ipvsadm v1.31")
    golden = open(os.path.join(GOLDEN, "help.txt")).read()
    # ipvsadm's help plus the three extra options
    extra = [l for l in out.splitlines() if l not in golden.splitlines()]
    assert len(extra) == 3
    rc, out, err = _run(["--version"])
    assert rc == 0 and out.startswith("ipvsadm v1.31")


class FakeLB:
    """Records calls; enough of ipvs.IPVS for the command paths."""

    def __init__(self):
        self.calls = []

    def __getattr__(self, name):
        def call(*a, **k):
            self.calls.append((name, a, k))
            if name == "batch":
                return FakeBatch()
        return call


class FakeBatch(FakeLB):
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None


def test_commands_reach_the_handle(monkeypatch):
    lb = FakeLB()
    monkeypatch.setattr(cli, "_open", lambda *a: lb)
    assert _run(["-A", "-t", "10.0.0.1:80", "-s", "rr"])[0] == 0
    assert _run(["--set", "900", "0", "300"])[0] == 0
    assert _run(["-Z"])[0] == 0
    assert _run(["--start-daemon", "master", "--mcast-interface", "eth0", "--syncid", "7"])[0] == 0
    names = [c[0] for c in lb.calls]
    assert names == ["add_service", "close", "set_timeouts", "close", "zero", "close",
                     "start_daemon", "close"]
    assert lb.calls[2][2] == {"tcp": 900, "tcp_fin": None, "udp": 300}


def test_kernel_error_messages():
    import errno
    from ipvs.errors import IPVSError
    def m(op, err):
        return ipvs.errors.ipvsadm_message(IPVSError(err, "x", op))
    assert m("add_service", errno.EEXIST) == "Service already exists"
    assert m("update_service", errno.ESRCH) == "No such service"
    assert m("add_destination", errno.ESRCH) == "Service not defined"
    assert m("update_destination", errno.ENOENT) == "No such destination"
    assert m("add_service", errno.ENOENT) == "Scheduler or persistence engine not found"
    assert m("add_destination", errno.ERANGE) == "Numerical result out of range"
    assert m("stop_daemon", errno.ESRCH) == "No daemon is running"
    assert m("start_daemon", errno.ENODEV) == "No such device"

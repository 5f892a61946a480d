"""Issue 3, errors: each errno the kernel returns for these operations,
triggered for real, becomes the right exception class with a message that
says what happened. The errno values are the kernel's (docs/KERNEL-FACTS.md);
where Debian's ipvsadm reports the same condition, it is checked to fail too."""
import errno
import os
import socket
import subprocess
import sys
import time

import pytest

import ipvs
from ipvs import Daemon, Destination, Forward, Service

from .conftest import netlink_only

pytestmark = pytest.mark.kernel

SVC = Service(address="10.0.0.1", port=80, scheduler="rr")
MISSING = Service(address="10.0.0.2", port=80, scheduler="rr")
DEST = Destination("192.168.1.1", 80, forward="masq")


def check(excinfo, cls, err, op, *words):
    e = excinfo.value
    assert type(e) is cls, (type(e), e)
    assert e.errno == err and e.operation == op
    text = str(e)
    for w in words:
        assert w in text, (w, text)
    return e


# ---------------------------------------------------------- service missing

@pytest.mark.parametrize("op", ["get_service", "update_service", "delete_service", "zero"])
def test_service_missing(ipvs_handle, op):
    lb = ipvs_handle
    lb.add_service(SVC)
    with pytest.raises(ipvs.ServiceNotFoundError) as e:
        getattr(lb, op)(MISSING)
    check(e, ipvs.ServiceNotFoundError, errno.ESRCH, op, "no such service", "10.0.0.2:80")
    assert isinstance(e.value, LookupError)


@pytest.mark.parametrize("op", ["add_destination", "update_destination", "delete_destination"])
def test_service_missing_for_destination_ops(ipvs_handle, ipvsadm, op):
    lb = ipvs_handle
    with pytest.raises(ipvs.ServiceNotFoundError) as e:
        getattr(lb, op)(MISSING, DEST)
    check(e, ipvs.ServiceNotFoundError, errno.ESRCH, op, "10.0.0.2:80")
    assert ipvsadm.run("-a", "-t", "10.0.0.2:80", "-r", "192.168.1.1:80").returncode != 0


def test_destinations_of_missing_service(ipvs_handle):
    """The kernel differs: netlink's GET_DEST dump of a missing service is
    empty, sockopt's GET_DESTS answers ESRCH. The library makes both raise
    ServiceNotFoundError (netlink: one GET_SERVICE after an empty dump), while
    an existing service without destinations is an empty list."""
    lb = ipvs_handle
    with pytest.raises(ipvs.ServiceNotFoundError) as e:
        lb.destinations(MISSING)
    check(e, ipvs.ServiceNotFoundError, errno.ESRCH, "destinations", "10.0.0.2:80")
    lb.add_service(MISSING)
    assert lb.destinations(MISSING) == []


def test_service_exists(ipvs_handle):
    lb = ipvs_handle
    lb.add_service(SVC)
    with pytest.raises(ipvs.ServiceExistsError) as e:
        lb.add_service(SVC.replace(scheduler="wlc"))
    check(e, ipvs.ServiceExistsError, errno.EEXIST, "add_service", "already exists", "10.0.0.1:80")
    assert isinstance(e.value, FileExistsError)


# ------------------------------------------------------ destination missing

@pytest.mark.parametrize("op", ["update_destination", "delete_destination"])
def test_destination_missing(ipvs_handle, ipvsadm, op):
    lb = ipvs_handle
    lb.add_service(SVC)
    lb.add_destination(SVC, Destination("192.168.1.9", 80))
    with pytest.raises(ipvs.DestinationNotFoundError) as e:
        getattr(lb, op)(SVC, DEST)
    check(e, ipvs.DestinationNotFoundError, errno.ENOENT, op, "no such destination",
          "192.168.1.1:80", "10.0.0.1:80")
    assert ipvsadm.run("-d", "-t", "10.0.0.1:80", "-r", "192.168.1.1:80").returncode != 0


def test_destination_exists(ipvs_handle):
    lb = ipvs_handle
    lb.add_service(SVC)
    lb.add_destination(SVC, DEST)
    with pytest.raises(ipvs.DestinationExistsError) as e:
        lb.add_destination(SVC, DEST.replace(weight=5))
    check(e, ipvs.DestinationExistsError, errno.EEXIST, "add_destination", "already exists",
          "192.168.1.1:80")


# --------------------------------------------- scheduler / engine missing

@pytest.mark.parametrize("op", ["add_service", "update_service"])
def test_scheduler_missing(ipvs_handle, ipvsadm, op):
    """"twos" does not exist in the sandbox's 6.1 kernel."""
    lb = ipvs_handle
    if op == "update_service":
        lb.add_service(SVC)
    with pytest.raises(ipvs.SchedulerNotFoundError) as e:
        getattr(lb, op)(SVC.replace(scheduler="twos"))
    check(e, ipvs.SchedulerNotFoundError, errno.ENOENT, op, "scheduler 'twos' not found",
          "ip_vs_twos")
    assert ipvsadm.run("-A", "-t", "10.0.0.3:80", "-s", "twos").returncode != 0
    assert lb.services() == ([SVC] if op == "update_service" else [])


@pytest.mark.parametrize("op", ["add_service", "update_service"])
def test_persistence_engine_missing(ipvs_handle, op):
    lb = ipvs_handle
    bad = SVC.replace(timeout=30, pe_name="nosuchpe")
    if op == "update_service":
        lb.add_service(SVC)
    netlink_only(lb, getattr(lb, op), bad)
    with pytest.raises(ipvs.PersistenceEngineNotFoundError) as e:
        getattr(lb, op)(bad)
    check(e, ipvs.PersistenceEngineNotFoundError, errno.ENOENT, op,
          "persistence engine 'nosuchpe' not found")


# ------------------------------------------------------------------ daemons

def test_daemon_already_running(ipvs_handle, ipvsadm):
    lb = ipvs_handle
    lb.start_daemon(Daemon("master", "lo"))
    with pytest.raises(ipvs.DaemonExistsError) as e:
        lb.start_daemon(Daemon("master", "lo", sync_id=5))
    check(e, ipvs.DaemonExistsError, errno.EEXIST, "start_daemon", "master",
          "already running")
    # a backup next to it is fine
    lb.start_daemon(Daemon("backup", "lo"))
    with pytest.raises(ipvs.DaemonExistsError):
        lb.start_daemon(Daemon("backup", "lo"))
    time.sleep(0.3)
    lb.stop_daemon("master")
    lb.stop_daemon("backup")


@pytest.mark.parametrize("state", ["master", "backup"])
def test_daemon_not_running(ipvs_handle, ipvsadm, state):
    lb = ipvs_handle
    with pytest.raises(ipvs.DaemonNotRunningError) as e:
        lb.stop_daemon(state)
    check(e, ipvs.DaemonNotRunningError, errno.ESRCH, "stop_daemon",
          "no %s sync daemon is running" % state)
    assert ipvsadm.run("--stop-daemon", state).returncode != 0


@pytest.mark.parametrize("state", ["master", "backup"])
def test_daemon_unknown_interface(ipvs_handle, state):
    lb = ipvs_handle
    with pytest.raises(ipvs.InvalidRequestError) as e:
        lb.start_daemon(Daemon(state, "nosuch0"))
    check(e, ipvs.InvalidRequestError, errno.ENODEV, "start_daemon",
          "no such interface 'nosuch0'")
    assert lb.daemons() == []


def test_daemon_refused_while_mixed_family_destination(ipvs_handle):
    """The kernel refuses to start a sync daemon (EINVAL) while any
    destination's family differs from its service's - even on a bad interface
    (that check comes first) - and, the other way round, refuses a
    mixed-family destination (EINVAL) while a daemon runs."""
    lb = ipvs_handle
    lb.add_service(SVC)
    mixed = Destination("2001:db8::5", 80, forward="tunnel")
    netlink_only(lb, lb.add_destination, SVC, mixed)
    lb.add_destination(SVC, mixed)
    for d in (Daemon("master", "lo"), Daemon("backup", "nosuch0")):
        with pytest.raises(ipvs.InvalidRequestError) as e:
            lb.start_daemon(d)
        check(e, ipvs.InvalidRequestError, errno.EINVAL, "start_daemon",
              "a destination whose family differs")
    lb.delete_destination(SVC, mixed)
    lb.start_daemon(Daemon("master", "lo"))
    with pytest.raises(ipvs.InvalidRequestError) as e:
        lb.add_destination(SVC, mixed)
    check(e, ipvs.InvalidRequestError, errno.EINVAL, "add_destination",
          "while a sync daemon runs")
    time.sleep(0.3)
    lb.stop_daemon("master")
    lb.add_destination(SVC, mixed)


def test_master_daemon_ipv6_group_on_lo_is_unreachable(ipvs_handle):
    lb = ipvs_handle
    d = Daemon("master", "lo", mcast_group="ff02::99")
    netlink_only(lb, lb.start_daemon, d)
    with pytest.raises(ipvs.InvalidRequestError) as e:
        lb.start_daemon(d)
    check(e, ipvs.InvalidRequestError, errno.ENETUNREACH, "start_daemon", "'lo'",
          "network unreachable")
    assert lb.daemons() == []


# ----------------------------------------------- weight and thresholds

def _raw_destination(**fields):
    """DEST with fields the model would refuse (to reach the kernel)."""
    dest = DEST.replace()
    for k, v in fields.items():
        object.__setattr__(dest, k, v)
    return dest


@pytest.mark.parametrize("op", ["add_destination", "update_destination"])
def test_negative_weight(ipvs_handle, ipvsadm, op):
    lb = ipvs_handle
    lb.add_service(SVC)
    if op == "update_destination":
        lb.add_destination(SVC, DEST)
    with pytest.raises(ValueError, match="Destination.weight"):  # the model refuses it
        DEST.replace(weight=-1)
    with pytest.raises(ipvs.InvalidRequestError) as e:          # and so does every kernel
        getattr(lb, op)(SVC, _raw_destination(weight=-1))
    check(e, ipvs.InvalidRequestError, errno.ERANGE, op, "weight -1 is negative",
          "192.168.1.1:80")
    assert isinstance(e.value, ValueError)
    assert ipvsadm.run("-a", "-t", "10.0.0.1:80", "-r", "192.168.1.3:80", "-w", "-1").returncode != 0


@pytest.mark.parametrize("op", ["add_destination", "update_destination"])
def test_lower_threshold_above_upper(ipvs_handle, op):
    lb = ipvs_handle
    lb.add_service(SVC)
    if op == "update_destination":
        lb.add_destination(SVC, DEST)
    with pytest.raises(ValueError, match="lower_threshold"):  # the model refuses it
        DEST.replace(upper_threshold=5, lower_threshold=10)
    with pytest.raises(ipvs.InvalidRequestError) as e:       # and so does every kernel
        getattr(lb, op)(SVC, _raw_destination(upper_threshold=5, lower_threshold=10))
    check(e, ipvs.InvalidRequestError, errno.ERANGE, op,
          "lower threshold 10 is above upper threshold 5")


# --------------------------------------------------------- bad netmask

def _raw_service(**fields):
    """A Service with fields the model would refuse (to reach the kernel)."""
    svc = Service(address="2001:db8::1", port=80, scheduler="rr", timeout=30)
    for k, v in fields.items():
        object.__setattr__(svc, k, v)
    return svc


@pytest.mark.parametrize("prefix", [0, 129, 255])
def test_bad_ipv6_netmask(ipvs_handle, prefix):
    lb = ipvs_handle
    with pytest.raises(ValueError):   # the model refuses it before any syscall
        Service(address="2001:db8::1", port=80, timeout=30, netmask=prefix)
    bad = _raw_service(netmask=prefix)
    netlink_only(lb, lb.add_service, bad)
    with pytest.raises(ipvs.InvalidRequestError) as e:
        lb.add_service(bad)
    check(e, ipvs.InvalidRequestError, errno.EINVAL, "add_service",
          "prefix length 1..128, got %d" % prefix)
    assert lb.services() == []


def test_bad_ipv6_netmask_on_update(ipvs_handle):
    """SET_SERVICE checks the IPv6 prefix length as NEW_SERVICE does."""
    lb = ipvs_handle
    good = Service(address="2001:db8::1", port=80, scheduler="rr", timeout=30, netmask=64)
    netlink_only(lb, lb.add_service, good)
    lb.add_service(good)
    with pytest.raises(ipvs.InvalidRequestError) as e:
        lb.update_service(_raw_service(netmask=200))
    check(e, ipvs.InvalidRequestError, errno.EINVAL, "update_service", "got 200")
    assert lb.get_service(good).netmask == 64


# ---------------------------------------------- family mismatch, tunnels

@pytest.mark.parametrize("fwd", [Forward.MASQ, Forward.ROUTE, Forward.LOCAL, Forward.BYPASS])
def test_address_family_mismatch_without_tunnel(ipvs_handle, ipvsadm, fwd):
    lb = ipvs_handle
    lb.add_service(SVC)
    d = Destination("2001:db8::5", 80, forward=fwd)
    netlink_only(lb, lb.add_destination, SVC, d)
    with pytest.raises(ipvs.InvalidRequestError) as e:
        lb.add_destination(SVC, d)
    check(e, ipvs.InvalidRequestError, errno.EINVAL, "add_destination",
          "address family differs", "only TUNNEL")
    assert lb.destinations(SVC) == []
    # the same on update: a tunnel may not turn into something else
    t = d.replace(forward=Forward.TUNNEL)
    lb.add_destination(SVC, t)
    with pytest.raises(ipvs.InvalidRequestError) as e:
        lb.update_destination(SVC, d)
    check(e, ipvs.InvalidRequestError, errno.EINVAL, "update_destination", "only TUNNEL")
    assert lb.destinations(SVC) == [t]


def test_gue_tunnel_without_port(ipvs_handle):
    lb = ipvs_handle
    lb.add_service(SVC)
    d = Destination("192.168.1.1", 80, forward="tunnel", tunnel_type="gue")
    netlink_only(lb, lb.add_destination, SVC, d)
    with pytest.raises(ipvs.InvalidRequestError) as e:
        lb.add_destination(SVC, d)
    check(e, ipvs.InvalidRequestError, errno.EINVAL, "add_destination", "needs a tunnel port")


@pytest.mark.parametrize("addr", ["224.0.0.1", "0.0.0.0", "255.255.255.255"])
def test_destination_address_not_unicast(ipvs_handle, addr):
    lb = ipvs_handle
    lb.add_service(SVC)
    with pytest.raises(ipvs.InvalidRequestError) as e:
        lb.add_destination(SVC, Destination(addr, 80))
    check(e, ipvs.InvalidRequestError, errno.EINVAL, "add_destination", "not a unicast")
    assert "lo" not in str(e.value).replace("local", "")   # lo is up here: never guessed


@pytest.mark.parametrize("backend", ["netlink", "sockopt"])
def test_destination_refused_while_lo_is_down_says_so(backend):
    """Issue 14: the lo hint only where lo really is down."""
    from ipvs import netns
    with netns.temporary() as ns:                 # lo still down
        with ipvs.IPVS(netns=ns, backend=backend) as lb:
            lb.add_service(SVC)
            with pytest.raises(ipvs.InvalidRequestError) as e:
                lb.add_destination(SVC, Destination("192.168.1.1", 80))
            check(e, ipvs.InvalidRequestError, errno.EINVAL, "add_destination", "lo is down")
            netns.link_up(ns, "lo")
            lb.add_destination(SVC, Destination("192.168.1.1", 80))   # now taken


# -------------------------------------------------------------- permission

PERM_SCRIPT = r"""
import sys, ipvs
ns, backend = sys.argv[1], sys.argv[2]
try:
    with ipvs.IPVS(netns=ns, backend=backend) as lb:
        lb.services()
except ipvs.IPVSPermissionError as e:
    print("PERM", e.errno, e.operation, isinstance(e, PermissionError), str(e))
except Exception as e:
    print("OTHER", type(e).__name__, e)
else:
    print("OK")
"""


def test_permission_denied_without_cap_net_admin(ipvs_netns, ipvs_backend):
    """Every IPVS operation needs CAP_NET_ADMIN (GETs included); dropped from
    the bounding, effective and inheritable sets, the kernel says EPERM."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in [os.getcwd(), env.get("PYTHONPATH")] if p)
    cmd = ["capsh", "--drop=cap_net_admin", "--",
           "-c", '"$0" -c "$1" "$2" "$3"', sys.executable, PERM_SCRIPT, ipvs_netns, ipvs_backend]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    words = out.stdout.split()
    assert words[:2] == ["PERM", str(errno.EPERM)], out.stdout
    assert words[3] == "True"                          # also a PermissionError
    assert "permission denied" in out.stdout and "CAP_NET_ADMIN" in out.stdout
    # with the capability the same works
    with ipvs.IPVS(netns=ipvs_netns, backend=ipvs_backend) as lb:
        assert lb.services() == []


def test_permission_denied_for_every_kind_of_call(ipvs_netns, ipvs_backend, ipvsadm):
    ipvsadm("-A", "-t", "10.0.0.1:80", "-s", "rr")
    script = r"""
import sys, ipvs
from ipvs import Service, Destination, Daemon
ns, backend = sys.argv[1], sys.argv[2]
svc = Service(address="10.0.0.1", port=80, scheduler="rr")
results = []
try:
    lb = ipvs.IPVS(netns=ns, backend=backend)
except ipvs.IPVSPermissionError as e:
    print("open", e.errno); sys.exit(0)
for name, fn in [("services", lambda: lb.services()), ("add_service", lambda: lb.add_service(svc.replace(port=81))),
                 ("delete_service", lambda: lb.delete_service(svc)),
                 ("add_destination", lambda: lb.add_destination(svc, Destination("192.168.1.1", 80))),
                 ("timeouts", lambda: lb.timeouts()), ("set_timeouts", lambda: lb.set_timeouts(tcp=5)),
                 ("daemons", lambda: lb.daemons()), ("start_daemon", lambda: lb.start_daemon(Daemon("master", "lo"))),
                 ("zero", lambda: lb.zero()), ("flush", lambda: lb.flush()), ("info", lambda: lb.info())]:
    try:
        fn(); results.append(name + "=ok")
    except ipvs.IPVSPermissionError as e:
        results.append(name + "=%d" % e.errno)
    except Exception as e:
        results.append(name + "=" + type(e).__name__)
print(" ".join(results))
"""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in [os.getcwd(), env.get("PYTHONPATH")] if p)
    out = subprocess.run(["capsh", "--drop=cap_net_admin", "--", "-c", '"$0" -c "$1" "$2" "$3"',
                          sys.executable, script, ipvs_netns, ipvs_backend],
                         capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    res = out.stdout.split()
    if res[0] == "open":
        # sockopt: the version probe at open time already needs the capability
        assert ipvs_backend == "sockopt" and res[1] == str(errno.EPERM)
    else:
        assert all(r.endswith("=%d" % errno.EPERM) for r in res), res
    # nothing changed
    assert ipvsadm("-Sn").splitlines() == ["-A -t 10.0.0.1:80 -s rr"]

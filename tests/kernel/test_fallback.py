"""backend="auto": netlink, and sockopt only when the IPVS genetlink family is
missing.

The family cannot be unregistered while ip_vs is loaded, so the missing family
is simulated with the C layer's test-only hook: IPVS_TEST_NETLINK_FAMILY names
the family to resolve instead of "IPVS" (csrc/netlink.c). The environment is
read by C (getenv) at every open, so each case runs in a child interpreter
whose environment carries it.
"""
import json
import os
import subprocess
import sys
import textwrap

import pytest

import ipvs
from ipvs import Destination, Service

pytestmark = pytest.mark.kernel

CHILD = textwrap.dedent("""
    import json, sys
    import ipvs
    from ipvs import Destination, Service
    netns = sys.argv[1]
    out = {}
    with ipvs.IPVS(netns=netns) as lb:
        out["auto"] = lb.backend
        lb.flush()   # the test's own fresh namespace
        svc = Service(address="10.7.0.1", port=80, scheduler="rr")
        lb.add_service(svc)
        lb.add_destination(svc, Destination("192.168.7.1", 8080, forward="masq", weight=3))
        out["services"] = lb.services() == [svc]
    with ipvs.IPVS(netns=netns, backend="sockopt") as lb:
        out["sockopt"] = lb.backend
    try:
        ipvs.IPVS(netns=netns, backend="netlink")
    except ipvs.IPVSError as e:
        out["netlink"] = [type(e).__name__, e.errno, str(e), e.operation]
    else:
        out["netlink"] = "opened"
    print(json.dumps(out))
""")


def run_child(netns, family):
    env = dict(os.environ)
    if family is None:
        env.pop("IPVS_TEST_NETLINK_FAMILY", None)
    else:
        env["IPVS_TEST_NETLINK_FAMILY"] = family
    proc = subprocess.run([sys.executable, "-c", CHILD, netns], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_auto_falls_back_to_sockopt_without_the_family(ipvs_netns):
    out = run_child(ipvs_netns, "IPVS_NOPE")
    assert out["auto"] == "sockopt"
    assert out["sockopt"] == "sockopt"
    name, err, text, op = out["netlink"]
    assert name == "IPVSUnavailableError" and op == "open"
    assert "modprobe ip_vs" in text
    # what the fallback handle wrote is real: netlink (in this process) sees it
    svc = Service(address="10.7.0.1", port=80, scheduler="rr")
    with ipvs.IPVS(netns=ipvs_netns, backend="netlink") as nl:
        assert nl.services() == [svc]
        assert nl.destinations(svc) == [Destination("192.168.7.1", 8080, forward="masq",
                                                    weight=3)]
    assert out["services"] is True   # the fallback handle reads it back too


def test_auto_uses_netlink_when_the_family_exists(ipvs_netns):
    out = run_child(ipvs_netns, None)
    assert out["auto"] == "netlink" and out["netlink"] == "opened"
    # an explicitly named real family behaves like the default
    out = run_child(ipvs_netns, "IPVS")
    assert out["auto"] == "netlink" and out["netlink"] == "opened"


def test_auto_in_process_is_netlink(ipvs_netns):
    assert "IPVS_TEST_NETLINK_FAMILY" not in os.environ
    with ipvs.IPVS(netns=ipvs_netns) as lb:
        assert lb.backend == "netlink"
        assert repr(lb).startswith("<ipvs.IPVS backend='netlink'")

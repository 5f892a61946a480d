"""backend="auto": netlink, and sockopt only when the IPVS genetlink family is
missing.

The family cannot be unregistered while ip_vs is loaded, so the missing family
is simulated with the C layer's test hook: IPVS_TEST_NETLINK_FAMILY names the
family to resolve instead of "IPVS" (csrc/netlink.c). The hook exists only in
a test build (-DIPVS_TEST_HOOKS): `make test-hooks` builds one in a private
copy and runs this file there with IPVS_REQUIRE_TEST_BUILD=1, and CI runs
`make test-hooks` (.ci/run). In the normal build the tests that need the hook
skip, but only after asserting that CI does run them that way; and the normal
build is checked to ignore the variable (the release has no test switch).
The environment is read by C (getenv) at every open, so each case runs in a
child interpreter whose environment carries it.
"""
import json
import os
import pathlib
import re
import subprocess
import sys
import textwrap

import pytest

import ipvs
from ipvs import Destination, Service, _libipvs

ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture
def test_build():
    """Pass in a -DIPVS_TEST_HOOKS build; elsewhere skip with a reason the
    assertions here back (CI runs this file in such a build), or fail when
    IPVS_REQUIRE_TEST_BUILD=1 (make test-hooks) says the build must be one."""
    if _libipvs.TEST_BUILD:
        return
    assert os.environ.get("IPVS_REQUIRE_TEST_BUILD") != "1", (
        "IPVS_REQUIRE_TEST_BUILD=1 but ipvs._libipvs is not a -DIPVS_TEST_HOOKS build")
    if not (ROOT / ".ci" / "run").exists():   # tests copied beside an installed wheel
        pytest.skip("needs the -DIPVS_TEST_HOOKS build of a source tree (make test-hooks); "
                    "an installed wheel is a release build")
    ci = (ROOT / ".ci" / "run").read_text()
    assert re.search(r"^make test-hooks\b", ci, re.M), ".ci/run no longer runs make test-hooks"
    mk = (ROOT / "Makefile").read_text()
    recipe = mk[mk.index("\ntest-hooks:"):].split("\n\n", 1)[0]
    assert "-DIPVS_TEST_HOOKS" in recipe and "tests/kernel/test_fallback.py" in recipe, recipe
    pytest.skip("needs the -DIPVS_TEST_HOOKS build: runs in `make test-hooks` (CI: .ci/run)")

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


def test_auto_falls_back_to_sockopt_without_the_family(ipvs_netns, test_build):
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


def test_explicit_real_family_behaves_like_the_default(ipvs_netns, test_build):
    out = run_child(ipvs_netns, "IPVS")
    assert out["auto"] == "netlink" and out["netlink"] == "opened"


def test_release_build_has_no_switch(ipvs_netns):
    """Without -DIPVS_TEST_HOOKS the variable changes nothing."""
    if _libipvs.TEST_BUILD:
        pytest.skip("this is the test build: the switch is meant to work here "
                    "(test_auto_falls_back_to_sockopt_without_the_family)")
    out = run_child(ipvs_netns, "IPVS_NOPE")
    assert out["auto"] == "netlink" and out["netlink"] == "opened"


def test_auto_in_process_is_netlink(ipvs_netns):
    assert "IPVS_TEST_NETLINK_FAMILY" not in os.environ
    with ipvs.IPVS(netns=ipvs_netns) as lb:
        assert lb.backend == "netlink"
        assert repr(lb).startswith("<ipvs.IPVS backend='netlink'")

"""The ipvs.testing plugin: skip/fail rules, ipvsadm wrapper, genetlink probe."""

import pytest

from ipvs import testing

pytest_plugins = ["pytester"]


def test_ipvsadm_command_line():
    tool = testing.Ipvsadm("ns1", binary="/usr/sbin/ipvsadm")
    assert tool.command("-Ln", 80) == ["ip", "netns", "exec", "ns1", "/usr/sbin/ipvsadm", "-Ln", "80"]
    assert "ns1" in repr(tool)


def test_ipvsadm_error_message():
    err = testing.IpvsadmError(2, ["ipvsadm", "-X"], "", "bad option\n")
    assert "bad option" in str(err) and "exited with 2" in str(err)


def test_genl_probe_finds_the_controller():
    # the controller family itself always exists wherever netlink does
    assert testing._genl_family_exists("nlctrl") in (True, None)
    assert testing._genl_family_exists("no-such-family-xyz") in (False, None)


KERNEL_TEST = """
import pytest

@pytest.mark.kernel
def test_needs_kernel():
    pass

def test_plain():
    pass

def test_netns_fixture(ipvs_netns):
    pass
"""


@pytest.fixture
def no_kernel(monkeypatch):
    monkeypatch.setattr(testing, "kernel_unavailable_reason", lambda: testing.NO_IPVS_REASON)


CONFTEST = """
def pytest_configure(config):
    import ipvs.testing as plugin
    if not config.pluginmanager.is_registered(plugin):
        config.pluginmanager.register(plugin, "ipvs.testing")
"""


def _run(pytester, *args):
    pytester.makepyfile(KERNEL_TEST)
    pytester.makeconftest(CONFTEST)  # no double registration with the entry point
    return pytester.runpytest_inprocess(*args)


def test_kernel_tests_skip_without_kernel(pytester, no_kernel, monkeypatch):
    monkeypatch.delenv(testing.REQUIRE_ENV, raising=False)
    result = _run(pytester, "-rs")
    result.assert_outcomes(passed=1, skipped=2)
    result.stdout.fnmatch_lines(["*no IPVS in this kernel*ipvs.sandbox*"])


def test_kernel_tests_fail_when_required(pytester, no_kernel, monkeypatch):
    monkeypatch.setenv(testing.REQUIRE_ENV, "1")
    result = _run(pytester, "-rE")
    result.assert_outcomes(passed=1, errors=2)
    result.stdout.fnmatch_lines(["*IPVS_REQUIRE_KERNEL=1 but no IPVS*"])


def test_marker_is_registered(pytester):
    result = _run(pytester, "--markers")
    result.stdout.fnmatch_lines(["@pytest.mark.kernel:*"])

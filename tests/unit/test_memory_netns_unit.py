"""The memory backend's namespaces and kernel profiles: a namespace it does
not know is refused as the kernel backend refuses a missing one (same
class, errno, message and filename), the registry (``ipvs.testing``'s
functions, ``ipvs.netns`` under the fixture), and the ``ipvs_memory``
fixture following the sandbox's booted kernel."""
from __future__ import annotations

import asyncio
import errno
import os

import pytest

import ipvs
import ipvs.netns
from ipvs import _memory, testing
from ipvs.testing import add_interface, add_netns, memory_auto, remove_netns, reset_memory

SVC = ipvs.Service(address="10.0.0.1", port=80, scheduler="rr")


@pytest.fixture(autouse=True)
def _fresh():
    reset_memory()
    yield
    reset_memory()


def kernel_error(netns):
    """What the kernel backend raises for a missing namespace (before any
    socket: it cannot open the namespace file)."""
    with pytest.raises(FileNotFoundError) as info:
        ipvs.IPVS(backend="netlink", netns=netns)
    return info.value


@pytest.mark.parametrize("netns", ["ipvs-no-such-ns-4711", "/run/netns/ipvs-no-such-ns-4711"])
def test_a_missing_namespace_is_refused_as_the_kernel_backend_refuses_it(netns):
    want = kernel_error(netns)
    with pytest.raises(FileNotFoundError) as info:
        ipvs.IPVS(backend="memory", netns=netns)
    got = info.value
    assert type(got) is type(want)
    assert (got.errno, got.strerror, got.filename) == (want.errno, want.strerror, want.filename)
    assert got.errno == errno.ENOENT and str(got) == str(want)
    with pytest.raises(FileNotFoundError):
        ipvs.AsyncIPVS(backend="memory", netns=netns)
    with memory_auto(), pytest.raises(FileNotFoundError):
        ipvs.IPVS(netns=netns)


def test_registered_namespaces_open_and_share_a_table():
    add_netns("lab")
    add_netns("lab")                        # twice is harmless
    with ipvs.IPVS(backend="memory", netns="lab") as a, \
            ipvs.IPVS(backend="memory", netns="lab", kernel="7") as b:
        a.add_service(SVC)
        assert b.services() == [SVC]
    # the name and the path are separate entries (and tables)
    with pytest.raises(FileNotFoundError):
        ipvs.IPVS(backend="memory", netns="/run/netns/lab")
    add_netns("/run/netns/lab")
    with ipvs.IPVS(backend="memory", netns="/run/netns/lab") as c:
        assert c.services() == []
    # None and descriptors always exist
    with ipvs.IPVS(backend="memory") as d, ipvs.IPVS(backend="memory", netns=7) as e:
        assert d.services() == [] and e.services() == []


def test_remove_refuses_new_handles_and_keeps_open_ones():
    add_netns("gone")
    lb = ipvs.IPVS(backend="memory", netns="gone")
    lb.add_service(SVC)
    remove_netns("gone")
    with pytest.raises(FileNotFoundError):
        ipvs.IPVS(backend="memory", netns="gone")
    assert lb.services() == []              # its table was emptied, the handle still works
    lb.add_service(SVC)
    lb.close()
    with pytest.raises(FileNotFoundError) as info:
        remove_netns("gone")
    assert info.value.errno == errno.ENOENT
    add_netns("gone")                       # made again: a fresh table
    with ipvs.IPVS(backend="memory", netns="gone") as again:
        assert again.services() == []


def test_reset_forgets_the_registry_and_add_interface_registers():
    add_netns("a")
    reset_memory()
    with pytest.raises(FileNotFoundError):
        ipvs.IPVS(backend="memory", netns="a")
    add_interface("eth0", netns="b")
    with ipvs.IPVS(backend="memory", netns="b") as lb:
        lb.start_daemon(ipvs.Daemon("master", "eth0"))
        assert [d.interface for d in lb.daemons()] == ["eth0"]


@pytest.mark.parametrize("bad, exc", [(True, TypeError), ("", ValueError), (3.5, TypeError)])
def test_bad_registry_arguments(bad, exc):
    with pytest.raises(exc):
        add_netns(bad)
    with pytest.raises((exc, ValueError)):
        remove_netns(bad)


def test_netns_functions_use_the_registry_under_the_fixture(ipvs_memory):
    assert ipvs.netns.names() == [] and not ipvs.netns.exists("blue")
    assert ipvs.netns.create("blue") == "/run/netns/blue"
    with pytest.raises(FileExistsError):
        ipvs.netns.create("blue")
    ipvs.netns.link_up("blue")              # lo is up
    with pytest.raises(OSError) as info:
        ipvs.netns.link_up("blue", "eth9")
    assert info.value.errno == errno.ENODEV
    with pytest.raises(FileNotFoundError):
        ipvs.netns.link_up("red")
    with ipvs.netns.temporary("t-") as name:
        assert ipvs.netns.names() == sorted(["blue", name])
        with ipvs.IPVS(netns=name) as lb:
            assert lb.backend == "memory"

        async def main():
            async with ipvs.AsyncIPVS(netns=name) as alb:
                return await alb.services()
        assert asyncio.run(main()) == []
    assert ipvs.netns.names() == ["blue"] and ipvs.netns.exists("blue")
    ipvs.netns.remove("blue")
    with pytest.raises(FileNotFoundError):
        ipvs.netns.remove("blue")
    with pytest.raises(FileNotFoundError):
        ipvs.IPVS(netns="blue")
    with pytest.raises(ValueError):
        ipvs.netns.create("a/b")            # names are checked as for the kernel


def test_netns_functions_are_real_outside_the_fixture(monkeypatch):
    assert not _memory.auto_enabled()
    seen = []
    monkeypatch.setattr(ipvs.netns.os.path, "lexists", lambda p: seen.append(p) or False)
    assert not ipvs.netns.exists("ipvs-no-such-ns-4711")
    assert seen == ["/run/netns/ipvs-no-such-ns-4711"]


@pytest.mark.parametrize("release, profile", [
    ("6.1.0-28-amd64", "6.1"), ("6.1.176", "6.1"), ("6.11.2", "6.1"), ("6.12.113", "6.12"),
    ("6.18.44-fc", "6.12"), ("7.2.7", "7"), ("8.0", "7"), ("5.10.0", None), ("odd", None),
])
def test_profile_of_a_kernel_release(release, profile):
    assert _memory.profile_of(release) == profile


def test_the_fixture_follows_the_booted_kernel_in_the_sandbox(monkeypatch):
    monkeypatch.delenv("IPVS_SANDBOX", raising=False)
    assert testing.sandbox_kernel_profile() is None
    monkeypatch.setenv("IPVS_SANDBOX", "1")
    monkeypatch.setattr(os, "uname", lambda: os.uname_result(
        ("Linux", "h", "6.1.176", "#1", "x86_64")))
    assert testing.sandbox_kernel_profile() == "6.1"
    # the fixture's generator, driven by hand
    fixture = testing.ipvs_memory
    body = getattr(fixture, "__wrapped__", None) or fixture._get_wrapped_function()
    gen = body()
    lb = next(gen)
    try:
        svc = ipvs.Service(address="10.0.0.1", port=80)
        lb.add_service(svc)
        # 6.1 keeps any u32 threshold; 6.12 (the default) refuses above 2**31-1
        lb.add_destination(svc, ipvs.Destination("192.168.1.1", 80, upper_threshold=2**31))
        with ipvs.IPVS() as auto:           # what the code under test opens
            assert auto.destinations(svc)[0].upper_threshold == 2**31
    finally:
        gen.close()
    with ipvs.IPVS(backend="memory") as default:
        default.add_service(svc)
        with pytest.raises(ipvs.InvalidRequestError):
            default.add_destination(svc, ipvs.Destination("192.168.1.1", 80,
                                                          upper_threshold=2**31))


def test_the_default_profile_stays_6_12():
    assert _memory.DEFAULT_KERNEL == "6.12"
    with ipvs.IPVS(backend="memory") as lb:
        assert lb._live().kernel == "6.12"

"""Runtime hardening that needs no IPVS: opening where the kernel has none
(this host) fails cleanly and leaks nothing; the consistent-read logic of
services(consistent=True) / table(consistent=True) against scripted dumps;
the errors of the hardening paths."""
import errno
import gc
import os

import pytest

import ipvs
from ipvs import Destination, IPVSError, Service
from ipvs.errors import InconsistentDumpError, from_errno
from ipvs.testing import _genl_family_exists

from ._host import genl_socket_refused


def _ipvs_present():
    return os.path.exists("/proc/net/ip_vs") or bool(_genl_family_exists("IPVS"))


def needs_no_ipvs(fn):
    fn = pytest.mark.skipif(_ipvs_present(), reason="this kernel has IPVS")(fn)
    return pytest.mark.skipif(genl_socket_refused(),
                              reason="generic netlink sockets cannot be opened here "
                                     "(an emulator): no kernel answer to test")(fn)


@needs_no_ipvs
@pytest.mark.parametrize("backend", ["auto", "netlink", "sockopt"])
def test_open_without_ipvs_says_how_to_load_it(backend):
    with pytest.raises(ipvs.IPVSUnavailableError) as info:
        ipvs.IPVS(backend=backend)
    e = info.value
    assert isinstance(e, IPVSError) and e.operation == "open"
    assert "modprobe ip_vs" in str(e)


@needs_no_ipvs
def test_failed_opens_leak_no_descriptors_or_memory():
    def fds():
        return len(os.listdir("/proc/self/fd"))

    def rss():
        with open("/proc/self/status") as f:
            return next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))

    for _ in range(200):
        with pytest.raises(ipvs.IPVSUnavailableError):
            ipvs.IPVS()
    gc.collect()
    fd0, rss0 = fds(), rss()
    for _ in range(5000):
        with pytest.raises(ipvs.IPVSUnavailableError):
            ipvs.IPVS()
    gc.collect()
    assert fds() == fd0
    assert rss() - rss0 < 2048


# --- consistent reads, against scripted dumps ---------------------------------

A = Service(address="10.0.0.1", port=80)
B = Service(address="10.0.0.2", port=80)
C = Service(address="10.0.0.3", port=80)
D1 = Destination("192.168.0.1", 80)
D2 = Destination("192.168.0.2", 80)


class FakeHandle:
    """Stands in for the Cython handle: returns the scripted dumps in turn."""

    closed = False

    def __init__(self, services=(), listings=()):
        self._services = list(services)
        self._listings = list(listings)
        self.calls = 0

    def services(self):
        self.calls += 1
        return list(self._services.pop(0))

    def listing(self):
        self.calls += 1
        return [(s, list(d)) for s, d in self._listings.pop(0)]


def _lb(fake):
    lb = object.__new__(ipvs.IPVS)
    lb._h = fake
    lb._netns = None
    return lb


def _close(lb):
    lb._h = None


def test_consistent_services_returns_when_two_dumps_agree():
    fake = FakeHandle(services=[[A, B], [A, C], [A, C]])
    lb = _lb(fake)
    assert lb.services(consistent=True) == [A, C]
    assert fake.calls == 3
    _close(lb)


def test_consistent_ignores_stats_but_not_settings():
    from ipvs import Stats
    a_stats = A.replace(stats=Stats(connections=5))
    a_rr = A.replace(scheduler="rr")
    a_rr_stats = a_rr.replace(stats=Stats(connections=9))
    fake = FakeHandle(services=[[A], [a_rr], [a_rr_stats]])
    lb = _lb(fake)
    got = lb.services(consistent=True)                # a_rr agrees with a_rr_stats
    assert got == [a_rr] and got[0].stats == Stats(connections=9)
    assert fake.calls == 3
    _close(lb)
    fake = FakeHandle(services=[[A], [a_rr], [a_stats], [a_stats]])
    lb = _lb(fake)
    assert lb.services(consistent=True) == [A]        # scheduler differs: no agreement
    assert fake.calls == 4
    _close(lb)


def test_duplicates_count_as_disagreement():
    # [A, A] twice in a row must not be accepted, nor paired with a clean dump
    fake = FakeHandle(services=[[A, A], [A, A], [A], [A]])
    lb = _lb(fake)
    assert lb.services(consistent=True) == [A]
    assert fake.calls == 4
    _close(lb)


def test_consistent_gives_up_after_the_bound():
    dumps = [[A], [B]] * 10
    fake = FakeHandle(services=dumps)
    lb = _lb(fake)
    with pytest.raises(InconsistentDumpError) as info:
        lb.services(consistent=True)
    e = info.value
    assert isinstance(e, IPVSError) and e.errno == errno.EAGAIN
    assert e.operation == "services" and "kept changing" in str(e)
    assert fake.calls == ipvs.IPVS.CONSISTENT_TRIES == 10
    _close(lb)


def test_default_is_one_dump():
    fake = FakeHandle(services=[[A, A]])
    lb = _lb(fake)
    assert lb.services() == [A, A]       # consistent=False: the dump as is
    assert fake.calls == 1
    with pytest.raises(TypeError):
        lb.services(True)                 # keyword-only
    _close(lb)


def test_consistent_table():
    l1 = [(A, [D1]), (B, [D1, D2])]
    l2 = [(A, [D1]), (B, [D1, D2, D2])]  # a repeated destination
    l3 = [(A, [D1]), (B, [D1, D2])]
    fake = FakeHandle(listings=[l1, l2, l3, l3])
    lb = _lb(fake)
    assert lb.table(consistent=True) == {A: [D1], B: [D1, D2]}
    assert fake.calls == 4
    fake = FakeHandle(listings=[[(A, [])], [(B, [])]] * 5)
    lb2 = _lb(fake)
    with pytest.raises(InconsistentDumpError) as info:
        lb2.table(consistent=True)
    assert info.value.operation == "table"
    _close(lb)
    _close(lb2)


def test_hardening_errnos_map_to_clear_errors():
    e = from_errno("services", errno.EDEADLK)
    assert type(e) is IPVSError and "signal handler" in str(e)
    e = from_errno("info", errno.ETIMEDOUT)
    assert isinstance(e, ipvs.IPVSTimeoutError) and isinstance(e, TimeoutError)
    e = from_errno("services", errno.ENOPROTOOPT)
    assert isinstance(e, ipvs.IPVSUnavailableError) and "modprobe ip_vs" in str(e)
    e = from_errno("services", errno.EPERM)
    assert isinstance(e, ipvs.IPVSPermissionError) and isinstance(e, PermissionError)

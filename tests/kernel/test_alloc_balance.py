"""Allocation balance of the C layer (issue 9).

Runs only when the extension was built with -DIPVS_DEBUG_ALLOC (csrc/alloc.h:
every malloc/calloc/realloc/free of csrc/*.c is counted), which
``make alloc-check`` does before running the whole kernel suite in the
sandbox; with a normal build every test here skips (or fails, when
IPVS_REQUIRE_ALLOC_COUNTERS=1, so that `make alloc-check` cannot pass
vacuously).

Besides the per-test checks, the session-scoped fixture ``alloc_session_guard``
asserts at the very end of the pytest session -- after every other kernel test
has run and closed its handles, and after gc.collect() -- that the library
freed exactly as many blocks as it allocated.
"""
import gc
import os
import socket

import pytest

import ipvs
from ipvs import _libipvs
from ipvs import (Daemon, Destination, Forward, IPVSError, Service, ServiceFlags, TunnelType)

pytestmark = pytest.mark.kernel

REQUIRE_ENV = "IPVS_REQUIRE_ALLOC_COUNTERS"
REASON = ("the extension was built without -DIPVS_DEBUG_ALLOC "
          "(`make alloc-check` builds that variant and runs the kernel suite)")


def _counts():
    c = _libipvs.debug_alloc_counts()
    if c is None:
        if os.environ.get(REQUIRE_ENV, "").strip().lower() in ("1", "true", "yes"):
            pytest.fail("%s=1 but %s" % (REQUIRE_ENV, REASON), pytrace=False)
        pytest.skip(REASON)
    return c


def _outstanding():
    """Blocks allocated by the C layer and not freed yet (after a collection)."""
    gc.collect()
    a, f = _counts()
    return a - f


@pytest.fixture(scope="session")
def alloc_session_guard():
    _counts()  # skips here with a normal build
    yield
    # session end: every test of the session is done and its handles closed
    gc.collect()
    gc.collect()
    a, f = _libipvs.debug_alloc_counts()
    assert a == f, ("C allocations at the end of the session: %d allocated, %d freed "
                    "(%d blocks leaked)" % (a, f, a - f))


def test_counters_active(alloc_session_guard, ipvs_handle):
    a0, f0 = _counts()
    ipvs_handle.services()
    a1, f1 = _counts()
    assert a1 >= a0 and f1 >= f0
    assert a1 - f1 >= 1          # the open handle's own allocation at least


def test_open_close_balanced(alloc_session_guard, ipvs_netns, ipvs_backend):
    before = _outstanding()
    for _ in range(20):
        with ipvs.IPVS(netns=ipvs_netns, backend=ipvs_backend) as lb:
            lb.info()
    assert _outstanding() == before
    # a handle dropped without close(): freed by the extension's dealloc
    lb = ipvs.IPVS(netns=ipvs_netns, backend=ipvs_backend)
    lb.services()
    with pytest.warns(ResourceWarning):
        del lb
        gc.collect()
    assert _outstanding() == before


def test_failed_open_balanced(alloc_session_guard, ipvs_backend):
    before = _outstanding()
    backend = _libipvs.BACKENDS[ipvs_backend]
    with open(os.devnull) as f:           # an fd that is not a network namespace
        for _ in range(5):
            with pytest.raises((IPVSError, OSError)):
                _libipvs.Handle(backend, f.fileno(), 1000)
    assert _outstanding() == before


def _table_workout(lb):
    v4 = Service("10.10.0.1", 80, "tcp", "rr")
    fw = Service(fwmark=7, scheduler="wrr")
    lb.add_service(v4)
    lb.add_service(fw)
    for i in range(1, 40):
        lb.add_destination(v4, Destination("192.168.10.%d" % i, 80, weight=i % 5,
                                           forward=Forward.MASQ))
    lb.add_destination(fw, Destination("192.168.11.1", 0))
    lb.update_destination(v4, Destination("192.168.10.1", 80, weight=9, forward=Forward.MASQ))
    lb.update_service(Service("10.10.0.1", 80, "tcp", "wlc", flags=ServiceFlags.PERSISTENT))
    for _ in range(3):
        lb.services()
        lb.destinations(v4)
        lb.table()
        lb.get_service(v4)
    # failures: the error paths free what they allocated
    for call in (lambda: lb.add_service(v4),
                 lambda: lb.get_service(Service("10.10.9.9", 9)),
                 lambda: lb.delete_destination(v4, Destination("192.168.99.1", 80)),
                 lambda: lb.add_service(Service("10.10.0.2", 80, scheduler="nosuch"))):
        with pytest.raises(IPVSError):
            call()
    try:
        lb.destinations(Service("10.10.9.9", 9))   # empty dump (netlink)
    except IPVSError:
        pass                                       # ESRCH (sockopt)
    # a batch with failures in it
    with pytest.raises(ipvs.BatchError):
        with lb.batch() as b:
            b.add_service(Service("10.10.1.1", 80))
            b.add_service(v4)                                   # exists
            b.add_destination(v4, Destination("192.168.10.1", 80))  # exists
            b.delete_service(Service("10.10.9.9", 9))           # missing
    lb.zero(v4)
    lb.zero()
    lb.timeouts()
    lb.set_timeouts(tcp=900)
    lb.daemons()
    lb.connections()
    lb.stats()
    lb.flush()
    assert lb.services() == []


def test_operations_balanced(alloc_session_guard, ipvs_handle):
    lb = ipvs_handle
    _table_workout(lb)          # warm-up: lazily grown buffers, caches
    before = _outstanding()
    _table_workout(lb)
    assert _outstanding() == before


def test_netlink_only_features_balanced(alloc_session_guard, ipvs_netns):
    with ipvs.IPVS(netns=ipvs_netns, backend="netlink") as lb:
        before = _outstanding()
        # (a daemon cannot start while a mixed-family destination exists)
        lb.start_daemon(Daemon("master", "lo", sync_id=3))
        lb.daemons()
        lb.stop_daemon("master")
        v6 = Service("2001:db8::1", 443, "tcp", "mh")
        lb.add_service(v6)
        lb.add_destination(v6, Destination("2001:db8::10", 443, forward=Forward.MASQ))
        lb.add_destination(v6, Destination("192.168.20.1", 443, forward=Forward.TUNNEL,
                                           tunnel_type=TunnelType.GUE, tunnel_port=6080))
        lb.table()
        lb.flush()
        assert _outstanding() == before


def test_sockopt_refusals_balanced(alloc_session_guard, ipvs_netns):
    with ipvs.IPVS(netns=ipvs_netns, backend="sockopt") as lb:
        before = _outstanding()
        for _ in range(5):
            with pytest.raises(ipvs.UnsupportedError):
                lb.add_service(Service("2001:db8::1", 443))
        assert socket.AF_INET6 not in {s.family for s in lb.services()}
        assert _outstanding() == before

"""Kernel tests run on both backends.

``ipvs_handle`` (from the ipvs.testing plugin) is overridden here with a
version parametrized over "netlink" and "sockopt", so every kernel test that
uses it runs twice. A test that exercises something the legacy sockopt
interface cannot express calls :func:`netlink_only`, which on sockopt asserts
that the call raises ``UnsupportedError`` and then skips the rest of the test.

Every kernel test also runs under :func:`start_namespace_untouched` (autouse):
the thread's network namespace and the IPVS table of the namespace the tests
started in are the same after the test as before.

Where kernels differ (docs/KERNEL-FACTS.md, "Differences between kernels"),
tests assert each kernel's own behaviour using ``KERNEL`` and the facts below.
"""
import os
import re
import time

import pytest

import ipvs
from ipvs import netns


def _own_table():
    """The starting namespace's IPVS table as /proc shows it (None when the
    ip_vs module is not loaded: there is no table to change then)."""
    try:
        with open("/proc/thread-self/net/ip_vs") as f:
            return f.read()
    except FileNotFoundError:
        return None


@pytest.fixture(autouse=True)
def start_namespace_untouched():
    """No kernel test moves the thread to another namespace or changes the
    IPVS table of the namespace it started in."""
    ns, table = netns.current_id(), _own_table()
    yield
    assert netns.current_id() == ns, "the test left the thread in another network namespace"
    after = _own_table()
    if table is not None and after is not None:
        assert after == table, "the test changed the starting namespace's IPVS table"
    elif table is None and after is not None:
        # ip_vs was loaded during the test (a handle's open auto-loads it):
        # the starting namespace's new table must still be empty
        assert after.count("\n") <= 3, "the test filled the starting namespace's IPVS table"


def _release() -> tuple:
    m = re.match(r"(\d+)\.(\d+)", os.uname().release)
    assert m, os.uname().release
    return (int(m.group(1)), int(m.group(2)))


#: (major, minor) of the kernel the tests run on
KERNEL = _release()
#: the largest connection threshold the kernel stores: 6.1 takes any u32;
#: 6.12 and 7.x refuse more than INT_MAX with EINVAL (both interfaces)
THRESHOLD_MAX = 2**32 - 1 if KERNEL < (6, 12) else 2**31 - 1
#: 7.x sizes the connection table at run time: conn_tab_size is 0 in a
#: namespace until its first service exists, then 256; before, always 4096
CONN_TAB_AT_RUN_TIME = KERNEL >= (7, 0)
#: 7.x resizes its service table in the background right after it grew (e.g.
#: a batch of 600 services): a dump taken in the next ~tens of ms may repeat
#: some services and skip as many, with nobody changing the table; 6.x never
SERVICE_TABLE_RESIZES = KERNEL >= (7, 0)


def wait_service_table_settled(lb, timeout: float = 15.0) -> None:
    """On 7.x, wait until the kernel's background resize is over: dumps that
    repeat nothing and agree with each other for 0.3 s.  No-op on 6.x."""
    if not SERVICE_TABLE_RESIZES:
        return
    deadline = time.monotonic() + timeout
    prev, since = None, None
    while time.monotonic() < deadline:
        keys = [s.key for s in lb.services()]
        now = time.monotonic()
        if len(set(keys)) == len(keys) and prev is not None and set(keys) == prev:
            since = since or now
            if now - since >= 0.3:
                return
        else:
            since = None
        prev = set(keys) if len(set(keys)) == len(keys) else None
        time.sleep(0.02)
    raise AssertionError("the service table did not settle within %.0f s" % timeout)


@pytest.fixture(params=["netlink", "sockopt"])
def ipvs_backend(request):
    return request.param


@pytest.fixture
def ipvs_handle(ipvs_netns, ipvs_backend):
    handle = ipvs.IPVS(netns=ipvs_netns, backend=ipvs_backend)
    assert handle.backend == ipvs_backend
    try:
        yield handle
    finally:
        handle.close()


def netlink_only(lb, fn, *args, **kwargs):
    """On the sockopt backend, assert that ``fn(*args, **kwargs)`` raises
    UnsupportedError (before touching the kernel) and skip the rest of the
    test; on netlink, do nothing (the test goes on and makes the call itself)."""
    if lb.backend != "sockopt":
        return
    with pytest.raises(ipvs.UnsupportedError):
        fn(*args, **kwargs)
    pytest.skip("not expressible over the sockopt interface (UnsupportedError asserted)")

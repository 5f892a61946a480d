"""Kernel tests run on both backends.

``ipvs_handle`` (from the ipvs.testing plugin) is overridden here with a
version parametrized over "netlink" and "sockopt", so every kernel test that
uses it runs twice. A test that exercises something the legacy sockopt
interface cannot express calls :func:`netlink_only`, which on sockopt asserts
that the call raises ``UnsupportedError`` and then skips the rest of the test.

Every kernel test also runs under :func:`start_namespace_untouched` (autouse):
the thread's network namespace and the IPVS table of the namespace the tests
started in are the same after the test as before.
"""
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

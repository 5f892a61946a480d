"""Kernel tests run on both backends.

``ipvs_handle`` (from the ipvs.testing plugin) is overridden here with a
version parametrized over "netlink" and "sockopt", so every kernel test that
uses it runs twice. A test that exercises something the legacy sockopt
interface cannot express calls :func:`netlink_only`, which on sockopt asserts
that the call raises ``UnsupportedError`` and then skips the rest of the test.
"""
import pytest

import ipvs


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

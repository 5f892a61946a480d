"""Where the kernel has no IPVS at all, every way of opening a handle fails
with IPVSUnavailableError and a message that says how to get IPVS.

Runs on hosts without IPVS (like the development containers); skipped where
the kernel has IPVS, or could load it on demand (opening a netlink handle
asks the kernel to load the module of the family), since then there is
nothing to observe. Opening fails before any IPVS state could be created.
"""
import errno
import os
import platform

import pytest

import ipvs

from ._host import genl_socket_refused


def _ipvs_possible():
    if os.path.exists("/proc/net/ip_vs") or os.path.isdir("/sys/module/ip_vs"):
        return "the kernel has IPVS"
    moddir = os.path.join("/lib/modules", platform.release())
    try:
        with open(os.path.join(moddir, "modules.dep")) as f:
            if any("/ip_vs.ko" in line.split(":", 1)[0] for line in f):
                return "the kernel could load the ip_vs module on demand"
    except OSError:
        pass
    return None


def _can_raw_socket():
    import socket
    try:
        socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW).close()
        return True
    except OSError:
        return False


def _genl_socket_refused():
    if genl_socket_refused():
        return "generic netlink sockets cannot be opened here (an emulator)"
    return None


REASON = _ipvs_possible() or _genl_socket_refused()
pytestmark = pytest.mark.skipif(REASON is not None, reason=f"{REASON}: nothing to test")


@pytest.mark.parametrize("backend", ["auto", "netlink", "sockopt"])
def test_open_raises_unavailable_with_a_hint(backend):
    if backend == "sockopt" and not _can_raw_socket():
        pytest.skip("the sockopt backend needs a raw socket (CAP_NET_RAW) to ask the kernel")
    with pytest.raises(ipvs.IPVSUnavailableError) as e:
        ipvs.IPVS(backend=backend)
    err = e.value
    assert isinstance(err, ipvs.IPVSError) and isinstance(err, OSError)
    assert err.operation == "open"
    # netlink: no "IPVS" generic netlink family; sockopt: the IPVS options are unknown
    assert err.errno == (errno.ENOPROTOOPT if backend == "sockopt" else errno.ENOENT)
    text = str(err)
    assert "IPVS" in text and "not available" in text
    assert "modprobe ip_vs" in text


def test_unavailable_is_not_a_lookup_or_permission_error():
    with pytest.raises(ipvs.IPVSUnavailableError) as e:
        ipvs.IPVS()
    assert not isinstance(e.value, (LookupError, PermissionError, FileNotFoundError))

"""Resources: handles opened and closed by the ten thousand leave the process's
descriptor count and memory where they were; the kernel sockets never leak
into children; a handle dropped unclosed says so (ResourceWarning)."""
import gc
import os
import subprocess
import sys
import time
import warnings

import pytest

import ipvs

pytestmark = pytest.mark.kernel

N = 10_000


def fd_count():
    return len(os.listdir("/proc/self/fd"))


def rss_kib():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def _cycle(n, **kw):
    for i in range(n):
        lb = ipvs.IPVS(**kw)
        if i % 10 == 0:
            lb.info()           # exercise the receive path (buffers) too
        lb.close()


@pytest.mark.parametrize("backend", ["netlink", "sockopt"])
@pytest.mark.parametrize("where", ["name", "fd"])
def test_open_close_10000_handles_leaves_fds_and_rss_at_baseline(ipvs_netns, backend, where):
    if where == "name":
        kw = dict(netns=ipvs_netns, backend=backend)
        nsfd = None
    else:
        nsfd = os.open("/run/netns/" + ipvs_netns, os.O_RDONLY | os.O_CLOEXEC)
        kw = dict(netns=nsfd, backend=backend)
    try:
        _cycle(500, **kw)                       # warm-up: caches, allocator arenas
        gc.collect()
        fd0, rss0 = fd_count(), rss_kib()
        t0 = time.monotonic()
        _cycle(N, **kw)
        dt = time.monotonic() - t0
        gc.collect()
        fd1, rss1 = fd_count(), rss_kib()
    finally:
        if nsfd is not None:
            os.close(nsfd)
    print("%s/%s: %d handles in %.2fs; fds %d -> %d; RSS %d -> %d KiB (%+d)"
          % (backend, where, N, dt, fd0, fd1, rss0, rss1, rss1 - rss0))
    assert fd1 == fd0
    assert rss1 - rss0 < 2048


def test_failed_opens_leak_nothing(ipvs_netns):
    """Opens that fail (bad namespace fd, bad backend) release what they took."""
    devnull = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
    try:
        for _ in range(200):
            with pytest.raises(OSError):
                ipvs.IPVS(netns=devnull)            # not a namespace: setns EINVAL
        gc.collect()
        fd0, rss0 = fd_count(), rss_kib()
        for _ in range(5000):
            with pytest.raises(OSError):
                ipvs.IPVS(netns=devnull)
        gc.collect()
        assert fd_count() == fd0
        assert rss_kib() - rss0 < 2048
    finally:
        os.close(devnull)


def _socket_links(lb):
    return {os.readlink("/proc/self/fd/%d" % lb.fileno())}


def _ns_link(name):
    fd = os.open("/run/netns/" + name, os.O_RDONLY)
    try:
        return os.readlink("/proc/self/fd/%d" % fd)
    finally:
        os.close(fd)


@pytest.mark.parametrize("backend", ["netlink", "sockopt"])
def test_sockets_are_close_on_exec(ipvs_netns, backend):
    import fcntl
    with ipvs.IPVS(netns=ipvs_netns, backend=backend) as lb, \
         ipvs.IPVS(backend=backend) as lb2:
        for h in (lb, lb2):
            assert fcntl.fcntl(h.fileno(), fcntl.F_GETFD) & fcntl.FD_CLOEXEC
        ours = _socket_links(lb) | _socket_links(lb2)
        ns = _ns_link(ipvs_netns)            # the handle keeps a dup of the namespace fd
        assert all(x.startswith("socket:[") for x in ours)
        # subprocess that keeps every inheritable descriptor
        out = subprocess.run(["ls", "-l", "/proc/self/fd"], close_fds=False,
                             capture_output=True, text=True, check=True).stdout
        assert not any(x in out for x in ours), out
        assert ns not in out, out
        # fork + exec
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - child
            try:
                os.dup2(w, 1)
                os.execvp("ls", ["ls", "-l", "/proc/self/fd"])
            finally:
                os._exit(127)
        os.close(w)
        with os.fdopen(r) as f:
            out2 = f.read()
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert not any(x in out2 for x in ours), out2
        assert ns not in out2, out2


def test_unclosed_handle_warns_and_is_closed(ipvs_netns):
    gc.collect()
    fd0 = fd_count()
    lb = ipvs.IPVS(netns=ipvs_netns)
    assert fd_count() > fd0
    with pytest.warns(ResourceWarning, match="unclosed"):
        del lb
        gc.collect()
    assert fd_count() == fd0


def test_unclosed_handle_in_a_cycle_warns(ipvs_netns):
    class Holder:
        pass
    gc.collect()
    fd0 = fd_count()
    h = Holder()
    h.me = h
    h.lb = ipvs.IPVS(netns=ipvs_netns)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        del h
        gc.collect()
    assert [w for w in caught if issubclass(w.category, ResourceWarning)]
    assert fd_count() == fd0


def test_closed_handle_does_not_warn(ipvs_netns):
    lb = ipvs.IPVS(netns=ipvs_netns)
    lb.close()
    with warnings.catch_warnings():
        warnings.simplefilter("error", ResourceWarning)
        del lb
        gc.collect()
    with warnings.catch_warnings():
        warnings.simplefilter("error", ResourceWarning)
        with ipvs.IPVS(netns=ipvs_netns) as lb2:
            lb2.info()
        del lb2
        gc.collect()

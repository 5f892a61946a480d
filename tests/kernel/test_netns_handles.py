"""``IPVS(netns=...)``: handles in other network namespaces.

A handle opened with a namespace (name, path or open fd) works on that
namespace's IPVS table only; the calling thread's own namespace is the same
before and after the constructor, also when it fails; several handles in
several namespaces work at once, from several threads.

The namespace the tests start in is only ever read, never changed.
"""
import errno
import os
import subprocess
import threading
import time

import pytest

import ipvs
from ipvs import netns

pytestmark = pytest.mark.kernel

BACKENDS = ["netlink", "sockopt"]


def svc(n, **kw):
    return ipvs.Service(address="192.0.2.%d" % n, port=8000 + n, scheduler="rr", **kw)


def keys(lb):
    return sorted(s.key for s in lb.services())


def own_table():
    with open("/proc/thread-self/net/ip_vs") as f:
        return f.read()


@pytest.fixture
def spaces():
    """Three fresh named namespaces with lo up; removed after."""
    from ipvs.testing import require_kernel
    require_kernel()
    with netns.temporary() as a, netns.temporary() as b, netns.temporary() as c:
        for n in (a, b, c):
            netns.link_up(n)
        yield [a, b, c]


def ns_id_of(name):
    st = os.stat(netns.path(name))
    return st.st_dev, st.st_ino


# -- the three forms of netns= -----------------------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
def test_name_path_and_fd_reach_the_same_namespace(spaces, backend):
    a = spaces[0]
    with ipvs.IPVS(netns=a, backend=backend) as by_name:
        by_name.add_service(svc(1))
    with ipvs.IPVS(netns="/run/netns/" + a, backend=backend) as by_path:
        assert keys(by_path) == [svc(1).key]
    fd = os.open(netns.path(a), os.O_RDONLY | os.O_CLOEXEC)
    try:
        with ipvs.IPVS(netns=fd, backend=backend) as by_fd:
            by_fd.add_service(svc(2))
        # the caller's fd is left open and still names the namespace
        assert os.fstat(fd).st_ino == ns_id_of(a)[1]
    finally:
        os.close(fd)
    with ipvs.IPVS(netns=a, backend=backend) as lb:
        assert keys(lb) == sorted([svc(1).key, svc(2).key])
    # ipvsadm, run inside the namespace by `ip netns exec`, agrees
    out = subprocess.run(["ip", "netns", "exec", a, "ipvsadm", "-Ln"],
                         capture_output=True, text=True, check=True).stdout
    assert "192.0.2.1:8001" in out and "192.0.2.2:8002" in out


def test_proc_pid_path(spaces):
    """/proc/PID/ns/net of a process living in the namespace."""
    a = spaces[0]
    proc = subprocess.Popen(["ip", "netns", "exec", a, "sleep", "30"])
    try:
        path = "/proc/%d/ns/net" % proc.pid
        deadline = time.monotonic() + 10
        while os.stat(path).st_ino != ns_id_of(a)[1]:  # until it entered
            assert time.monotonic() < deadline, "ip netns exec did not enter"
            time.sleep(0.02)
        with ipvs.IPVS(netns=path) as lb:
            lb.add_service(svc(3))
    finally:
        proc.kill()
        proc.wait(10)
    with ipvs.IPVS(netns=a) as lb:
        assert keys(lb) == [svc(3).key]


def test_fd_handle_outlives_the_name(spaces):
    """The handle holds the namespace: removing its name does not end it."""
    with netns.temporary() as gone:
        netns.link_up(gone)
        lb = ipvs.IPVS(netns=gone)
    try:
        assert not netns.exists(gone)
        lb.add_service(svc(4))
        assert keys(lb) == [svc(4).key]
        assert lb.connections() == []
    finally:
        lb.close()


# -- isolation ---------------------------------------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
def test_namespaces_are_isolated(spaces, backend):
    start = own_table()
    handles = [ipvs.IPVS(netns=n, backend=backend) for n in spaces]
    try:
        for i, lb in enumerate(handles, 1):
            assert lb.services() == []
            lb.add_service(svc(i))
            lb.add_destination(svc(i), ipvs.Destination("127.0.0.%d" % i, 80,
                                                        forward=ipvs.Forward.MASQ))
        for i, lb in enumerate(handles, 1):
            assert keys(lb) == [svc(i).key]
            (d,) = lb.destinations(svc(i))
            assert str(d.address) == "127.0.0.%d" % i
        # a change in one is invisible in the others
        handles[0].flush()
        assert handles[0].services() == []
        assert keys(handles[1]) == [svc(2).key]
        assert keys(handles[2]) == [svc(3).key]
        handles[1].set_timeouts(udp=123)
        assert handles[1].timeouts().udp == 123
        assert handles[2].timeouts().udp != 123
        # ... and in the namespace the tests started in
        assert own_table() == start
        with ipvs.IPVS(backend=backend) as here:  # read only
            assert not {svc(i).key for i in (1, 2, 3)} & set(keys(here))
            assert here.timeouts().udp != 123
    finally:
        for lb in handles:
            lb.close()


# -- failures leave the thread where it was ------------------------------------

def _failures(tmp_path):
    notns = tmp_path / "plain-file"
    notns.write_text("not a namespace\n")
    return [
        ("ipvs-no-such-namespace-%d" % os.getpid(), FileNotFoundError),
        ("/run/netns/ipvs-no-such-namespace-%d" % os.getpid(), FileNotFoundError),
        ("/proc/999999999/ns/net", FileNotFoundError),
        ("/etc/hostname", ipvs.IPVSError),
        (str(notns), ipvs.IPVSError),
        ("/proc/self/ns/mnt", ipvs.IPVSError),  # a namespace, but not a network one
    ]


@pytest.mark.parametrize("backend", BACKENDS)
def test_failing_constructor_keeps_thread_namespace(tmp_path, backend):
    before = netns.current_id()
    for target, exc in _failures(tmp_path):
        with pytest.raises(exc) as info:
            ipvs.IPVS(netns=target, backend=backend)
        assert netns.current_id() == before, target
        assert "namespace" in str(info.value), str(info.value)
        if exc is not FileNotFoundError:
            assert info.value.errno == errno.EINVAL
            assert "is not a" in str(info.value) or "but not a network" in str(info.value)
    # an fd that is not a network namespace
    with open("/etc/hostname") as f:
        with pytest.raises(ipvs.IPVSError, match="not a namespace file"):
            ipvs.IPVS(netns=f.fileno(), backend=backend)
    assert netns.current_id() == before
    with pytest.raises(OSError, match="not an open file descriptor"):
        ipvs.IPVS(netns=987654, backend=backend)  # a closed fd: EBADF
    assert netns.current_id() == before
    with pytest.raises(TypeError):
        ipvs.IPVS(netns=1.5)
    with pytest.raises(ValueError):
        ipvs.IPVS(netns=-1)
    assert netns.current_id() == before


def test_failing_constructor_in_a_moved_thread(spaces, tmp_path):
    """A thread that lives in another namespace stays there: the handle
    restores the thread's namespace, not the process's."""
    a = spaces[0]
    results = {}

    def worker():
        try:
            with netns.enter(a):
                inside = netns.current_id()
                for target, exc in _failures(tmp_path):
                    try:
                        ipvs.IPVS(netns=target)
                    except exc:
                        pass
                    else:
                        results.setdefault("errors", []).append("no error: %s" % target)
                    if netns.current_id() != inside:
                        results.setdefault("errors", []).append("moved by %s" % target)
                with ipvs.IPVS(netns=spaces[1]) as lb:  # success, elsewhere
                    lb.add_service(svc(9))
                    results["moved_on_success"] = netns.current_id() != inside
                with ipvs.IPVS() as lb:  # netns=None: the thread's own
                    results["own"] = keys(lb)
                results["inside"] = inside
        except BaseException as e:
            results["exception"] = e

    t = threading.Thread(target=worker)
    t.start()
    t.join(60)
    assert not t.is_alive()
    assert "exception" not in results, results["exception"]
    assert results.get("errors") is None, results["errors"]
    assert results["inside"] == ns_id_of(a)
    assert results["moved_on_success"] is False
    assert results["own"] == []  # a's table, empty; svc(9) went to b
    with ipvs.IPVS(netns=spaces[1]) as lb:
        assert keys(lb) == [svc(9).key]


# -- many handles, many namespaces, many threads ---------------------------------

def test_many_threads_many_namespaces_at_once(spaces):
    """Six threads (two per namespace, both backends) open handles at the same
    moment and add, list and delete services in a bounded loop."""
    rounds = 15
    barrier = threading.Barrier(6)
    errors = []

    def worker(index):
        ns = spaces[index % 3]
        backend = BACKENDS[index // 3]
        try:
            mine = netns.current_id()
            barrier.wait(30)
            with ipvs.IPVS(netns=ns, backend=backend) as lb:
                if netns.current_id() != mine:
                    errors.append("thread %d moved" % index)
                for r in range(rounds):
                    s = ipvs.Service(address="198.51.100.%d" % (index + 1),
                                     port=1000 + r, scheduler="rr")
                    lb.add_service(s)
                    seen = {x.key for x in lb.services()}
                    if s.key not in seen:
                        errors.append("thread %d: own service missing" % index)
                    # the two threads sharing a namespace see each other's
                    # services, never those of the other namespaces
                    for x in seen:
                        owner = int(str(x[2]).rsplit(".", 1)[1]) - 1
                        if owner % 3 != index % 3:
                            errors.append("thread %d sees %r" % (index, x))
                    if r % 2:
                        lb.delete_service(s)
                if netns.current_id() != mine:
                    errors.append("thread %d moved" % index)
        except BaseException as e:
            errors.append("thread %d: %r" % (index, e))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads)
    assert errors == []
    for i, ns in enumerate(spaces):
        with ipvs.IPVS(netns=ns) as lb:
            got = sorted((str(s.address), s.port) for s in lb.services())
            want = sorted(("198.51.100.%d" % (j + 1), 1000 + r)
                          for j in (i, i + 3) for r in range(0, rounds, 2))
            assert got == want


def test_one_handle_shared_by_threads(spaces):
    """One handle used from several threads at once: the calls serialize."""
    with ipvs.IPVS(netns=spaces[0]) as lb:
        errors = []

        def worker(index):
            try:
                for r in range(10):
                    s = ipvs.Service(address="203.0.113.%d" % (index + 1),
                                     port=2000 + r, scheduler="wlc")
                    lb.add_service(s)
                    lb.add_destination(s, ipvs.Destination("127.0.0.1", 80,
                                                           forward=ipvs.Forward.MASQ))
                    assert len(lb.destinations(s)) == 1
            except BaseException as e:
                errors.append(e)

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert errors == []
        assert len(lb.services()) == 40

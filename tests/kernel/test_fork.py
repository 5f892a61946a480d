"""fork(): a handle inherited by a child process opens its own socket, in the
handle's namespace, on its first use in the child; the child never reads or
writes the parent's socket, and the parent's handle stays in step
(API.md, "fork"; done in csrc/libipvs.c).

Each test forks while the handle is idle, then parent and child call through
the same handle object at the same time, hundreds of times each, checking
every answer (a reply read by the wrong process would show up as a wrong or
missing answer, a timeout, or an error). Both backends; a handle opened with
netns= and one opened inside a namespace without it.
"""
import os
import threading
import traceback

import pytest

import ipvs
from ipvs import Destination, Service, netns

pytestmark = pytest.mark.kernel

ROUNDS = 150          # x 5 calls, in each process


def _hammer(lb, tag):
    """Calls whose answers say whether they were this process's own."""
    svc = Service(address="10.77.%d.1" % tag, port=80, scheduler="rr")
    lb.add_service(svc)
    for i in range(ROUNDS):
        d = Destination("10.78.%d.%d" % (tag, i % 200 + 1), 8000 + i, weight=i % 9 + 1,
                        forward="route")
        lb.add_destination(svc, d)
        assert lb.get_service(svc) == svc
        got = lb.destinations(svc)
        assert got == [d], (i, got)
        assert got[0].weight == d.weight
        assert svc in lb.services()
        lb.delete_destination(svc, d)
    lb.delete_service(svc)


def _sock_id(fd):
    st = os.fstat(fd)
    return (st.st_dev, st.st_ino)


def _fork_and_hammer(lb, marker):
    """Fork; parent and child hammer lb at once; the child leaves ``marker``
    in the table. Returns what the child reported."""
    parent_sock = _sock_id(lb.fileno())
    go_r, go_w = os.pipe()
    res_r, res_w = os.pipe()
    pid = os.fork()
    if pid == 0:    # the child: never returns into pytest
        status = 1
        try:
            os.close(go_w)
            os.close(res_r)
            before = _sock_id(lb.fileno())
            os.read(go_r, 1)
            _hammer(lb, 2)
            after = _sock_id(lb.fileno())
            lb.add_service(marker)
            msg = "ok %r %r" % (before, after)
            status = 0
        except BaseException:
            msg = "child failed:\n" + traceback.format_exc()
        try:
            os.write(res_w, msg.encode()[:60000])
        finally:
            os._exit(status)
    os.close(go_r)
    os.close(res_w)
    try:
        os.write(go_w, b"g")
        _hammer(lb, 1)            # at the same time as the child
    finally:
        os.close(go_w)
        chunks = []
        while True:
            b = os.read(res_r, 65536)
            if not b:
                break
            chunks.append(b)
        os.close(res_r)
        _, status = os.waitpid(pid, 0)
    report = b"".join(chunks).decode()
    assert os.waitstatus_to_exitcode(status) == 0, report
    assert report.startswith("ok "), report
    before, after = report[3:].split(") (")
    # the child started on a copy of the parent's socket and then made its own
    assert before + ")" == repr(parent_sock)
    assert "(" + after != repr(parent_sock)
    # the parent still has its socket, in step
    assert _sock_id(lb.fileno()) == parent_sock
    return report


@pytest.mark.parametrize("backend", ["netlink", "sockopt"])
def test_fork_handle_with_netns(ipvs_netns, backend):
    marker = Service(address="10.79.0.1", port=80, scheduler="rr")
    with ipvs.IPVS(netns=ipvs_netns, backend=backend) as lb:
        lb.info()                 # the socket is in use before the fork
        _fork_and_hammer(lb, marker)
        # the child's calls went to the handle's namespace, not elsewhere
        assert lb.services() == [marker]
        _hammer(lb, 3)            # the parent's handle keeps working
        assert lb.services() == [marker]


@pytest.mark.parametrize("backend", ["netlink", "sockopt"])
def test_fork_handle_opened_inside_a_namespace(ipvs_netns, backend):
    """A handle opened without netns= belongs to the namespace it was opened
    in; the child (which runs in the starting namespace) reopens it there."""
    box = {}

    def opener():
        with netns.enter(ipvs_netns):
            box["lb"] = ipvs.IPVS(backend=backend)
    t = threading.Thread(target=opener)
    t.start()
    t.join()
    lb = box["lb"]
    marker = Service(address="10.79.0.2", port=80, scheduler="rr")
    try:
        _fork_and_hammer(lb, marker)
        with ipvs.IPVS(netns=ipvs_netns, backend=backend) as other:
            assert other.services() == [marker]
    finally:
        lb.close()


def test_fork_twice_grandchild(ipvs_netns):
    """A child's child reopens again (each generation its own socket)."""
    marker = Service(address="10.79.0.3", port=80, scheduler="rr")
    with ipvs.IPVS(netns=ipvs_netns) as lb:
        parent_sock = _sock_id(lb.fileno())
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                lb.info()
                mine = _sock_id(lb.fileno())
                pid2 = os.fork()
                if pid2 == 0:
                    c2 = 1
                    try:
                        lb.add_service(marker)
                        c2 = 0 if _sock_id(lb.fileno()) not in (mine, parent_sock) else 3
                    finally:
                        os._exit(c2)
                _, st = os.waitpid(pid2, 0)
                lb.info()
                code = os.waitstatus_to_exitcode(st) or (0 if mine != parent_sock else 4)
            finally:
                os._exit(code)
        _, st = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(st) == 0
        assert lb.services() == [marker]
        assert _sock_id(lb.fileno()) == parent_sock

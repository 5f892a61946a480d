"""The memory backend's own behaviour: what the kernel suite cannot show
(tables per netns value, the kernel profiles, counters set by tests, the
pytest fixture and backend "auto")."""
from __future__ import annotations

import io
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import ipvs
import ipvs.netns
from ipvs import Daemon, DaemonState, Destination, Service, Stats
from ipvs.testing import add_interface, add_netns, memory_auto, reset_memory, set_counters

SVC = Service(address="10.0.0.1", port=80, scheduler="rr")
D1 = Destination("192.168.1.1", 80, forward="masq")
D2 = Destination("192.168.1.2", 80, forward="masq")
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _fresh():
    reset_memory()
    yield
    reset_memory()


def mem(**kw):
    return ipvs.IPVS(backend="memory", **kw)


def test_backend_name_and_repr():
    with mem() as lb:
        assert lb.backend == "memory"
        assert "memory" in repr(lb)


def test_same_netns_value_shares_a_table_others_do_not():
    add_netns("lab")
    with mem() as a, mem() as b, mem(netns="lab") as c, mem(netns="lab") as d:
        a.add_service(SVC)
        assert b.services() == [SVC]
        assert c.services() == []
        c.add_service(SVC.replace(port=81))
        assert d.services() == [SVC.replace(port=81)]
        assert a.services() == [SVC]


def test_reset_memory_empties_every_table():
    add_netns("x")
    with mem() as a, mem(netns="x") as b:
        a.add_service(SVC)
        b.add_service(SVC)
        a.set_timeouts(tcp=5)
        a.start_daemon(Daemon("master", "lo"))
        reset_memory()
        assert a.services() == [] and b.services() == []
        assert a.timeouts() == ipvs.Timeouts(900, 120, 300)
        assert a.daemons() == []


def test_closed_handle_raises_value_error():
    lb = mem()
    lb.close()
    assert lb.closed
    with pytest.raises(ValueError):
        lb.services()
    lb.close()  # idempotent


def test_fileno_says_there_is_no_socket():
    with mem() as lb, pytest.raises(io.UnsupportedOperation):
        lb.fileno()


@pytest.mark.parametrize("kernel", ["6.1", "6.12", "7"])
def test_info_per_kernel(kernel):
    with mem(kernel=kernel) as lb:
        info = lb.info()
        assert info.version == "1.2.1" and info.version_info == (1, 2, 1)
        assert info.conn_tab_size == (0 if kernel == "7" else 4096)
        lb.add_service(SVC)
        assert lb.info().conn_tab_size == (256 if kernel == "7" else 4096)


def test_default_kernel_is_6_12():
    with mem() as lb:
        lb.add_service(SVC)
        with pytest.raises(ipvs.InvalidRequestError) as e:
            lb.add_destination(SVC, D1.replace(upper_threshold=2**31))
        assert e.value.errno == 22


@pytest.mark.parametrize("kernel,accepted", [("6.1", True), ("6.12", False), ("7", False)])
@pytest.mark.parametrize("field", ["upper_threshold", "lower_threshold"])
def test_thresholds_above_int_max(kernel, accepted, field):
    with mem(kernel=kernel) as lb:
        lb.add_service(SVC)
        values = {"upper_threshold": 2**32 - 1, "lower_threshold": 0}
        values[field] = 2**31
        big = D1.replace(**values)
        lb.add_destination(SVC, D1.replace(upper_threshold=2**31 - 1, lower_threshold=2**31 - 1))
        for op, dest in (("add_destination", big.replace(address="192.168.1.9")),
                         ("update_destination", big)):
            if accepted:
                getattr(lb, op)(SVC, dest)
                assert dest in lb.destinations(SVC)
            else:
                with pytest.raises(ipvs.InvalidRequestError) as e:
                    getattr(lb, op)(SVC, dest)
                assert e.value.errno == 22 and e.value.operation == op


@pytest.mark.parametrize("bad", [{"kernel": "5.10"}, {"kernel": 6}])
def test_bad_kernel_argument(bad):
    with pytest.raises((ValueError, TypeError)):
        mem(**bad)


@pytest.mark.parametrize("backend", ["netlink", "sockopt", "auto"])
def test_kernel_argument_needs_the_memory_backend(backend):
    with pytest.raises(ValueError, match="memory"):
        ipvs.IPVS(backend=backend, kernel="6.1")
    with memory_auto():   # under the fixture, "auto" is memory: kernel= is fine
        if backend == "auto":
            with ipvs.IPVS(backend=backend, kernel="6.1") as lb:
                assert lb.backend == "memory"


@pytest.mark.parametrize("netns,exc", [(True, TypeError), (-1, ValueError), ("", ValueError),
                                       (1.5, TypeError)])
def test_bad_netns_argument(netns, exc):
    with pytest.raises(exc):
        mem(netns=netns)


def test_counters_read_zero_and_connections_empty():
    with mem() as lb:
        lb.add_service(SVC)
        lb.add_destination(SVC, D1)
        (d,) = lb.destinations(SVC)
        assert (d.active_connections, d.inactive_connections, d.persistent_connections) == (0, 0, 0)
        assert d.stats == Stats() and lb.get_service(SVC).stats == Stats()
        assert lb.connections() == []
        assert lb.stats() == Stats()


def test_set_counters_and_zero():
    with mem() as lb:
        lb.add_service(SVC)
        lb.add_destination(SVC, D1)
        lb.add_destination(SVC, D2)
        set_counters(SVC, D1, active=3, inactive=2, persistent=1,
                     stats=Stats(connections=10, packets_in=20, cps=1))
        set_counters(SVC, stats={"connections": 30, "bytes_out": 7})
        got = {str(d.address): d for d in lb.destinations(SVC)}
        d1 = got["192.168.1.1"]
        assert (d1.active_connections, d1.inactive_connections, d1.persistent_connections) == (3, 2, 1)
        assert d1.stats == Stats(connections=10, packets_in=20, cps=1)
        assert got["192.168.1.2"].active_connections == 0
        assert lb.get_service(SVC).stats.connections == 30
        assert lb.stats().connections == 30 and lb.stats().bytes_out == 7
        # a partial update leaves the rest
        set_counters(SVC, D1, active=0)
        d1 = [d for d in lb.destinations(SVC) if d.address == D1.address][0]
        assert (d1.active_connections, d1.inactive_connections) == (0, 2)
        # zero clears stats, not connection counters (as the kernel does)
        lb.zero(SVC)
        d1 = [d for d in lb.destinations(SVC) if d.address == D1.address][0]
        assert d1.stats == Stats() and d1.inactive_connections == 2
        assert lb.get_service(SVC).stats == Stats()


def test_set_counters_needs_existing_objects():
    with mem() as lb:
        with pytest.raises(ipvs.ServiceNotFoundError):
            set_counters(SVC, stats=Stats(connections=1))
        lb.add_service(SVC)
        with pytest.raises(ipvs.DestinationNotFoundError):
            set_counters(SVC, D1, active=1)
        with pytest.raises(ValueError):
            set_counters(SVC, active=1)
        lb.add_destination(SVC, D1)
        with pytest.raises(ValueError):
            set_counters(SVC, D1, active=-1)


def test_set_counters_other_netns():
    add_netns("ns1")
    with mem(netns="ns1") as lb:
        lb.add_service(SVC)
        lb.add_destination(SVC, D1)
        set_counters(SVC, D1, netns="ns1", active=4)
        assert lb.destinations(SVC)[0].active_connections == 4
        with pytest.raises(ipvs.ServiceNotFoundError):
            set_counters(SVC, D1, active=4)   # netns None has no such service


def test_master_daemon_defaults():
    """The netlink defaults the kernel fills in (test_master_daemon_defaults)."""
    with mem() as lb:
        lb.start_daemon(Daemon(DaemonState.MASTER, "lo", sync_id=3))
        assert lb.daemons() == [Daemon("master", "lo", sync_id=3, max_len=1472,
                                       mcast_group="224.0.0.81", mcast_port=8848, mcast_ttl=1)]
        lb.stop_daemon("master")
        assert lb.daemons() == []


def test_interfaces_for_daemons():
    with mem() as lb:
        d = Daemon("master", "eth0", sync_id=1, mcast_group="ff02::99")
        with pytest.raises(ipvs.InvalidRequestError) as e:
            lb.start_daemon(d)
        assert e.value.errno == 19   # ENODEV
        with pytest.raises(ipvs.InvalidRequestError) as e:
            lb.start_daemon(d.replace(interface="lo"))
        assert e.value.errno == 101  # ENETUNREACH: no IPv6 multicast route on lo
        add_interface("eth0")
        lb.start_daemon(d)
        assert lb.daemons() == [d.replace(max_len=1452, mcast_port=8848, mcast_ttl=1)]
        # a backup's default length follows the interface's MTU (lo: 65536)
        lb.start_daemon(Daemon("backup", "lo"))
        assert lb.daemons()[1].max_len == 65507


def test_threads_share_a_table_consistently():
    with mem() as lb:
        lb.add_service(SVC)

        def work(i):
            with mem() as mine:
                for j in range(50):
                    mine.add_destination(SVC, Destination("10.1.%d.%d" % (i, j + 1), 80))

        ts = [threading.Thread(target=work, args=(i,)) for i in range(4)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        assert len(lb.destinations(SVC)) == 200


# ---------------------------------------------------------- the fixture

def open_default():
    """What a tool does: open IPVS with the default backend."""
    return ipvs.IPVS()


def test_fixture_makes_auto_handles_memory(ipvs_memory):
    assert ipvs_memory.backend == "memory" and ipvs_memory.services() == []
    ipvs_memory.add_service(SVC)
    with open_default() as lb:
        assert lb.backend == "memory"
        assert lb.services() == [SVC]
        lb.add_destination(SVC, D1)
    assert ipvs_memory.destinations(SVC) == [D1]
    # named namespaces work too, each its own table
    ipvs.netns.create("director")
    with ipvs.IPVS(netns="director") as other:
        assert other.services() == []


def test_fixture_starts_empty(ipvs_memory):
    assert ipvs_memory.services() == [] and ipvs_memory.daemons() == []


def test_auto_is_not_memory_outside_the_fixture():
    from ipvs import _memory
    assert not _memory.auto_enabled()
    with memory_auto(kernel="7"):
        with ipvs.IPVS() as lb:
            assert lb.backend == "memory" and lb.info().conn_tab_size == 0
    assert not _memory.auto_enabled()


def test_cli_runs_on_the_memory_table(ipvs_memory):
    from ipvs import cli
    out = io.StringIO()
    assert cli.main(["-A", "-t", "10.0.0.1:80", "-s", "rr"], stdout=out, stderr=io.StringIO()) == 0
    assert ipvs_memory.services() == [SVC]
    assert cli.main(["-Sn"], stdout=out, stderr=io.StringIO()) == 0
    assert out.getvalue() == "-A -t 10.0.0.1:80 -s rr\n"


def test_apply_plan_and_batch_errors(ipvs_memory):
    lb = ipvs_memory
    plan = lb.apply({SVC: [D1, D2]})
    assert [c.action for c in plan.changes] == ["add_service", "add_destination", "add_destination"]
    assert not lb.apply({SVC: [D1, D2]})
    with pytest.raises(ipvs.BatchError) as e:
        with lb.batch() as b:
            b.add_destination(SVC, D1)
            b.delete_destination(SVC, Destination("192.168.1.7", 80))
            b.add_destination(SVC, Destination("192.168.1.8", 80))
    assert e.value.succeeded == 1
    assert [type(x) for _, x in e.value.failures] == [ipvs.DestinationExistsError,
                                                      ipvs.DestinationNotFoundError]


def test_example_unit_test_runs():
    """examples/test_memory_example.py passes as a user would run it."""
    if not (ROOT / "examples" / "test_memory_example.py").exists():
        pytest.skip("not a source tree (examples/ is not installed with the wheel)")
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          str(ROOT / "examples" / "test_memory_example.py")],
                         capture_output=True, text=True, timeout=300, cwd=str(ROOT))
    assert out.returncode == 0, out.stdout + out.stderr
    assert " passed" in out.stdout


def test_async_ipvs_on_memory(ipvs_memory):
    """AsyncIPVS(backend="memory") and AsyncIPVS() under the fixture: the
    same tables, coroutines, errors and batches."""
    AsyncIPVS = getattr(ipvs, "AsyncIPVS", None)
    if AsyncIPVS is None:
        pytest.skip("ipvs.AsyncIPVS is not in this tree yet (built by another issue)")
    import asyncio

    async def main():
        async with AsyncIPVS() as lb:
            assert lb.backend == "memory"
            await lb.add_service(SVC)
            async with lb.batch() as b:
                b.add_destination(SVC, D1)
                b.add_destination(SVC, D2)
            with pytest.raises(ipvs.ServiceExistsError):
                await lb.add_service(SVC)
            assert not await lb.apply({SVC: [D1, D2]})
        add_netns("other")
        async with AsyncIPVS(backend="memory", kernel="7", netns="other") as lb:
            assert (await lb.info()).conn_tab_size == 0
            assert await lb.services() == []

    asyncio.run(main())
    assert len(ipvs_memory.destinations(SVC)) == 2


def test_modify_on_memory(ipvs_memory):
    lb = ipvs_memory
    lb.add_service(SVC)
    lb.add_destination(SVC, D1.replace(weight=5))
    lb.modify_service(SVC, scheduler="wlc")
    assert lb.get_service(SVC).scheduler == "wlc"
    lb.modify_destination(SVC, D1, weight=0)
    assert lb.destinations(SVC)[0].weight == 0
    with pytest.raises(ipvs.DestinationNotFoundError):
        lb.modify_destination(SVC, D2, weight=1)

"""AsyncIPVS without a kernel: the worker, coalescing, cancellation, loops,
closing and fork handling, against a fake sync handle put in place of
`ipvs.IPVS` inside ipvs._async (tests/kernel/test_async.py checks the same
against the kernel). Also: every kernel-facing method of IPVS is a coroutine,
the stubs name them all, and mypy --strict accepts the async example.
"""

from __future__ import annotations

import ast
import asyncio
import gc
import inspect
import os
import subprocess
import sys
import threading
import warnings

import pytest

import ipvs
from ipvs import _async
from ipvs.errors import (BatchError, IPVSTimeoutError, ServiceExistsError, UnsupportedError)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

S = ipvs.Service(address="10.0.0.1", port=80)
D = ipvs.Destination(address="192.168.0.1", port=80)


def svc(port: int) -> ipvs.Service:
    return S.replace(port=port)


class FakeBackend:
    """The backend handle (ipvs/_backend.py) behind a FakeIPVS: its batch()."""

    def __init__(self, owner: "FakeIPVS") -> None:
        self.owner = owner

    def batch(self, calls):
        o = self.owner
        o.batches.append(len(calls))
        if o.transport_error is not None:
            raise o.transport_error
        results = []
        for method, service, dest in calls:
            e = o._outcome(method, service, brief=True)
            if e is None:
                o.log.append((method, service.port))
            results.append(e)
        return results


class FakeIPVS:
    """Answers like IPVS: ports >= 1000 already exist; port 666 is a
    feature the backend lacks (briefly worded by the batch path)."""

    made: list = []

    def __init__(self, *, backend="auto", netns=None, timeout=5.0, **options):
        self.backend = "netlink" if backend == "auto" else backend
        self.timeout = timeout
        self.options = options
        self.closed = False
        self.log = []
        self.batches = []
        self.transport_error = None
        self.entered = threading.Event()
        self.gate = threading.Event()
        self.gate.set()
        self.timeouts_seen = []
        FakeIPVS.made.append(self)

    def fileno(self):
        return 99

    def close(self):
        self.closed = True

    def _outcome(self, method, service, brief=False):
        if service.port >= 1000 and method == "add_service":
            return ServiceExistsError(17, "add_service: %s already exists" % service, method)
        if service.port == 666:
            return UnsupportedError(95, "%s: %s" % (method, "not supported" if brief
                                                    else "IPv6 is not supported, said alone"),
                                    method)
        return None

    def _single(self, method, service):
        e = self._outcome(method, service)
        if e is not None:
            raise e
        self.log.append((method, service.port))

    def add_service(self, service):
        self._single("add_service", service)

    def delete_service(self, service):
        self._single("delete_service", service)

    def add_destination(self, service, dest):
        self._single("add_destination", service)

    def info(self):
        self.entered.set()
        self.gate.wait(10)
        self.log.append(("info",))
        self.timeouts_seen.append(self.timeout)
        return len(self.log)

    def services(self, *, consistent=False):
        self.log.append(("services", consistent))
        return [S]

    def handle(self):
        return FakeBackend(self)


@pytest.fixture
def fake(monkeypatch):
    FakeIPVS.made = []
    monkeypatch.setattr(_async, "IPVS", FakeIPVS)
    monkeypatch.setattr(_async, "backend_of", FakeIPVS.handle)
    return FakeIPVS


def run(coro):
    return asyncio.run(coro)


async def wait_entered(sync) -> None:
    for _ in range(2000):
        if sync.entered.is_set():
            return
        await asyncio.sleep(0.001)
    raise AssertionError("the worker never started the held call")


# ------------------------------------------------------------- the surface

def test_every_kernel_facing_ipvs_method_is_a_coroutine():
    from ipvs._handle import IPVS
    public = {n for n, v in vars(IPVS).items()
              if not n.startswith("_") and inspect.isfunction(v)}
    assert public - set(_async.NOT_KERNEL) <= set(_async.METHODS), \
        public - set(_async.NOT_KERNEL) - set(_async.METHODS)
    for name in _async.METHODS:
        assert inspect.iscoroutinefunction(getattr(ipvs.AsyncIPVS, name)), name
    assert inspect.iscoroutinefunction(ipvs.AsyncIPVS.close)
    assert not inspect.iscoroutinefunction(ipvs.AsyncIPVS.batch)
    assert {"modify_service", "modify_destination"} <= set(_async.METHODS)
    assert set(_async.COALESCED) <= set(_async.METHODS)


def test_stubs_declare_every_coroutine():
    stub = os.path.join(os.path.dirname(_async.__file__), "_async.pyi")  # installed or source
    tree = ast.parse(open(stub).read())
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "AsyncIPVS")
    coros = {n.name for n in cls.body if isinstance(n, ast.AsyncFunctionDef)}
    plain = {n.name for n in cls.body if isinstance(n, ast.FunctionDef)}
    assert set(_async.METHODS) | {"close", "__aenter__", "__aexit__"} <= coros
    assert {"batch", "fileno", "backend", "closed", "timeout"} <= plain


def source_tree_file(path: str) -> str:
    full = os.path.join(ROOT, path)
    if not os.path.exists(full):
        pytest.skip("%s is not here: these tests run outside the source tree (wheel check)"
                    % path)
    return full


def test_mypy_strict_accepts_the_async_example():
    source_tree_file("examples/async_example.py")
    try:
        import mypy  # noqa: F401
    except ImportError:
        pytest.skip("mypy is not installed (pip install mypy): the example is not type-checked")
    p = subprocess.run([sys.executable, "-m", "mypy", "--strict", "--no-incremental",
                        "examples/async_example.py"], cwd=ROOT, capture_output=True,
                       text=True, timeout=600)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "Success" in p.stdout


# ---------------------------------------------------------- the machinery

def test_keywords_pass_through_and_attributes(fake):
    async def main():
        lb = ipvs.AsyncIPVS(backend="memory", netns="x", timeout=2.0, kernel="6.12")
        sync = fake.made[-1]
        assert sync.backend == "memory" and sync.options == {"kernel": "6.12"}
        assert lb.backend == "memory" and lb.timeout == 2.0 and not lb.closed
        assert "AsyncIPVS" in repr(lb)
        assert await lb.services(consistent=True) == [S]
        assert sync.log == [("services", True)]
        await lb.close()
        assert lb.closed and sync.closed
        assert "closed" in repr(lb)

    run(main())


def test_waiting_writes_go_as_one_batch_and_failures_reach_their_callers(fake):
    async def main():
        async with ipvs.AsyncIPVS() as lb:
            sync = fake.made[-1]
            sync.gate.clear()
            held = asyncio.ensure_future(lb.info())
            await wait_entered(sync)
            ports = [1, 1001, 2, 666, 3, 1002, 4]
            tasks = [asyncio.ensure_future(lb.add_service(svc(p))) for p in ports]
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            sync.gate.set()
            outs = await asyncio.gather(*tasks, return_exceptions=True)
            await held
            return sync, ports, outs

    sync, ports, outs = run(main())
    assert sync.batches == [7]  # one batch for the seven waiting writes
    for p, o in zip(ports, outs):
        if p >= 1000:
            assert isinstance(o, ServiceExistsError) and str(svc(p)) in str(o)
        elif p == 666:
            # the batch words it briefly: re-run alone for the single call's words
            assert isinstance(o, UnsupportedError) and "said alone" in str(o)
        else:
            assert o is None
    assert [x for x in sync.log if x[0] == "add_service"] == \
        [("add_service", p) for p in (1, 2, 3, 4)]


def test_a_transport_failure_reaches_every_caller(fake):
    async def main():
        async with ipvs.AsyncIPVS() as lb:
            sync = fake.made[-1]
            sync.transport_error = IPVSTimeoutError(110, "batch: no reply in time", "batch")
            sync.gate.clear()
            held = asyncio.ensure_future(lb.info())
            await wait_entered(sync)
            tasks = [asyncio.ensure_future(lb.add_service(svc(p))) for p in (1, 2, 3)]
            await asyncio.sleep(0)
            sync.gate.set()
            outs = await asyncio.gather(*tasks, return_exceptions=True)
            await held
            return outs

    outs = run(main())
    assert all(isinstance(o, IPVSTimeoutError) for o in outs)
    assert len({id(o) for o in outs}) == 3  # each caller its own instance
    assert all(o.operation == "batch" and o.errno == 110 for o in outs)


def test_a_single_write_alone_is_the_plain_call(fake):
    async def main():
        async with ipvs.AsyncIPVS() as lb:
            with pytest.raises(UnsupportedError, match="said alone"):
                await lb.add_service(svc(666))
            with pytest.raises(TypeError, match="service must be a Service"):
                await lb.add_service("x")
            with pytest.raises(TypeError, match="dest must be a Destination"):
                await lb.add_destination(S, "x")
            await lb.add_destination(S, D)
            return fake.made[-1]

    sync = run(main())
    assert sync.batches == [] and sync.log == [("add_destination", 80)]


def test_missing_ipvs_method_fails_as_on_the_sync_handle(fake):
    assert not hasattr(FakeIPVS, "modify_service")

    async def main():
        async with ipvs.AsyncIPVS() as lb:
            with pytest.raises(AttributeError) as ei:
                await lb.modify_service(S, scheduler="rr")
            return str(ei.value)

    from ipvs._handle import IPVS
    if hasattr(IPVS, "modify_service"):
        # merged: the wrapper resolves it on the (fake) handle, which lacks it
        assert "modify_service" in run(main())
    else:
        assert run(main()) == "'IPVS' object has no attribute 'modify_service'"


def test_cancelled_while_queued_is_never_sent(fake):
    async def main():
        async with ipvs.AsyncIPVS() as lb:
            sync = fake.made[-1]
            sync.gate.clear()
            held = asyncio.ensure_future(lb.info())
            await wait_entered(sync)
            doomed = asyncio.ensure_future(lb.add_service(svc(5)))
            b = lb.batch()

            async def send():
                async with b:
                    b.add_service(svc(6))
            doomed_batch = asyncio.ensure_future(send())
            kept = asyncio.ensure_future(lb.add_service(svc(7)))
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            doomed.cancel()
            doomed_batch.cancel()
            sync.gate.set()
            await held
            await kept
            with pytest.raises(asyncio.CancelledError):
                await doomed
            with pytest.raises(asyncio.CancelledError):
                await doomed_batch
            n = await lb.info()  # in step: its own reply
            return sync, b, n

    sync, b, n = run(main())
    assert ("add_service", 5) not in sync.log and ("add_service", 6) not in sync.log
    assert ("add_service", 7) in sync.log
    assert not b.sent and b.done and b.succeeded is None
    assert n == len(sync.log)


def test_cancelled_after_it_was_taken_runs_and_its_reply_is_dropped(fake):
    async def main():
        async with ipvs.AsyncIPVS() as lb:
            sync = fake.made[-1]
            sync.gate.clear()
            first = asyncio.ensure_future(lb.info())
            await wait_entered(sync)   # the worker has it: it goes to the "kernel"
            first.cancel()
            with pytest.raises(asyncio.CancelledError):
                await first
            sync.entered.clear()
            second = asyncio.ensure_future(lb.info())
            await asyncio.sleep(0.01)
            sync.gate.set()
            n2 = await second
            return sync, n2

    sync, n2 = run(main())
    assert sync.log == [("info",), ("info",)]
    assert n2 == 2  # the second caller got the second reply, not the first


def test_batch_reports_what_went_out(fake):
    async def main():
        async with ipvs.AsyncIPVS() as lb:
            b = lb.batch()
            with pytest.raises(TypeError, match="async with"):
                with b:  # type: ignore[attr-defined]
                    pass
            async with b:
                b.add_service(svc(1))
                b.add_service(svc(1001))
                b.add_service(svc(2))
                assert len(b) == 3 and not b.sent
            raise AssertionError("BatchError expected")

    with pytest.raises(BatchError) as ei:
        run(main())
    assert ei.value.succeeded == 2
    assert [c.service.port for c, _ in ei.value.failures] == [1001]

    async def block_fails():
        async with ipvs.AsyncIPVS() as lb:
            b = lb.batch()
            with pytest.raises(RuntimeError):
                async with b:
                    b.add_service(svc(1))
                    raise RuntimeError("the block failed")
            assert b.done and not b.sent
            with pytest.raises(ValueError, match="already sent"):
                b.add_service(svc(2))
            b2 = lb.batch()
            async with b2:
                b2.add_service(svc(3))
            assert b2.sent and b2.succeeded == 1 and b2.failures == []
            return fake.made[-1]

    sync = run(block_fails())
    assert sync.log == [("add_service", 3)]


def test_another_loop_is_refused_and_close_works_anywhere(fake):
    lb = ipvs.AsyncIPVS()
    assert run(lb.services()) == [S]
    with pytest.raises(RuntimeError, match="event loop it was first used in"):
        run(lb.services())
    run(lb.close())
    assert lb.closed and fake.made[-1].closed


def test_closed_handle(fake):
    async def main():
        lb = ipvs.AsyncIPVS()
        await lb.close()
        await lb.close()
        with pytest.raises(ValueError, match="closed"):
            await lb.info()
        with pytest.raises(ValueError, match="closed"):
            lb.batch()
        with pytest.raises(ValueError, match="closed"):
            lb.timeout = 1
        with pytest.raises(ValueError, match="closed"):
            async with lb:
                pass
        with pytest.raises(TypeError, match="async with"):
            with lb:  # type: ignore[attr-defined]
                pass

    run(main())


def test_timeout_is_checked_like_ipvs_and_applied_in_order(fake):
    async def main():
        async with ipvs.AsyncIPVS(timeout=1.0) as lb:
            sync = fake.made[-1]
            with pytest.raises(TypeError):
                lb.timeout = "1"
            with pytest.raises(ValueError):
                lb.timeout = -1
            lb.timeout = 2.0           # no worker yet: set at once
            assert sync.timeout == 2.0
            await lb.info()
            lb.timeout = 3.0           # behind the calls already queued
            await lb.info()
            lb.timeout = None
            await lb.info()
            assert lb.timeout is None
            return sync

    sync = run(main())
    assert sync.timeouts_seen == [2.0, 3.0, None]


def test_unclosed_handle_warns_and_its_worker_ends(fake):
    async def main():
        lb = ipvs.AsyncIPVS()
        await lb.info()
        worker = lb._worker.thread
        sync = fake.made[-1]
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            del lb
            gc.collect()
        return caught, worker, sync

    caught, worker, sync = run(main())
    assert any(issubclass(w.category, ResourceWarning) and "AsyncIPVS" in str(w.message)
               for w in caught)
    worker.join(5)
    assert not worker.is_alive() and sync.closed


def test_never_used_handle_closes_without_a_worker(fake):
    lb = ipvs.AsyncIPVS()
    run(lb.close())
    assert lb._worker.thread is None and fake.made[-1].closed
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        del lb
        gc.collect()
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)]


def test_after_fork_a_fresh_worker_and_handle(fake, monkeypatch):
    async def first(lb):
        return await lb.info()

    lb = ipvs.AsyncIPVS(netns="blue", timeout=4.0)
    assert run(first(lb)) == 1
    parent_sync = fake.made[-1]
    parent_worker = lb._worker
    # what os.register_at_fork runs in a child process
    monkeypatch.setattr(_async, "_generation", [_async._generation[0]])
    _async._forked()
    assert parent_worker.inherited

    async def child(lb):
        return await lb.info(), lb.fileno()

    # a new loop is fine: the child's handle is bound to no loop yet
    n, fd = run(child(lb))
    child_sync = fake.made[-1]
    assert child_sync is not parent_sync and n == 1 and fd == 99
    assert parent_sync.closed  # only the child's copy of the descriptor
    assert lb._worker is not parent_worker and lb._worker.thread is not parent_worker.thread
    assert child_sync.timeout == 4.0 and child_sync.backend == "netlink"
    run(lb.close())
    # the parent's worker thread (still alive in this process) is stopped
    parent_worker.put_now(_async._Request(_async._STOP, "close", ()))
    parent_worker.thread.join(5)


def test_uvloop_is_installed_for_the_tests():
    import uvloop  # the test extra has it: the kernel tests run on it
    assert uvloop.new_event_loop is not None


def test_example_is_in_the_mypy_files():
    try:
        import tomllib
    except ImportError:       # Python < 3.11: the project it came from
        import tomli as tomllib  # type: ignore[no-redef]
    with open(source_tree_file("pyproject.toml"), "rb") as f:
        files = tomllib.load(f)["tool"]["mypy"]["files"]
    assert "examples/async_example.py" in files or "examples" in files

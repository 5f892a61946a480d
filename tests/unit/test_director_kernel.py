"""ipvs/director/_kernel.py: the director's only door to the kernel, on
``ipvs.AsyncIPVS`` where the library has it (a stand-in here, with the
contract's shape: coroutines, ``batch()`` as an async context manager)."""

from __future__ import annotations

import asyncio

import ipvs
from ipvs.director._kernel import Kernel

SVC = ipvs.Service(address="10.0.0.1", port=80)
DEST = ipvs.Destination("10.0.1.1", 80)


class FakeAsyncIPVS:
    made = []

    def __init__(self, **kw):
        self.kw = kw
        self.calls = []
        self.batches = []
        self.closed = False
        FakeAsyncIPVS.made.append(self)

    async def table(self):
        return {SVC: [DEST]}

    def batch(self):
        owner = self

        class B:
            def __init__(self):
                self.queued = []

            def add_service(self, s):
                self.queued.append(("add_service", s))

            def update_destination(self, s, d):
                self.queued.append(("update_destination", s, d))

            async def __aenter__(self):
                return self

            async def __aexit__(self, *exc):
                owner.batches.append(self.queued)
        return B()

    async def close(self):
        self.closed = True


def test_async_handle_used_when_the_library_has_it(monkeypatch):
    monkeypatch.setattr(ipvs, "AsyncIPVS", FakeAsyncIPVS, raising=False)
    FakeAsyncIPVS.made.clear()

    async def go():
        k = Kernel(netns="lab-director")
        assert await k.table() == {SVC: [DEST]}
        await k.run([("add_service", SVC, None), ("update_destination", SVC, DEST)])
        await k.run([])                       # nothing: no batch at all
        await k.close()
    asyncio.run(go())
    (h,) = FakeAsyncIPVS.made
    assert h.kw == {"netns": "lab-director"}
    assert h.batches == [[("add_service", SVC), ("update_destination", SVC, DEST)]]
    assert h.closed


def test_sync_fallback_runs_in_a_thread(monkeypatch):
    import threading
    seen = {}

    class FakeIPVS:
        def __init__(self, **kw):
            seen["open"] = threading.current_thread().name

        def table(self):
            seen["table"] = threading.current_thread().name
            return {}

        def close(self):
            pass
    monkeypatch.delattr(ipvs, "AsyncIPVS", raising=False)
    monkeypatch.setattr(ipvs, "IPVS", FakeIPVS, raising=False)

    async def go():
        k = Kernel()
        assert await k.table() == {}
        await k.close()
    asyncio.run(go())
    main = threading.main_thread().name
    assert seen["open"] != main and seen["table"] != main

"""ipvs/director/_kernel.py: the director's only door to the kernel, on
``ipvs.AsyncIPVS`` (a stand-in here, with the contract's shape: coroutines,
``apply()`` taking ``current=``/``changed=`` and returning a plan), and on
the library's memory backend for the director's own tests."""

from __future__ import annotations

import asyncio

import pytest

import ipvs
from ipvs.director._kernel import Kernel, LazyHandle, MemoryKernel

SVC = ipvs.Service(address="10.0.0.1", port=80)
DEST = ipvs.Destination("10.0.1.1", 80)


class FakeAsyncIPVS:
    made = []

    def __init__(self, **kw):
        self.kw = kw
        self.applied = []
        self.closed = False
        FakeAsyncIPVS.made.append(self)

    async def table(self):
        return {SVC: [DEST]}

    async def apply(self, desired, **kw):
        self.applied.append((desired, kw))

        class Plan:
            changes = [("add_service", SVC, None)]
        return Plan()

    async def close(self):
        self.closed = True


def test_async_handle_and_the_library_apply(monkeypatch):
    monkeypatch.setattr(ipvs, "AsyncIPVS", FakeAsyncIPVS, raising=False)
    FakeAsyncIPVS.made.clear()

    async def go():
        k = Kernel(netns="lab-director")
        assert await k.table() == {SVC: [DEST]}
        changes = await k.apply({SVC: [DEST]}, {}, [SVC])
        assert changes == [("add_service", SVC, None)]
        assert await k.apply({}, {}) == []       # nothing owned: no call at all
        await k.close()
    asyncio.run(go())
    (h,) = FakeAsyncIPVS.made
    assert h.kw == {"netns": "lab-director", "backend": "auto"}
    assert h.applied == [({SVC: [DEST]}, {"current": {}, "changed": [SVC], "prune": True,
                                          "dry_run": False})]
    assert h.closed


def test_lazy_handle_made_once_and_remade_after_drop():
    made = []

    def make():
        made.append(FakeAsyncIPVS())
        return made[-1]

    async def go():
        lazy = LazyHandle(make)
        assert lazy.get() is lazy.get()
        first = made[0]
        await lazy.drop()
        assert first.closed and lazy.get() is not first
        assert lazy.new() is not lazy.get()
    asyncio.run(go())
    assert len(made) == 3


def test_memory_kernel_refuses_what_the_kernel_refuses():
    """The stand-in is the library's memory backend: a call the kernel
    refuses is refused (also under ``python -O``: no assert involved)."""
    async def go():
        k = MemoryKernel()
        with k.handle() as h:
            h.add_service(SVC)
        with pytest.raises(ipvs.BatchError) as ei:
            # current says the service is not there: adding it again fails
            await k.apply({SVC: [DEST]}, {})
        assert isinstance(ei.value.failures[0][1], ipvs.ServiceExistsError)
        # a batch is not a transaction: the destination after it went in
        assert list(k.tables[SVC.key][1].values()) == [DEST]
        two = ipvs.Destination("10.0.1.2", 80)
        changes = await k.apply({SVC: [DEST, two]}, {SVC: [DEST]})
        assert changes == [("add_destination", SVC, two)]
        assert set(k.tables[SVC.key][1].values()) == {DEST, two}
        assert k.batches[-1] == [("add_destination", SVC, two)]
        other = MemoryKernel()                   # each its own table
        assert other.tables == {}
    asyncio.run(go())

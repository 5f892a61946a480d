"""The backend interface (ipvs/_backend.py) is what both backend handles
offer: the compiled ``Handle`` (netlink, sockopt) and the memory backend's
``MemoryHandle`` have every member, with the interface's parameters; the
one call shape goes from `Batch`, `AsyncBatch` and the planner to the
handle's batch unchanged; AsyncIPVS reaches the handle through
`ipvs._handle.backend_of` only."""
from __future__ import annotations

import inspect
import re

import pytest

import ipvs
from ipvs import _async as _async_mod, _backend, _handle as _handle_mod, _libipvs, _memory
from ipvs._batch import Batch, CallQueue
from ipvs._async import AsyncBatch
from ipvs._handle import backend_of

IMPLEMENTATIONS = [_libipvs.Handle, _memory.MemoryHandle]

S = ipvs.Service(address="10.0.0.1", port=80)
D = ipvs.Destination(address="192.168.0.1")


def test_members_are_the_methods_ipvs_uses():
    assert set(_backend.MEMBERS) == {
        "backend", "closed", "close", "fileno", "set_timeout", "info", "services",
        "get_service", "destinations", "listing", "timeouts", "daemons", "read_proc_net",
        "batch", "_svc_op", "_dest_op", "flush", "zero", "set_timeouts", "start_daemon",
        "stop_daemon"}


@pytest.mark.parametrize("impl", IMPLEMENTATIONS, ids=lambda c: c.__name__)
def test_every_backend_has_every_member_with_its_parameters(impl):
    for name in _backend.MEMBERS:
        want = getattr(_backend.Backend, name)
        got = getattr(impl, name, None)
        assert got is not None, "%s lacks %s" % (impl.__name__, name)
        if isinstance(want, property):
            continue
        params = list(inspect.signature(want).parameters)
        assert list(inspect.signature(got).parameters) == params, (impl.__name__, name)


def test_ipvs_calls_nothing_of_its_handle_beyond_the_interface():
    # the module's own source (of the tree, or of the installed wheel)
    with open(_handle_mod.__file__, encoding="utf-8") as f:
        text = f.read()
    used = set(re.findall(r"(?:_live\(\)|\bh)\.(\w+)", text))
    assert used <= set(_backend.MEMBERS), used - set(_backend.MEMBERS)


def test_async_reaches_no_private_attribute_of_ipvs():
    with open(_async_mod.__file__, encoding="utf-8") as f:
        text = f.read()
    assert not re.search(r"\._h\b|_live\(\)|import _need|_libipvs", text)


def test_batches_share_one_queue_and_record_the_call_shape():
    assert issubclass(Batch, CallQueue) and issubclass(AsyncBatch, CallQueue)
    lb = ipvs.IPVS(backend="memory")
    try:
        sent = []

        class Spy:
            def batch(self, calls):
                sent.append(list(calls))
                return [None] * len(calls)
        b = Batch(lambda: Spy())
        b.add_service(S)
        b.add_destination(S, D)
        with pytest.raises(TypeError):
            b.delete_destination(S, "192.168.0.1")
        assert b.send() == 2
        # (method, service, destination) tuples, the destination's port filled in
        assert sent == [[("add_service", S, None), ("add_destination", S, D.replace(port=80))]]
        assert [(c.index, c.method) for c in b.calls] == [(0, "add_service"),
                                                          (1, "add_destination")]
        with pytest.raises(ValueError):
            b.send()
        assert backend_of(lb).backend == "memory"
    finally:
        lb.close()
    with pytest.raises(ValueError):
        backend_of(lb)

"""Batches: the calls queued by `IPVS.batch` (`Batch`) and `AsyncIPVS.batch`
(`AsyncBatch`, ipvs/_async.py), and the one way a list of calls reaches a
backend (`send_calls`).

Both batch classes share their queueing code (`CallQueue`): each method
checks its arguments once (TypeError) and records the call in the one call
shape, the tuple ``(method, service, destination)`` (ipvs/_backend.py), that
goes to ``Backend.batch`` unchanged. An `ipvs.Call` record (with its index)
is made only for what a caller reads: the failures of `BatchError`, and the
``calls`` list.
"""

from __future__ import annotations

from typing import Any, Callable, List, Sequence

from ipvs._backend import Backend, Op
from ipvs._model import Call, Destination, Service
from ipvs.errors import BatchError

__all__ = ["Batch", "CallQueue", "send_calls", "need", "service_op", "dest_op", "as_calls"]


def need(kind: type, name: str, value: Any) -> None:
    """TypeError unless ``value`` is a ``kind`` (the API's argument check)."""
    if not isinstance(value, kind):
        raise TypeError("%s must be a %s, not %s" % (name, kind.__name__, type(value).__name__))


def service_op(method: str, service: Service) -> Op:
    """The call ``method(service)``, its argument checked."""
    if service.__class__ is not Service:
        need(Service, "service", service)
    return (method, service, None)


def dest_op(method: str, service: Service, dest: Destination, name: str = "destination") -> Op:
    """The call ``method(service, dest)``, its arguments checked; a port of
    None becomes the service's."""
    if service.__class__ is not Service:
        need(Service, "service", service)
    if dest.__class__ is not Destination:
        need(Destination, name, dest)
    return (method, service, dest.for_service(service))


def send_calls(backend: Backend, ops: List[Op]) -> int:
    """Send ``ops`` as one batch; returns how many were applied. Raises
    `BatchError` listing each failed call (an `ipvs.Call` with its index)
    and its exception; the others stay applied."""
    results = backend.batch(ops)
    if results.count(None) == len(results):
        return len(results)
    failures = [(Call(op[0], op[1], op[2], i), e)
                for i, (op, e) in enumerate(zip(ops, results)) if e is not None]
    raise BatchError(failures, len(ops) - len(failures))


def as_calls(ops: Sequence[Op]) -> List[Call]:
    """``ops`` as `ipvs.Call` records, each with its index."""
    return [Call(m, s, d, i) for i, (m, s, d) in enumerate(ops)]


class CallQueue:
    """The add/update/delete methods of a batch: each checks its arguments at
    once (TypeError) and queues the call; ValueError once the batch was
    sent. ``calls``: the queued calls as `ipvs.Call` records (with their
    ``index``)."""

    def __init__(self) -> None:
        self._ops: List[Op] = []
        self.done = False

    def _queue(self, op: Op) -> None:
        if self.done:
            raise ValueError("this batch was already sent")
        self._ops.append(op)

    def _take(self) -> List[Op]:
        """The queued calls, the batch marked sent (ValueError if it was)."""
        if self.done:
            raise ValueError("this batch was already sent")
        self.done = True
        return self._ops

    @property
    def calls(self) -> List[Call]:
        return as_calls(self._ops)

    def add_service(self, service: Service) -> None:
        """Queue an `IPVS.add_service` call."""
        self._queue(service_op("add_service", service))

    def update_service(self, service: Service) -> None:
        """Queue an `IPVS.update_service` call (it replaces the whole record)."""
        self._queue(service_op("update_service", service))

    def delete_service(self, service: Service) -> None:
        """Queue an `IPVS.delete_service` call."""
        self._queue(service_op("delete_service", service))

    def add_destination(self, service: Service, dest: Destination) -> None:
        """Queue an `IPVS.add_destination` call."""
        self._queue(dest_op("add_destination", service, dest))

    def update_destination(self, service: Service, dest: Destination) -> None:
        """Queue an `IPVS.update_destination` call (it replaces the whole record)."""
        self._queue(dest_op("update_destination", service, dest))

    def delete_destination(self, service: Service, dest: Destination) -> None:
        """Queue an `IPVS.delete_destination` call."""
        self._queue(dest_op("delete_destination", service, dest))

    def __len__(self) -> int:
        return len(self._ops)


class Batch(CallQueue):
    """Collects add/update/delete calls; `IPVS.batch` sends them on exit.

    The methods take what the handle's methods of the same name take, check
    their arguments at once (TypeError) and record the call (``calls``
    lists them as `ipvs.Call` records); nothing reaches the kernel before
    `send` (or the end of the ``with`` block). A destination's omitted port
    (None) becomes the service's port when the call is recorded.
    """

    def __init__(self, live: Callable[[], Backend]) -> None:
        super().__init__()
        self._live = live

    def __enter__(self) -> "Batch":
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is not None:
            # the block failed: nothing was sent, nothing is sent
            self.done = True
            return None
        self.send()
        return None

    def send(self) -> int:
        """Send the recorded calls now; returns how many were applied.

        Raises `BatchError` if any failed: its ``failures`` lists (call,
        exception) in call order, each call with its ``index``; the calls
        that succeeded stay applied. ValueError when sent already."""
        ops = self._take()
        return send_calls(self._live(), ops)


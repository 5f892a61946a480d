"""`AsyncIPVS`: the IPVS handle for asyncio programs.

    async with ipvs.AsyncIPVS(netns="lab") as lb:
        services = await lb.services()
        async with lb.batch() as b:
            b.add_service(svc)
        plan = await lb.apply(desired)

Design, and why
---------------
One worker thread per handle owns one ordinary `ipvs.IPVS` handle; coroutines
put requests on a queue and await asyncio futures that the worker resolves
through ``loop.call_soon_threadsafe`` (one wake-up of the loop per round of
replies, not one per request).

* Why a worker and not a non-blocking socket driven by the loop: the C layer
  already does everything (netlink and sockopt, dumps, batches, extended acks,
  the per-call results of a batch) with the GIL released during kernel I/O.
  A loop-driven socket would need a second, incremental implementation of all
  of it in C, and the sockopt backend has no non-blocking form at all
  (``getsockopt`` answers synchronously).  The same code path as `IPVS` also
  gives the same results and the same exceptions, which is the contract.
* Requests in flight together: while the worker waits for the kernel, the
  loop keeps running and other tasks queue requests.  When the worker comes
  back, every single write (``add_/update_/delete_service`` and
  ``_destination``) waiting at the head of the queue is taken at once and sent
  as one batch (one ``sendmsg`` on netlink, as `IPVS.batch` does); the batch's
  per-call results are routed back to each caller in queue order, so every
  caller gets exactly the exception its own single call would have raised.
  (Where the batch path words an error more briefly than the single call, as
  sockopt's `UnsupportedError` does, the failed call is re-run alone: a call
  that failed changed nothing, and this one never reached the kernel.)
  Reads are never coalesced: each is one request.  A single write alone in
  the queue is sent as the ordinary single call.
* The loop is never blocked: parsing and converting a dump to model objects
  runs in the worker thread.  That conversion holds the GIL, but it runs
  Python-level code (the model's constructors), so the interpreter hands the
  GIL to the loop thread every switch interval (5 ms by default): the loop
  sees gaps of milliseconds, not the length of the dump (measured in the
  sandbox with 11,000 objects: worst gaps of a 1 ms ticker about 12 ms
  against 5 ms idle; a sleeping thread beside a sync table() still woke 530
  times a second, 703 idle). tests/kernel/test_async.py asserts it.
* A handle belongs to the event loop it is first used in: futures are bound
  to a loop, and replies are delivered to that loop.  Another loop gets a
  `RuntimeError` saying so (open one handle per loop; pytest-asyncio gives
  each test its own loop, so open the handle inside the test or in a fixture
  of the same scope as the loop).
* Cancellation: each request is claimed, under a lock, either by the worker
  (it is about to go to the kernel) or by its cancelled caller (it is dropped
  and never sent).  So after a `CancelledError` the caller's request either
  never reached the kernel or was handed to it whole; in the second case it
  may have been applied (the kernel cannot take it back) and its reply is
  discarded, never given to another caller: the worker answers requests
  strictly in the order it sends them.  `AsyncBatch.sent` says which case a
  cancelled batch is in; a cancelled `apply` either wrote nothing or went to
  the kernel whole (call it again: it converges and its plan shows what was
  still missing).
* Timeouts: ``timeout`` is the kernel-reply timeout of `IPVS` (past it
  `IPVSTimeoutError`).  To bound the whole wait, queue time included, use
  ``asyncio.wait_for`` / ``asyncio.timeout``: that is a cancellation as above.
* Per-call cost: the loop hands the worker one list of requests per loop
  iteration (one wake-up per round, however many tasks called), the worker
  answers one round with one ``call_soon_threadsafe``, and nothing on the
  per-call path makes a syscall: ``asyncio.get_running_loop()`` calls
  ``getpid()``, and a ``threading.Lock`` may cost a syscall too; under
  User-Mode Linux (the sandbox) each is ~10-30 us, more than the rest of a
  call. So the running loop is recognised by thread (one loop at most runs
  in a thread), fork by a counter that ``os.register_at_fork`` bumps, and
  the worker claims a whole group of writes under one lock acquisition.
  Measured (docs/benchmarks.md, "asyncio"): 100 tasks add destinations
  several times faster than the sync handle one call at a time.
* Closing: ``await close()`` refuses new calls at once, lets the requests
  already queued finish, then closes the socket and ends the worker.  An
  unclosed handle warns with `ResourceWarning` when collected.
* fork: a handle inherited by a child process starts a fresh worker in the
  child on its first use there, with a fresh socket in the handle's network
  namespace (read from the inherited socket with SIOCGSKNS; the inherited
  socket is never read or written in the child, only its copy is closed), and
  is bound to no loop until then.

Every kernel-facing method of `IPVS` is generated from one list of names
(`METHODS`) and resolved against `IPVS` when called, so a method added to
`IPVS` needs only its name here.
"""

from __future__ import annotations

import asyncio
import collections
import copy
import os
import queue
import threading
import warnings
import weakref
from typing import Any, Callable, Deque, Dict, List, Optional, Tuple

from ipvs._batch import CallQueue, dest_op, send_calls, service_op
from ipvs._handle import IPVS, NetnsLike, backend_of, timeout_ms
from ipvs._model import Call, Destination, Service
from ipvs.errors import BatchError, IPVSError, UnsupportedError

__all__ = ["AsyncIPVS", "AsyncBatch", "METHODS", "COALESCED"]

#: Single writes that concurrent callers may have sent together in one batch.
COALESCED = ("add_service", "update_service", "delete_service",
             "add_destination", "update_destination", "delete_destination")

#: Every method of `IPVS` that talks to the kernel; each is a coroutine of
#: `AsyncIPVS` with the same name, arguments, results and exceptions.
METHODS = ("info", "services", "get_service", "add_service", "update_service",
           "delete_service", "destinations", "add_destination", "update_destination",
           "delete_destination", "modify_service", "modify_destination", "table", "flush",
           "zero", "timeouts", "set_timeouts", "daemons", "start_daemon", "stop_daemon",
           "connections", "stats", "apply")

#: Methods of `IPVS` that are not kernel calls (not coroutines on `AsyncIPVS`).
NOT_KERNEL = ("batch", "close", "fileno")

#: The most single writes one coalesced batch carries.
MAX_COALESCE = 1024

_QUEUED, _TAKEN, _DROPPED = 0, 1, 2

# Bumped in a child process after fork(): a worker made before it belongs to
# the parent. (A counter, not os.getpid() on every call: getpid is a syscall,
# and a slow one under User-Mode Linux.)
_generation = [0]


def _forked() -> None:
    _generation[0] += 1


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forked)

_WRITE, _CALL, _BATCH, _CONTROL, _STOP = range(5)
SIOCGSKNS = 0x894C  # the network namespace of a socket, as a new fd (Linux 4.9)
_get_ident = threading.get_ident


class _Request:
    """One call waiting for (or handed to) the worker."""

    __slots__ = ("kind", "name", "args", "kwargs", "future", "state", "batch")

    def __init__(self, kind: int, name: str, args: Tuple[Any, ...],
                 kwargs: Optional[Dict[str, Any]] = None) -> None:
        self.kind = kind
        self.name = name
        self.args = args
        self.kwargs = kwargs
        self.future: Optional[asyncio.Future[Any]] = None
        self.state = _QUEUED
        self.batch: Optional[AsyncBatch] = None


# (request, ok, value or exception)
_Outcome = Tuple[_Request, bool, Any]


def _each(exc: BaseException) -> BaseException:
    """A copy of ``exc`` for one more caller (a raised exception collects that
    caller's traceback), or ``exc`` itself where it cannot be copied."""
    try:
        return copy.copy(exc)
    except Exception:
        return exc


class _Worker:
    """The thread owning the sync handle. Holds no reference to the
    `AsyncIPVS`, so that an unclosed handle can still be collected (and warn)."""

    def __init__(self, sync: IPVS) -> None:
        self.sync = sync
        # lists of requests: what the loop queued during one of its iterations
        self.queue: "queue.SimpleQueue[List[_Request]]" = queue.SimpleQueue()
        self.pending: List[_Request] = []
        self.claim = threading.Lock()
        self.thread: Optional[threading.Thread] = None
        self.generation = _generation[0]

    @property
    def inherited(self) -> bool:
        """True in a child process that inherited this worker over fork()."""
        return self.generation != _generation[0]

    def start(self) -> None:
        t = threading.Thread(target=self._run, name="ipvs-async", daemon=True)
        self.thread = t
        t.start()

    def submit(self, req: _Request, loop: asyncio.AbstractEventLoop) -> None:
        """Queue ``req``; the requests of one loop iteration reach the worker
        together, as one list, when that iteration's tasks have all run (one
        wake-up of the worker per round, and every waiting write in it)."""
        if self.thread is None:
            self.start()
        if not self.pending:
            loop.call_soon(self.flush)
        self.pending.append(req)

    def flush(self) -> None:
        reqs = self.pending
        if reqs:
            self.pending = []
            self.queue.put(reqs)

    def put_now(self, req: _Request) -> None:
        """Queue ``req`` behind everything already submitted (no loop needed)."""
        if self.thread is None:
            self.start()
        self.flush()
        self.queue.put([req])

    # ------------------------------------------------------------ the thread
    def _take(self, req: _Request) -> bool:
        """Claim ``req`` for sending; False if its caller dropped it first."""
        with self.claim:
            fut = req.future
            # Task.cancel() cancels the awaited future at once, in the loop's
            # thread; the caller marks the request dropped only when its
            # CancelledError is delivered, an iteration later: either counts
            if req.state == _DROPPED or (fut is not None and fut.cancelled()):
                req.state = _DROPPED
                return False
            req.state = _TAKEN
            if req.batch is not None:
                req.batch.sent = True
            return True

    def _run(self) -> None:
        q = self.queue
        todo: Deque[_Request] = collections.deque()
        while True:
            if not todo:
                todo.extend(q.get())
            while True:  # whatever else is waiting, without waiting for more
                try:
                    todo.extend(q.get_nowait())
                except queue.Empty:
                    break
            req = todo.popleft()
            if req.kind == _STOP:
                try:
                    self.sync.close()
                    self._deliver([(req, True, None)])
                except BaseException as e:  # pragma: no cover - close() does not fail
                    self._deliver([(req, False, e)])
                return
            if req.kind == _CONTROL:
                try:
                    setattr(self.sync, req.name, req.args[0])
                except BaseException:  # pragma: no cover - validated before queuing
                    pass
                continue
            if req.kind == _WRITE:
                group = [req]
                while todo and todo[0].kind == _WRITE and len(group) < MAX_COALESCE:
                    group.append(todo.popleft())
                self._deliver(self._writes(group))
            elif self._take(req):
                self._deliver([self._one(req)])

    def _one(self, req: _Request) -> _Outcome:
        try:
            if req.kind == _BATCH:
                # an AsyncBatch's calls, checked when queued: to the backend as they are
                return (req, True, send_calls(backend_of(self.sync), req.args[0]))
            fn = getattr(self.sync, req.name)
            if req.kind == _WRITE:   # a single write alone: the ordinary single call
                _, service, dest = req.args
                return (req, True, fn(service) if dest is None else fn(service, dest))
            return (req, True, fn(*req.args, **(req.kwargs or {})))
        except BaseException as e:
            return (req, False, e)

    def _writes(self, group: List[_Request]) -> List[_Outcome]:
        live = []
        with self.claim:  # as _take(), once for the group
            for r in group:
                fut = r.future
                if r.state == _DROPPED or (fut is not None and fut.cancelled()):
                    r.state = _DROPPED
                else:
                    r.state = _TAKEN
                    live.append(r)
        if len(live) <= 1:
            return [self._one(r) for r in live]
        # each request's args is its call, (method, service, destination),
        # checked when it was made: the group goes to the backend's batch as is
        try:
            results = backend_of(self.sync).batch([r.args for r in live])
        except BaseException as e:  # the transport failed: every caller hears it
            return [(r, False, _each(e)) for r in live]
        out: List[_Outcome] = []
        for r, err in zip(live, results):
            if err is None:
                out.append((r, True, None))
            elif isinstance(err, UnsupportedError):
                out.append(self._one(r))  # never sent; the single call names the feature
            else:
                out.append((r, False, err))
        return out

    def _deliver(self, outcomes: List[_Outcome]) -> None:
        if not outcomes:
            return
        fut = outcomes[0][0].future
        if fut is None:  # pragma: no cover - every answered request has one
            return
        try:
            fut.get_loop().call_soon_threadsafe(_settle, outcomes)
        except RuntimeError:
            pass  # the loop is closed: nobody is waiting any more


def _settle(outcomes: List[_Outcome]) -> None:
    """In the loop: hand each caller its reply (dropped for a cancelled one)."""
    for req, ok, value in outcomes:
        if req.batch is not None:
            req.batch._finished(ok, value)
        fut = req.future
        if fut is None or fut.done():
            continue
        if ok:
            fut.set_result(value)
        else:
            fut.set_exception(value)


class AsyncBatch(CallQueue):
    """Collects add/update/delete calls; sent together when its ``async with``
    block ends (or by ``await send()``), in as few syscalls as `IPVS.batch`.
    Its methods are `Batch`'s (ipvs/_batch.py: the same checks, the same
    queue): only sending differs.

    After sending: ``sent`` is True once the calls were handed to the kernel
    (also when the sending task was cancelled after that point: they may
    have been applied; False means none of them went out), ``succeeded`` and
    ``failures`` are as in `BatchError` (set when the kernel's replies come,
    None / [] before)."""

    def __init__(self, owner: "AsyncIPVS") -> None:
        super().__init__()
        self._owner = owner
        self.sent = False
        self.succeeded: Optional[int] = None
        self.failures: List[Tuple[Call, IPVSError]] = []

    async def __aenter__(self) -> "AsyncBatch":
        return self

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is not None:
            self.done = True  # the block failed: nothing is sent
            return None
        await self.send()
        return None

    def __enter__(self) -> None:
        raise TypeError("AsyncIPVS.batch() is an async context manager: use 'async with'")

    def __exit__(self, *exc: Any) -> None:  # pragma: no cover - __enter__ raised
        return None

    async def send(self) -> int:
        """Send the recorded calls now; returns how many were applied.
        Raises `BatchError` if any failed (the others stay applied)."""
        ops = self._take()
        if not ops:
            self.succeeded = 0
            return 0
        req = _Request(_BATCH, "batch", (ops,))
        req.batch = self
        result: int = await self._owner._submit(req)
        return result

    def _finished(self, ok: bool, value: Any) -> None:
        if ok:
            self.succeeded = value
        elif isinstance(value, BatchError):
            self.succeeded = value.succeeded
            self.failures = list(value.failures)

    def __repr__(self) -> str:
        n = len(self)
        return "<ipvs.AsyncBatch %d call%s%s>" % (n, "" if n == 1 else "s",
                                                   " sent" if self.sent else "")


def _netns_of_socket(fd: int) -> Optional[int]:
    """A new fd of the network namespace the socket ``fd`` lives in, or None."""
    try:
        import fcntl
        return int(fcntl.ioctl(fd, SIOCGSKNS))
    except (OSError, ValueError):
        return None


class AsyncIPVS:
    """An asyncio handle on the IPVS table of one network namespace.

    ``AsyncIPVS(*, backend="auto", netns=None, timeout=5.0, **options)``
    takes the keywords of `IPVS` (all passed through) and opens the socket at
    once. Every kernel-facing method of `IPVS` is a coroutine here (see
    `METHODS`); ``batch()`` returns an `AsyncBatch` for ``async with``.
    Many tasks may use one handle at once; it belongs to the event loop it is
    first used in. See the module's documentation for the design.
    """

    def __init__(self, *, backend: str = "auto", netns: NetnsLike = None,
                 timeout: Optional[float] = 5.0, **options: Any) -> None:
        self._worker: Optional[_Worker] = None
        self._closed = True
        self._sync = IPVS(backend=backend, netns=netns, timeout=timeout, **options)
        self._backend: str = self._sync.backend
        self._netns = netns
        self._options = options
        self._timeout = timeout
        self._loop: Optional[Callable[[], Optional[asyncio.AbstractEventLoop]]] = None
        self._loop_thread = 0
        self._worker = _Worker(self._sync)
        self._closed = False
        self._closing: Optional[asyncio.Future[Any]] = None

    # -------------------------------------------------------------- handle
    @property
    def backend(self) -> str:
        """What the handle speaks ("netlink", "sockopt", ...): what "auto" chose."""
        return self._backend

    @property
    def closed(self) -> bool:
        """True once `close` was called (new calls raise `ValueError`)."""
        return self._closed

    @property
    def timeout(self) -> Optional[float]:
        """Seconds to wait for the kernel's reply to one request (None:
        forever); past it `IPVSTimeoutError`. Setting it applies to the
        requests queued after the change."""
        return self._timeout

    @timeout.setter
    def timeout(self, value: Optional[float]) -> None:
        timeout_ms(value)  # the same checks and errors as IPVS
        self._check_open()
        w = self._fresh_worker()
        if w.thread is None:
            w.sync.timeout = value
        else:
            w.put_now(_Request(_CONTROL, "timeout", (value,)))
        self._timeout = value

    def fileno(self) -> int:
        """The kernel socket's descriptor (for diagnostics; do not read it)."""
        self._check_open()
        return self._fresh_worker().sync.fileno()

    def _check_open(self) -> None:
        if self._closed:
            raise ValueError("I/O operation on a closed IPVS handle")

    def _bind(self) -> asyncio.AbstractEventLoop:
        loop = asyncio.get_running_loop()
        ref = self._loop
        if ref is None:
            self._loop = weakref.ref(loop)
            self._loop_thread = threading.get_ident()
        elif ref() is not loop:
            raise RuntimeError(
                "this AsyncIPVS belongs to the event loop it was first used in; it cannot "
                "be used from another event loop (open one handle per loop)")
        return loop

    def _fresh_worker(self) -> _Worker:
        """The worker; in a child process after fork(), a new one with a new
        socket in the handle's namespace."""
        w = self._worker
        assert w is not None
        if w.generation == _generation[0]:
            return w
        old = w.sync
        ns_fd = None
        netns = self._netns
        if netns is None:
            try:
                ns_fd = _netns_of_socket(old.fileno())
            except ValueError:
                ns_fd = None
            netns = ns_fd
        try:
            old.close()  # only the child's copy of the descriptor
        except Exception:  # pragma: no cover
            pass
        try:
            sync = IPVS(backend=self._backend, netns=netns, timeout=self._timeout,
                        **self._options)
        finally:
            if ns_fd is not None:
                os.close(ns_fd)
        self._sync = sync
        self._worker = w = _Worker(sync)
        self._loop = None
        return w

    def _enqueue(self, req: _Request) -> "asyncio.Future[Any]":
        """Queue ``req`` for the worker; the future its reply will settle."""
        if self._closed:
            self._check_open()
        w = self._worker
        if w is None or w.generation != _generation[0]:
            w = self._fresh_worker()  # first: a child after fork() is bound to no loop yet
        # Is the running loop the bound one? One loop at most runs in a thread,
        # so: the bound loop is running, in this thread. (Cheaper than
        # asyncio.get_running_loop(), which calls getpid(): a syscall, slow
        # under User-Mode Linux.)
        ref = self._loop
        loop = ref() if ref is not None else None
        if loop is None or self._loop_thread != _get_ident() or not loop.is_running():
            loop = self._bind()
        fut = loop.create_future()
        req.future = fut
        w.submit(req, loop)
        return fut

    def _drop(self, req: _Request) -> None:
        """The caller of ``req`` was cancelled: unsent, it is never sent."""
        w = self._worker
        if w is not None:
            with w.claim:
                if req.state == _QUEUED:
                    req.state = _DROPPED

    async def _submit(self, req: _Request) -> Any:
        fut = self._enqueue(req)
        try:
            return await fut
        except asyncio.CancelledError:
            self._drop(req)
            raise

    async def close(self) -> None:
        """Refuse new calls, let the queued ones finish, close the socket.
        Idempotent."""
        if self._closing is not None:
            await asyncio.shield(self._closing)
            return
        if self._closed:
            return
        self._closed = True
        w = self._worker
        assert w is not None
        if w.thread is None or w.inherited:
            if not w.inherited:
                w.sync.close()
            else:
                try:
                    w.sync.close()  # the child's copy of the descriptor
                except Exception:  # pragma: no cover
                    pass
            return
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        self._closing = fut
        req = _Request(_STOP, "close", ())
        req.future = fut
        w.put_now(req)
        await asyncio.shield(fut)
        thread = w.thread
        if thread is not None:
            thread.join(1.0)

    async def __aenter__(self) -> "AsyncIPVS":
        self._check_open()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    def __enter__(self) -> None:
        raise TypeError("AsyncIPVS is an async context manager: use 'async with'")

    def __exit__(self, *exc: Any) -> None:  # pragma: no cover - __enter__ raised
        return None

    def __del__(self) -> None:
        if getattr(self, "_closed", True):
            return
        self._closed = True
        warnings.warn("unclosed %r" % (self,), ResourceWarning, stacklevel=2)
        w = self._worker
        if w is None:
            return
        try:
            if w.thread is not None and not w.inherited:
                w.put_now(_Request(_STOP, "close", ()))  # the worker closes the socket
            else:
                w.sync.close()
        except Exception:  # pragma: no cover - interpreter shutdown
            pass

    def __repr__(self) -> str:
        if self._closed:
            return "<ipvs.AsyncIPVS closed>"
        ns = " netns=%r" % (self._netns,) if isinstance(self._netns, (str, os.PathLike)) else ""
        return "<ipvs.AsyncIPVS backend=%r%s>" % (self._backend, ns)

    # ---------------------------------------------------------------- bulk
    def batch(self) -> AsyncBatch:
        """An async context manager collecting calls, sent together on exit."""
        self._check_open()
        return AsyncBatch(self)


def _kernel_call(name: str) -> Callable[..., Any]:
    async def call(self: AsyncIPVS, *args: Any, **kwargs: Any) -> Any:
        if not hasattr(IPVS, name):
            # as the sync handle says it, for a method this version lacks
            raise AttributeError("'IPVS' object has no attribute %r" % name)
        return await self._submit(_Request(_CALL, name, args, kwargs))
    return call


def _service_write(name: str) -> Callable[..., Any]:
    async def call(self: AsyncIPVS, service: Service) -> None:
        req = _Request(_WRITE, name, service_op(name, service))
        fut = self._enqueue(req)
        try:
            await fut
        except asyncio.CancelledError:
            self._drop(req)
            raise
    return call


def _dest_write(name: str) -> Callable[..., Any]:
    async def call(self: AsyncIPVS, service: Service, dest: Destination) -> None:
        req = _Request(_WRITE, name, dest_op(name, service, dest, "dest"))
        fut = self._enqueue(req)
        try:
            await fut
        except asyncio.CancelledError:
            self._drop(req)
            raise
    return call


def _install() -> None:
    for name in METHODS:
        if name in COALESCED:
            fn = (_dest_write if name.endswith("_destination") else _service_write)(name)
        else:
            fn = _kernel_call(name)
        fn.__name__ = name
        fn.__qualname__ = "AsyncIPVS." + name
        # help() and inspect.signature() show the sync method's real parameters
        setattr(fn, "__wrapped__", getattr(IPVS, name))
        doc = getattr(getattr(IPVS, name, None), "__doc__", None)
        fn.__doc__ = ("Coroutine of `IPVS.%s`: same arguments, result and exceptions.%s"
                      % (name, "\n\n" + doc if doc else ""))
        setattr(AsyncIPVS, name, fn)


_install()

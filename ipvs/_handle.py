"""The `IPVS` handle: the friendly API over the Cython module.

Arguments are checked here (types, the model's own validation) before anything
reaches C; the Cython layer converts and raises the mapped kernel errors.
"""

from __future__ import annotations

import gc
import ipaddress
import os
import socket
import threading
import warnings
from typing import (Any, Dict, Iterable, List, Mapping, Optional, Tuple, Union)

from ipvs import _libipvs, _memory, _plan
from ipvs._backend import Backend
from ipvs._batch import Batch, need as _need, send_calls
from ipvs._model import (Call, Connection, Daemon, DaemonState, Destination, Info, Protocol,
                         Service, Stats, Timeouts)
# the planner's names that tests and older callers import from here
from ipvs._plan import (Change, Plan, PruneLike, ScopeLike, _dest_key, _dest_map,  # noqa: F401
                        _dest_map_py, _listed_map, _svc_key, _want_map, plan_changes)
from ipvs.errors import (IPVSError, IPVSUnavailableError, destination_missing,
                         inconsistent_dump)

__all__ = ["IPVS", "Batch", "Change", "Plan", "Call", "backend_of", "timeout_ms"]

NetnsLike = Union[None, str, "os.PathLike[str]", int]

# the fields that make a record's identity: `modify_*` must not change them
_SERVICE_KEY_FIELDS = frozenset({"address", "port", "protocol", "fwmark", "family"})
_DEST_KEY_FIELDS = frozenset({"address", "port", "family"})
# read-back state a write does not carry
_DEST_READ_ONLY = frozenset({"active_connections", "inactive_connections",
                             "persistent_connections", "stats"})


def _open_netns(netns: NetnsLike) -> Tuple[int, bool]:
    """Return (fd, owned) for the netns argument; -1 for the caller's own."""
    if netns is None:
        return -1, False
    if isinstance(netns, bool):
        raise TypeError("netns must be a name, a path or a file descriptor, not bool")
    if isinstance(netns, int):
        if netns < 0:
            raise ValueError("netns: a file descriptor must be >= 0, got %d" % netns)
        return netns, False
    if isinstance(netns, (str, os.PathLike)):
        text = os.fspath(netns)
        if not isinstance(text, str) or not text:
            raise ValueError("netns: empty name")
        path = text if "/" in text else os.path.join("/run/netns", text)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError as e:
            raise FileNotFoundError(e.errno, "network namespace %r not found" % text, path) from None
        return fd, True
    raise TypeError("netns must be a name, a path or a file descriptor, not %s"
                    % type(netns).__name__)


def timeout_ms(timeout: Optional[float]) -> int:
    """`IPVS`'s ``timeout`` (seconds or None) checked, as the backend's
    milliseconds (0: forever). TypeError / ValueError for a bad value."""
    if timeout is None:
        return 0
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise TypeError("timeout must be a number of seconds or None")
    if not timeout > 0:
        raise ValueError("timeout must be > 0 seconds (or None to wait forever)")
    return max(1, min(int(timeout * 1000 + 0.5), 2**31 - 1))


def _unique(keys: List[Any]) -> bool:
    return len(set(keys)) == len(keys)


def _listing_unique(listing: List[Tuple[Service, List[Destination]]]) -> bool:
    """No service, and no destination within its service, appears twice."""
    return (_unique([s.key for s, _ in listing])
            and all(_unique([d.key for d in dests]) for _, dests in listing))


def _netns_problem(fd: int) -> Optional[str]:
    """Why ``fd`` cannot be a network namespace (for the error message), or
    None when it looks like one (the failure was elsewhere)."""
    try:
        st = os.fstat(fd)
    except OSError as e:
        return "not an open file descriptor (%s)" % e.strerror
    try:
        nsfs = os.stat("/proc/thread-self/ns/net").st_dev
    except OSError:
        return None
    if st.st_dev != nsfs:
        return "not a namespace file"
    try:
        import fcntl
        kind = fcntl.ioctl(fd, 0xB703)  # NS_GET_NSTYPE (Linux 4.11)
    except OSError:
        return None
    if kind != 0x40000000:  # CLONE_NEWNET
        return "a namespace, but not a network namespace"
    return None


class IPVS:
    """A handle on the kernel's IPVS table of one network namespace.

    ``IPVS(*, backend="auto", netns=None, timeout=5.0)`` opens one kernel
    socket:

    * ``backend``: "auto" (netlink, or the legacy sockopt interface where the
      kernel has no IPVS netlink family), "netlink" or "sockopt". Where
      sockopt cannot do something (IPv6, tunnel settings...) the call raises
      `UnsupportedError`.
    * ``netns``: None (the caller's namespace), a name as ``ip netns`` uses
      (/run/netns/NAME), a path (/proc/PID/ns/net) or an open descriptor.
    * ``timeout``: seconds to wait for each kernel reply (None: forever);
      past it `IPVSTimeoutError`.

    Raises `IPVSUnavailableError` when the kernel has no IPVS,
    `IPVSPermissionError` without CAP_NET_ADMIN, FileNotFoundError for an
    unknown namespace name, TypeError / ValueError for bad arguments.

    Use it as a context manager or call `close`; methods on a closed handle
    raise ValueError. One handle may be shared by threads (calls
    serialize). Every kernel error is an `IPVSError` whose class says what
    happened (`ServiceExistsError`, `DestinationNotFoundError`...).
    """

    def __init__(self, *, backend: str = "auto", netns: NetnsLike = None,
                 timeout: Optional[float] = 5.0, kernel: Optional[str] = None) -> None:
        self._h: Any = None
        if not isinstance(backend, str):
            raise TypeError("backend must be a str, not %s" % type(backend).__name__)
        if backend == "memory" or kernel is not None or (backend == "auto" and _memory.auto_enabled()):
            # the memory backend (ipvs/_memory.py): kernel= picks whose behaviour it follows
            self._h = _memory.open_handle(netns, kernel, timeout_ms(timeout), backend)
        else:
            if backend not in _libipvs.BACKENDS:
                raise ValueError("backend must be 'auto', 'netlink', 'sockopt' or 'memory', "
                                 "got %r" % backend)
            ms = timeout_ms(timeout)
            fd, owned = _open_netns(netns)
            try:
                self._h = _libipvs.Handle(_libipvs.BACKENDS[backend], fd, ms)
            except IPVSError as e:
                why = _netns_problem(fd) if fd >= 0 else None
                if why is None:
                    raise
                raise type(e)(e.errno or 0, "netns %r is %s" % (netns, why), e.operation) from None
            finally:
                if owned:
                    os.close(fd)
        self._timeout = timeout
        self._netns = netns if not isinstance(netns, int) else None
        # held across the read and the write of modify_service/modify_destination
        self._modify_lock = threading.RLock()

    # -------------------------------------------------------------- handle
    @property
    def backend(self) -> str:
        """ "netlink" or "sockopt": what this handle speaks."""
        return self._live().backend  # type: ignore[no-any-return]

    @property
    def closed(self) -> bool:
        """True once `close` was called."""
        return self._h is None or self._h.closed

    @property
    def timeout(self) -> Optional[float]:
        """Seconds to wait for a kernel reply (None: forever); settable."""
        return self._timeout

    @timeout.setter
    def timeout(self, value: Optional[float]) -> None:
        ms = timeout_ms(value)
        self._live().set_timeout(ms)
        self._timeout = value

    def _live(self) -> Any:
        h = self._h
        if h is None or h.closed:
            raise ValueError("I/O operation on a closed IPVS handle")
        return h

    def close(self) -> None:
        """Close the kernel socket. Idempotent."""
        if self._h is not None:
            self._h.close()

    def __enter__(self) -> "IPVS":
        self._live()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        h = getattr(self, "_h", None)
        if h is not None and not h.closed:
            warnings.warn("unclosed %r" % (self,), ResourceWarning, stacklevel=2)
            h.close()

    def __repr__(self) -> str:
        if self.closed:
            return "<ipvs.IPVS closed>"
        ns = " netns=%r" % (self._netns,) if self._netns is not None else ""
        return "<ipvs.IPVS backend=%r%s>" % (self._h.backend, ns)

    def fileno(self) -> int:
        """The kernel socket's descriptor (for diagnostics; do not read it)."""
        return self._live().fileno()  # type: ignore[no-any-return]

    # ---------------------------------------------------------------- info
    def info(self) -> Info:
        """The kernel's IPVS version and connection hash table size."""
        version, size = self._live().info()
        vi = ((version >> 16) & 0xFF, (version >> 8) & 0xFF, version & 0xFF)
        return Info("%d.%d.%d" % vi, vi, size)

    # ------------------------------------------------------------ services
    #: how many dumps a consistent read takes at most before it gives up
    CONSISTENT_TRIES = 10

    def services(self, *, consistent: bool = False) -> List[Service]:
        """Every virtual service, each with ``.stats``.

        The kernel's dumps are not atomic: one taken while the table changes
        may skip or repeat entries, silently. ``consistent=True`` dumps again
        until two consecutive dumps agree (stats aside) and neither repeats a
        service; after ``CONSISTENT_TRIES`` dumps it raises
        `InconsistentDumpError` (an `IPVSError`, errno EAGAIN)."""
        h = self._live()
        if not consistent:
            return h.services()  # type: ignore[no-any-return]
        return self._consistent("services", h.services,  # type: ignore[no-any-return]
                                lambda svcs: _unique([s.key for s in svcs]))

    def _consistent(self, op: str, dump: Any, valid: Any) -> Any:
        """Dump until two consecutive, duplicate-free dumps are equal."""
        prev = None
        for _ in range(self.CONSISTENT_TRIES):
            cur = dump()
            if not valid(cur):
                prev = None     # a repeated entry: this dump raced a change
                continue
            if prev is not None and cur == prev:
                return cur
            prev = cur
        raise inconsistent_dump(op, self.CONSISTENT_TRIES)

    def get_service(self, service: Service) -> Service:
        """The kernel's record of ``service`` (looked up by its key fields:
        address, port and protocol, or fwmark and family), with ``.stats``.
        Raises `ServiceNotFoundError` when there is none."""
        _need(Service, "service", service)
        return self._live().get_service(service)  # type: ignore[no-any-return]

    def add_service(self, service: Service) -> None:
        """Create the virtual service. Raises `ServiceExistsError` when its
        key is taken, `SchedulerNotFoundError` /
        `PersistenceEngineNotFoundError` for an unknown scheduler or engine,
        `InvalidRequestError` for values the kernel refuses."""
        _need(Service, "service", service)
        self._live()._svc_op("add_service", service)

    def update_service(self, service: Service) -> None:
        """Replace the whole record of the service with this key: every
        setting is written, a default in ``service`` (scheduler "wlc", no
        persistence...) overwrites what the kernel had. To change only some
        settings, use `modify_service`. Raises `ServiceNotFoundError` when
        there is no such service, `SchedulerNotFoundError` for an unknown
        scheduler."""
        _need(Service, "service", service)
        self._live()._svc_op("update_service", service)

    def delete_service(self, service: Service) -> None:
        """Delete the service (by its key) and its destinations. Raises
        `ServiceNotFoundError` when there is none."""
        _need(Service, "service", service)
        self._live()._svc_op("delete_service", service)

    def modify_service(self, service: Service, /, **changes: Any) -> None:
        """Change only the named settings of an existing service: read its
        current record by ``service``'s key, apply ``changes`` (fields of
        `Service`, e.g. ``scheduler="rr"``) and write it back, holding this
        handle's lock across the read and the write (another thread's
        ``modify_*`` on the same handle waits). Raises `ServiceNotFoundError`
        when there is no such service, ValueError when ``changes`` names a
        key field (address, port, protocol, fwmark, family), TypeError /
        ValueError for unknown fields or bad values."""
        _need(Service, "service", service)
        bad = _SERVICE_KEY_FIELDS.intersection(changes)
        if bad:
            raise ValueError("modify_service: %s identify the service and cannot be changed "
                             "(delete and add it instead)" % ", ".join(sorted(bad)))
        if "stats" in changes:
            raise ValueError("modify_service: stats are read-only")
        with self._modify_lock:
            current = self.get_service(service)
            self.update_service(current.replace(**changes))

    # -------------------------------------------------------- destinations
    def destinations(self, service: Service) -> List[Destination]:
        """The service's real servers, each with counters and ``.stats``.
        A service that does not exist raises ServiceNotFoundError on both
        backends (netlink's dump alone would just be empty)."""
        _need(Service, "service", service)
        return self._live().destinations(service)  # type: ignore[no-any-return]

    def add_destination(self, service: Service, dest: Destination) -> None:
        """Add the real server ``dest`` to ``service``. A ``dest.port`` of
        None means the service's port (0 under a fwmark service). Raises
        `ServiceNotFoundError`, `DestinationExistsError`, or
        `InvalidRequestError` for values the kernel refuses."""
        _need(Service, "service", service)
        _need(Destination, "dest", dest)
        self._live()._dest_op("add_destination", service, dest.for_service(service))

    def update_destination(self, service: Service, dest: Destination) -> None:
        """Replace the whole record of the destination with ``dest``'s key:
        weight, forwarding method, thresholds and tunnel settings are all
        written, so a default in ``dest`` (e.g. ``forward=Forward.ROUTE``)
        overwrites what the kernel had. To change only some settings, use
        `modify_destination`. A port of None means the service's port.
        Raises `ServiceNotFoundError`, `DestinationNotFoundError`."""
        _need(Service, "service", service)
        _need(Destination, "dest", dest)
        self._live()._dest_op("update_destination", service, dest.for_service(service))

    def delete_destination(self, service: Service, dest: Destination) -> None:
        """Remove the real server (by address and port; a port of None means
        the service's port). Raises `ServiceNotFoundError`,
        `DestinationNotFoundError`."""
        _need(Service, "service", service)
        _need(Destination, "dest", dest)
        self._live()._dest_op("delete_destination", service, dest.for_service(service))

    def modify_destination(self, service: Service, dest: Destination, /,
                           **changes: Any) -> None:
        """Change only the named settings of an existing destination: read
        its current record by ``dest``'s key (address and port; None means
        the service's port), apply ``changes`` (fields of `Destination`, e.g.
        ``weight=0``) and write it back, holding this handle's lock across
        the read and the write. Raises `ServiceNotFoundError`,
        `DestinationNotFoundError` when the destination is missing,
        ValueError when ``changes`` names a key field (address, port, family)
        or a read-only counter, TypeError / ValueError for unknown fields or
        bad values."""
        _need(Service, "service", service)
        _need(Destination, "dest", dest)
        bad = _DEST_KEY_FIELDS.intersection(changes)
        if bad:
            raise ValueError("modify_destination: %s identify the destination and cannot be "
                             "changed (delete and add it instead)" % ", ".join(sorted(bad)))
        ro = _DEST_READ_ONLY.intersection(changes)
        if ro:
            raise ValueError("modify_destination: %s are read back from the kernel, not "
                             "written" % ", ".join(sorted(ro)))
        dest = dest.for_service(service)
        with self._modify_lock:
            for current in self.destinations(service):
                if current.key == dest.key:
                    break
            else:
                raise destination_missing("modify_destination", dest, service)
            self.update_destination(service, current.replace(**changes))

    def table(self, *, consistent: bool = False) -> Dict[Service, List[Destination]]:
        """Everything at once: {Service: [Destination, ...]} in kernel order,
        from one service dump and one destination dump per service.

        ``consistent=True``: repeat that until two consecutive listings agree
        (counters and stats aside) and none repeats a service or a
        destination, as `services` does; `InconsistentDumpError` after
        ``CONSISTENT_TRIES`` listings."""
        h = self._live()
        with _gc_paused():  # fresh records only: nothing for the cyclic GC to find
            if not consistent:
                return dict(h.listing())
            return dict(self._consistent("table", h.listing, _listing_unique))

    # --------------------------------------------------------------- table
    def flush(self) -> None:
        """Remove every virtual service (and so every destination) of the
        handle's namespace."""
        self._live().flush()

    def zero(self, service: Optional[Service] = None) -> None:
        """Zero the counters of one service, or of all when None. Raises
        `ServiceNotFoundError` for a service that does not exist."""
        if service is not None:
            _need(Service, "service", service)
        self._live().zero(service)

    def timeouts(self) -> Timeouts:
        """The connection timeouts (tcp, tcp_fin, udp) in seconds."""
        return self._live().timeouts()  # type: ignore[no-any-return]

    def set_timeouts(self, *, tcp: Optional[int] = None, tcp_fin: Optional[int] = None,
                     udp: Optional[int] = None) -> None:
        """Set connection timeouts in seconds; None leaves a value unchanged.
        TypeError / ValueError for values that are not 1..2147483 seconds."""
        vals = []
        for name, v in (("tcp", tcp), ("tcp_fin", tcp_fin), ("udp", udp)):
            if v is None:
                vals.append(0)  # the kernel leaves a 0 unchanged
                continue
            if isinstance(v, bool) or not isinstance(v, int):
                raise TypeError("set_timeouts: %s must be an int number of seconds" % name)
            if not 1 <= v <= 0x7FFFFFFF // 1000:
                raise ValueError("set_timeouts: %s must be 1..%d seconds, got %d"
                                 % (name, 0x7FFFFFFF // 1000, v))
            vals.append(v)
        self._live().set_timeouts(*vals)

    # ------------------------------------------------------------- daemons
    def daemons(self) -> List[Daemon]:
        """The running connection-synchronisation daemons (0 to 2)."""
        return self._live().daemons()  # type: ignore[no-any-return]

    def start_daemon(self, daemon: Daemon) -> None:
        """Start a sync daemon as ``daemon`` describes. Raises
        `DaemonExistsError` when one of that state runs, `InvalidRequestError`
        for an unknown interface or settings the kernel refuses."""
        _need(Daemon, "daemon", daemon)
        self._live().start_daemon(daemon)

    def stop_daemon(self, state: Union[DaemonState, int, str]) -> None:
        """Stop the MASTER or BACKUP sync daemon (a `DaemonState` or its
        name). Raises `DaemonNotRunningError` when none of that state runs."""
        if isinstance(state, str):
            try:
                state = DaemonState[state.strip().upper()]
            except KeyError:
                raise ValueError("stop_daemon: state must be MASTER or BACKUP") from None
        if isinstance(state, bool) or not isinstance(state, int):
            raise TypeError("stop_daemon: state must be a DaemonState")
        try:
            state = DaemonState(state)
        except ValueError:
            raise ValueError("stop_daemon: state must be MASTER or BACKUP, got %r" % state) from None
        self._live().stop_daemon(state)

    # --------------------------------------------------------- connections
    def connections(self) -> List[Connection]:
        """The connection table of the handle's namespace (/proc/net/ip_vs_conn)."""
        try:
            text = self._live().read_proc_net("ip_vs_conn", "connections")
        except IPVSUnavailableError:    # no /proc/net/ip_vs_conn: no IPVS, no connections
            return []
        return parse_connections(text)

    def stats(self) -> Stats:
        """Totals over the whole table of the handle's namespace
        (/proc/net/ip_vs_stats)."""
        return parse_global_stats(self._live().read_proc_net("ip_vs_stats", "stats"))

    # ---------------------------------------------------------------- bulk
    def batch(self) -> Batch:
        """A context manager collecting calls, sent together on exit.

        ``with lb.batch() as b:`` then ``b.add_service(...)`` and the other
        add/update/delete methods; on leaving the block the calls go to the
        kernel in as few system calls as possible (nothing is sent when the
        block raises). Failures raise one `BatchError` listing each failed
        call (with its ``index``) and its exception; the others stay
        applied."""
        self._live()
        return Batch(self._live)

    def apply(self, desired: Mapping[Service, Iterable[Destination]], *,
              prune: PruneLike = True, dry_run: bool = False,
              current: Optional[Mapping[Service, Iterable[Destination]]] = None,
              changed: Optional[Iterable[Service]] = None,
              scope: Optional[ScopeLike] = None) -> Plan:
        """Make the table match ``desired`` ({Service: [Destination]}) with
        the fewest changes: one dump, a minimal plan, one batch.

        Services and destinations in ``desired`` are added, or updated where
        a setting differs. What is deleted depends on ``prune``:

        * ``True`` (default): the whole table of the namespace (or the whole
          ``scope``) becomes ``desired``: every service not in it is deleted
          (without ``scope`` also services other tools made), and every
          destination not listed for its service;
        * ``"destinations"``: only destinations of the services in
          ``desired`` that are not listed for them; services not in
          ``desired`` are never touched;
        * ``False``: nothing is deleted.

        Ownership, for a program that shares the table with others:

        * ``scope``: the services this call owns, as a set of keys
          (``Service.key``) or of `Service` records (taken by key), or a
          predicate taking a `Service` (decide by the key fields: address,
          port, protocol, fwmark, family). Only services in scope are
          compared, written and deleted: a foreign service is never read
          into the plan, and entries of ``desired`` outside the scope are
          left out too. With ``prune=True`` the in-scope services that
          ``desired`` no longer has are deleted. A service is in scope when
          its record in ``desired`` is (or, where ``desired`` lacks it, its
          record in the table or in ``current``).

        Incremental apply, for a caller that already knows the table (a
        controller that applied the previous state itself):

        * ``current``: what the table holds now, in the form of ``desired``
          (typically the ``desired`` of the caller's last successful apply).
          The table is not read: the plan is ``current`` -> ``desired``.
        * ``changed`` (needs ``current``): the services whose entries differ
          between ``current`` and ``desired`` (added, removed, or with other
          destinations or settings); only these are compared, every other
          entry is taken as equal without being looked at, so the cost
          follows the size of the change, not of the table. A service is
          named by its key: any record with that key names it (the old
          record, the new one, or one built from the key fields alone).
          A key found in neither mapping is ignored. Naming a record that
          is not in a mapping costs one pass over that mapping.

        A ``current`` that is not the table is the caller's error and is not
        detected by the diff: a call the kernel refuses (adding what exists,
        deleting what is gone) makes `BatchError`, the others stay applied;
        what the kernel accepts is written as planned (an extra entry in the
        table that ``current`` does not show stays). Calling ``apply``
        without ``current`` reads the table and repairs all of it (a full
        resync; give it the same ``scope``).

        ``dry_run=True`` computes the plan and writes nothing. Returns the
        `Plan` (its ``changes`` in the order they are sent: deleted services
        first, then per service its adds and updates and last its deleted
        destinations, so that it keeps its new ones throughout; each `Change`
        has the records it replaces and writes, ``before`` and ``after``).
        A destination port of None means its service's port. Raises
        TypeError / ValueError for bad input (a service or destination
        given twice, ``changed`` without ``current``, a scope member that
        is not a service key), `BatchError` when calls failed (the others
        stay applied).

        The cyclic garbage collector is paused while the plan is made (and
        the table read): the records of a large table are fresh objects it
        would otherwise traverse again and again, for nothing."""
        names, keep = _plan.checked(desired, prune, current, changed, scope)
        with _gc_paused():
            changes = _plan.make_plan(self._live, desired, prune, current, names, keep)
            plan = Plan(changes, applied=False)
            if changes and not dry_run:
                self._run_plan(changes)
                plan.applied = True
        return plan

    def _run_plan(self, changes: List[Change]) -> None:
        """Send apply()'s changes as one batch. A `Change` is the (method,
        service, destination) tuple the backend's batch takes: no `Call`
        record is made for the calls that succeed, only for the failures."""
        send_calls(self._live(), changes)  # type: ignore[arg-type]


def backend_of(lb: IPVS) -> Backend:
    """The backend handle (ipvs/_backend.py) ``lb`` drives, for the front
    doors built on `IPVS` (`AsyncIPVS`); ValueError when ``lb`` is closed."""
    return lb._live()  # type: ignore[no-any-return]


_gc_lock = threading.Lock()
_gc_state = [0, False]   # [apply() calls inside _gc_paused, was the GC enabled before]


class _gc_paused:
    """Pause the cyclic GC for the block; the first block in restores what was
    there before when the last block out leaves (threads may nest)."""

    def __enter__(self) -> None:
        with _gc_lock:
            if _gc_state[0] == 0:
                _gc_state[1] = gc.isenabled()
                gc.disable()
            _gc_state[0] += 1

    def __exit__(self, *exc: Any) -> None:
        with _gc_lock:
            _gc_state[0] -= 1
            if _gc_state[0] == 0 and _gc_state[1]:
                gc.enable()


# ------------------------------------------------------------------ parsers

def _proc_addr(text: str) -> Any:
    if ":" in text:
        return ipaddress.IPv6Address(text)
    return ipaddress.IPv4Address(int(text, 16))


def parse_connections(text: str) -> List[Connection]:
    """Parse /proc/net/ip_vs_conn (IPv4 lines in hex, IPv6 lines in colon form)."""
    out = []
    for line in text.splitlines():
        f = line.split()
        if len(f) < 9 or f[0] == "Pro":
            continue
        try:
            proto: Any = Protocol[f[0].upper()]
        except KeyError:
            proto = f[0]
        try:
            out.append(Connection._make(
                proto, _proc_addr(f[1]), int(f[2], 16), _proc_addr(f[3]), int(f[4], 16),
                _proc_addr(f[5]), int(f[6], 16), f[7], int(f[8])))
        except ValueError:
            continue  # a line of a format this parser does not know
    return out


def parse_global_stats(text: str) -> Stats:
    """Parse /proc/net/ip_vs_stats (hexadecimal columns)."""
    rows = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 5:
            try:
                rows.append([int(p, 16) for p in parts])
            except ValueError:
                continue
    if len(rows) < 2:
        raise ValueError("unexpected /proc/net/ip_vs_stats format")
    (c, pi, po, bi, bo), (cps, ppsi, ppso, bpsi, bpso) = rows[0], rows[1]
    return Stats(c, pi, po, bi, bo, cps, ppsi, ppso, bpsi, bpso)

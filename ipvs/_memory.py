"""The memory backend: an in-process model of one namespace's IPVS table.

`MemoryHandle` stands in for the compiled ``ipvs._libipvs.Handle``: it has
the same methods, takes the same model objects and returns the same records,
so `ipvs.IPVS` runs its own batch, apply and table logic over it unchanged.
Errors are built by :func:`ipvs.errors.from_errno` with the errno the kernel
returns for the same request, in the order the kernel checks
(net/netfilter/ipvs/ip_vs_ctl.c, as pinned by the kernel suite and
docs/KERNEL-FACTS.md).

Tables are kept per process and per ``netns`` value: handles opened with
the same value share one table. A ``netns`` name or path must be in the
registry of namespaces first (`register_netns`: ``ipvs.testing.add_netns``,
or ``ipvs.netns.create`` while ``backend="auto"`` means memory), as the
kernel backend needs the namespace to exist; an unknown one raises the
kernel backend's FileNotFoundError. ``ipvs.testing.reset_memory()`` empties
every table and the registry. What a table cannot know (traffic) reads as zero: counters and
stats unless a test sets them (``ipvs.testing.set_counters``), and an
empty connection table.
"""

from __future__ import annotations

import errno as _E
import io
import ipaddress
import os
import re
import socket
import threading
from typing import Any, Dict, List, Optional, Set, Tuple, TypeVar, Union

from ipvs import _model, errors as _errors
from ipvs._model import (Daemon, DaemonState, Destination, Service, Stats, Timeouts,
                         TunnelFlags, TunnelType)

__all__ = ["MemoryHandle", "KERNELS", "DEFAULT_KERNEL", "open_handle", "reset",
           "set_counters", "add_interface", "auto_enabled", "enable_auto", "profile_of",
           "register_netns", "unregister_netns", "netns_known", "netns_names"]

#: the kernel generations whose differences the backend knows
KERNELS = ("6.1", "6.12", "7")
DEFAULT_KERNEL = "6.12"

#: schedulers built by Debian's kernels 6.1, 6.12 and 7.x (every name of
#: ipvs.SCHEDULERS but "twos"), and "none" (no scheduler), which the kernel accepts
SCHEDULERS = frozenset([n for n in _model.SCHEDULERS if n != "twos"] + ["none"])
#: persistence engines ("sip" is the only one)
PERSISTENCE_ENGINES = frozenset(["sip"])

_VERSION = 0x010201          # IPVS 1.2.1, all three kernels
_CONN_TAB_SIZE = {"6.1": 4096, "6.12": 4096, "7": 256}
_INT_MAX = 2**31 - 1
_TIMEOUT_DEFAULTS = (900, 120, 300)
_SYNC_GROUP4 = ipaddress.IPv4Address("224.0.0.81")
_SYNC_PORT = 8848
_ZERO = Stats()

NetnsKey = Union[None, str, int]


def _ctx(svc: Any, dest: Any = None) -> Dict[str, Any]:
    """The message context that ipvs._libipvs gives errors.from_errno."""
    return _errors.call_context(svc, dest)


def _err(op: str, err: int, svc: Any = None, dest: Any = None, **extra: Any) -> _errors.IPVSError:
    ctx = _ctx(svc, dest)
    ctx.update(extra)
    return _errors.from_errno(op, err, **ctx)


_R = TypeVar("_R", Service, Destination)


def _with(rec: _R, **changes: Any) -> _R:
    """A copy of a record with ``changes``, unvalidated (as the C layer builds
    records from the kernel's values): a request the model would refuse
    (built with object.__setattr__ in tests) still reaches the checks."""
    values = rec._asdict()     # every field, in field order
    values.update(changes)
    made: _R = type(rec)._make(*values.values())
    return made


def _v4_unicast(a: ipaddress.IPv4Address) -> bool:
    """inet_addr_type() in a namespace whose only interface is lo (up):
    RTN_LOCAL or RTN_UNICAST, else (multicast, 0.0.0.0, 255.255.255.255,
    lo's broadcast route 127.255.255.255) refused (checked in the sandbox:
    0.1.2.3, 127.0.0.0 and 240.0.0.1 are accepted)."""
    n = int(a)
    if n >> 28 == 0xE or n == 0 or n == 0xFFFFFFFF:
        return False
    return n != 0x7FFFFFFF


def _v6_unicast(a: ipaddress.IPv6Address) -> bool:
    """ipv6_addr_type(): unicast and not link-local (lo has no link-local
    address, so none is local)."""
    b = a.packed
    top = b[0] >> 5
    if top not in (0, 7):
        return True                        # 2000::/3 .. c000::/3: global unicast
    if b[0] == 0xFF:
        return False                       # multicast
    if b[0] == 0xFE and b[1] & 0xC0 == 0x80:
        return False                       # fe80::/10 link-local
    if b[0] == 0xFE and b[1] & 0xC0 == 0xC0:
        return True                        # fec0::/10 site-local
    if b[0] & 0xFE == 0xFC:
        return True                        # fc00::/7
    if b[:8] == bytes(8):
        if b[8:12] == bytes(4):
            return b[12:] != bytes(4)      # :: is not unicast; ::1 and ::a.b.c.d are
        if b[8:12] == b"\x00\x00\xff\xff":
            return False                   # ::ffff:a.b.c.d (mapped)
    return True


class _Dest:
    """One destination as the kernel keeps it."""

    __slots__ = ("rec", "active", "inactive", "persistent", "stats")

    def __init__(self, rec: Destination) -> None:
        self.rec = rec
        self.active = 0
        self.inactive = 0
        self.persistent = 0
        self.stats = _ZERO

    def read(self) -> Destination:
        return _with(self.rec, active_connections=self.active,
                                inactive_connections=self.inactive,
                                persistent_connections=self.persistent, stats=self.stats)


class _Svc:
    """One virtual service: its settings and destinations (newest first, as
    the kernel lists them)."""

    __slots__ = ("rec", "dests", "stats")

    def __init__(self, rec: Service) -> None:
        self.rec = rec
        self.dests: List[_Dest] = []
        self.stats = _ZERO

    def find(self, key: Tuple[Any, ...]) -> Optional[_Dest]:
        for d in self.dests:
            if d.rec.key == key:
                return d
        return None

    def read(self) -> Service:
        return _with(self.rec, stats=self.stats)


class _Interface:
    __slots__ = ("name", "mtu", "ipv6_multicast")

    def __init__(self, name: str, mtu: int, ipv6_multicast: bool) -> None:
        self.name = name
        self.mtu = mtu
        self.ipv6_multicast = ipv6_multicast


class Table:
    """The IPVS state of one (modelled) network namespace."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.services: Dict[Tuple[Any, ...], _Svc] = {}
        self.timeouts = _TIMEOUT_DEFAULTS
        self.daemons: Dict[int, Daemon] = {}
        self.mixed = 0            # destinations whose family differs from their service's
        self.had_service = False  # 7.x: the connection table exists once a service did
        self.interfaces: Dict[str, _Interface] = {"lo": _Interface("lo", 65536, False)}


_tables: Dict[NetnsKey, Table] = {}
_tables_lock = threading.Lock()
# the namespace names and paths that exist (None and descriptors always do)
_namespaces: Set[str] = set()
_auto = 0
_auto_kernels: List[Optional[str]] = []


def _netns_key(netns: Any) -> NetnsKey:
    """The table key of a ``netns`` argument, checked as IPVS checks it."""
    if netns is None:
        return None
    if isinstance(netns, bool):
        raise TypeError("netns must be a name, a path or a file descriptor, not bool")
    if isinstance(netns, int):
        if netns < 0:
            raise ValueError("netns: a file descriptor must be >= 0, got %d" % netns)
        return netns
    if isinstance(netns, (str, os.PathLike)):
        text = os.fspath(netns)
        if not isinstance(text, str) or not text:
            raise ValueError("netns: empty name")
        return text
    raise TypeError("netns must be a name, a path or a file descriptor, not %s"
                    % type(netns).__name__)


def table(netns: Any = None) -> Table:
    """The shared table of ``netns`` (made on first use)."""
    key = _netns_key(netns)
    with _tables_lock:
        t = _tables.get(key)
        if t is None:
            t = _tables[key] = Table()
        return t


def reset() -> None:
    """Forget every memory table (open handles then see empty ones) and every
    registered namespace."""
    with _tables_lock:
        _namespaces.clear()
        for t in _tables.values():
            with t.lock:
                t.__init__()  # type: ignore[misc]


def _netns_path(name: str) -> str:
    """The file the kernel backend would open for a ``netns`` name or path."""
    return name if "/" in name else os.path.join("/run/netns", name)


def register_netns(netns: Any) -> None:
    """Make the namespace ``netns`` (a name as ``ip netns`` uses, or a path)
    exist for the memory backend: handles may then be opened on it. The
    name and the path of one namespace are two entries (and two tables).
    Registering one that exists is harmless."""
    key = _netns_key(netns)
    if isinstance(key, str):
        with _tables_lock:
            _namespaces.add(key)


def unregister_netns(netns: Any) -> None:
    """Remove a registered namespace and empty its table (handles still open
    on it keep working, as a kernel namespace lives on while used).
    FileNotFoundError when it is not registered."""
    key = _netns_key(netns)
    if not isinstance(key, str):
        raise ValueError("netns: only names and paths are registered, not %r" % (netns,))
    with _tables_lock:
        if key not in _namespaces:
            raise FileNotFoundError(_E.ENOENT, "no network namespace %r" % key, _netns_path(key))
        _namespaces.discard(key)
        t = _tables.pop(key, None)
    if t is not None:
        with t.lock:
            t.__init__()  # type: ignore[misc]


def netns_known(netns: Any) -> bool:
    """True when handles may be opened on ``netns``: None, a descriptor, or
    a registered name or path."""
    key = _netns_key(netns)
    return not isinstance(key, str) or key in _namespaces


def netns_names() -> List[str]:
    """The registered names (not paths), sorted, as ``ip netns list``."""
    with _tables_lock:
        return sorted(n for n in _namespaces if "/" not in n)


def profile_of(release: str) -> Optional[str]:
    """The profile (one of `KERNELS`) that follows the kernel ``release``
    ("6.1.0-28-amd64" -> "6.1", "6.12.113" -> "6.12", "7.2.7" -> "7"), or
    None for a release older than 6.1 (no profile follows it)."""
    m = re.match(r"(\d+)\.(\d+)", release)
    if m is None:
        return None
    version = (int(m.group(1)), int(m.group(2)))
    if version >= (7, 0):
        return "7"
    if version >= (6, 12):
        return "6.12"
    if version >= (6, 1):
        return "6.1"
    return None


def enable_auto(on: bool, kernel: Optional[str] = None) -> None:
    """Make ``IPVS(backend="auto")`` open memory handles (nested: each True
    needs its False); ``kernel`` is then the profile of handles opened
    without one."""
    global _auto
    if on and kernel is not None and kernel not in KERNELS:
        raise ValueError("kernel must be one of %s, got %r"
                         % (", ".join(repr(k) for k in KERNELS), kernel))
    with _tables_lock:
        if on:
            _auto += 1
            _auto_kernels.append(kernel)
        elif _auto:
            _auto -= 1
            _auto_kernels.pop()


def auto_enabled() -> bool:
    """True while ``backend="auto"`` means "memory" (the ipvs_memory fixture)."""
    return _auto > 0


def add_interface(name: str, *, netns: Any = None, mtu: int = 1500,
                  ipv6_multicast: bool = True) -> None:
    """Make interface ``name`` exist in a memory namespace (for sync daemons;
    a fresh one has only ``lo``). A namespace name or path is registered too."""
    register_netns(netns)
    t = table(netns)
    with t.lock:
        t.interfaces[name] = _Interface(name, mtu, ipv6_multicast)


def _stats_of(value: Any) -> Stats:
    if isinstance(value, Stats):
        return value
    if isinstance(value, dict):
        return Stats(**value)
    raise TypeError("stats must be an ipvs.Stats or a dict of its fields")


def set_counters(service: Service, dest: Optional[Destination] = None, *, netns: Any = None,
                 active: Optional[int] = None, inactive: Optional[int] = None,
                 persistent: Optional[int] = None, stats: Any = None) -> None:
    """Set what a memory table reports for a service (``stats``) or one of
    its destinations (``active``, ``inactive``, ``persistent``, ``stats``).
    None leaves a value as it is. Raises ServiceNotFoundError /
    DestinationNotFoundError when the object does not exist."""
    if not isinstance(service, Service):
        raise TypeError("service must be an ipvs.Service")
    t = table(netns)
    with t.lock:
        s = t.services.get(service.key)
        if s is None:
            raise _err("set_counters", _E.ESRCH, service)
        if dest is None:
            if active is not None or inactive is not None or persistent is not None:
                raise ValueError("set_counters: connection counters belong to a destination")
            if stats is not None:
                s.stats = _stats_of(stats)
            return
        if not isinstance(dest, Destination):
            raise TypeError("dest must be an ipvs.Destination")
        d = s.find(_resolve_port(dest, s.rec).key)
        if d is None:
            raise _errors.DestinationNotFoundError(
                _E.ENOENT, "set_counters: no such destination %s in %s" % (dest, service),
                "set_counters")
        for name, v in (("active", active), ("inactive", inactive), ("persistent", persistent)):
            if v is None:
                continue
            if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= 0xFFFFFFFF:
                raise ValueError("set_counters: %s must be an int 0..2**32-1" % name)
            setattr(d, name, v)
        if stats is not None:
            d.stats = _stats_of(stats)


def _resolve_port(dest: Destination, svc: Service) -> Destination:
    port: Any = dest.port
    if port is None:  # "the service's port" (API.md), as the C layer is given it
        return _with(dest, port=svc.port)
    return dest


def open_handle(netns: Any, kernel: Optional[str], timeout_ms: int,
                backend: str = "memory") -> "MemoryHandle":
    """A memory handle on ``netns``'s table following ``kernel`` (for
    `ipvs.IPVS`: ``backend`` is what the caller asked for)."""
    if backend != "memory" and not (backend == "auto" and auto_enabled()):
        raise ValueError("kernel= is for backend 'memory' only, not %r" % backend)
    if kernel is None:
        kernel = next((k for k in reversed(_auto_kernels) if k), DEFAULT_KERNEL)
    if not isinstance(kernel, str):
        raise TypeError("kernel must be a str, not %s" % type(kernel).__name__)
    if kernel not in KERNELS:
        raise ValueError("kernel must be one of %s, got %r"
                         % (", ".join(repr(k) for k in KERNELS), kernel))
    key = _netns_key(netns)
    if isinstance(key, str) and key not in _namespaces:
        # what the kernel backend raises for a namespace that does not exist
        raise FileNotFoundError(_E.ENOENT, "network namespace %r not found" % key,
                                _netns_path(key))
    return MemoryHandle(table(netns), kernel, timeout_ms)


class MemoryHandle:
    """The memory backend's stand-in for ``ipvs._libipvs.Handle``: the same
    backend interface (``ipvs._backend.Backend``)."""

    backend = "memory"

    def __init__(self, tab: Table, kernel: str, timeout_ms: int) -> None:
        self._t = tab
        self.kernel = kernel
        self.timeout_ms = timeout_ms
        self._closed = False

    # ------------------------------------------------------------ handle
    def close(self) -> None:
        self._closed = True

    @property
    def closed(self) -> bool:
        return self._closed

    def _live(self) -> Table:
        if self._closed:
            raise ValueError("I/O operation on a closed IPVS handle")
        return self._t

    def fileno(self) -> int:
        self._live()
        raise io.UnsupportedOperation("the memory backend has no kernel socket")

    def set_timeout(self, timeout_ms: int) -> None:
        self._live()
        self.timeout_ms = timeout_ms

    def info(self) -> Tuple[int, int]:
        t = self._live()
        with t.lock:
            if self.kernel == "7" and not t.had_service:
                return (_VERSION, 0)
            return (_VERSION, _CONN_TAB_SIZE[self.kernel])

    # ---------------------------------------------------------- services
    def services(self) -> List[Service]:
        t = self._live()
        with t.lock:
            return [s.read() for s in t.services.values()]

    def get_service(self, svc: Service) -> Service:
        t = self._live()
        with t.lock:
            s = t.services.get(svc.key)
            if s is None:
                raise _err("get_service", _E.ESRCH, svc)
            return s.read()

    def _svc_op(self, op: str, svc: Service) -> None:
        t = self._live()
        with t.lock:
            err = self._do(t, op, svc, None)
        if err is not None:
            raise err

    def destinations(self, svc: Service) -> List[Destination]:
        t = self._live()
        with t.lock:
            s = t.services.get(svc.key)
            if s is None:
                raise _err("destinations", _E.ESRCH, svc)
            return [d.read() for d in s.dests]

    def listing(self) -> List[Tuple[Service, List[Destination]]]:
        t = self._live()
        with t.lock:
            return [(s.read(), [d.read() for d in s.dests]) for s in t.services.values()]

    def _dest_op(self, op: str, svc: Service, dest: Destination) -> None:
        t = self._live()
        with t.lock:
            err = self._do(t, op, svc, dest)
        if err is not None:
            raise err

    def batch(self, calls: List[Tuple[str, Service, Optional[Destination]]]
              ) -> List[Optional[_errors.IPVSError]]:
        """Each call applied in order, as the kernel handles a batch of
        requests: None or the call's exception."""
        t = self._live()
        with t.lock:
            return [self._do(t, op, svc, dest) for op, svc, dest in calls]

    # ----------------------------------------------------------- requests
    def _do(self, t: Table, op: str, svc: Service, dest: Optional[Destination]
            ) -> Optional[_errors.IPVSError]:
        """One table-changing request; returns its error (nothing changed) or None."""
        s = t.services.get(svc.key)
        if op == "add_service":
            if s is not None:
                return _err(op, _E.EEXIST, svc)
            bad = self._check_service(op, svc)
            if bad is not None:
                return bad
            t.services[svc.key] = _Svc(self._stored(svc))
            t.had_service = True
            return None
        if s is None:
            return _err(op, _E.ESRCH, svc, dest)
        if op == "update_service":
            bad = self._check_service(op, svc)
            if bad is not None:
                return bad
            s.rec = self._stored(svc)
            return None
        if op == "delete_service":
            self._drop_service(t, s)
            return None
        if dest is None:
            raise ValueError("%s needs a destination" % op)
        dest = _resolve_port(dest, s.rec)
        if int(dest.forward) != 2 and (dest.tunnel_type or dest.tunnel_port or dest.tunnel_flags):
            # tunnel settings travel only with TUNNEL destinations (csrc/netlink.c
            # sends them for tunnels only): the others read back without them
            dest = _with(dest, tunnel_type=TunnelType.IPIP, tunnel_port=0,
                         tunnel_flags=TunnelFlags.NOCSUM)
        mixed = dest.family != s.rec.family
        if op != "delete_destination":
            if mixed and (t.daemons or int(dest.forward) != 2):
                return _err(op, _E.EINVAL, svc, dest)
            if dest.weight < 0 or dest.lower_threshold > dest.upper_threshold:
                return _err(op, _E.ERANGE, svc, dest)
            if self.kernel != "6.1" and (dest.upper_threshold > _INT_MAX
                                         or dest.lower_threshold > _INT_MAX):
                # 6.12 and 7.x refuse thresholds above INT_MAX; 6.1 keeps u32
                return _err(op, _E.EINVAL, svc, dest)
            if dest.tunnel_type == TunnelType.GUE and not dest.tunnel_port:
                return _err(op, _E.EINVAL, svc, dest)   # a GUE tunnel needs its port
        found = s.find(dest.key)
        if op == "add_destination":
            if found is not None:
                return _err(op, _E.EEXIST, svc, dest)
            addr: Any = dest.address
            ok = _v6_unicast(addr) if addr.version == 6 else _v4_unicast(addr)
            if not ok:
                return _err(op, _E.EINVAL, svc, dest)
            s.dests.insert(0, _Dest(self._stored_dest(dest)))
            if mixed:
                t.mixed += 1
            return None
        if found is None:
            return _err(op, _E.ENOENT, svc, dest)
        if op == "update_destination":
            found.rec = self._stored_dest(dest)
            return None
        if op == "delete_destination":
            s.dests.remove(found)
            if mixed:
                t.mixed -= 1
            return None
        raise ValueError("unknown operation %r" % op)

    def _check_service(self, op: str, svc: Service) -> Optional[_errors.IPVSError]:
        """NEW/SET_SERVICE's checks after the lookup, in the kernel's order:
        scheduler, persistence engine, IPv6 prefix length."""
        if svc.scheduler not in SCHEDULERS:
            ctx = _ctx(svc)
            ctx["pe"] = ""     # the scheduler is the one missing (looked up first)
            return _errors.from_errno(op, _E.ENOENT, **ctx)
        if svc.pe_name and svc.pe_name not in PERSISTENCE_ENGINES:
            e = _err(op, _E.ENOENT, svc)
            if not isinstance(e, _errors.PersistenceEngineNotFoundError):
                cls, template = _errors._PE_NOT_FOUND
                e = cls(_E.ENOENT, template.format(operation=op, pe=svc.pe_name), op)
            return e
        if svc.family == socket.AF_INET6 and not 1 <= svc.netmask <= 128:
            return _err(op, _E.EINVAL, svc)
        return None

    @staticmethod
    def _stored(svc: Service) -> Service:
        """What the kernel keeps of a request: its settings (a read gives
        the table's own stats and counters, whatever the request carried)."""
        return svc

    @staticmethod
    def _stored_dest(dest: Destination) -> Destination:
        return dest

    @staticmethod
    def _drop_service(t: Table, s: _Svc) -> None:
        t.mixed -= sum(1 for d in s.dests if d.rec.family != s.rec.family)
        del t.services[s.rec.key]

    # ------------------------------------------------------------- table
    def flush(self) -> None:
        t = self._live()
        with t.lock:
            for s in list(t.services.values()):
                self._drop_service(t, s)

    def zero(self, svc: Optional[Service] = None) -> None:
        t = self._live()
        with t.lock:
            if svc is None:
                targets = list(t.services.values())
            else:
                s = t.services.get(svc.key)
                if s is None:
                    raise _err("zero", _E.ESRCH, svc)
                targets = [s]
            for s in targets:
                s.stats = _ZERO
                for d in s.dests:
                    d.stats = _ZERO

    def timeouts(self) -> Timeouts:
        t = self._live()
        with t.lock:
            return Timeouts(*t.timeouts)

    def set_timeouts(self, tcp: int, tcp_fin: int, udp: int) -> None:
        t = self._live()
        vals = (tcp, tcp_fin, udp)
        if any(v < 0 or v > _INT_MAX // 100 for v in vals):
            raise _err("set_timeouts", _E.EINVAL)
        with t.lock:
            t.timeouts = tuple(v if v else old for v, old in zip(vals, t.timeouts))  # type: ignore[assignment]

    # ----------------------------------------------------------- daemons
    def daemons(self) -> List[Daemon]:
        t = self._live()
        with t.lock:
            return [t.daemons[k] for k in sorted(t.daemons)]

    def start_daemon(self, daemon: Daemon) -> None:
        t = self._live()
        state = DaemonState(int(daemon.state))
        name = state.name.lower()
        extra = {"interface": daemon.interface, "state": name,
                 "target": "%s sync daemon on %s" % (name, daemon.interface)}
        group = daemon.mcast_group
        with t.lock:
            if group is not None and not group.is_multicast:
                raise _err("start_daemon", _E.EINVAL, **extra)
            if t.mixed > 0:
                raise _err("start_daemon", _E.EINVAL, **extra)
            dev = t.interfaces.get(daemon.interface)
            if dev is None:
                raise _err("start_daemon", _E.ENODEV, **extra)
            if group is None:
                group = _SYNC_GROUP4
            v6 = group.version == 6
            hlen = (40 if v6 else 20) + 8
            if state == DaemonState.BACKUP:
                mtu, min_len = min(max(dev.mtu, 1500), 65535), 1024
            else:
                mtu, min_len = 1500, 1
            if daemon.max_len:
                max_len = min(max(daemon.max_len, min_len), 65535 - hlen)
            else:
                max_len = mtu - hlen
            if int(state) in t.daemons:
                raise _err("start_daemon", _E.EEXIST, **extra)
            if v6 and state == DaemonState.MASTER and not dev.ipv6_multicast:
                raise _err("start_daemon", _E.ENETUNREACH, **extra)
            t.daemons[int(state)] = Daemon(state, daemon.interface, daemon.sync_id, max_len,
                                           group, daemon.mcast_port or _SYNC_PORT,
                                           daemon.mcast_ttl or 1)

    def stop_daemon(self, state: Any) -> None:
        t = self._live()
        st = int(state)
        name = state.name.lower() if hasattr(state, "name") else str(state)
        with t.lock:
            if st not in (1, 2):
                raise _err("stop_daemon", _E.EINVAL, state=name,
                           target="%s sync daemon" % name)
            if st not in t.daemons:
                raise _err("stop_daemon", _E.ESRCH, state=name, target="%s sync daemon" % name)
            del t.daemons[st]

    # -------------------------------------------------------------- proc
    def read_proc_net(self, name: str, op: Optional[str] = None) -> Optional[str]:
        """/proc/net/NAME of the modelled namespace (``op`` as the compiled
        handle takes it: the operation a failure would be reported under)."""
        t = self._live()
        if name == "ip_vs_conn":
            return "Pro FromIP   FPrt ToIP     TPrt DestIP   DPrt State       Expires PEName PEData\n"
        if name == "ip_vs_stats":
            with t.lock:
                tot = [0] * 10
                for s in t.services.values():
                    for i, v in enumerate(s.stats):
                        tot[i] += v
            row = "%8X %8X %8X %16X %16X\n"
            return ("   Total Incoming Outgoing         Incoming         Outgoing\n"
                    "   Conns  Packets  Packets            Bytes            Bytes\n"
                    + row % tuple(tot[:5]) + "\n"
                    " Conns/s   Pkts/s   Pkts/s          Bytes/s          Bytes/s\n"
                    + row % tuple(tot[5:]))
        return None


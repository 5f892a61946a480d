"""The typed, immutable model: enums and records.

Every record is immutable (``__slots__``, no ``__setattr__``), hashable,
comparable, has a ``repr`` that reads like the constructor call and a
``replace(**changes)`` that returns a modified copy. Constructors validate
their arguments and raise ``TypeError`` / ``ValueError`` naming the field,
before anything reaches the kernel.

Decisions where the kernel leaves room (documented in README and docs/reference.md too):

* ``Service.flags`` never carries ``HASHED`` as read back: the kernel sets it
  on every service in its table; it is internal state, stripped so that what
  you create compares equal to what you read back.
* A ``timeout`` > 0 implies ``PERSISTENT``; ``PERSISTENT`` with no timeout
  means 360 s, as ipvsadm 1.31's bare ``-p`` does (its man page says 300).
* fwmark services have ``protocol`` TCP, as the kernel stores them.
* ``netmask`` defaults to 32 (IPv4) / 128 (IPv6), the kernel's and ipvsadm's
  defaults.
* A negative weight and a lower threshold above the upper one are refused
  here (every kernel refuses them with ERANGE); other limits of weight and
  thresholds are the kernel's to judge (``InvalidRequestError``, a ValueError).
"""

from __future__ import annotations

import enum
import ipaddress
import operator
import socket
import types
from typing import Any, Dict, Iterator, Mapping, Optional, Tuple, TypeVar, Union

__all__ = [
    "Protocol", "Forward", "ServiceFlags", "TunnelType", "TunnelFlags", "DaemonState",
    "Stats", "Service", "Destination", "Timeouts", "Info", "Daemon", "Connection",
    "IPAddress", "AddressLike", "Call", "SCHEDULERS",
]

IPAddress = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]
AddressLike = Union[str, bytes, ipaddress.IPv4Address, ipaddress.IPv6Address]

U16 = 0xFFFF
U32 = 0xFFFFFFFF
U64 = 0xFFFFFFFFFFFFFFFF
I32_MIN, I32_MAX = -(1 << 31), (1 << 31) - 1

from ipvs._enums import (DaemonState, Forward, Protocol, ServiceFlags,  # noqa: E402
                         TunnelFlags, TunnelType)
from ipvs._fields import (_address, _enum, _family, _family_of, _flags, _int,  # noqa: E402
                          _name, _prefix_from_mask)


# ----------------------------------------------------------------------------
# the record base
# ----------------------------------------------------------------------------

R = TypeVar("R", bound="_Record")


class _Record:
    """Immutable record: __slots__, value equality, repr like the constructor."""

    __slots__ = ()
    _field_names: Tuple[str, ...] = ()
    _compare: Tuple[str, ...] = ()     # the fields that equality and hash use
    _defaults: Dict[str, Any] = {}
    # (no attribute may be called `_fields`: pydoc then lists every private
    # name, taking the class for a namedtuple)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("%s is immutable; use replace()" % type(self).__name__)

    def __delattr__(self, name: str) -> None:
        raise AttributeError("%s is immutable" % type(self).__name__)

    def _cmp(self) -> Tuple[Any, ...]:
        return self._cmp_get(self)  # type: ignore[attr-defined,no-any-return]

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        get = self._cmp_get  # type: ignore[attr-defined]
        return get(self) == get(other)  # type: ignore[no-any-return]

    def __ne__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        get = self._cmp_get  # type: ignore[attr-defined]
        return get(self) != get(other)  # type: ignore[no-any-return]

    def __hash__(self) -> int:
        return hash((type(self).__name__,) + self._cmp_get(self))  # type: ignore[attr-defined]

    def __repr__(self) -> str:
        parts = []
        for f in self._field_names:
            v = getattr(self, f)
            if f in self._defaults and v == self._defaults[f]:
                continue
            parts.append("%s=%s" % (f, _repr_value(v)))
        return "%s(%s)" % (type(self).__name__, ", ".join(parts))

    def __reduce__(self) -> Any:
        return (_rebuild, (type(self), tuple(getattr(self, f) for f in self._field_names)))

    def __copy__(self: R) -> R:
        return self

    def __deepcopy__(self: R, memo: Any) -> R:
        return self

    def _asdict(self) -> Dict[str, Any]:
        return {f: getattr(self, f) for f in self._field_names}

    def replace(self: R, **changes: Any) -> R:
        """A copy with ``changes`` applied (validated like the constructor)."""
        unknown = set(changes) - set(self._field_names)
        if unknown:
            raise TypeError("%s.replace() got unknown field(s): %s"
                            % (type(self).__name__, ", ".join(sorted(unknown))))
        kwargs = self._asdict()
        kwargs.update(changes)
        return type(self)(**kwargs)

    @classmethod
    def _make(cls: Any, *values: Any) -> Any:
        """Build from trusted values in field order, without validation (used by
        the C conversion layer)."""
        obj = object.__new__(cls)
        for setter, value in zip(cls._setters, values):
            setter(obj, value)
        return obj

    @classmethod
    def _init_setters(cls) -> None:
        cls._setters = tuple(getattr(cls, f).__set__ for f in cls._field_names)  # type: ignore[attr-defined]
        # the compared fields as a tuple, in C (equality and hash are hot in
        # apply()); every record compares at least two fields, so attrgetter
        # always returns a tuple
        assert len(cls._compare) >= 2
        cls._cmp_get = operator.attrgetter(*cls._compare)  # type: ignore[attr-defined]


def _rebuild(cls: Any, values: Tuple[Any, ...]) -> Any:
    return cls._make(*values)


def _repr_value(v: Any) -> str:
    if isinstance(v, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
        return repr(str(v))
    if isinstance(v, socket.AddressFamily):
        return "socket.%s" % v.name
    if isinstance(v, enum.IntFlag):
        if int(v) == 0:
            zero = [m for m in type(v) if int(m) == 0]
            return "%s.%s" % (type(v).__name__, zero[0].name) if zero else "0"
        seen: Dict[int, str] = {}
        for m in type(v):
            if m.name and bin(int(m)).count("1") == 1 and int(m) & int(v):
                seen.setdefault(int(m), m.name)
        names = ["%s.%s" % (type(v).__name__, n) for _, n in sorted(seen.items())]
        return " | ".join(names) if names else repr(int(v))
    if isinstance(v, enum.Enum):
        return "%s.%s" % (type(v).__name__, v.name)
    return repr(v)


def _proto_repr(p: Any) -> str:
    # netlink lets other tools create services with any protocol number; the
    # model reads them back as a plain int
    return repr(p.name.lower()) if isinstance(p, Protocol) else repr(int(p))


def _set(obj: Any, name: str, value: Any) -> None:
    object.__setattr__(obj, name, value)


# ----------------------------------------------------------------------------
# records
# ----------------------------------------------------------------------------

class Stats(_Record):
    """Counters and rates of a service, a destination or the whole table
    (64-bit where the kernel sends STATS64)."""

    __slots__ = ("connections", "packets_in", "packets_out", "bytes_in", "bytes_out",
                 "cps", "pps_in", "pps_out", "bps_in", "bps_out")
    _field_names = __slots__
    _compare = __slots__
    _defaults = {f: 0 for f in __slots__}

    connections: int
    packets_in: int
    packets_out: int
    bytes_in: int
    bytes_out: int
    cps: int
    pps_in: int
    pps_out: int
    bps_in: int
    bps_out: int

    def __init__(self, connections: int = 0, packets_in: int = 0, packets_out: int = 0,
                 bytes_in: int = 0, bytes_out: int = 0, cps: int = 0, pps_in: int = 0,
                 pps_out: int = 0, bps_in: int = 0, bps_out: int = 0) -> None:
        values = (connections, packets_in, packets_out, bytes_in, bytes_out,
                  cps, pps_in, pps_out, bps_in, bps_out)
        for f, v in zip(self._field_names, values):
            _set(self, f, _int("Stats", f, v, 0, U64))

    def __iter__(self) -> Iterator[int]:
        return iter(self._cmp())


_ZERO_STATS = Stats()


#: The scheduler names a kernel may offer (`Service.scheduler`), each with the
#: kernel version that added it. A kernel offers those its build includes
#: (each is the module ``ip_vs_NAME``, loaded on first use); an absent one is
#: `SchedulerNotFoundError`. Debian's kernels build all but "twos". The name
#: "none" (a service without a scheduler) is accepted too and not listed.
#: Versions: the kernel's git history (the first ten came with IPVS in 2.6.0).
SCHEDULERS: Mapping[str, str] = types.MappingProxyType({
    "rr": "2.6", "wrr": "2.6", "lc": "2.6", "wlc": "2.6", "lblc": "2.6", "lblcr": "2.6",
    "dh": "2.6", "sh": "2.6", "sed": "2.6", "nq": "2.6",
    "fo": "3.18",     # weighted failover
    "ovf": "4.3",     # weighted overflow
    "mh": "4.18",     # Maglev hashing
    "twos": "5.12",   # weighted random twos choice
})


class Service(_Record):
    """A virtual service: by address, port and protocol, or by firewall mark.

    ``Service(address=None, port=0, protocol=Protocol.TCP, scheduler="wlc", *,
    fwmark=0, family=None, flags=ServiceFlags.NONE, timeout=0, netmask=None,
    pe_name=None)``

    * exactly one of ``address`` (with ``port`` and ``protocol``: "tcp",
      "udp", "sctp" or a `Protocol`) and ``fwmark`` (a firewall mark > 0;
      ``family`` then says IPv4 or IPv6, default IPv4);
    * ``scheduler``: the kernel scheduler's name ("rr", "wlc", "mh"...);
    * ``flags``: `ServiceFlags`; ``timeout`` > 0 (persistence, seconds) sets
      PERSISTENT, and PERSISTENT alone means 360 s;
    * ``netmask``: the persistence granularity as a prefix length (an IPv4
      dotted mask is accepted), default the whole address;
    * ``pe_name``: a persistence engine ("sip") or None.

    ``stats`` is a `Stats` (all zero on objects you build) and is not part
    of equality. ``key`` is the identity the kernel looks a service up by.
    Raises TypeError / ValueError naming the field on bad input.
    """

    __slots__ = ("family", "protocol", "address", "port", "fwmark", "scheduler", "flags",
                 "timeout", "netmask", "pe_name", "stats")
    _field_names = __slots__
    _compare = __slots__[:-1]
    _defaults = {"protocol": Protocol.TCP, "port": 0, "fwmark": 0, "scheduler": "wlc",
                 "flags": ServiceFlags.NONE, "timeout": 0, "pe_name": None}

    family: socket.AddressFamily
    protocol: Protocol
    address: Optional[IPAddress]
    port: int
    fwmark: int
    scheduler: str
    flags: ServiceFlags
    timeout: int
    netmask: int
    pe_name: Optional[str]
    stats: Stats

    def __init__(self, address: Optional[AddressLike] = None, port: int = 0,
                 protocol: Union[Protocol, int, str] = Protocol.TCP, scheduler: str = "wlc", *,
                 fwmark: int = 0, family: Optional[int] = None,
                 flags: Union[ServiceFlags, int] = ServiceFlags.NONE, timeout: int = 0,
                 netmask: Union[int, str, ipaddress.IPv4Address, None] = None,
                 pe_name: Optional[str] = None, stats: Optional[Stats] = None) -> None:
        """Validate and build; see the class docstring for the fields."""
        C = "Service"
        fwmark = _int(C, "fwmark", fwmark, 0, U32)
        if (address is None) == (fwmark == 0):
            raise ValueError("Service: give exactly one of address or fwmark")
        addr = None if address is None else _address(C, "address", address)
        fam = None if family is None else _family(C, family)
        if addr is not None:
            if fam is not None and fam != _family_of(addr):
                raise ValueError("Service.family %s does not match address %s" % (fam.name, addr))
            fam = _family_of(addr)
        elif fam is None:
            fam = socket.AF_INET
        port = _int(C, "port", port, 0, U16)
        if fwmark:
            if port:
                raise ValueError("Service.port must be 0 for a fwmark service")
            proto = Protocol.TCP  # the kernel stores fwmark services as TCP
            _enum(C, "protocol", Protocol, protocol)  # still reject garbage
        else:
            proto = _enum(C, "protocol", Protocol, protocol)
        sched = _name(C, "scheduler", scheduler, 15)
        fl = _flags(C, "flags", ServiceFlags, flags, 0x3F) & ~ServiceFlags.HASHED
        timeout = _int(C, "timeout", timeout, 0, U32 // 1000)
        if timeout:
            fl |= ServiceFlags.PERSISTENT
        elif fl & ServiceFlags.PERSISTENT:
            timeout = 360
        maxbits = 32 if fam == socket.AF_INET else 128
        if netmask is None:
            nm = maxbits
        elif isinstance(netmask, (str, ipaddress.IPv4Address)) and not (
                isinstance(netmask, str) and netmask.strip().lstrip("/").isdigit()):
            if fam != socket.AF_INET:
                raise ValueError("Service.netmask: a dotted mask is for IPv4; give a prefix length")
            try:
                mask = ipaddress.IPv4Address(netmask.strip() if isinstance(netmask, str) else netmask)
            except ValueError:
                raise ValueError("Service.netmask: %r is not a netmask" % (netmask,)) from None
            nm = _prefix_from_mask(mask)
        elif isinstance(netmask, str):
            nm = _int(C, "netmask", int(netmask.strip().lstrip("/")), 0, maxbits)
        else:
            nm = _int(C, "netmask", netmask, 0, maxbits)
        if fam == socket.AF_INET6 and nm < 1:
            raise ValueError("Service.netmask: an IPv6 prefix length must be 1..128")
        pe = None if pe_name is None or pe_name == "" else _name(C, "pe_name", pe_name, 15)
        if stats is None:
            stats = _ZERO_STATS
        elif not isinstance(stats, Stats):
            raise TypeError("Service.stats must be a Stats or None")
        for f, v in (("family", fam), ("protocol", proto), ("address", addr), ("port", port),
                     ("fwmark", fwmark), ("scheduler", sched), ("flags", ServiceFlags(fl)),
                     ("timeout", timeout), ("netmask", nm), ("pe_name", pe), ("stats", stats)):
            _set(self, f, v)

    @property
    def key(self) -> Tuple[Any, ...]:
        """The identity the kernel looks services up by."""
        if self.fwmark:
            return (self.family, "fwmark", self.fwmark)
        return (self.family, self.protocol, self.address, self.port)

    def __repr__(self) -> str:
        parts = []
        if self.fwmark:
            parts.append("fwmark=%d" % self.fwmark)
            if self.family != socket.AF_INET:
                parts.append("family=socket.%s" % self.family.name)
        else:
            parts.append("address=%r" % str(self.address))
            parts.append("port=%d" % self.port)
            parts.append("protocol=%s" % _proto_repr(self.protocol))
        parts.append("scheduler=%r" % self.scheduler)
        if self.flags:
            text = _repr_value(self.flags)
            if self.scheduler in ("sh", "mh"):
                pre = self.scheduler.upper()
                text = text.replace("SCHED1", pre + "_FALLBACK").replace("SCHED2", pre + "_PORT")
            parts.append("flags=%s" % text)
        if self.timeout:
            parts.append("timeout=%d" % self.timeout)
        if self.netmask != (32 if self.family == socket.AF_INET else 128):
            parts.append("netmask=%d" % self.netmask)
        if self.pe_name:
            parts.append("pe_name=%r" % self.pe_name)
        if self.stats != _ZERO_STATS:
            parts.append("stats=%r" % (self.stats,))
        return "Service(%s)" % ", ".join(parts)

    def __str__(self) -> str:
        if self.fwmark:
            return "service FWM %d%s" % (self.fwmark, " IPv6" if self.family == socket.AF_INET6 else "")
        host = "[%s]" % self.address if self.family == socket.AF_INET6 else str(self.address)
        proto = self.protocol.name if isinstance(self.protocol, Protocol) else "proto %d" % self.protocol
        return "service %s %s:%d" % (proto, host, self.port)


class Destination(_Record):
    """A real server of a virtual service.

    ``Destination(address, port=None, *, weight=1, forward=Forward.ROUTE,
    upper_threshold=0, lower_threshold=0, tunnel_type=TunnelType.IPIP,
    tunnel_port=0, tunnel_flags=TunnelFlags.NOCSUM, family=None)``

    * ``address``: an IPv4 or IPv6 address (str, bytes or ipaddress object);
      ``family`` follows from it (it may differ from the service's for
      tunnels).
    * ``port``: ``None`` (omitted) means the service's port, filled in by the
      handle when the call is made (0 under a fwmark service); an explicit 0
      stays 0.
    * ``weight``: the share of new connections (0 drains the server).
    * ``forward``: how packets reach the server (`Forward`); the default,
      ROUTE, is direct routing, as ipvsadm's.
    * ``upper_threshold`` / ``lower_threshold``: connection limits (0 = none).
    * ``tunnel_type``, ``tunnel_port``, ``tunnel_flags``: the encapsulation of
      a TUNNEL destination.

    Read back from the kernel also ``active_connections``,
    ``inactive_connections``, ``persistent_connections`` and ``stats`` (a
    `Stats`, all zero on objects you build); none of these take part in
    equality. Raises TypeError / ValueError naming the field on bad input.
    """

    __slots__ = ("address", "port", "family", "weight", "forward", "upper_threshold",
                 "lower_threshold", "tunnel_type", "tunnel_port", "tunnel_flags",
                 "active_connections", "inactive_connections", "persistent_connections",
                 "stats")
    _field_names = __slots__
    _compare = __slots__[:10]
    _defaults = {"port": None, "upper_threshold": 0,
                 "lower_threshold": 0, "tunnel_type": TunnelType.IPIP, "tunnel_port": 0,
                 "tunnel_flags": TunnelFlags.NOCSUM, "active_connections": 0,
                 "inactive_connections": 0, "persistent_connections": 0, "stats": _ZERO_STATS}
    # weight and forward are always in the repr: they decide where traffic goes

    address: IPAddress
    port: Optional[int]
    family: socket.AddressFamily
    weight: int
    forward: Forward
    upper_threshold: int
    lower_threshold: int
    tunnel_type: TunnelType
    tunnel_port: int
    tunnel_flags: TunnelFlags
    active_connections: int
    inactive_connections: int
    persistent_connections: int
    stats: Stats

    def __init__(self, address: AddressLike, port: Optional[int] = None, *, weight: int = 1,
                 forward: Union[Forward, int, str] = Forward.ROUTE,
                 upper_threshold: int = 0, lower_threshold: int = 0,
                 tunnel_type: Union[TunnelType, int, str] = TunnelType.IPIP,
                 tunnel_port: int = 0, tunnel_flags: Union[TunnelFlags, int] = TunnelFlags.NOCSUM,
                 family: Optional[int] = None, active_connections: int = 0,
                 inactive_connections: int = 0, persistent_connections: int = 0,
                 stats: Optional[Stats] = None) -> None:
        """Validate and build; see the class docstring for the fields."""
        C = "Destination"
        if address is None:
            raise TypeError("Destination.address is required")
        addr = _address(C, "address", address)
        fam = _family_of(addr)
        if family is not None and _family(C, family) != fam:
            raise ValueError("Destination.family %s does not match address %s"
                             % (socket.AddressFamily(family).name, addr))
        if stats is None:
            stats = _ZERO_STATS
        elif not isinstance(stats, Stats):
            raise TypeError("Destination.stats must be a Stats or None")
        values = (
            addr,
            None if port is None else _int(C, "port", port, 0, U16),
            fam,
            _int(C, "weight", weight, 0, I32_MAX),
            _enum(C, "forward", Forward, forward),
            _int(C, "upper_threshold", upper_threshold, 0, U32),
            _int(C, "lower_threshold", lower_threshold, 0, U32),
            _enum(C, "tunnel_type", TunnelType, tunnel_type),
            _int(C, "tunnel_port", tunnel_port, 0, U16),
            _flags(C, "tunnel_flags", TunnelFlags, tunnel_flags, 0x3),
            _int(C, "active_connections", active_connections, 0, U32),
            _int(C, "inactive_connections", inactive_connections, 0, U32),
            _int(C, "persistent_connections", persistent_connections, 0, U32),
            stats,
        )
        if values[6] > values[5]:
            raise ValueError("Destination.lower_threshold (%d) must not be above "
                             "upper_threshold (%d)" % (values[6], values[5]))
        for f, v in zip(self._field_names, values):
            _set(self, f, v)

    @property
    def key(self) -> Tuple[Any, ...]:
        """The identity of a destination within its service: (family,
        address, port); port None while it is still the service's."""
        return (self.family, self.address, self.port)

    def for_service(self, service: "Service") -> "Destination":
        """This destination with an omitted port (None) filled in from
        ``service``: the service's port, 0 under a fwmark service. A port
        that is set is kept (also 0)."""
        if self.port is not None:
            return self
        return self.replace(port=0 if service.fwmark else service.port)

    def __repr__(self) -> str:
        text = _Record.__repr__(self)
        # the family follows from the address: leave it out
        return text.replace(", family=socket.AF_INET6", "").replace(", family=socket.AF_INET", "")

    def __str__(self) -> str:
        host = "[%s]" % self.address if self.family == socket.AF_INET6 else str(self.address)
        if self.port is None:
            return "destination %s (the service's port)" % host
        return "destination %s:%d" % (host, self.port)


class Timeouts(_Record):
    """Connection timeouts in seconds (ipvsadm --set)."""

    __slots__ = ("tcp", "tcp_fin", "udp")
    _field_names = __slots__
    _compare = __slots__

    tcp: int
    tcp_fin: int
    udp: int

    def __init__(self, tcp: int, tcp_fin: int, udp: int) -> None:
        for f, v in zip(self._field_names, (tcp, tcp_fin, udp)):
            _set(self, f, _int("Timeouts", f, v, 0, U32))


class Info(_Record):
    """Kernel IPVS version and connection hash table size."""

    __slots__ = ("version", "version_info", "conn_tab_size")
    _field_names = __slots__
    _compare = __slots__

    version: str
    version_info: Tuple[int, int, int]
    conn_tab_size: int

    def __init__(self, version: str, version_info: Tuple[int, int, int], conn_tab_size: int) -> None:
        if not isinstance(version, str):
            raise TypeError("Info.version must be a str")
        vi = tuple(version_info)
        if len(vi) != 3 or not all(isinstance(x, int) for x in vi):
            raise TypeError("Info.version_info must be a tuple of 3 ints")
        _set(self, "version", version)
        _set(self, "version_info", vi)
        _set(self, "conn_tab_size", _int("Info", "conn_tab_size", conn_tab_size, 0, U32))


class Daemon(_Record):
    """A connection-synchronisation daemon (ipvsadm --start-daemon)."""

    __slots__ = ("state", "interface", "sync_id", "max_len", "mcast_group", "mcast_port",
                 "mcast_ttl")
    _field_names = __slots__
    _compare = __slots__
    _defaults = {"sync_id": 0, "max_len": 0, "mcast_group": None, "mcast_port": 0, "mcast_ttl": 0}

    state: DaemonState
    interface: str
    sync_id: int
    max_len: int
    mcast_group: Optional[IPAddress]
    mcast_port: int
    mcast_ttl: int

    def __init__(self, state: Union[DaemonState, int, str], interface: str, sync_id: int = 0,
                 max_len: int = 0, mcast_group: Optional[AddressLike] = None,
                 mcast_port: int = 0, mcast_ttl: int = 0) -> None:
        C = "Daemon"
        if isinstance(state, str):
            try:
                state = DaemonState[state.strip().upper()]
            except KeyError:
                raise ValueError("Daemon.state must be MASTER or BACKUP, got %r" % state) from None
        values = (
            _enum(C, "state", DaemonState, state),
            _name(C, "interface", interface, 15),
            _int(C, "sync_id", sync_id, 0, 255),
            _int(C, "max_len", max_len, 0, U16),
            None if mcast_group is None else _address(C, "mcast_group", mcast_group),
            _int(C, "mcast_port", mcast_port, 0, U16),
            _int(C, "mcast_ttl", mcast_ttl, 0, 255),
        )
        for f, v in zip(self._field_names, values):
            _set(self, f, v)


class Connection(_Record):
    """One entry of the kernel's IPVS connection table."""

    __slots__ = ("protocol", "client_address", "client_port", "virtual_address",
                 "virtual_port", "destination_address", "destination_port", "state", "expires")
    _field_names = __slots__
    _compare = __slots__

    protocol: Union[Protocol, str]
    client_address: IPAddress
    client_port: int
    virtual_address: IPAddress
    virtual_port: int
    destination_address: IPAddress
    destination_port: int
    state: str
    expires: int

    def __init__(self, protocol: Union[Protocol, int, str], client_address: AddressLike,
                 client_port: int, virtual_address: AddressLike, virtual_port: int,
                 destination_address: AddressLike, destination_port: int, state: str,
                 expires: int) -> None:
        C = "Connection"
        try:
            proto: Union[Protocol, str] = _enum(C, "protocol", Protocol, protocol)
        except ValueError:
            if not isinstance(protocol, str):
                raise
            proto = protocol.upper()  # e.g. "IP" for fwmark-only entries
        values = (
            proto,
            _address(C, "client_address", client_address),
            _int(C, "client_port", client_port, 0, U16),
            _address(C, "virtual_address", virtual_address),
            _int(C, "virtual_port", virtual_port, 0, U16),
            _address(C, "destination_address", destination_address),
            _int(C, "destination_port", destination_port, 0, U16),
            str(state),
            _int(C, "expires", expires, 0, U32),
        )
        for f, v in zip(self._field_names, values):
            _set(self, f, v)


for _cls in (Stats, Service, Destination, Timeouts, Info, Daemon, Connection):
    _cls._init_setters()
del _cls


class Call:
    """One call of a batch (`IPVS.batch`, `IPVS.apply`), as `BatchError.failures`
    reports it: ``method`` (the IPVS method's name, e.g. "add_destination"),
    ``service``, ``destination`` (None for service calls) and ``index``, its
    position in the batch (0 for the first call). Immutable."""

    __slots__ = ("method", "service", "destination", "index")

    method: str
    service: Service
    destination: Optional[Destination]
    index: int

    def __init__(self, method: str, service: Service,
                 destination: Optional[Destination] = None, index: int = 0) -> None:
        _set(self, "method", method)
        _set(self, "service", service)
        _set(self, "destination", destination)
        _set(self, "index", index)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("Call is immutable")

    def _key(self) -> Tuple[Any, ...]:
        return (self.index, self.method, self.service, self.destination)

    def __eq__(self, other: object) -> bool:
        if type(other) is not Call:
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __reduce__(self) -> Any:
        return (Call, (self.method, self.service, self.destination, self.index))

    def __repr__(self) -> str:
        if self.destination is None:
            return "#%d %s(%r)" % (self.index, self.method, self.service)
        return "#%d %s(%r, %r)" % (self.index, self.method, self.service, self.destination)

    def __str__(self) -> str:
        return self.__repr__()

"""The kernel's enums, as the model's records carry them: protocols,
forwarding methods, service flags, tunnel types and flags, sync daemon
states (values from the kernel's uapi, include/uapi/linux/ip_vs.h)."""

from __future__ import annotations

import enum
from typing import Mapping, Optional, Type, TypeVar

__all__ = ["Protocol", "Forward", "ServiceFlags", "TunnelType", "TunnelFlags", "DaemonState"]


_E = TypeVar("_E", bound=enum.Enum)


def _by_name(cls: Type[_E], value: object,
             aliases: Optional[Mapping[str, str]] = None) -> Optional[_E]:
    """The member named by ``value`` (a str, any case, or one of its
    ``aliases``), else None (the enum then raises its ValueError)."""
    if not isinstance(value, str):
        return None
    name = value.strip().upper()
    try:
        return cls[aliases.get(name, name) if aliases else name]
    except KeyError:
        return None


class Protocol(enum.IntEnum):
    """Transport protocol of a virtual service. ``Protocol("tcp")`` works too."""
    TCP = 6
    UDP = 17
    SCTP = 132

    @classmethod
    def _missing_(cls, value: object) -> Optional["Protocol"]:
        return _by_name(cls, value)

    def __str__(self) -> str:
        return self.name


class Forward(enum.IntEnum):
    """Packet-forwarding method of a destination (ipvsadm -m, -i, -g)."""
    MASQ = 0
    LOCAL = 1
    TUNNEL = 2
    ROUTE = 3
    BYPASS = 4

    @classmethod
    def _missing_(cls, value: object) -> Optional["Forward"]:
        return _by_name(cls, value, _FORWARD_ALIASES)


_FORWARD_ALIASES = {"NAT": "MASQ", "MASQUERADE": "MASQ", "DR": "ROUTE", "GATE": "ROUTE",
                    "GATEWAYING": "ROUTE", "DIRECT": "ROUTE", "IPIP": "TUNNEL", "TUN": "TUNNEL",
                    "LOCALNODE": "LOCAL"}


class ServiceFlags(enum.IntFlag):
    """Service flags (IP_VS_SVC_F_*). The scheduler bits have scheduler names."""
    NONE = 0
    PERSISTENT = 0x1
    HASHED = 0x2
    ONEPACKET = 0x4
    SCHED1 = 0x8
    SCHED2 = 0x10
    SCHED3 = 0x20
    SH_FALLBACK = 0x8
    SH_PORT = 0x10
    MH_FALLBACK = 0x8
    MH_PORT = 0x10


class TunnelType(enum.IntEnum):
    """Encapsulation of a TUNNEL destination."""
    IPIP = 0
    GUE = 1
    GRE = 2


class TunnelFlags(enum.IntFlag):
    """Tunnel encapsulation checksum flags."""
    NOCSUM = 0
    CSUM = 1
    REMCSUM = 2


class DaemonState(enum.IntEnum):
    """Role of a connection-synchronisation daemon."""
    MASTER = 1
    BACKUP = 2

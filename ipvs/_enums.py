"""The kernel's enums, as the model's records carry them: protocols,
forwarding methods, service flags, tunnel types and flags, sync daemon
states (values from the kernel's uapi, include/uapi/linux/ip_vs.h)."""

from __future__ import annotations

import enum
from typing import Optional

__all__ = ["Protocol", "Forward", "ServiceFlags", "TunnelType", "TunnelFlags", "DaemonState"]



class Protocol(enum.IntEnum):
    """Transport protocol of a virtual service. ``Protocol("tcp")`` works too."""
    TCP = 6
    UDP = 17
    SCTP = 132

    @classmethod
    def _missing_(cls, value: object) -> Optional["Protocol"]:
        if isinstance(value, str):
            try:
                return cls[value.strip().upper()]
            except KeyError:
                return None
        return None

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
        if isinstance(value, str):
            name = value.strip().upper()
            aliases = {"NAT": "MASQ", "MASQUERADE": "MASQ", "DR": "ROUTE", "GATE": "ROUTE",
                       "GATEWAYING": "ROUTE", "DIRECT": "ROUTE", "IPIP": "TUNNEL", "TUN": "TUNNEL",
                       "LOCALNODE": "LOCAL"}
            try:
                return cls[aliases.get(name, name)]
            except KeyError:
                return None
        return None


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

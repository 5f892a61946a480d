"""The checks of the model's constructors, one per kind of field; each
raises TypeError / ValueError naming the record and the field."""

from __future__ import annotations

import ipaddress
import socket
from typing import Any, Union

IPAddress = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]

U32 = 0xFFFFFFFF



def _int(cls: str, field: str, value: Any, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError("%s.%s must be an int, not %s" % (cls, field, type(value).__name__))
    if not lo <= value <= hi:
        raise ValueError("%s.%s must be in %d..%d, got %d" % (cls, field, lo, hi, value))
    return int(value)


def _enum(cls: str, field: str, enum_cls: Any, value: Any) -> Any:
    if isinstance(value, enum_cls):
        return value
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise TypeError("%s.%s must be a %s, an int or a name, not %s"
                        % (cls, field, enum_cls.__name__, type(value).__name__))
    try:
        return enum_cls(value)
    except ValueError:
        if isinstance(value, str):  # by name, any case (e.g. TunnelType "gue")
            try:
                return enum_cls[value.strip().upper()]
            except KeyError:
                pass
        names = ", ".join(m.name for m in enum_cls if m.name)
        raise ValueError("%s.%s: unknown %s %r (expected one of %s)"
                         % (cls, field, enum_cls.__name__, value, names)) from None


def _flags(cls: str, field: str, enum_cls: Any, value: Any, mask: int) -> Any:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError("%s.%s must be a %s or an int, not %s"
                        % (cls, field, enum_cls.__name__, type(value).__name__))
    if value < 0 or value & ~mask:
        raise ValueError("%s.%s has unknown bits: %#x" % (cls, field, int(value)))
    return enum_cls(int(value))


def _address(cls: str, field: str, value: Any) -> IPAddress:
    if isinstance(value, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
        return value
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("[") and text.endswith("]"):
            text = text[1:-1]
        try:
            return ipaddress.ip_address(text)
        except ValueError:
            raise ValueError("%s.%s: %r is not an IPv4 or IPv6 address" % (cls, field, value)) from None
    if isinstance(value, (bytes, bytearray)):
        if len(value) not in (4, 16):
            raise ValueError("%s.%s: packed address must be 4 or 16 bytes, got %d"
                             % (cls, field, len(value)))
        return ipaddress.ip_address(bytes(value))
    raise TypeError("%s.%s must be a str or an ipaddress address, not %s"
                    % (cls, field, type(value).__name__))


def _family(cls: str, value: Any) -> socket.AddressFamily:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError("%s.family must be socket.AF_INET or socket.AF_INET6, not %s"
                        % (cls, type(value).__name__))
    if value not in (socket.AF_INET, socket.AF_INET6):
        raise ValueError("%s.family must be socket.AF_INET or socket.AF_INET6, got %r" % (cls, value))
    return socket.AddressFamily(value)


def _family_of(addr: IPAddress) -> socket.AddressFamily:
    return socket.AF_INET if addr.version == 4 else socket.AF_INET6


def _name(cls: str, field: str, value: Any, maxlen: int) -> str:
    if not isinstance(value, str):
        raise TypeError("%s.%s must be a str, not %s" % (cls, field, type(value).__name__))
    if not value or len(value.encode("utf-8", "replace")) > maxlen:
        raise ValueError("%s.%s must be 1..%d characters, got %r" % (cls, field, maxlen, value))
    if not value.isascii() or not value.isprintable() or any(c.isspace() for c in value):
        raise ValueError("%s.%s must be printable ASCII without spaces, got %r" % (cls, field, value))
    return value


def _prefix_from_mask(mask: ipaddress.IPv4Address) -> int:
    bits = int(mask)
    n = 32 - (~bits & U32).bit_length()
    if ((U32 << (32 - n)) & U32) != bits:
        raise ValueError("Service.netmask: %s is not a contiguous netmask" % mask)
    return n

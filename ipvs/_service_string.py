"""Service strings: ``TCP 10.0.0.1:80``, ``UDP [2001:db8::1]:53``,
``SCTP 10.0.0.1:9000``, ``FWM 7``, ``FWM 7 IPv6``: how the director's
status, control API, events and filters and the exporter's filters name a
service. One definition, both ways."""

from __future__ import annotations

import ipaddress
import re
import socket
from typing import Any, Tuple

from ipvs._model import Protocol, Service

__all__ = ["service_string", "parse_service", "canonical_service_string"]

_FWM_RE = re.compile(r"^FWM\s+(\d+)(?:\s+(IPv4|IPv6))?$", re.IGNORECASE)
_ADDR_RE = re.compile(r"^(TCP|UDP|SCTP)\s+(?:\[([0-9A-Fa-f:.]+)\]|([0-9.]+)):(\d+)$",
                      re.IGNORECASE)


def service_string(service: Service) -> str:
    """The service string of ``service`` (the reverse of `parse_service`);
    a protocol without a name is written ``proto N``."""
    if service.fwmark:
        return "FWM %d%s" % (service.fwmark,
                             " IPv6" if service.family == socket.AF_INET6 else "")
    proto = service.protocol.name if isinstance(service.protocol, Protocol) \
        else "proto %d" % int(service.protocol)
    host = "[%s]" % service.address if service.family == socket.AF_INET6 \
        else str(service.address)
    return "%s %s:%d" % (proto, host, service.port)


def _parse(text: str) -> Service:
    if not isinstance(text, str):
        raise TypeError("a service string must be a str, not %s" % type(text).__name__)
    s = " ".join(text.split())
    m = _FWM_RE.match(s)
    if m:
        family = socket.AF_INET6 if (m.group(2) or "").lower() == "ipv6" else socket.AF_INET
        return Service(fwmark=int(m.group(1)), family=family)
    m = _ADDR_RE.match(s)
    if m:
        v6, v4 = m.group(2), m.group(3)
        try:
            addr: Any = ipaddress.IPv6Address(v6) if v6 is not None \
                else ipaddress.IPv4Address(v4)
            return Service(address=addr, port=int(m.group(4)), protocol=m.group(1).lower())
        except ValueError:
            raise ValueError("service string %r: bad address or port" % text) from None
    raise ValueError("service string %r: expected e.g. 'TCP 10.0.0.1:80', "
                     "'UDP [2001:db8::1]:53', 'FWM 7' or 'FWM 7 IPv6'" % text)


def parse_service(text: str) -> Tuple[Any, ...]:
    """The identity (``Service.key``) a service string names. The protocol
    word and ``IPv6`` are read in any case, blanks in any number; anything
    else is a ``ValueError``."""
    return _parse(text).key


def canonical_service_string(text: str) -> str:
    """A service string as an operator may type it (``tcp 10.0.0.1:80``,
    ``fwm 7 ipv6``, extra blanks, an IPv6 address in any spelling) in the
    form `service_string` gives; the text unchanged when it is not one."""
    try:
        return service_string(_parse(text))
    except (TypeError, ValueError):
        return text

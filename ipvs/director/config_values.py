"""The value checks every part of the configuration uses: each returns the
value (converted) or raises the :class:`ConfigError` of ``ctx`` for the key
path, with the message the file's author sees."""

from __future__ import annotations

import ipaddress
import re
from typing import Any, Dict, Mapping, Sequence, Tuple

from ipvs.director.config_errors import Path, _Ctx


def _type(ctx: _Ctx, path: Path, value: Any, kinds: Any, what: str) -> Any:
    if isinstance(value, bool) and bool not in (kinds if isinstance(kinds, tuple) else (kinds,)):
        raise ctx.error(path, "must be %s, not a boolean" % what)
    if not isinstance(value, kinds):
        raise ctx.error(path, "must be %s, not %r" % (what, value))
    return value


def _number(ctx: _Ctx, path: Path, value: Any, lo: float = 0.0, positive: bool = True) -> float:
    _type(ctx, path, value, (int, float), "a number of seconds")
    if positive and not value > lo:
        raise ctx.error(path, "must be above %g" % lo)
    return float(value)


def _integer(ctx: _Ctx, path: Path, value: Any, lo: int, hi: int) -> int:
    _type(ctx, path, value, int, "an integer")
    if not lo <= value <= hi:
        raise ctx.error(path, "must be %d..%d, not %d" % (lo, hi, value))
    return int(value)


def _unknown(ctx: _Ctx, path: Path, table: Mapping[str, Any], allowed: Sequence[str]) -> None:
    for k in table:
        if k not in allowed:
            raise ctx.error(path + (k,), "unknown key (expected one of: %s)" % ", ".join(allowed))


def _argv(ctx: _Ctx, path: Path, value: Any) -> Tuple[str, ...]:
    if (not isinstance(value, list) or not value
            or not all(isinstance(a, str) for a in value)):
        raise ctx.error(path, "must be a non-empty list of strings (an argv, no shell)")
    return tuple(value)


def _enum_name(ctx: _Ctx, path: Path, enum_cls: Any, value: Any) -> Any:
    try:
        if isinstance(value, str):
            return enum_cls[value.upper().replace("-", "_")]   # ipvsadm spells mh-port
        if isinstance(value, int) and not isinstance(value, bool):
            return enum_cls(value)
    except (KeyError, ValueError):
        pass
    raise ctx.error(path, "unknown value %r (one of: %s)"
                    % (value, ", ".join(m.name.lower() for m in enum_cls)))


def _hostport(ctx: _Ctx, path: Path, value: Any, default_port: int) -> Tuple[str, int]:
    _type(ctx, path, value, str, 'an address with a port ("10.0.0.1:80", "[2001:db8::1]:80")')
    m = re.fullmatch(r"\[([^\]]+)\](?::(\d+))?|([^:]+)(?::(\d+))?|([0-9a-fA-F:]+)", value)
    if not m:
        raise ctx.error(path, "not an address[:port]: %r" % value)
    host = m.group(1) or m.group(3) or m.group(5)
    port = m.group(2) or m.group(4)
    try:
        host = str(ipaddress.ip_address(host))
    except ValueError:
        raise ctx.error(path, "not an IP address: %r" % host) from None
    port_n = int(port) if port else default_port
    if not 0 <= port_n <= 65535:
        raise ctx.error(path, "port out of range: %d" % port_n)
    return host, port_n


def _model(ctx: _Ctx, path: Path, fn: Any, kwargs: Dict[str, Any]) -> Any:
    try:
        return fn(**kwargs)
    except (TypeError, ValueError) as e:
        text = str(e)
        for k in kwargs:  # point at the field the model's message names
            if re.search(r"\b%s\b" % re.escape(k), text):
                raise ctx.error(path + (k,), text) from None
        raise ctx.error(path, text) from None


def _regex(ctx: _Ctx, path: Path, value: Any) -> str:
    """A Python regular expression (compiled once here to judge it)."""
    _type(ctx, path, value, str, "a regular expression")
    try:
        re.compile(value)
    except re.error as e:
        raise ctx.error(path, "bad regular expression: %s" % e) from None
    return str(value)

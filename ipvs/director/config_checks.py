"""The checks of a configuration file: the keys every check has, validated
here, and the keys of its type, validated by the type's module
(``checks.TYPES``); a check spec shared by many real servers is validated
once."""

from __future__ import annotations

import ipaddress
from typing import Any, Dict, Mapping, Tuple

from ipvs.director.checks import TYPES
from ipvs.director.config_errors import Path, _Ctx
from ipvs.director.config_records import CheckConfig
from ipvs.director.config_values import _integer, _number, _type, _unknown

__all__ = ["CHECK_TYPES", "COMMON_CHECK_KEYS", "TYPE_KEYS", "NEEDS_PORT"]

CHECK_TYPES = tuple(TYPES)
COMMON_CHECK_KEYS = ("type", "address", "port", "interval", "retry_interval", "timeout",
                     "rise", "fall", "initial")
TYPE_KEYS: Dict[str, Tuple[str, ...]] = {name: t.keys for name, t in TYPES.items()}
NEEDS_PORT = tuple(name for name, t in TYPES.items() if t.needs_port)


def _freeze(v: Any) -> Any:
    if isinstance(v, dict):
        return tuple(sorted((k, _freeze(x)) for k, x in v.items()))
    if isinstance(v, list):
        return ("__list__",) + tuple(_freeze(x) for x in v)
    return (type(v).__name__, v)


def _retarget(c: CheckConfig, address: str, port: int) -> CheckConfig:
    """``c`` (validated) for another target: the constructor, not
    dataclasses.replace (a third of the cost, 36,800 times at scale)."""
    return CheckConfig(c.type, address, port, c.interval, c.retry_interval, c.timeout,
                       c.rise, c.fall, c.initial, c.params)


def _check(ctx: _Ctx, path: Path, spec: Mapping[str, Any], address: str, port: int,
           base_path: Path) -> CheckConfig:
    """A validated check; ``address`` and ``port`` (the real server's, already
    valid) are used where the spec names none."""
    key = None
    if "address" not in spec and "port" not in spec and (port or spec.get("type") not in NEEDS_PORT):
        key = _freeze(spec)
        done = ctx.checks.get(key)
        if done is not None:
            return _retarget(done, address, port)
    out = _check_new(ctx, path, spec, address, port, base_path)
    if key is not None:
        ctx.checks[key] = out
    return out


def _check_new(ctx: _Ctx, path: Path, spec: Mapping[str, Any], address: str, port: int,
               base_path: Path) -> CheckConfig:
    ctype = spec.get("type", "none")
    if ctype not in CHECK_TYPES:
        raise ctx.error(path + ("type",), "unknown check type %r (one of: %s)"
                        % (ctype, ", ".join(CHECK_TYPES)))
    kind = TYPES[ctype]
    allowed = COMMON_CHECK_KEYS + kind.keys
    _unknown(ctx, path, spec, allowed)

    def p(k: str) -> Path:
        """Where ``k`` is: in this check, or inherited from the service's."""
        return path + (k,) if k in spec else base_path + (k,)
    addr = spec.get("address", address)
    _type(ctx, p("address"), addr, str, "an address")
    try:
        addr = str(ipaddress.ip_address(addr))
    except ValueError:
        raise ctx.error(p("address"), "not an IP address: %r" % addr) from None
    cport = spec.get("port", port)
    cport = _integer(ctx, p("port"), cport, 0, 65535)
    if kind.needs_port and cport == 0:
        raise ctx.error(path + ("port",), "a %s check of a real server without a port "
                        "(fwmark service) needs port" % ctype)
    interval = _number(ctx, p("interval"), spec.get("interval", 2.0))
    retry = _number(ctx, p("retry_interval"), spec.get("retry_interval", 2.0))
    timeout = _number(ctx, p("timeout"), spec.get("timeout", 1.0))
    rise = _integer(ctx, p("rise"), spec.get("rise", 2), 1, 1000)
    fall = _integer(ctx, p("fall"), spec.get("fall", 2), 1, 1000)
    initial = spec.get("initial", "down")
    if initial not in ("down", "up"):
        raise ctx.error(p("initial"), 'must be "down" or "up", not %r' % (initial,))
    params = kind.params(ctx, path, spec, p)
    return CheckConfig(ctype, addr, cport, interval, retry, timeout, rise, fall, initial,
                       tuple(sorted(params.items())))


def _merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> Dict[str, Any]:
    """``over`` key by key over ``base``; keys of another type's check are
    not inherited when ``over`` changes the type."""
    out = dict(base)
    if "type" in over and over["type"] != base.get("type", "none"):
        out = {k: v for k, v in base.items() if k in COMMON_CHECK_KEYS}
    out.update(over)
    return out

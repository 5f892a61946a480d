"""The ``[[service]]`` tables of a configuration file and their
``[[service.real_server]]`` tables validated into records (their checks by
config_checks.py), every real server's error collected."""

from __future__ import annotations

import ipaddress
import re
import socket
from typing import Any, Dict, List, Mapping, Tuple

import ipvs
from ipvs.director.config_checks import NEEDS_PORT, _check, _merge, _retarget
from ipvs.director.config_errors import ConfigError, Path, _collect, _Ctx
from ipvs.director.config_records import CheckConfig, RealServerConfig, ServiceConfig, service_name
from ipvs.director.config_values import (_argv, _enum_name, _hostport, _integer, _model, _type,
                                         _unknown)

__all__ = ["SERVICE_KEYS", "REAL_SERVER_KEYS", "SCHEDULER_NAMES"]

#: scheduler names a kernel may offer (ip_vs_<name>.ko); --check refuses others
SCHEDULER_NAMES = ("rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq",
                   "fo", "ovf", "mh", "twos")
SERVICE_KEYS = ("address", "port", "fwmark", "family", "protocol", "scheduler", "flags",
                "timeout", "netmask", "pe_name", "on_failure", "quorum", "hysteresis",
                "sorry_server", "check", "real_server")
REAL_SERVER_KEYS = ("address", "port", "weight", "forward", "upper_threshold",
                    "lower_threshold", "tunnel_type", "tunnel_port", "tunnel_flags",
                    "on_failure", "check", "checks", "notify_up", "notify_down")


def _service(ctx: _Ctx, path: Path, t: Mapping[str, Any]) -> ServiceConfig:
    _unknown(ctx, path, t, SERVICE_KEYS)
    kw: Dict[str, Any] = {}
    if ("address" in t) == ("fwmark" in t):
        raise ctx.error(path, "a service needs exactly one of address or fwmark")
    if "address" in t:
        kw["address"] = _type(ctx, path + ("address",), t["address"], str, "an IP address")
        kw["port"] = _integer(ctx, path + ("port",), t.get("port", 0), 0, 65535)
        kw["protocol"] = t.get("protocol", "tcp")
        if "family" in t:
            raise ctx.error(path + ("family",), "family follows from address; only for fwmark")
    else:
        kw["fwmark"] = _integer(ctx, path + ("fwmark",), t["fwmark"], 1, 0xFFFFFFFF)
        if "port" in t or "protocol" in t:
            k = "port" if "port" in t else "protocol"
            raise ctx.error(path + (k,), "a fwmark service has no %s" % k)
        fam = t.get("family", "ipv4")
        if fam not in ("ipv4", "ipv6"):
            raise ctx.error(path + ("family",), 'must be "ipv4" or "ipv6"')
        kw["family"] = socket.AF_INET6 if fam == "ipv6" else socket.AF_INET
    if "scheduler" in t:
        kw["scheduler"] = _type(ctx, path + ("scheduler",), t["scheduler"], str, "a name")
    if "flags" in t:
        fl = t["flags"]
        if not isinstance(fl, list):
            raise ctx.error(path + ("flags",), "must be a list of ServiceFlags names")
        value = ipvs.ServiceFlags(0)
        for name in fl:
            value |= _enum_name(ctx, path + ("flags",), ipvs.ServiceFlags, name)
        kw["flags"] = value
    elif kw.get("scheduler") == "mh":
        # a real server quiesced (weight 0) is skipped by the lookup: its
        # flows go to the next one, and every other flow stays where it is
        kw["flags"] = ipvs.ServiceFlags.MH_FALLBACK
    for k in ("timeout",):
        if k in t:
            kw[k] = _integer(ctx, path + (k,), t[k], 0, 0xFFFFFFFF)
    if "netmask" in t:
        kw["netmask"] = t["netmask"]
    if "pe_name" in t:
        kw["pe_name"] = _type(ctx, path + ("pe_name",), t["pe_name"], str, "a name")
    svc = _model(ctx, path, ipvs.Service, kw)
    name = service_name(svc)
    on_failure = t.get("on_failure", "quiesce")
    if on_failure not in ("quiesce", "remove"):
        raise ctx.error(path + ("on_failure",), 'must be "quiesce" or "remove"')
    quorum = _integer(ctx, path + ("quorum",), t.get("quorum", 1), 0, 1 << 31)
    hysteresis = _integer(ctx, path + ("hysteresis",), t.get("hysteresis", 0), 0, 1 << 31)
    base_check = t.get("check", {"type": "none"})
    if not isinstance(base_check, dict):
        raise ctx.error(path + ("check",), "must be a table")
    rss = t.get("real_server", [])
    if not isinstance(rss, list):
        raise ctx.error(path + ("real_server",), "must be an array of tables [[service.real_server]]")
    real: List[RealServerConfig] = []
    seen: Dict[Any, int] = {}
    errors: List[ConfigError] = []     # every real server's, not only the first
    if svc.scheduler not in SCHEDULER_NAMES:
        errors.append(ctx.error(path + ("scheduler",), "no kernel has a scheduler %r (one of: "
                                "%s)" % (svc.scheduler, " ".join(SCHEDULER_NAMES))))
    for i, r in enumerate(rss):
        rpath = path + ("real_server", i)
        try:
            rs = _real_server(ctx, rpath, r, svc, on_failure, base_check, path + ("check",))
            if rs.key in seen:
                raise ctx.error(rpath + ("address",), "real server given twice in %s" % name)
            _same_family(ctx, rpath, svc, rs.destination)
        except ConfigError as e:
            errors.append(e)
            continue
        seen[rs.key] = i
        real.append(rs)
    if "quorum" in t and len(real) == len(rss):
        total = sum(rs.destination.weight for rs in real)
        if quorum > total:
            errors.append(ctx.error(path + ("quorum",), "quorum %d is above %d, the sum of the "
                                    "real servers' weights: the service could never have "
                                    "quorum" % (quorum, total)))
    _collect(errors)
    sorry = None
    if "sorry_server" in t:
        host, port = _hostport(ctx, path + ("sorry_server",), t["sorry_server"],
                               svc.port if not svc.fwmark else 0)
        fwd = real[0].destination.forward if real else ipvs.Forward.ROUTE
        sorry = _model(ctx, path + ("sorry_server",), ipvs.Destination,
                       {"address": host, "port": port, "weight": 1, "forward": fwd})
        if sorry.key in seen:
            raise ctx.error(path + ("sorry_server",), "the sorry server is also a real server")
        _same_family(ctx, path + ("sorry_server",), svc, sorry)
    return ServiceConfig(svc, name, on_failure, quorum, hysteresis, sorry, tuple(real))


def _same_family(ctx: _Ctx, path: Path, svc: ipvs.Service, dest: ipvs.Destination) -> None:
    """The kernel's rule: a destination of another address family than its
    service's only with tunnel forwarding (EINVAL otherwise)."""
    fam = socket.AF_INET6 if dest.address.version == 6 else socket.AF_INET
    if fam != svc.family and dest.forward != ipvs.Forward.TUNNEL:
        raise ctx.error(path + ("address",), "an IPv%d real server of an IPv%d service needs "
                        'forward = "tunnel" (the kernel refuses other methods across '
                        "families)" % (dest.address.version, 6 if svc.family == socket.AF_INET6
                                       else 4))


_DOTTED = re.compile(r"(?:(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\.){3}"
                     r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\Z")


def _ipv4(text: str) -> Any:
    """A plain dotted quad as an IPv4Address made from its packed bytes (a
    fifth of the cost of ipaddress's parse, 36,800 times at scale); any
    other text as it is, for the model to parse and judge."""
    if _DOTTED.match(text):
        return ipaddress.IPv4Address(socket.inet_aton(text))
    return text


def _real_server(ctx: _Ctx, path: Path, r: Any, svc: ipvs.Service, on_failure: str,
                 base_check: Mapping[str, Any], base_path: Path) -> RealServerConfig:
    if not isinstance(r, dict):
        raise ctx.error(path, "must be a table")
    _unknown(ctx, path, r, REAL_SERVER_KEYS)
    if "address" not in r:
        raise ctx.error(path, "a real server needs address")
    address = _type(ctx, path + ("address",), r["address"], str, "an IP address")
    kw: Dict[str, Any] = {"address": _ipv4(address)}
    kw["port"] = _integer(ctx, path + ("port",), r.get("port", 0 if svc.fwmark else svc.port),
                          0, 65535)
    kw["weight"] = _integer(ctx, path + ("weight",), r.get("weight", 1), 0, 0x7FFFFFFF)
    for k, cls in (("forward", ipvs.Forward), ("tunnel_type", ipvs.TunnelType),
                   ("tunnel_flags", ipvs.TunnelFlags)):
        if k in r:
            kw[k] = _enum_name(ctx, path + (k,), cls, r[k])
    for k in ("upper_threshold", "lower_threshold"):
        if k in r:
            kw[k] = _integer(ctx, path + (k,), r[k], 0, 0xFFFFFFFF)
    if "tunnel_port" in r:
        kw["tunnel_port"] = _integer(ctx, path + ("tunnel_port",), r["tunnel_port"], 0, 65535)
    dest = _model(ctx, path, ipvs.Destination, kw)
    of = r.get("on_failure", on_failure)
    if of not in ("quiesce", "remove"):
        raise ctx.error(path + ("on_failure",), 'must be "quiesce" or "remove"')
    if "check" in r and "checks" in r:
        raise ctx.error(path + ("checks",), "give check or checks, not both")
    specs: List[Tuple[Path, Dict[str, Any]]] = []
    own = False
    if "checks" in r:
        if not isinstance(r["checks"], list) or not r["checks"]:
            raise ctx.error(path + ("checks",), "must be a non-empty list of tables")
        for i, c in enumerate(r["checks"]):
            if not isinstance(c, dict):
                raise ctx.error(path + ("checks", i), "must be a table")
            specs.append((path + ("checks", i), _merge(base_check, c)))
    elif "check" in r:
        if not isinstance(r["check"], dict):
            raise ctx.error(path + ("check",), "must be a table")
        specs.append((path + ("check",), _merge(base_check, r["check"])))
    else:
        # the service's check, unchanged: validated once per service (its
        # dict lives as long as the parse, so its id is a safe key); the
        # same condition as _check's own cache of specs
        own = ("address" not in base_check and "port" not in base_check
               and (dest.port or base_check.get("type") not in NEEDS_PORT))
        done = ctx.base_checks.get(id(base_check)) if own else None
        if done is not None and done[0] is base_check:
            checks: Tuple[CheckConfig, ...] = (
                _retarget(done[1], str(dest.address), dest.port),)
        else:
            specs.append((base_path, dict(base_check)))
    if specs:
        checks = tuple(_check(ctx, p, s, str(dest.address), dest.port, base_path)
                       for p, s in specs)
        if own and "check" not in r and "checks" not in r:
            ctx.base_checks[id(base_check)] = (base_check, checks[0])
    notify = {}
    for k in ("notify_up", "notify_down"):
        if k in r:
            notify[k] = _argv(ctx, path + (k,), r[k])
    return RealServerConfig(dest, of, checks, notify.get("notify_up"), notify.get("notify_down"))

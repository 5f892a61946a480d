"""The director's configuration file: TOML parsed, validated, turned into
``ipvs`` model objects.

Every error is a :class:`ConfigError` whose message names the file, the line
and the key (``director.toml:12: service[0].real_server[1].weight: ...``).
TOML syntax errors carry the parser's line; for values that parse but do not
validate the line of the key is found in the text.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
import socket
import sys
from typing import Any, Dict, List, Mapping, Optional, Sequence, Set, Tuple, Union

import ipvs
# tomli, the project tomllib came from, ships compiled (mypyc) wheels that
# read a 36,800-server file three times faster than the stdlib's pure-Python
# tomllib (0.23 s against 0.66 s on the host): ipvs[director] installs it,
# and the stdlib's reader is the fallback where it is missing.
try:
    import tomli as tomllib
except ImportError:  # pragma: no cover - depends on the installed extras
    if sys.version_info < (3, 11):
        raise
    import tomllib  # type: ignore[no-redef]

__all__ = ["AnnounceConfig", "ConfigError", "ConfigErrors", "Config", "DirectorConfig", "ServiceConfig", "RealServerConfig",
           "CheckConfig", "load", "parse", "service_name", "canonical_service_name",
           "CHECK_TYPES"]

CHECK_TYPES = ("tcp", "http", "https", "udp", "dns", "smtp", "exec", "file", "none")
COMMON_CHECK_KEYS = ("type", "address", "port", "interval", "retry_interval", "timeout",
                     "rise", "fall", "initial")
TYPE_KEYS: Dict[str, Tuple[str, ...]] = {
    "tcp": (),
    "http": ("path", "host", "expect_status", "expect_body", "expect_digest"),
    "https": ("path", "host", "expect_status", "expect_body", "expect_digest", "sni", "verify"),
    "udp": ("send", "expect"),
    "dns": ("name", "qtype", "expect_rcode"),
    "smtp": ("helo",),
    "exec": ("command", "dynamic_weight"),
    "file": ("path",),
    "none": (),
}
NEEDS_PORT = ("tcp", "http", "https", "udp", "dns", "smtp")
#: scheduler names a kernel may offer (ip_vs_<name>.ko); --check refuses others
SCHEDULER_NAMES = ("rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq",
                   "fo", "ovf", "mh", "twos")
#: the settings under /proc/sys/net/ipv4/vs a kernel may have ([director] sysctl);
#: est_cpulist and est_nice came in 6.2, conn_lfactor, svc_lfactor and conn_max in
#: 7.x, lblc(r)_expiration with their schedulers; a name this kernel lacks is an
#: error event at run time, a name no kernel has is refused by --check
SYSCTL_NAMES = ("am_droprate", "amemthresh", "backup_only", "cache_bypass",
                "conn_lfactor", "conn_max", "conn_reuse_mode", "conntrack", "debug_level", "drop_entry", "drop_packet",
                "est_cpulist", "est_nice", "expire_nodest_conn", "expire_quiescent_template",
                "ignore_tunneled", "lblc_expiration", "lblcr_expiration", "nat_icmp_send",
                "pmtu_disc", "run_estimation", "schedule_icmp", "secure_tcp", "sloppy_sctp",
                "sloppy_tcp", "snat_reroute", "sync_persist_mode", "sync_ports",
                "sync_qlen_max", "sync_refresh_period", "sync_retries", "sync_sock_size",
                "svc_lfactor", "sync_threshold", "sync_version")
DNS_QTYPES = {"A": 1, "NS": 2, "CNAME": 5, "SOA": 6, "PTR": 12, "MX": 15, "TXT": 16,
              "AAAA": 28, "SRV": 33, "ANY": 255}
DNS_RCODES = {"NOERROR": 0, "FORMERR": 1, "SERVFAIL": 2, "NXDOMAIN": 3, "NOTIMP": 4,
              "REFUSED": 5}

DIRECTOR_KEYS = ("netns", "control", "control_group", "metrics", "metrics_rates",
                 "drain_timeout", "resync_interval", "sync", "state_file",
                 "max_checks_in_flight", "sysctl", "announce")
SERVICE_KEYS = ("address", "port", "fwmark", "family", "protocol", "scheduler", "flags",
                "timeout", "netmask", "pe_name", "on_failure", "quorum", "hysteresis",
                "sorry_server", "check", "real_server")
REAL_SERVER_KEYS = ("address", "port", "weight", "forward", "upper_threshold",
                    "lower_threshold", "tunnel_type", "tunnel_port", "tunnel_flags",
                    "on_failure", "check", "checks", "notify_up", "notify_down")

Path = Tuple[Union[str, int], ...]


class ConfigError(ValueError):
    """A configuration file that does not parse or validate.

    ``line`` (1-based, or None) and ``key`` (a dotted path such as
    ``service[0].check.timeout``, or None) say where; ``str()`` is the full
    message with file, line and key.
    """

    def __init__(self, message: str, *, filename: str = "<config>",
                 line: Optional[int] = None, key: Optional[str] = None) -> None:
        self.message = message
        self.filename = filename
        self.line = line
        self.key = key
        where = filename + (":%d" % line if line else "")
        super().__init__("%s: %s%s" % (where, (key + ": ") if key else "", message))


class ConfigErrors(ConfigError):
    """Several errors of one file (``errors``: each a :class:`ConfigError`
    with its line); ``str()`` is one line per error, in file order, and
    ``line``/``key`` are the first one's."""

    errors: List[ConfigError]

    def __init__(self, errors: Sequence[ConfigError]) -> None:
        flat: List[ConfigError] = []
        for e in errors:
            flat += e.errors if isinstance(e, ConfigErrors) else [e]
        flat.sort(key=lambda e: e.line or 0)
        self.errors = flat
        first = flat[0]
        ValueError.__init__(self, "\n".join(str(e) for e in flat))
        self.message, self.filename = first.message, first.filename
        self.line, self.key = first.line, first.key


def _collect(errors: List[ConfigError]) -> None:
    if errors:
        raise errors[0] if len(errors) == 1 else ConfigErrors(errors)


@dataclasses.dataclass(frozen=True)
class CheckConfig:
    """One health check of one real server, fully resolved (target address
    and port included).  Two equal CheckConfig objects are one probe."""
    type: str
    address: str
    port: int
    interval: float = 2.0
    retry_interval: float = 2.0
    timeout: float = 1.0
    rise: int = 2
    fall: int = 2
    initial: str = "down"
    params: Tuple[Tuple[str, Any], ...] = ()

    def param(self, name: str, default: Any = None) -> Any:
        for k, v in self.params:
            if k == name:
                return v
        return default


@dataclasses.dataclass(frozen=True)
class RealServerConfig:
    """A real server of a service: its destination (configured weight), the
    failure mode, its checks and notify commands."""
    destination: ipvs.Destination
    on_failure: str
    checks: Tuple[CheckConfig, ...]
    notify_up: Optional[Tuple[str, ...]] = None
    notify_down: Optional[Tuple[str, ...]] = None

    @property
    def key(self) -> Tuple[Any, ...]:
        return self.destination.key


@dataclasses.dataclass(frozen=True)
class ServiceConfig:
    """A virtual service, its quorum settings and its real servers."""
    service: ipvs.Service
    name: str
    on_failure: str
    quorum: int
    hysteresis: int
    sorry_server: Optional[ipvs.Destination]
    real_servers: Tuple[RealServerConfig, ...]


@dataclasses.dataclass(frozen=True)
class AnnounceConfig:
    """``[director.announce]``: how the director tells a BGP speaker which
    VIPs to announce (active-active directors behind ECMP)."""
    via: str                        # "exabgp" or "interface"
    interface: str = "ipvs-vips"    # via "interface": the dummy interface of the VIPs
    when: str = "all"               # "all" or "any" of a VIP's services healthy
    withdraw_grace: float = 5.0     # s between withdrawing at a stop and the exit


@dataclasses.dataclass(frozen=True)
class DirectorConfig:
    """The ``[director]`` table."""
    netns: Optional[str] = None
    control: str = "/run/ipvs-director.sock"
    control_group: Optional[str] = None
    metrics: Optional[Tuple[str, int]] = None
    metrics_rates: bool = False
    drain_timeout: float = 300.0
    resync_interval: float = 60.0
    #: the ``[director.sync]`` table: the sync daemon the director keeps
    #: (its ``state`` is the role at start), or None
    sync: Optional[ipvs.Daemon] = None
    #: ``[director.sync]``'s ``keepalived_fifo``: keepalived's ``notify_fifo``,
    #: read by the director itself (None: roles come only from ``POST /role``)
    sync_fifo: Optional[str] = None
    #: ``[director.sync]``'s ``vrrp_instance``: the VRRP instance (or sync
    #: group) of the FIFO whose state is the director's role
    sync_vrrp_instance: Optional[str] = None
    state_file: Optional[str] = None        # None: beside the control socket; "": none
    max_checks_in_flight: Optional[int] = None  # None: from the open files limit
    #: ``[director] sysctl``: ((name, value text), ...) of net.ipv4.vs.* kept set
    sysctl: Tuple[Tuple[str, str], ...] = ()
    #: ``[director.announce]``, or None (no VIP announcing)
    announce: Optional[AnnounceConfig] = None

    @property
    def state_path(self) -> Optional[str]:
        """Where the state file is (None: kept nowhere)."""
        if self.state_file == "":
            return None
        if self.state_file is not None:
            return self.state_file
        from ipvs.director.state import default_path
        return default_path(self.control)


@dataclasses.dataclass(frozen=True)
class Config:
    """A whole validated file."""
    director: DirectorConfig
    services: Tuple[ServiceConfig, ...]
    filename: str = "<config>"


#: the service string of the status, API, events and filters (``TCP
#: 10.0.0.1:80``, ``UDP [2001:db8::1]:53``, ``FWM 7``, ``FWM 7 IPv6``)
service_name = ipvs.service_string
#: a service string as an operator may type it, in `service_name`'s form
canonical_service_name = ipvs.canonical_service_string


# ------------------------------------------------------------ line finding

_HEADER = re.compile(r"^\s*(\[\[?)\s*([A-Za-z0-9_.\-\" ]+?)\s*\]\]?\s*(#.*)?$")
_KEYLINE = re.compile(r"^\s*([A-Za-z0-9_\-]+|\"[^\"]*\")\s*=")


def _key_lines(text: str) -> Dict[Path, int]:
    """{path: line} of every table header and key line of the text (plain
    TOML as this file uses it: headers, arrays of tables, key = value)."""
    out: Dict[Path, int] = {}
    counts: Dict[Path, int] = {}
    current: Path = ()
    for no, line in enumerate(text.splitlines(), 1):
        m = _HEADER.match(line)
        if m and not _KEYLINE.match(line):
            names = [p.strip().strip('"') for p in m.group(2).split(".")]
            # resolve each prefix to its latest array element
            path: List[Union[str, int]] = []
            for i, name in enumerate(names):
                path.append(name)
                last = i == len(names) - 1
                if m.group(1) == "[[" and last:
                    base = tuple(path)
                    counts[base] = counts.get(base, -1) + 1
                    path.append(counts[base])
                    # a new element resets the counts below it
                    for k in [k for k in counts if k[:len(base)] == base and len(k) > len(base)]:
                        del counts[k]
                elif tuple(path) in counts:
                    path.append(counts[tuple(path)])
            current = tuple(path)
            out.setdefault(current, no)
            continue
        k = _KEYLINE.match(line)
        if k:
            key = k.group(1).strip('"')
            out.setdefault(current + (key,), no)
            # keys of an inline table on the same line
            rest = line[k.end():]
            for sub in re.findall(r"([A-Za-z0-9_\-]+)\s*=", rest):
                out.setdefault(current + (key, sub), no)
    return out


def _dotted(path: Path) -> str:
    s = ""
    for p in path:
        s += "[%d]" % p if isinstance(p, int) else ("." if s else "") + p
    return s


class _Ctx:
    def __init__(self, text: str, filename: str) -> None:
        self.filename = filename
        self.text = text
        self._lines: Optional[Dict[Path, int]] = None
        # validated checks by their spec, for real servers sharing one
        # (the address and port, validated with the real server, differ)
        self.checks: Dict[Any, CheckConfig] = {}
        # the same for a service's own [service.check] table, by the table's id
        self.base_checks: Dict[int, Tuple[Any, CheckConfig]] = {}

    @property
    def lines(self) -> Dict[Path, int]:
        # found only for an error message: a valid file never pays for it
        if self._lines is None:
            self._lines = _key_lines(self.text)
        return self._lines

    def error(self, path: Path, message: str) -> ConfigError:
        line = None
        for n in range(len(path), 0, -1):
            if path[:n] in self.lines:
                line = self.lines[path[:n]]
                break
        return ConfigError(message, filename=self.filename, line=line,
                           key=_dotted(path) or None)


# ------------------------------------------------------------ validation

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


def _status_set(ctx: _Ctx, path: Path, value: Any) -> Tuple[Tuple[int, int], ...]:
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    _type(ctx, path, value, str, 'a status code or ranges such as "200-299,302"')
    out = []
    for part in value.split(","):
        part = part.strip()
        m = re.fullmatch(r"(\d{3})(?:\s*-\s*(\d{3}))?", part)
        if not m:
            raise ctx.error(path, "bad status %r (codes and ranges: \"200-299,302\")" % part)
        lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
        if not 100 <= lo <= hi <= 599:
            raise ctx.error(path, "bad status range %r" % part)
        out.append((lo, hi))
    return tuple(out)


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
    allowed = COMMON_CHECK_KEYS + TYPE_KEYS[ctype]
    _unknown(ctx, path, spec, allowed)
    p = lambda k: path + (k,) if k in spec else base_path + (k,)  # noqa: E731
    addr = spec.get("address", address)
    _type(ctx, p("address"), addr, str, "an address")
    try:
        addr = str(ipaddress.ip_address(addr))
    except ValueError:
        raise ctx.error(p("address"), "not an IP address: %r" % addr) from None
    cport = spec.get("port", port)
    cport = _integer(ctx, p("port"), cport, 0, 65535)
    if ctype in NEEDS_PORT and cport == 0:
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
    params: Dict[str, Any] = {}
    if ctype in ("http", "https"):
        path_ = spec.get("path", "/")
        _type(ctx, p("path"), path_, str, "a path")
        if not path_.startswith("/") or any(c in path_ for c in " \r\n"):
            raise ctx.error(p("path"), "must start with / and hold no spaces or line breaks")
        params["path"] = path_
        if "host" in spec:
            host = _type(ctx, p("host"), spec["host"], str, "a host name")
            if any(c in host for c in " \r\n"):
                raise ctx.error(p("host"), "holds spaces or line breaks")
            params["host"] = host
        params["expect_status"] = _status_set(ctx, p("expect_status"),
                                              spec.get("expect_status", "200-299"))
        if "expect_body" in spec:
            body = _type(ctx, p("expect_body"), spec["expect_body"], str, "a regular expression")
            try:
                re.compile(body)
            except re.error as e:
                raise ctx.error(p("expect_body"), "bad regular expression: %s" % e) from None
            params["expect_body"] = body
        if "expect_digest" in spec:
            dg = _type(ctx, p("expect_digest"), spec["expect_digest"], str, "an MD5 hex digest")
            if not re.fullmatch(r"[0-9a-fA-F]{32}", dg):
                raise ctx.error(p("expect_digest"), "must be 32 hex digits (MD5)")
            params["expect_digest"] = dg.lower()
        if ctype == "https":
            if "sni" in spec:
                params["sni"] = _type(ctx, p("sni"), spec["sni"], str, "a server name")
            params["verify"] = _type(ctx, p("verify"), spec.get("verify", False), bool,
                                     "true or false")
    elif ctype == "udp":
        send = _type(ctx, p("send"), spec.get("send", ""), str, "a string")
        params["send"] = send
        if "expect" in spec:
            ex = _type(ctx, p("expect"), spec["expect"], str, "a regular expression")
            try:
                re.compile(ex)
            except re.error as e:
                raise ctx.error(p("expect"), "bad regular expression: %s" % e) from None
            params["expect"] = ex
    elif ctype == "dns":
        name = _type(ctx, p("name"), spec.get("name", "."), str, "a domain name")
        labels = [x for x in name.rstrip(".").split(".") if x] if name != "." else []
        if any(len(x.encode()) > 63 for x in labels) or len(name) > 253:
            raise ctx.error(p("name"), "not a valid domain name")
        params["name"] = name
        qtype = spec.get("qtype", "A")
        if isinstance(qtype, str):
            if qtype.upper() not in DNS_QTYPES:
                raise ctx.error(p("qtype"), "unknown type %r (one of %s, or a number)"
                                % (qtype, ", ".join(DNS_QTYPES)))
            qtype = DNS_QTYPES[qtype.upper()]
        params["qtype"] = _integer(ctx, p("qtype"), qtype, 1, 65535)
        rcode = spec.get("expect_rcode", "NOERROR")
        if isinstance(rcode, str):
            if rcode.upper() not in DNS_RCODES:
                raise ctx.error(p("expect_rcode"), "unknown rcode %r" % rcode)
            rcode = DNS_RCODES[rcode.upper()]
        params["expect_rcode"] = _integer(ctx, p("expect_rcode"), rcode, 0, 15)
    elif ctype == "smtp":
        params["helo"] = _type(ctx, p("helo"), spec.get("helo", "ipvs-director"), str, "a name")
    elif ctype == "exec":
        if "command" not in spec:
            raise ctx.error(path + ("type",), "an exec check needs command (an argv list)")
        params["command"] = _argv(ctx, p("command"), spec["command"])
        params["dynamic_weight"] = _type(ctx, p("dynamic_weight"),
                                         spec.get("dynamic_weight", False), bool, "true or false")
    elif ctype == "file":
        if "path" not in spec:
            raise ctx.error(path + ("type",), "a file check needs path")
        params["path"] = _type(ctx, p("path"), spec["path"], str, "a file path")
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


def _director(ctx: _Ctx, t: Any) -> DirectorConfig:
    path: Path = ("director",)
    if not isinstance(t, dict):
        raise ctx.error(path, "must be a table")
    _unknown(ctx, path, t, DIRECTOR_KEYS)
    kw: Dict[str, Any] = {}
    if "netns" in t:
        kw["netns"] = _type(ctx, path + ("netns",), t["netns"], str, "a namespace name or path")
    if "control" in t:
        c = _type(ctx, path + ("control",), t["control"], str, "a socket path")
        if not c.startswith("/"):
            raise ctx.error(path + ("control",), "must be an absolute path")
        kw["control"] = c
    if "control_group" in t:
        kw["control_group"] = _type(ctx, path + ("control_group",), t["control_group"],
                                    (str, int), "a group name or id")
    if "metrics" in t:
        kw["metrics"] = _hostport(ctx, path + ("metrics",), t["metrics"], 9587)
    if "metrics_rates" in t:
        kw["metrics_rates"] = _type(ctx, path + ("metrics_rates",), t["metrics_rates"], bool,
                                    "true or false")
    if "drain_timeout" in t:
        kw["drain_timeout"] = _number(ctx, path + ("drain_timeout",), t["drain_timeout"],
                                      positive=False)
        if kw["drain_timeout"] < 0:
            raise ctx.error(path + ("drain_timeout",), "must be 0 or more")
    if "resync_interval" in t:
        kw["resync_interval"] = _number(ctx, path + ("resync_interval",), t["resync_interval"])
    if "sync" in t:
        kw["sync"] = _sync(ctx, path + ("sync",), t["sync"])
        kw["sync_fifo"], kw["sync_vrrp_instance"] = _sync_fifo(ctx, path + ("sync",), t["sync"])
    if "state_file" in t:
        sf = _type(ctx, path + ("state_file",), t["state_file"], str, "a file path")
        if sf and not sf.startswith("/"):
            raise ctx.error(path + ("state_file",), 'must be an absolute path (or "" for none)')
        kw["state_file"] = sf
    if "max_checks_in_flight" in t:
        kw["max_checks_in_flight"] = _integer(ctx, path + ("max_checks_in_flight",),
                                              t["max_checks_in_flight"], 1, 1 << 20)
    if "sysctl" in t:
        kw["sysctl"] = _sysctls(ctx, path + ("sysctl",), t["sysctl"])
    if "announce" in t:
        kw["announce"] = _announce(ctx, path + ("announce",), t["announce"])
    return DirectorConfig(**kw)


ANNOUNCE_KEYS = ("via", "interface", "when", "withdraw_grace")


def _announce(ctx: _Ctx, path: Path, t: Any) -> AnnounceConfig:
    if not isinstance(t, dict):
        raise ctx.error(path, "must be a table [director.announce]")
    _unknown(ctx, path, t, ANNOUNCE_KEYS)
    if t.get("via") not in ("exabgp", "interface"):
        raise ctx.error(path + ("via",), 'must be "exabgp" or "interface"')
    kw: Dict[str, Any] = {"via": t["via"]}
    if "interface" in t:
        name = _type(ctx, path + ("interface",), t["interface"], str, "an interface name")
        if not name or len(name) > 15 or any(c in name for c in "/ \t\n\0:") \
                or name in ("lo", ".", ".."):
            raise ctx.error(path + ("interface",), "not an interface name of its own: %r" % name)
        kw["interface"] = name
    if "when" in t:
        if t["when"] not in ("all", "any"):
            raise ctx.error(path + ("when",), 'must be "all" or "any"')
        kw["when"] = t["when"]
    if "withdraw_grace" in t:
        kw["withdraw_grace"] = _number(ctx, path + ("withdraw_grace",), t["withdraw_grace"],
                                       positive=False)
        if kw["withdraw_grace"] < 0:
            raise ctx.error(path + ("withdraw_grace",), "must be 0 or more")
    return AnnounceConfig(**kw)


def _sysctls(ctx: _Ctx, path: Path, t: Any) -> Tuple[Tuple[str, str], ...]:
    """``[director] sysctl = { expire_nodest_conn = 1, ... }``: names as
    under /proc/sys/net/ipv4/vs, values integers (or a string such as
    ``sync_threshold = "3 50"``), kept as the text written there."""
    if not isinstance(t, dict):
        raise ctx.error(path, "must be a table of net.ipv4.vs settings")
    out = []
    for name, value in t.items():
        if name not in SYSCTL_NAMES:
            raise ctx.error(path + (name,), "not a net.ipv4.vs setting (the names under "
                            "/proc/sys/net/ipv4/vs)")
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise ctx.error(path + (name,), "must be an integer (or a string of integers)")
        text = " ".join(str(value).split())
        if not text or not all(re.fullmatch(r"-?\d+", w) for w in text.split()) \
                and name != "est_cpulist":
            raise ctx.error(path + (name,), "must be an integer (or a string of integers), "
                            "not %r" % (value,))
        out.append((name, text))
    return tuple(out)


SYNC_KEYS = ("state", "interface", "sync_id", "max_len", "mcast_group", "mcast_port",
             "mcast_ttl", "keepalived_fifo", "vrrp_instance")


def _sync(ctx: _Ctx, path: Path, t: Any) -> ipvs.Daemon:
    """``[director.sync]``: the fields of ``ipvs.Daemon`` by the same names;
    ``state`` ("master" or "backup") and ``interface`` are required."""
    if not isinstance(t, dict):
        raise ctx.error(path, "must be a table [director.sync]")
    _unknown(ctx, path, t, SYNC_KEYS)
    for k in ("state", "interface"):
        if k not in t:
            raise ctx.error(path, "[director.sync] needs %s" % k)
    state = t["state"]
    if state not in ("master", "backup"):
        raise ctx.error(path + ("state",), 'must be "master" or "backup", not %r' % (state,))
    iface = _type(ctx, path + ("interface",), t["interface"], str, "an interface name")
    if not iface or len(iface) > 15 or any(c in iface for c in "/ \t\n\0"):
        raise ctx.error(path + ("interface",), "not an interface name: %r" % iface)
    kw: Dict[str, Any] = {"state": state, "interface": iface}
    for k, hi in (("sync_id", 255), ("max_len", 65535), ("mcast_port", 65535),
                  ("mcast_ttl", 255)):
        if k in t:
            kw[k] = _integer(ctx, path + (k,), t[k], 0, hi)
    if "mcast_group" in t:
        g = _type(ctx, path + ("mcast_group",), t["mcast_group"], str, "a multicast address")
        try:
            addr = ipaddress.ip_address(g)
        except ValueError:
            raise ctx.error(path + ("mcast_group",), "not an IP address: %r" % g) from None
        if not addr.is_multicast:
            raise ctx.error(path + ("mcast_group",), "not a multicast address: %s" % addr)
        kw["mcast_group"] = str(addr)
    daemon: ipvs.Daemon = _model(ctx, path, ipvs.Daemon, kw)
    return daemon


def _sync_fifo(ctx: _Ctx, path: Path, t: Dict[str, Any]) -> Tuple[Optional[str], Optional[str]]:
    """``keepalived_fifo`` and ``vrrp_instance`` of ``[director.sync]``: both
    or neither (the FIFO may carry several instances: the one to follow is
    named)."""
    if "keepalived_fifo" not in t and "vrrp_instance" not in t:
        return None, None
    for k, other in (("keepalived_fifo", "vrrp_instance"), ("vrrp_instance", "keepalived_fifo")):
        if k in t and other not in t:
            raise ctx.error(path + (k,), "needs %s beside it" % other)
    fifo = _type(ctx, path + ("keepalived_fifo",), t["keepalived_fifo"], str, "a file path")
    if not fifo.startswith("/"):
        raise ctx.error(path + ("keepalived_fifo",), "must be an absolute path")
    name = _type(ctx, path + ("vrrp_instance",), t["vrrp_instance"], str,
                 "a vrrp_instance or vrrp_sync_group name")
    if not name or any(c in name for c in '" \t\n\0'):
        raise ctx.error(path + ("vrrp_instance",), "not a VRRP instance name: %r" % name)
    return fifo, name


def _sync_families(ctx: _Ctx, path: Path, director: DirectorConfig, sc: ServiceConfig) -> None:
    """With [director.sync], no real server of another family than its
    service's: the kernel refuses the pair (either order)."""
    if director.sync is None:
        return
    for j, rs in enumerate(sc.real_servers):
        if (rs.destination.address.version == 6) != (sc.service.family == socket.AF_INET6):
            raise ctx.error(path + ("real_server", j, "address"),
                            "the kernel's sync daemon ([director.sync]) refuses real servers "
                            "of another family than their service")


_SERVICE_HEADER = re.compile(r"^[ \t]*\[\[[ \t]*service[ \t]*\]\][ \t]*(?:#[^\n]*)?$", re.M)
_CACHES: Dict[str, Dict[str, ServiceConfig]] = {}


def _parse_blocks(text: str, filename: str, cache: Dict[str, ServiceConfig]) -> Optional[Config]:
    """The file cut at its ``[[service]]`` headers, each block's
    ServiceConfig taken from ``cache`` when its text did not change (a
    reload of 36,800 real servers re-reads only what changed).  None when
    the file does not cut cleanly or anything is wrong: the caller then
    parses it whole, which gives the exact error and line."""
    starts = [m.start() for m in _SERVICE_HEADER.finditer(text)]
    if not starts:
        return None
    head = text[:starts[0]]
    data = tomllib.loads(head)
    if "service" in data:
        return None
    ctx = _Ctx(head, filename)
    _unknown(ctx, (), data, ("director", "service"))
    director = _director(ctx, data.get("director", {}))
    fresh: Dict[str, ServiceConfig] = {}
    services: List[ServiceConfig] = []
    seen: Set[Any] = set()
    for a, b in zip(starts, starts[1:] + [len(text)]):
        block = text[a:b]
        sc = cache.get(block) or fresh.get(block)
        if sc is None:
            d = tomllib.loads(block)
            if list(d) != ["service"] or not isinstance(d["service"], list) \
                    or len(d["service"]) != 1 or not isinstance(d["service"][0], dict):
                return None
            sc = _service(_Ctx(block, filename), ("service", 0), d["service"][0])
        if sc.service.key in seen:
            return None
        _sync_families(ctx, ("service",), director, sc)
        seen.add(sc.service.key)
        fresh[block] = sc
        services.append(sc)
    cache.clear()
    cache.update(fresh)
    return Config(director, tuple(services), filename)


def parse(text: str, filename: str = "<config>",
          cache: Optional[Dict[str, ServiceConfig]] = None) -> Config:
    """Parse and validate the text of a configuration file.

    ``cache`` (a dict kept between calls): the services of blocks whose
    text is unchanged since the last call are reused, not parsed again."""
    if cache is not None:
        try:
            cfg = _parse_blocks(text, filename, cache)
        except (ValueError, TypeError, KeyError):   # ConfigError, TOMLDecodeError...
            cfg = None
        if cfg is not None:
            return cfg
        cache.clear()
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        m = re.search(r"\(at line (\d+), column (\d+)\)", str(e))
        line = int(m.group(1)) if m else None
        msg = re.sub(r"\s*\(at line \d+, column \d+\)", "", str(e))
        key = None
        if line:
            km = _KEYLINE.match(text.splitlines()[line - 1] if line <= len(text.splitlines()) else "")
            key = km.group(1) if km else None
        raise ConfigError("TOML syntax: " + msg, filename=filename, line=line, key=key) from None
    ctx = _Ctx(text, filename)
    errors: List[ConfigError] = []       # every error of the file, each with its line
    director = DirectorConfig()
    try:
        _unknown(ctx, (), data, ("director", "service"))
        director = _director(ctx, data.get("director", {}))
    except ConfigError as e:
        errors.append(e)
    svcs = data.get("service", [])
    if not isinstance(svcs, list):
        raise ctx.error(("service",), "must be an array of tables [[service]]")
    services: List[ServiceConfig] = []
    seen: Dict[Any, int] = {}
    for i, t in enumerate(svcs):
        try:
            if not isinstance(t, dict):
                raise ctx.error(("service", i), "must be a table")
            sc = _service(ctx, ("service", i), t)
            if sc.service.key in seen:
                raise ctx.error(("service", i), "%s given twice (also service[%d])"
                                % (sc.name, seen[sc.service.key]))
            _sync_families(ctx, ("service", i), director, sc)
        except ConfigError as e:
            errors.append(e)
            continue
        seen[sc.service.key] = i
        services.append(sc)
    _collect(errors)
    return Config(director, tuple(services), filename)


def load(filename: str, cache: Optional[Dict[str, ServiceConfig]] = None) -> Config:
    """Read and validate a configuration file (:class:`ConfigError` on any
    problem, OSError's message included for an unreadable file).  The
    services of unchanged ``[[service]]`` blocks are reused from the last
    load of the same file (``cache``: by default one per file name)."""
    if cache is None:
        key = os.path.abspath(filename)
        if key not in _CACHES and len(_CACHES) >= 4:
            _CACHES.clear()
        cache = _CACHES.setdefault(key, {})
    try:
        with open(filename, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise ConfigError("cannot read: %s" % (e.strerror or e), filename=filename) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError("not UTF-8: %s" % e, filename=filename) from None
    return parse(text, filename, cache)

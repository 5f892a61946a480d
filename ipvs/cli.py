"""``python -m ipvs`` / ``ipvs``: an ipvsadm 1.31-compatible command line.

Commands, options, defaults, output and error messages follow what Debian's
ipvsadm 1.31 does (observed, see tests/unit/golden/); extras are ``--json``
for the listing commands and ``--netns NAME``.  See docs/cli.md.
"""

import ipaddress
import json
import os
import shlex  # noqa: F401  (kept for callers that quote -R lines themselves)
import socket
import sys
from typing import Any, Dict, List, Optional, Sequence, TextIO, Tuple

from ipvs import _format as F
from ipvs._model import (Daemon, DaemonState, Destination, Forward, Protocol, Service,
                         ServiceFlags, TunnelFlags, TunnelType)

TRY_HELP = "Try `ipvsadm -h' or 'ipvsadm --help' for more information.\n"
VERSION_LINE = "ipvsadm v1.31 2019/12/24 (compiled with popt and IPVS v1.2.1)"
MAX_PERSISTENT_TIMEOUT = 31 * 24 * 3600


class CliError(Exception):
    """A message for stderr and the exit status."""

    def __init__(self, message: str, status: int = 2) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


# ------------------------------------------------------------------ options
# name (as ipvsadm's messages spell it), short, long, argument (0, 1, "opt")

COMMANDS = {
    # key: (message name, short, long, takes an argument)
    "add-service": ("add-service", "A", "add-service", 0),
    "edit-service": ("edit-service", "E", "edit-service", 0),
    "delete-service": ("delete-service", "D", "delete-service", 0),
    "flush": ("flush", "C", "clear", 0),
    "list": ("list", "L", "list", 0),
    "list-l": ("list", "l", None, 0),
    "add-server": ("add-server", "a", "add-server", 0),
    "edit-server": ("edit-server", "e", "edit-server", 0),
    "delete-server": ("delete-server", "d", "delete-server", 0),
    "set": ("set", None, "set", 0),
    "restore": ("restore", "R", "restore", 0),
    "save": ("save", "S", "save", 0),
    "zero": ("zero", "Z", "zero", 0),
    "start-daemon": ("start-daemon", None, "start-daemon", 1),
    "stop-daemon": ("stop-daemon", None, "stop-daemon", 1),
    "help": ("help", "h", "help", 0),
    "version": ("version", "v", "version", 0),
}

# option key: (message name, short, long, argument)
OPTIONS = {
    "numeric": ("numeric", "n", "numeric", 0),
    "connection": ("connection", "c", "connection", 0),
    "tcp-service": ("service-address", "t", "tcp-service", 1),
    "udp-service": ("service-address", "u", "udp-service", 1),
    "sctp-service": ("service-address", None, "sctp-service", 1),
    "fwmark-service": ("service-address", "f", "fwmark-service", 1),
    "scheduler": ("scheduler", "s", "scheduler", 1),
    "persistent": ("persistent", "p", "persistent", "opt"),
    "netmask": ("netmask", "M", "netmask", 1),
    "real-server": ("real-server", "r", "real-server", 1),
    "masquerading": ("forwarding-method", "m", "masquerading", 0),
    "ipip": ("forwarding-method", "i", "ipip", 0),
    "gatewaying": ("forwarding-method", "g", "gatewaying", 0),
    "weight": ("weight", "w", "weight", 1),
    "u-threshold": ("u-threshold", "x", "u-threshold", 1),
    "l-threshold": ("l-threshold", "y", "l-threshold", 1),
    "mcast-interface": ("mcast-interface", None, "mcast-interface", 1),
    "syncid": ("syncid", None, "syncid", 1),
    "timeout": ("timeout", None, "timeout", 0),
    "daemon": ("daemon", None, "daemon", 0),
    "stats": ("stats", None, "stats", 0),
    "rate": ("rate", None, "rate", 0),
    "thresholds": ("thresholds", None, "thresholds", 0),
    "persistent-conn": ("persistent-conn", None, "persistent-conn", 0),
    "nosort": ("nosort", None, "nosort", 0),
    "sort": ("sort", None, "sort", 0),
    "exact": ("exact", None, "exact", 0),
    "ipv6": ("ipv6", "6", "ipv6", 0),
    "ops": ("ops", "o", "ops", 0),
    "pe": ("pe", None, "pe", 1),
    "sched-flags": ("sched-flags", "b", "sched-flags", 1),
    "tun-type": ("tun-type", None, "tun-type", 1),
    "tun-port": ("tun-port", None, "tun-port", 1),
    "tun-nocsum": ("tun-nocsum", None, "tun-nocsum", 0),
    "tun-csum": ("tun-csum", None, "tun-csum", 0),
    "tun-remcsum": ("tun-remcsum", None, "tun-remcsum", 0),
    "tun-info": ("tun-info", None, "tun-info", 0),
    "sync-maxlen": ("sync-maxlen", None, "sync-maxlen", 1),
    "mcast-group": ("mcast-group", None, "mcast-group", 1),
    "mcast-port": ("mcast-port", None, "mcast-port", 1),
    "mcast-ttl": ("mcast-ttl", None, "mcast-ttl", 1),
    # extras of this implementation
    "json": ("json", None, "json", 0),
    "netns": ("netns", None, "netns", 1),
}

# ipvsadm's order of option names in its checks (first illegal one is reported)
_OPTION_ORDER = ["numeric", "connection", "service-address", "scheduler", "persistent",
                 "netmask", "real-server", "forwarding-method", "weight", "u-threshold",
                 "l-threshold", "mcast-interface", "syncid", "timeout", "daemon", "stats",
                 "rate", "thresholds", "persistent-conn", "nosort", "sort", "exact", "ipv6",
                 "ops", "pe", "sched-flags", "tun-type", "tun-port", "tun-nocsum", "tun-csum",
                 "tun-remcsum", "tun-info", "sync-maxlen", "mcast-group", "mcast-port",
                 "mcast-ttl"]

_SERVICE_OPTS = {"scheduler", "persistent", "netmask", "ipv6", "ops", "pe", "sched-flags"}
_SERVER_OPTS = {"forwarding-method", "weight", "u-threshold", "l-threshold", "ipv6", "tun-type",
                "tun-port", "tun-nocsum", "tun-csum", "tun-remcsum"}
_LIST_OPTS = {"numeric", "connection", "service-address", "timeout", "daemon", "stats", "rate",
              "thresholds", "persistent-conn", "nosort", "sort", "exact", "ipv6", "tun-info"}
_DAEMON_OPTS = {"mcast-interface", "syncid", "sync-maxlen", "mcast-group", "mcast-port",
                "mcast-ttl"}
# command: (required, optional)
LEGAL = {
    "add-service": ({"service-address"}, _SERVICE_OPTS),
    "edit-service": ({"service-address"}, _SERVICE_OPTS),
    "delete-service": ({"service-address"}, {"ipv6"}),
    "flush": (set(), set()),
    "list": (set(), _LIST_OPTS),
    "add-server": ({"service-address", "real-server"}, _SERVER_OPTS),
    "edit-server": ({"service-address", "real-server"}, _SERVER_OPTS),
    "delete-server": ({"service-address", "real-server"}, {"ipv6"}),
    "set": (set(), set()),
    "start-daemon": (set(), _DAEMON_OPTS),
    "stop-daemon": (set(), set()),
    "restore": (set(), set()),
    "save": (set(), {"numeric"}),
    "zero": (set(), {"service-address", "ipv6"}),
}

_SHORT = {}
_LONG = {}
for _k, (_n, _s, _l, _a) in COMMANDS.items():
    if _s:
        _SHORT[_s] = ("cmd", _k, _a)
    if _l:
        _LONG[_l] = ("cmd", _k, _a)
for _k, (_n, _s, _l, _a) in OPTIONS.items():
    if _s:
        _SHORT[_s] = ("opt", _k, _a)
    _LONG[_l] = ("opt", _k, _a)


class Args:
    """The parsed command line."""

    def __init__(self) -> None:
        self.command: Optional[str] = None
        self.command_arg: Optional[str] = None
        self.seen: Dict[str, str] = {}          # message name -> option key
        self.values: Dict[str, Any] = {}
        self.positional: List[str] = []
        self.service_proto: Optional[Protocol] = None
        self.service_addr: Any = None
        self.service_port: Optional[int] = None
        self.fwmark = 0
        self.ipv6 = False
        self.server: Optional[Tuple[Any, Optional[int]]] = None
        self.forward: Optional[Forward] = None

    @property
    def cmd_name(self) -> str:
        return COMMANDS[self.command][0] if self.command else ""


def _tokens(argv: Sequence[str]):
    """Yield (kind, key, argument, text) for each option, ("arg", None, value, text)
    for positional arguments; raises CliError for popt-level errors."""
    i = 0
    n = len(argv)
    while i < n:
        tok = argv[i]
        i += 1
        if tok.startswith("--") and len(tok) > 2:
            name, eq, value = tok[2:].partition("=")
            entry = _LONG.get(name)
            if entry is None:
                yield ("bad", None, None, tok)
                return
            kind, key, takes = entry
            if takes == 1 and not eq:
                if i >= n:
                    yield ("missing", key, None, tok)
                    return
                value = argv[i]
                i += 1
                eq = "="
            elif takes == "opt" and not eq:
                if i < n and not argv[i].startswith("-"):
                    value = argv[i]
                    i += 1
                    eq = "="
            yield (kind, key, value if eq else None, tok)
        elif tok.startswith("-") and len(tok) > 1:
            j = 1
            while j < len(tok):
                ch = tok[j]
                j += 1
                entry = _SHORT.get(ch)
                if entry is None:
                    yield ("bad", None, None, "-" + ch if j > 2 else tok)
                    return
                kind, key, takes = entry
                if takes in (1, "opt"):
                    if j < len(tok):
                        value = tok[j:]
                        j = len(tok)
                    elif takes == 1:
                        if i >= n:
                            yield ("missing", key, None, "-" + ch)
                            return
                        value = argv[i]
                        i += 1
                    elif i < n and not argv[i].startswith("-"):
                        value = argv[i]
                        i += 1
                    else:
                        value = None
                    yield (kind, key, value, "-" + ch)
                else:
                    yield (kind, key, None, "-" + ch)
        else:
            yield ("arg", None, tok, tok)


# -------------------------------------------------------------- value parsing

def _uint(text: str, lo: int, hi: int) -> Optional[int]:
    t = text.strip()
    if not t or not (t.isdigit() or (t[0] in "+" and t[1:].isdigit())):
        return None
    v = int(t)
    return v if lo <= v <= hi else None


def _port(text: str, proto: Optional[Protocol]) -> Optional[int]:
    if text.isdigit():
        v = int(text)
        return v if v <= 65535 else None
    name = {Protocol.UDP: "udp", Protocol.SCTP: "sctp"}.get(proto, "tcp")  # type: ignore[arg-type]
    try:
        return socket.getservbyname(text, name)
    except (OSError, UnicodeError):
        return None


def _ipv4_host(text: str) -> Optional[ipaddress.IPv4Address]:
    try:
        return ipaddress.IPv4Address(text)
    except ValueError:
        pass
    if not text or text.startswith("[") or ":" in text:
        return None
    try:
        return ipaddress.IPv4Address(socket.gethostbyname(text))
    except (OSError, UnicodeError, ValueError):
        return None


def parse_host_port(text: str, proto: Optional[Protocol]) -> Optional[Tuple[Any, Optional[int]]]:
    """ipvsadm's host[:port] / [ipv6]:port / bare IPv6; port None when absent.
    None when the text is not valid."""
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or not rest.startswith(":") or len(rest) < 2:
            return None
        try:
            addr = ipaddress.IPv6Address(host)
        except ValueError:
            return None
        port = _port(rest[1:], proto)
        return None if port is None else (addr, port)
    if text.count(":") > 1:
        try:
            return (ipaddress.IPv6Address(text), None)
        except ValueError:
            return None
    host, sep, port_text = text.partition(":")
    addr4 = _ipv4_host(host)
    if addr4 is None:
        return None
    if not sep:
        return (addr4, None)
    if not port_text:
        return None
    port = _port(port_text, proto)
    return None if port is None else (addr4, port)


def _ipv4_mask(text: str) -> Optional[int]:
    try:
        packed = socket.inet_aton(text)
    except OSError:
        return None
    value = int.from_bytes(packed, "big")
    inverted = (~value) & 0xFFFFFFFF
    if inverted & (inverted + 1):  # not contiguous: the model has prefix lengths only
        return None
    return 32 - inverted.bit_length()


def _sched_flags(text: str, scheduler: str) -> int:
    flags = 0
    known = {"sh-fallback": ("sh", ServiceFlags.SCHED1), "sh-port": ("sh", ServiceFlags.SCHED2),
             "mh-fallback": ("mh", ServiceFlags.SCHED1), "mh-port": ("mh", ServiceFlags.SCHED2),
             "flag-1": (None, ServiceFlags.SCHED1), "flag-2": (None, ServiceFlags.SCHED2),
             "flag-3": (None, ServiceFlags.SCHED3)}
    for name in text.split(","):
        entry = known.get(name)
        if entry is None:
            raise CliError("invalid scheduler flag `%s'" % name)
        sched, bit = entry
        if sched is not None and sched != scheduler:
            raise CliError("incompatible scheduler flag `%s'" % name)
        flags |= bit
    return flags


def parse_args(argv: Sequence[str], in_restore: bool = False) -> Args:
    """Parse one ipvsadm command line (without the program name)."""
    a = Args()
    # first pass: find the command
    for kind, key, value, text in _tokens(argv):
        if kind in ("bad", "missing"):
            raise CliError(TRY_HELP.rstrip("\n"), 255)
        if kind == "cmd":
            a.command = key
            break
    if a.command is None or (in_restore and a.command == "restore"):
        raise CliError(TRY_HELP.rstrip("\n"), 255)
    if a.command == "list-l":
        a.command = "list"
    seen_cmd = False
    for kind, key, value, text in _tokens(argv):
        if kind == "bad":
            raise CliError("%s: unknown option" % text, 255)
        if kind == "missing":
            raise CliError("%s: missing argument" % text, 255)
        if kind == "cmd":
            if seen_cmd:
                raise CliError("invalid option `%s'" % text)
            seen_cmd = True
            if COMMANDS[key][3]:
                a.command_arg = value
            continue
        if kind == "arg":
            a.positional.append(value)
            continue
        _option(a, key, value)
    _check(a)
    return a


def _option(a: Args, key: str, value: Optional[str]) -> None:
    name = OPTIONS[key][0]
    if name in a.seen and key not in ("json",):
        raise CliError("multiple '%s' options specified" % name)
    a.seen[name] = key
    if key in ("tcp-service", "udp-service", "sctp-service"):
        proto = {"tcp-service": Protocol.TCP, "udp-service": Protocol.UDP,
                 "sctp-service": Protocol.SCTP}[key]
        parsed = parse_host_port(value or "", proto)
        if parsed is None:
            raise CliError("illegal virtual server address[:port] specified")
        a.service_proto = proto
        a.service_addr, port = parsed
        a.service_port = port or 0
    elif key == "fwmark-service":
        v = _uint(value or "", 1, 0xFFFFFFFF)
        if v is None:
            raise CliError("invalid fwmark value `%s' specified" % value)
        a.fwmark = v
    elif key == "ipv6":
        if not a.fwmark:
            raise CliError("-6 used before -f\n")
        a.ipv6 = True
    elif key == "persistent":
        if value is None:
            a.values["persistent"] = F.DEFAULT_PERSISTENT_TIMEOUT
        else:
            v = _uint(value, 1, MAX_PERSISTENT_TIMEOUT)
            if v is None:
                raise CliError("invalid timeout value `%s' specified" % value)
            a.values["persistent"] = v
    elif key == "real-server":
        parsed = parse_host_port(value or "", None)
        if parsed is None:
            raise CliError("illegal real server address[:port] specified")
        a.server = parsed
        a.values["real-server-text"] = value
    elif key in ("masquerading", "ipip", "gatewaying"):
        a.forward = {"masquerading": Forward.MASQ, "ipip": Forward.TUNNEL,
                     "gatewaying": Forward.ROUTE}[key]
    elif key == "weight":
        v = _uint(value or "", 0, 2147483647)
        if v is None:
            raise CliError("illegal weight specified")
        a.values["weight"] = v
    elif key in ("u-threshold", "l-threshold"):
        v = _uint(value or "", 0, 2147483647)
        if v is None:
            raise CliError("illegal %s specified" % key.replace("-", "_"))
        a.values[key] = v
    elif key == "tun-type":
        types = {"ipip": TunnelType.IPIP, "gue": TunnelType.GUE, "gre": TunnelType.GRE}
        if value not in types:
            raise CliError("illegal tunnel type specified")
        a.values["tun-type"] = types[value]
    elif key == "tun-port":
        v = _uint(value or "", 1, 65535)
        if v is None:
            raise CliError("illegal tunnel port specified")
        a.values["tun-port"] = v
    elif key == "syncid":
        v = _uint(value or "", 0, 255)
        if v is None:
            raise CliError("illegal syncid specified")
        a.values["syncid"] = v
    elif key == "sync-maxlen":
        v = _uint(value or "", 1, 65535 - 20 - 8)
        if v is None:
            raise CliError("illegal sync-maxlen specified")
        a.values["sync-maxlen"] = v
    elif key == "mcast-port":
        v = _uint(value or "", 1, 65535)
        if v is None:
            raise CliError("illegal mcast-port specified")
        a.values["mcast-port"] = v
    elif key == "mcast-ttl":
        v = _uint(value or "", 1, 255)
        if v is None:
            raise CliError("illegal mcast-ttl specified")
        a.values["mcast-ttl"] = v
    elif key == "mcast-group":
        text = value or ""
        try:
            group = ipaddress.ip_address(text)
        except ValueError:
            group = None
        if group is None or not group.is_multicast:
            raise CliError("invalid %s mcast-group `%s'" % ("IPv6" if ":" in text else "IPv4", text))
        a.values["mcast-group"] = group
    else:
        a.values[key] = value if value is not None else True


def _check(a: Args) -> None:
    cmd = a.command
    if cmd in ("help", "version"):
        return
    required, optional = LEGAL[cmd]
    for name in _OPTION_ORDER:
        if name in a.seen and name not in required and name not in optional:
            raise CliError("Illegal '%s' option with the '%s' command" % (name, a.cmd_name))
    for name in _OPTION_ORDER:
        if name in required and name not in a.seen:
            raise CliError("You need to supply the '%s' option for the '%s' command"
                           % (name, a.cmd_name))
    if cmd == "set":
        if len(a.positional) < 3:
            raise CliError("--set option requires 3 timeout values")
        if len(a.positional) > 3:
            raise CliError("unexpected argument %s" % a.positional[3])
        vals = []
        for text in a.positional:
            v = _uint(text, 0, 0x7FFFFFFF)
            if v is None:
                raise CliError("invalid timeout value `%s' specified" % text)
            vals.append(v)
        a.values["set"] = vals
    elif a.positional:
        raise CliError("unexpected argument %s" % a.positional[0])
    if cmd == "list":
        s = a.seen
        if "connection" in s and "service-address" in s:
            raise CliError("The option 'service-address' conflicts with the 'connection' option in the 'list' command")
        if "timeout" in s and "service-address" in s:
            raise CliError("The option 'timeout' conflicts with the 'service-address' option in the 'list' command")
        if "daemon" in s and "timeout" in s:
            raise CliError("The option 'daemon' conflicts with the 'timeout' option in the 'list' command")
        if "daemon" in s and "service-address" in s:
            raise CliError("The option 'daemon' conflicts with the 'service-address' option in the 'list' command")
        if "daemon" in s and "connection" in s:
            raise CliError("The option 'daemon' conflicts with the 'connection' option in the 'list' command")
        if "timeout" in s and "connection" in s:
            raise CliError("The option 'timeout' conflicts with the 'connection' option in the 'list' command")
        special = [k for k in ("connection", "timeout", "daemon") if k in s]
        fmts = [k for k in ("stats", "rate", "thresholds", "tun-info", "exact") if k in s]
        if special and fmts:
            raise CliError("options conflicts in the list command")
        if "persistent-conn" in s and ("timeout" in s or "daemon" in s):
            raise CliError("options conflicts in the list command")
    if cmd == "start-daemon":
        if a.command_arg not in ("master", "backup"):
            raise CliError("illegal start-daemon parameter specified")
    if cmd == "stop-daemon":
        if a.command_arg not in ("master", "backup"):
            raise CliError("illegal start_daemon specified")
    if cmd in ("add-service", "edit-service"):
        persistent = "persistent" in a.values
        if not a.fwmark and not a.service_port and not persistent:
            raise CliError("Zero port specified for non-persistent service")
        if "ops" in a.seen and a.service_proto != Protocol.UDP and not a.fwmark:
            raise CliError("One-Packet Scheduling is only for UDP virtual services")
        sched = a.values.get("scheduler", "wlc")
        if len(sched) > 15 or len(a.values.get("pe") or "") > 15:
            raise CliError("Scheduler or persistence engine not found", 255)
        if "sched-flags" in a.values:
            a.values["sched-flag-bits"] = _sched_flags(a.values["sched-flags"], sched)
        if "netmask" in a.values:
            text = a.values["netmask"]
            if _family(a) == socket.AF_INET6:
                v = _uint(text, 1, 128)
                if v is None:
                    raise CliError("illegal ipv6 netmask specified")
            else:
                v = _ipv4_mask(text)
                if v is None:
                    raise CliError("illegal virtual server persistent mask specified")
            a.values["netmask-bits"] = v
    if cmd in ("add-server", "edit-server"):
        _check_tunnel(a)
        assert a.server is not None
        if a.server[0].version != (6 if _family(a) == socket.AF_INET6 else 4) \
                and (a.forward or Forward.ROUTE) != Forward.TUNNEL:
            raise CliError("Different address family is allowed only for tunneling servers")


def _check_tunnel(a: Args) -> None:
    tun_opts = [k for k in ("tun-type", "tun-port", "tun-nocsum", "tun-csum", "tun-remcsum")
                if k in a.seen]
    if not tun_opts:
        return
    if a.forward != Forward.TUNNEL:
        raise CliError("Tunnel options conflict with forward method")
    ttype = a.values.get("tun-type", TunnelType.IPIP)
    tname = ttype.name.lower()
    allowed = {TunnelType.IPIP: (), TunnelType.GUE: ("tun-port", "tun-nocsum", "tun-csum", "tun-remcsum"),
               TunnelType.GRE: ("tun-nocsum", "tun-csum")}[ttype]
    for k in ("tun-port", "tun-nocsum", "tun-csum", "tun-remcsum"):
        if k in a.seen and k not in allowed:
            raise CliError("Illegal '%s' option with the '%s' tunnel type" % (k, tname))
    if ttype == TunnelType.GUE and "tun-port" not in a.seen:
        raise CliError("You need to supply the 'tun-port' option for the 'gue' tunnel type")
    csums = [k for k in ("tun-nocsum", "tun-csum", "tun-remcsum") if k in a.seen]
    if len(csums) > 1:
        raise CliError("The option '%s' conflicts with the '%s' option in the '%s' tunnel type"
                       % (csums[1], csums[0], tname))


def _family(a: Args) -> socket.AddressFamily:
    if a.fwmark:
        return socket.AF_INET6 if a.ipv6 else socket.AF_INET
    if a.service_addr is not None and a.service_addr.version == 6:
        return socket.AF_INET6
    return socket.AF_INET


# ----------------------------------------------------------- model building

def build_service(a: Args, full: bool = True) -> Service:
    fam = _family(a)
    if a.fwmark:
        kw: Dict[str, Any] = {"fwmark": a.fwmark, "family": fam}
    else:
        kw = {"address": a.service_addr, "port": a.service_port or 0,
              "protocol": a.service_proto or Protocol.TCP}
    if full:
        sched = a.values.get("scheduler", "wlc")
        flags = ServiceFlags(a.values.get("sched-flag-bits", 0))
        timeout = a.values.get("persistent", 0)
        if timeout:
            flags |= ServiceFlags.PERSISTENT
        if "ops" in a.seen:
            flags |= ServiceFlags.ONEPACKET
        kw.update(scheduler=sched, flags=flags, timeout=timeout,
                  netmask=a.values.get("netmask-bits"), pe_name=a.values.get("pe"))
    return Service(**kw)


def build_destination(a: Args, svc: Service, full: bool = True) -> Destination:
    assert a.server is not None
    addr, port = a.server
    fwd = a.forward if a.forward is not None else Forward.ROUTE
    if port is None:
        port = svc.port
    elif full and fwd != Forward.MASQ and not svc.fwmark:
        port = svc.port  # ipvsadm: only NAT may change the port
    if not full:
        return Destination(addr, port)
    csum = TunnelFlags.NOCSUM
    if "tun-csum" in a.seen:
        csum = TunnelFlags.CSUM
    elif "tun-remcsum" in a.seen:
        csum = TunnelFlags.REMCSUM
    upper, lower = a.values.get("u-threshold", 0), a.values.get("l-threshold", 0)
    dest = Destination(addr, port, weight=a.values.get("weight", 1), forward=fwd,
                       upper_threshold=upper, lower_threshold=min(lower, upper),
                       tunnel_type=a.values.get("tun-type", TunnelType.IPIP),
                       tunnel_port=a.values.get("tun-port", 0), tunnel_flags=csum)
    if lower > upper:
        # The model refuses this; ipvsadm leaves it to the kernel (ERANGE, or
        # the missing service first), and so do we, for its exact answers.
        dest = Destination._make(*{**dest._asdict(), "lower_threshold": lower}.values())
    return dest


# ------------------------------------------------------------- kernel errors

def kernel_message(exc: BaseException) -> str:
    """ipvsadm's message for a kernel error of an operation."""
    import errno as E
    err = getattr(exc, "errno", None) or 0
    op = getattr(exc, "operation", None) or ""
    dest_ops = ("add_destination", "update_destination", "delete_destination")
    if err == E.EEXIST and op == "add_service":
        return "Service already exists"
    if err == E.EEXIST and op == "add_destination":
        return "Destination already exists"
    if err == E.ESRCH and op in dest_ops:
        return "Service not defined"
    if err == E.ESRCH and op == "stop_daemon":
        return "No daemon is running"
    if err == E.ESRCH:
        return "No such service"
    if err == E.ENOENT and op in ("add_service", "update_service"):
        return "Scheduler or persistence engine not found"
    if err == E.ENOENT and op in dest_ops:
        return "No such destination"
    if err == E.EINVAL:
        return "Invalid operation.  Possibly wrong module version, address not unicast, ..."
    if err == E.EPERM:
        return "Permission denied (you must be root)"
    if err:
        return os.strerror(err)
    return str(exc)


def _open(a: Args, netns: Optional[str]) -> Any:
    from ipvs import IPVS, IPVSError, IPVSUnavailableError
    try:
        return IPVS(netns=netns)
    except IPVSUnavailableError as e:
        raise CliError("Can't initialize ipvs: %s\nAre you sure that IP Virtual Server is "
                       "built in the kernel or as module?" % os.strerror(e.errno or 92), 2)
    except IPVSError as e:
        raise CliError(kernel_message(e), 255)
    except (OSError, ValueError, TypeError) as e:
        raise CliError("Can't initialize ipvs: %s" % (e.strerror if isinstance(e, OSError) and e.strerror else e), 2)


# ---------------------------------------------------------------- execution

class Runner:
    def __init__(self, netns: Optional[str], out: TextIO, err: TextIO,
                 stdin: Optional[TextIO] = None) -> None:
        self.netns = netns
        self.out = out
        self.err = err
        self.stdin = stdin
        self._lb: Any = None

    @property
    def lb(self) -> Any:
        if self._lb is None:
            self._lb = _open(Args(), self.netns)
        return self._lb

    def close(self) -> None:
        if self._lb is not None:
            self._lb.close()
            self._lb = None

    def _table(self, sort_needed: bool = True) -> List[Tuple[Service, List[Destination]]]:
        lb = self.lb
        if hasattr(lb, "table"):
            return list(lb.table().items())
        return [(s, lb.destinations(s)) for s in lb.services()]

    def run(self, a: Args) -> int:
        """Execute one parsed command; kernel errors become CliError(255)."""
        from ipvs import IPVSError
        try:
            return self._run(a)
        except IPVSError as e:
            raise CliError(kernel_message(e), 1 if a.command in ("list",) else 255)
        except (ValueError, TypeError) as e:
            raise CliError(str(e), 2)

    def _run(self, a: Args) -> int:
        cmd = a.command
        lb = self.lb
        if cmd == "add-service":
            lb.add_service(build_service(a))
        elif cmd == "edit-service":
            lb.update_service(build_service(a))
        elif cmd == "delete-service":
            lb.delete_service(build_service(a, full=False))
        elif cmd == "flush":
            lb.flush()
        elif cmd == "zero":
            lb.zero(build_service(a, full=False) if "service-address" in a.seen else None)
        elif cmd in ("add-server", "edit-server", "delete-server"):
            svc = build_service(a, full=False)
            if cmd == "delete-server":
                lb.delete_destination(svc, build_destination(a, svc, full=False))
            else:
                dest = build_destination(a, svc)
                (lb.add_destination if cmd == "add-server" else lb.update_destination)(svc, dest)
        elif cmd == "set":
            tcp, fin, udp = a.values["set"]
            lb.set_timeouts(tcp=tcp or None, tcp_fin=fin or None, udp=udp or None)
        elif cmd == "start-daemon":
            iface = a.values.get("mcast-interface")
            if not iface or len(iface) > 15:
                raise CliError(os.strerror(19), 255)  # ENODEV, as the kernel answers
            lb.start_daemon(Daemon(a.command_arg, iface, a.values.get("syncid", 0),
                                   a.values.get("sync-maxlen", 0), a.values.get("mcast-group"),
                                   a.values.get("mcast-port", 0), a.values.get("mcast-ttl", 0)))
        elif cmd == "stop-daemon":
            lb.stop_daemon(DaemonState.MASTER if a.command_arg == "master" else DaemonState.BACKUP)
        elif cmd == "list":
            self._list(a)
        elif cmd == "save":
            self._json_or(a, None) or self.out.write(
                F.save_table(self._table(), numeric="numeric" in a.seen))
        return 0

    def _json_or(self, a: Args, doc_fn: Any) -> bool:
        if "json" not in a.values:
            return False
        doc = doc_fn() if doc_fn else F.table_to_json(self.lb.info(), self._table())
        self.out.write(json.dumps(doc, indent=2) + "\n")
        return True

    def _list(self, a: Args) -> None:
        s = a.seen
        lb = self.lb
        numeric = "numeric" in s
        as_json = "json" in a.values
        if "connection" in s:
            conns = lb.connections()
            if as_json:
                self._json_or(a, lambda: F.connections_to_json(conns))
            else:
                self.out.write(F.list_connections(conns, numeric, "persistent-conn" in s))
            return
        if "timeout" in s:
            t = lb.timeouts()
            if not self._json_or(a, lambda: F.timeouts_to_json(t)):
                self.out.write(F.format_timeouts(t))
            return
        if "daemon" in s:
            ds = lb.daemons()
            if not self._json_or(a, lambda: F.daemons_to_json(ds)):
                self.out.write(F.format_daemons(ds))
            return
        opts = F.ListOptions(numeric=numeric, stats="stats" in s, rate="rate" in s,
                             exact="exact" in s, thresholds="thresholds" in s,
                             persistent_conn="persistent-conn" in s, tun_info="tun-info" in s,
                             sort="nosort" not in s)
        if "service-address" in s:
            svc = lb.get_service(build_service(a, full=False))
            table = [(svc, lb.destinations(svc))]
            if not self._json_or(a, lambda: F.table_to_json(None, table, opts.sort)):
                self.out.write(F.list_table(None, table, opts))
            return
        info = lb.info()
        table = self._table()
        if not self._json_or(a, lambda: F.table_to_json(info, table, opts.sort)):
            self.out.write(F.list_table(info, table, opts))

    # ------------------------------------------------------------ restore
    def restore(self, text: str) -> int:
        """-R: parse every line first (a bad line applies nothing), then send
        the service/server changes through lb.batch(); other commands run in
        their place.  Exit status as ipvsadm: the last line's."""
        from ipvs import BatchError, IPVSError
        parsed: List[Tuple[int, Args]] = []
        for no, line in enumerate(text.splitlines(), 1):
            words = line.split()
            if not words:
                continue
            if words[0] == "ipvsadm":
                words = words[1:]
            try:
                parsed.append((no, parse_args(words, in_restore=True)))
            except CliError as e:
                raise CliError("line %d: %s" % (no, e.message), e.status)
        batchable = ("add-service", "edit-service", "delete-service", "add-server",
                     "edit-server", "delete-server")
        status = 0
        i = 0
        while i < len(parsed):
            no, a = parsed[i]
            if a.command not in batchable:
                try:
                    status = self.run(a)
                except CliError as e:
                    self.err.write("line %d: %s\n" % (no, e.message))
                    status = e.status
                i += 1
                continue
            group: List[Tuple[int, Any]] = []
            with_calls = []
            while i < len(parsed) and parsed[i][1].command in batchable:
                no, a = parsed[i]
                group.append((no, a))
                i += 1
            lb = self.lb
            failures: List[Tuple[Any, BaseException]] = []
            try:
                with lb.batch() as b:
                    for no, a in group:
                        with_calls.append((no, self._batch_call(b, a)))
            except BatchError as e:
                failures = list(e.failures)
            except IPVSError as e:
                failures = [(None, e)]
            failed_lines = []
            j = 0
            for call, exc in failures:
                line_no = group[-1][0]
                while j < len(with_calls):
                    no, c = with_calls[j]
                    j += 1
                    if call is None or c == (call.method, call.service, call.destination):
                        line_no = no
                        break
                failed_lines.append(line_no)
                self.err.write("line %d: %s\n" % (line_no, kernel_message(exc)))
            status = 255 if group[-1][0] in failed_lines else 0
        return status

    @staticmethod
    def _batch_call(b: Any, a: Args) -> Tuple[str, Service, Optional[Destination]]:
        cmd = a.command
        if cmd == "add-service":
            s = build_service(a)
            b.add_service(s)
            return ("add_service", s, None)
        if cmd == "edit-service":
            s = build_service(a)
            b.update_service(s)
            return ("update_service", s, None)
        if cmd == "delete-service":
            s = build_service(a, full=False)
            b.delete_service(s)
            return ("delete_service", s, None)
        svc = build_service(a, full=False)
        if cmd == "delete-server":
            d = build_destination(a, svc, full=False)
            b.delete_destination(svc, d)
            return ("delete_destination", svc, d)
        d = build_destination(a, svc)
        if cmd == "add-server":
            b.add_destination(svc, d)
            return ("add_destination", svc, d)
        b.update_destination(svc, d)
        return ("update_destination", svc, d)


HELP = """\
Usage:
  ipvsadm -A|E virtual-service [-s scheduler] [-p [timeout]] [-M netmask] [--pe persistence_engine] [-b sched-flags]
  ipvsadm -D virtual-service
  ipvsadm -C
  ipvsadm -R
  ipvsadm -S [-n]
  ipvsadm -a|e virtual-service -r server-address [options]
  ipvsadm -d virtual-service -r server-address
  ipvsadm -L|l [virtual-service] [options]
  ipvsadm -Z [virtual-service]
  ipvsadm --set tcp tcpfin udp
  ipvsadm --start-daemon {master|backup} [daemon-options]
  ipvsadm --stop-daemon {master|backup}
  ipvsadm -h

Commands:
Either long or short options are allowed.
  --add-service     -A        add virtual service with options
  --edit-service    -E        edit virtual service with options
  --delete-service  -D        delete virtual service
  --clear           -C        clear the whole table
  --restore         -R        restore rules from stdin
  --save            -S        save rules to stdout
  --add-server      -a        add real server with options
  --edit-server     -e        edit real server with options
  --delete-server   -d        delete real server
  --list            -L|-l     list the table
  --zero            -Z        zero counters in a service or all services
  --set tcp tcpfin udp        set connection timeout values
  --start-daemon              start connection sync daemon
  --stop-daemon               stop connection sync daemon
  --help            -h        display this help message

virtual-service:
  --tcp-service|-t  service-address   service-address is host[:port]
  --udp-service|-u  service-address   service-address is host[:port]
  --sctp-service    service-address   service-address is host[:port]
  --fwmark-service|-f fwmark          fwmark is an integer greater than zero

Options:
  --ipv6         -6                   fwmark entry uses IPv6
  --scheduler    -s scheduler         one of rr|wrr|lc|wlc|lblc|lblcr|dh|sh|sed|nq|fo|ovf|mh,
                                      the default scheduler is wlc.
  --pe            engine              alternate persistence engine may be sip,
                                      not set by default.
  --persistent   -p [timeout]         persistent service
  --netmask      -M netmask           persistent granularity mask
  --real-server  -r server-address    server-address is host (and port)
  --gatewaying   -g                   gatewaying (direct routing) (default)
  --ipip         -i                   ipip encapsulation (tunneling)
  --masquerading -m                   masquerading (NAT)
  --tun-type      type                one of ipip|gue|gre,
                                      the default tunnel type is ipip.
  --tun-port      port                tunnel destination port
  --tun-nocsum                        tunnel encapsulation without checksum
  --tun-csum                          tunnel encapsulation with checksum
  --tun-remcsum                       tunnel encapsulation with remote checksum
  --weight       -w weight            capacity of real server
  --u-threshold  -x uthreshold        upper threshold of connections
  --l-threshold  -y lthreshold        lower threshold of connections
  --connection   -c                   output of current IPVS connections
  --timeout                           output of timeout (tcp tcpfin udp)
  --daemon                            output of daemon information
  --stats                             output of statistics information
  --rate                              output of rate information
  --exact                             expand numbers (display exact values)
  --thresholds                        output of thresholds information
  --persistent-conn                   output of persistent connection info
  --tun-info                          output of tunnel information
  --nosort                            disable sorting output of service/server entries
  --sort                              does nothing, for backwards compatibility
  --ops          -o                   one-packet scheduling
  --numeric      -n                   numeric output of addresses and ports
  --sched-flags  -b flags             scheduler flags (comma-separated)
  --json                              machine-readable listing (-L, -S, -c, --timeout, --daemon)
  --netns        name                 act in the named network namespace (ip netns)
Daemon Options:
  --syncid sid                        syncid for connection sync (default=255)
  --sync-maxlen length                Max sync message length (default=1472)
  --mcast-interface interface         multicast interface for connection sync
  --mcast-group address               IPv4/IPv6 group (default=224.0.0.81)
  --mcast-port port                   UDP port (default=8848)
  --mcast-ttl ttl                     Multicast TTL (default=1)
"""


def _version_line() -> str:
    from ipvs._version import __version__
    return "%s (python ipvs %s)" % (VERSION_LINE, __version__)


def main(argv: Optional[Sequence[str]] = None, stdin: Optional[TextIO] = None,
         stdout: Optional[TextIO] = None, stderr: Optional[TextIO] = None) -> int:
    """Entry point of the ``ipvs`` console script; returns the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    out = stdout or sys.stdout
    err = stderr or sys.stderr
    inp = stdin or sys.stdin
    runner = None
    try:
        try:
            if not args or args == ["--json"] or (len(args) == 2 and args[0] == "--netns"):
                netns = args[1] if args[:1] == ["--netns"] else None
                extra = ["--json"] if args == ["--json"] else []
                a = parse_args(["-L"] + extra)
            else:
                a = parse_args(args)
            netns = a.values.get("netns") if isinstance(a.values.get("netns"), str) else None
            if a.command == "help":
                out.write(VERSION_LINE + "\n" + HELP)
                return 0
            if a.command == "version":
                out.write(_version_line() + "\n")
                return 0
            runner = Runner(netns, out, err, inp)
            if a.command == "restore":
                return runner.restore(inp.read())
            return runner.run(a)
        except CliError as e:
            out.flush()
            err.write(e.message + "\n")
            return e.status
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        return 0
    except Exception as e:  # never a traceback: name the problem
        err.write("ipvs: %s: %s\n" % (type(e).__name__, e))
        return 255
    finally:
        if runner is not None:
            try:
                runner.close()
            except Exception:
                pass


if __name__ == "__main__":
    sys.exit(main())

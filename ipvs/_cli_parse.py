"""The parsing half of the ``ipvs`` command line (ipvs/cli.py runs what it
parses): ipvsadm 1.31's option tables, the tokenizer (popt's rules: bundled
short options, ``--long=value``, optional arguments), `parse_args` with
ipvsadm's checks and messages, and the conversion of a parsed line into the
model objects the API takes.  Nothing here talks to the kernel.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any, Dict, Iterator, List, Optional, Sequence, Set, Tuple, Union

from ipvs import (Destination, Forward, Protocol, Service, ServiceFlags, TunnelFlags,
                  TunnelType)
from ipvs._format import DEFAULT_PERSISTENT_TIMEOUT

Address = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]
#: one token of a command line: (kind, key, argument, text as written);
#: kind is "cmd", "opt", "arg" (a positional word), "bad" or "missing"
Token = Tuple[str, Optional[str], Optional[str], str]

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

COMMANDS: Dict[str, Tuple[str, Optional[str], Optional[str], Union[int, str]]] = {
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

# option key: (message name, short, long, argument: 0 none, 1 required, "opt" optional)
OPTIONS: Dict[str, Tuple[str, Optional[str], str, Union[int, str]]] = {
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
LEGAL: Dict[str, Tuple[Set[str], Set[str]]] = {
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

_SHORT: Dict[str, Tuple[str, str, Union[int, str]]] = {}
_LONG: Dict[str, Tuple[str, str, Union[int, str]]] = {}
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
        self.service_addr: Optional[Address] = None
        self.service_port: Optional[int] = None
        self.fwmark = 0
        self.ipv6 = False
        self.server: Optional[Tuple[Address, Optional[int]]] = None
        self.forward: Optional[Forward] = None

    @property
    def cmd_name(self) -> str:
        """The command's name as ipvsadm's messages spell it."""
        return COMMANDS[self.command][0] if self.command else ""


def _tokens(argv: Sequence[str]) -> Iterator[Token]:
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
    name = "udp" if proto == Protocol.UDP else "sctp" if proto == Protocol.SCTP else "tcp"
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


def parse_host_port(text: str, proto: Optional[Protocol]
                    ) -> Optional[Tuple[Address, Optional[int]]]:
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
    """Parse one ipvsadm command line (without the program name); raises
    CliError with ipvsadm's message and exit status. ``in_restore``: a line
    of -R's input (where -R itself is refused)."""
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
            if key is not None and COMMANDS[key][3]:
                a.command_arg = value
            continue
        if kind == "arg":
            a.positional.append(text)
            continue
        assert key is not None
        _option(a, key, value)
    _check(a)
    return a


# integer options: (lowest, highest, ipvsadm's message when out of range)
_INTEGERS: Dict[str, Tuple[int, int, str]] = {
    "weight": (0, 2147483647, "illegal weight specified"),
    "u-threshold": (0, 2147483647, "illegal u_threshold specified"),
    "l-threshold": (0, 2147483647, "illegal l_threshold specified"),
    "tun-port": (1, 65535, "illegal tunnel port specified"),
    "syncid": (0, 255, "illegal syncid specified"),
    "sync-maxlen": (1, 65535 - 20 - 8, "illegal sync-maxlen specified"),
    "mcast-port": (1, 65535, "illegal mcast-port specified"),
    "mcast-ttl": (1, 255, "illegal mcast-ttl specified"),
}


def _option(a: Args, key: str, value: Optional[str]) -> None:
    name = OPTIONS[key][0]
    if name in a.seen and key != "json":
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
            a.values["persistent"] = DEFAULT_PERSISTENT_TIMEOUT
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
    elif key in ("masquerading", "ipip", "gatewaying"):
        a.forward = {"masquerading": Forward.MASQ, "ipip": Forward.TUNNEL,
                     "gatewaying": Forward.ROUTE}[key]
    elif key in _INTEGERS:
        lo, hi, message = _INTEGERS[key]
        v = _uint(value or "", lo, hi)
        if v is None:
            raise CliError(message)
        a.values[key] = v
    elif key == "tun-type":
        types = {"ipip": TunnelType.IPIP, "gue": TunnelType.GUE, "gre": TunnelType.GRE}
        if value not in types:
            raise CliError("illegal tunnel type specified")
        a.values["tun-type"] = types[value]
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
    if cmd is None or cmd in ("help", "version"):
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
    """The line's service; ``full=False``: only its key (for lookups)."""
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
    """The line's real server in ``svc``; ``full=False``: only its key."""
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

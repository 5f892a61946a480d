"""ipvsadm-compatible text output, as pure functions of the model objects.

Every format here was observed from Debian's ipvsadm 1.31 against a real
kernel (the captures live in tests/unit/golden/); nothing is taken from
ipvsadm's source.  The functions only read the model objects they are given,
so they can be tested without a kernel.

Notes on what ipvsadm does and this module reproduces:

* Sorting (the default; ``--nosort`` keeps the kernel's order).  Services are
  ordered by fwmark, family, protocol, address, port; destinations by address,
  then port.  Addresses compare as four 32-bit words whose difference is taken
  modulo 2**32 and read as a signed number, so addresses more than 2**31 apart
  compare "backwards" (192.168.x.x sorts before 1.2.3.4, but after
  127.0.0.1).  The order is then whatever a top-down merge sort (glibc's
  qsort for these sizes) makes of that comparison; :func:`merge_sort` is that
  merge sort, so the output matches for the same kernel order.
* Counters in ``--stats``/``--rate`` are 8 characters wide; above 99,999,999
  they are shown in K (thousands), M, G or T unless ``--exact`` is given.
"""

import ipaddress
import socket
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

from ipvs._model import (Connection, Daemon, DaemonState, Destination, Forward, Info,
                         Protocol, Service, ServiceFlags, Stats, Timeouts, TunnelFlags,
                         TunnelType)

__all__ = [
    "ListOptions", "format_addr_port", "format_largenum", "merge_sort", "sort_services",
    "sort_destinations", "list_table", "list_service", "save_table", "format_timeouts",
    "format_daemons", "list_connections", "table_to_json", "connections_to_json",
    "timeouts_to_json", "daemons_to_json", "FORWARD_NAMES", "sched_flag_names",
    "DEFAULT_PERSISTENT_TIMEOUT",
]

#: ipvsadm's persistence timeout for a bare ``-p``
DEFAULT_PERSISTENT_TIMEOUT = 360

FORWARD_NAMES = {Forward.MASQ: "Masq", Forward.LOCAL: "Local", Forward.TUNNEL: "Tunnel",
                 Forward.ROUTE: "Route", Forward.BYPASS: "Bypass"}
_FORWARD_SAVE = {Forward.MASQ: "-m", Forward.TUNNEL: "-i", Forward.ROUTE: "-g",
                 Forward.LOCAL: "-g", Forward.BYPASS: "-g"}
_PROTO_NAMES = {Protocol.TCP: "TCP", Protocol.UDP: "UDP", Protocol.SCTP: "SCTP"}
_PROTO_SAVE = {Protocol.TCP: "-t", Protocol.UDP: "-u", Protocol.SCTP: "--sctp-service"}

_HEADER_VERSION = "IP Virtual Server version %s (size=%d)\n"
_HEADERS = {
    "default": ("Prot LocalAddress:Port Scheduler Flags\n"
                "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn\n"),
    "stats": ("Prot LocalAddress:Port               Conns   InPkts  OutPkts  InBytes OutBytes\n"
              "  -> RemoteAddress:Port\n"),
    "rate": ("Prot LocalAddress:Port                 CPS    InPPS   OutPPS    InBPS   OutBPS\n"
             "  -> RemoteAddress:Port\n"),
    "thresholds": ("Prot LocalAddress:Port            Uthreshold Lthreshold ActiveConn InActConn \n"
                   "  -> RemoteAddress:Port\n"),
    "persistent_conn": ("Prot LocalAddress:Port            Weight    PersistConn ActiveConn InActConn \n"
                        "  -> RemoteAddress:Port\n"),
    "tun_info": ("Prot LocalAddress:Port Scheduler Flags\n"
                 "  -> RemoteAddress:Port           Forward TunnelInfo    Weight ActiveConn InActConn\n"),
}
_CONN_HEADER = ("IPVS connection entries\n"
                "pro expire state       source             virtual            destination")
_CONN_HEADER_PE = "        pe name          pe_data"


class ListOptions:
    """What ``ipvsadm -L`` was asked for."""

    __slots__ = ("numeric", "stats", "rate", "exact", "thresholds", "persistent_conn",
                 "tun_info", "sort")

    def __init__(self, numeric: bool = True, stats: bool = False, rate: bool = False,
                 exact: bool = False, thresholds: bool = False, persistent_conn: bool = False,
                 tun_info: bool = False, sort: bool = True) -> None:
        self.numeric = numeric
        self.stats = stats
        self.rate = rate
        self.exact = exact
        self.thresholds = thresholds
        self.persistent_conn = persistent_conn
        self.tun_info = tun_info
        self.sort = sort

    @property
    def kind(self) -> str:
        """The one format used (ipvsadm's precedence when several are given)."""
        for name in ("stats", "rate", "thresholds", "persistent_conn", "tun_info"):
            if getattr(self, name):
                return name
        return "default"


# ---------------------------------------------------------------- sorting

def _s32(value: int) -> int:
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value & 0x80000000 else value


def _words(addr: Any) -> Tuple[int, int, int, int]:
    if addr is None:
        return (0, 0, 0, 0)
    packed = addr.packed.ljust(16, b"\0")
    return tuple(int.from_bytes(packed[i:i + 4], "big") for i in range(0, 16, 4))  # type: ignore[return-value]


def _cmp_addr(a: Any, b: Any) -> int:
    for x, y in zip(_words(a), _words(b)):
        r = _s32(x - y)
        if r:
            return r
    return 0


def cmp_services(a: Service, b: Service) -> int:
    """ipvsadm's service order (see the module notes)."""
    r = _s32(a.fwmark - b.fwmark)
    if r:
        return r
    r = int(a.family) - int(b.family)
    if r:
        return r
    r = int(a.protocol) - int(b.protocol)
    if r:
        return r
    r = _cmp_addr(a.address, b.address)
    if r:
        return r
    return a.port - b.port


def cmp_destinations(a: Destination, b: Destination) -> int:
    """ipvsadm's destination order (see the module notes)."""
    r = _cmp_addr(a.address, b.address)
    if r:
        return r
    return (a.port or 0) - (b.port or 0)   # (read back, ports are never None)


def merge_sort(items: Sequence[Any], cmp: Callable[[Any, Any], int]) -> List[Any]:
    """Top-down merge sort: first half of n//2 items, ties taken from the left."""
    items = list(items)
    n = len(items)
    if n <= 1:
        return items
    left = merge_sort(items[:n // 2], cmp)
    right = merge_sort(items[n // 2:], cmp)
    out = []
    i = j = 0
    while i < len(left) and j < len(right):
        if cmp(left[i], right[j]) <= 0:
            out.append(left[i])
            i += 1
        else:
            out.append(right[j])
            j += 1
    out.extend(left[i:])
    out.extend(right[j:])
    return out


def sort_services(services: Iterable[Service]) -> List[Service]:
    return merge_sort(list(services), cmp_services)


def sort_destinations(dests: Iterable[Destination]) -> List[Destination]:
    return merge_sort(list(dests), cmp_destinations)


# --------------------------------------------------------------- addresses

def _ntop(addr: Any) -> str:
    # glibc's inet_ntop, as ipvsadm prints (::ffff:1.2.3.4 stays dotted)
    if addr.version == 6:
        return socket.inet_ntop(socket.AF_INET6, addr.packed)
    return str(addr)


def _host_name(addr: Any, numeric: bool) -> str:
    if not numeric and addr.version == 4:
        try:
            return socket.gethostbyaddr(str(addr))[0]
        except (OSError, UnicodeError):
            pass
    return _ntop(addr)


def _port_name(port: int, proto: Any, numeric: bool) -> str:
    if not numeric and port:
        name = {Protocol.TCP: "tcp", Protocol.UDP: "udp", Protocol.SCTP: "sctp"}.get(proto)
        if name:
            try:
                return socket.getservbyport(port, name)
            except (OSError, OverflowError):
                pass
    return str(port)


def format_addr_port(addr: Any, port: int, proto: Any = Protocol.TCP, numeric: bool = True) -> str:
    """``10.0.0.1:80``, ``[2001:db8::1]:80``; names unless ``numeric``
    (IPv4 host names only, as ipvsadm)."""
    host = _host_name(addr, numeric)
    if addr.version == 6:
        host = "[%s]" % host
    return "%s:%s" % (host, _port_name(port, proto, numeric))


def format_largenum(value: int, exact: bool = False) -> str:
    """A counter in its 8-character column (with the leading separator)."""
    if exact or value < 100000000:
        return " %8d" % value
    if value < 1000000000:
        return " %7dK" % (value // 1000)
    if value < 100000000000:
        return " %7dM" % (value // 1000000)
    if value < 100000000000000:
        return " %7dG" % (value // 1000000000)
    return " %7dT" % (value // 1000000000000)


def sched_flag_names(scheduler: str, flags: int) -> List[str]:
    names = []
    prefix = scheduler if scheduler in ("sh", "mh") else None
    for bit, (suffix, generic) in ((ServiceFlags.SCHED1, ("fallback", "flag-1")),
                                   (ServiceFlags.SCHED2, ("port", "flag-2")),
                                   (ServiceFlags.SCHED3, (None, "flag-3"))):
        if flags & bit:
            names.append("%s-%s" % (prefix, suffix) if prefix and suffix else generic)
    return names


def _mask_text(svc: Service) -> Optional[str]:
    """The persistence mask when it is not the default, as ipvsadm shows it."""
    if svc.family == socket.AF_INET6:
        return None if svc.netmask == 128 else str(svc.netmask)
    if svc.netmask == 32:
        return None
    return str(ipaddress.IPv4Network((0, svc.netmask)).netmask)


# ---------------------------------------------------------------- listings

def _service_id(svc: Service, numeric: bool) -> Tuple[str, str]:
    if svc.fwmark:
        return "FWM", "%d%s" % (svc.fwmark, " IPv6" if svc.family == socket.AF_INET6 else "")
    return (_PROTO_NAMES.get(svc.protocol, str(svc.protocol)),
            format_addr_port(svc.address, svc.port, svc.protocol, numeric))


def _service_line(svc: Service, opts: ListOptions) -> str:
    proto, ident = _service_id(svc, opts.numeric)
    kind = opts.kind
    if kind in ("stats", "rate"):
        st = svc.stats
        return "%-4s %-28s%s\n" % (proto, ident, _numbers(st, kind, opts.exact))
    text = "%-4s %s %s" % (proto, ident, svc.scheduler)
    names = sched_flag_names(svc.scheduler, svc.flags)
    if names:
        text += " (%s)" % ",".join(names)
    if svc.flags & ServiceFlags.PERSISTENT:
        text += " persistent %d" % svc.timeout
        mask = _mask_text(svc)
        if mask is not None:
            text += " mask %s" % mask
        if svc.pe_name:
            text += " pe %s" % svc.pe_name
    if svc.flags & ServiceFlags.ONEPACKET:
        text += " ops"
    return text + "\n"


def _numbers(st: Stats, kind: str, exact: bool) -> str:
    if kind == "stats":
        return (" %8d" % st.connections + format_largenum(st.packets_in, exact)
                + format_largenum(st.packets_out, exact) + format_largenum(st.bytes_in, exact)
                + format_largenum(st.bytes_out, exact))
    return (" %8d" % st.cps + " %8d" % st.pps_in + " %8d" % st.pps_out
            + format_largenum(st.bps_in, exact) + format_largenum(st.bps_out, exact))


def _tunnel_info(d: Destination) -> str:
    if d.forward != Forward.TUNNEL:
        return "n/a"
    csum = {TunnelFlags.NOCSUM: "-c", TunnelFlags.CSUM: "+c", TunnelFlags.REMCSUM: "r+c"}
    flags = csum.get(TunnelFlags(d.tunnel_flags & 3), "-c")
    if d.tunnel_type == TunnelType.GUE:
        return "gue:%d:%s" % (d.tunnel_port, flags)
    if d.tunnel_type == TunnelType.GRE:
        return "gre:%s" % flags
    return "ipip"


def _dest_line(svc: Service, d: Destination, opts: ListOptions) -> str:
    addr = format_addr_port(d.address, d.port or 0, svc.protocol, opts.numeric)
    kind = opts.kind
    if kind in ("stats", "rate"):
        return "  -> %-28s%s\n" % (addr, _numbers(d.stats, kind, opts.exact))
    if kind == "thresholds":
        return "  -> %-28s %-10d %-10d %-10d %-10d\n" % (
            addr, d.upper_threshold, d.lower_threshold, d.active_connections,
            d.inactive_connections)
    if kind == "persistent_conn":
        return "  -> %-28s %-9d %-11d %-10d %-10d\n" % (
            addr, d.weight, d.persistent_connections, d.active_connections,
            d.inactive_connections)
    fwd = FORWARD_NAMES.get(d.forward, str(d.forward))
    if kind == "tun_info":
        return "  -> %-28s %-7s %-13s %-6d %-10d %-10d\n" % (
            addr, fwd, _tunnel_info(d), d.weight, d.active_connections, d.inactive_connections)
    return "  -> %-28s %-7s %-6d %-10d %-10d\n" % (
        addr, fwd, d.weight, d.active_connections, d.inactive_connections)


def _entries(table: Iterable[Tuple[Service, Sequence[Destination]]],
             sort: bool) -> List[Tuple[Service, List[Destination]]]:
    entries = [(s, list(ds)) for s, ds in table]
    if sort:
        order = sort_services([s for s, _ in entries])
        by_id: Dict[int, Sequence[Destination]] = {}
        for s, ds in entries:
            by_id.setdefault(id(s), ds)
        entries = [(s, sort_destinations(by_id[id(s)])) for s in order]
    return entries


def list_service(svc: Service, dests: Sequence[Destination], opts: ListOptions) -> str:
    """One service with its destinations (no header)."""
    out = [_service_line(svc, opts)]
    ds = sort_destinations(dests) if opts.sort else list(dests)
    out.extend(_dest_line(svc, d, opts) for d in ds)
    return "".join(out)


def list_table(info: Optional[Info], table: Iterable[Tuple[Service, Sequence[Destination]]],
               opts: ListOptions) -> str:
    """``ipvsadm -L`` of ``table`` (pairs of Service and its destinations).
    With ``info`` None the version line is left out (as for ``-L -t VIP``)."""
    out = []
    if info is not None:
        out.append(_HEADER_VERSION % (info.version, info.conn_tab_size))
    out.append(_HEADERS[opts.kind])
    for svc, dests in _entries(table, opts.sort):
        out.append(_service_line(svc, opts))
        out.extend(_dest_line(svc, d, opts) for d in dests)
    return "".join(out)


# ------------------------------------------------------------------- save

def _save_service_id(svc: Service, numeric: bool) -> str:
    if svc.fwmark:
        return "-f %d%s" % (svc.fwmark, " -6" if svc.family == socket.AF_INET6 else "")
    return "%s %s" % (_PROTO_SAVE.get(svc.protocol, "-t"),
                      format_addr_port(svc.address, svc.port, svc.protocol, numeric))


def save_service(svc: Service, numeric: bool = True) -> str:
    text = "-A %s -s %s" % (_save_service_id(svc, numeric), svc.scheduler)
    if svc.flags & ServiceFlags.PERSISTENT:
        text += " -p %d" % svc.timeout
        mask = _mask_text(svc)
        if mask is not None:
            text += " -M %s" % mask
    if svc.pe_name:
        text += " --pe %s" % svc.pe_name
    if svc.flags & ServiceFlags.ONEPACKET:
        text += " -o"
    names = sched_flag_names(svc.scheduler, svc.flags)
    if names:
        text += " -b %s" % ",".join(names)
    return text


def save_destination(svc: Service, d: Destination, numeric: bool = True) -> str:
    text = "-a %s -r %s %s -w %d" % (
        _save_service_id(svc, numeric), format_addr_port(d.address, d.port or 0, svc.protocol,
                                                         numeric),
        _FORWARD_SAVE.get(d.forward, "-g"), d.weight)
    if d.forward == Forward.TUNNEL:
        csum = {TunnelFlags.NOCSUM: " --tun-nocsum", TunnelFlags.CSUM: " --tun-csum",
                TunnelFlags.REMCSUM: " --tun-remcsum"}.get(TunnelFlags(d.tunnel_flags & 3), "")
        if d.tunnel_type == TunnelType.GUE:
            text += " --tun-type gue --tun-port %d%s" % (d.tunnel_port, csum)
        elif d.tunnel_type == TunnelType.GRE:
            text += " --tun-type gre%s" % csum
        else:
            text += " --tun-type ipip"
    return text


def save_table(table: Iterable[Tuple[Service, Sequence[Destination]]], numeric: bool = True,
               sort: bool = True) -> str:
    """``ipvsadm -S`` (``-Sn`` with ``numeric``)."""
    out = []
    for svc, dests in _entries(table, sort):
        out.append(save_service(svc, numeric) + "\n")
        out.extend(save_destination(svc, d, numeric) + "\n" for d in dests)
    return "".join(out)


# ---------------------------------------------------- timeouts, daemons, conns

def format_timeouts(t: Timeouts) -> str:
    return "Timeout (tcp tcpfin udp): %d %d %d\n" % (t.tcp, t.tcp_fin, t.udp)


def format_daemons(daemons: Iterable[Daemon]) -> str:
    out = []
    for d in daemons:
        state = "master" if d.state == DaemonState.MASTER else "backup"
        group = "" if d.mcast_group is None else _ntop(d.mcast_group)
        out.append("%s sync daemon (mcast=%s, syncid=%d, maxlen=%d, group=%s, port=%d, ttl=%d)\n"
                   % (state, d.interface, d.sync_id, d.max_len, group, d.mcast_port, d.mcast_ttl))
    return "".join(out)


def _conn_proto(c: Connection) -> str:
    p = c.protocol
    return p.name if isinstance(p, Protocol) else str(p).upper()


def list_connections(conns: Iterable[Connection], numeric: bool = True,
                     persistent_conn: bool = False) -> str:
    """``ipvsadm -Lc`` (kernel order)."""
    out = [_CONN_HEADER + (_CONN_HEADER_PE if persistent_conn else "") + "\n"]
    for c in conns:
        proto = c.protocol if isinstance(c.protocol, Protocol) else None
        out.append("%-3s %02d:%02d  %-11s %-18s %-18s %s\n" % (
            _conn_proto(c), c.expires // 60, c.expires % 60, c.state,
            format_addr_port(c.client_address, c.client_port, proto, numeric),
            format_addr_port(c.virtual_address, c.virtual_port, proto, numeric),
            format_addr_port(c.destination_address, c.destination_port, proto, numeric)))
    return "".join(out)


# -------------------------------------------------------------------- JSON

def _stats_json(st: Optional[Stats]) -> Optional[Dict[str, int]]:
    if st is None:
        return None
    return {f: getattr(st, f) for f in Stats._field_names}


def _family_name(fam: Any) -> str:
    return "inet6" if fam == socket.AF_INET6 else "inet"


def service_to_json(svc: Service) -> Dict[str, Any]:
    return {
        "family": _family_name(svc.family),
        "protocol": None if svc.fwmark else svc.protocol.name.lower(),
        "address": None if svc.address is None else str(svc.address),
        "port": svc.port,
        "fwmark": svc.fwmark,
        "scheduler": svc.scheduler,
        "flags": int(svc.flags),
        "sched_flags": sched_flag_names(svc.scheduler, svc.flags),
        "persistent": bool(svc.flags & ServiceFlags.PERSISTENT),
        "one_packet": bool(svc.flags & ServiceFlags.ONEPACKET),
        "timeout": svc.timeout,
        "netmask": svc.netmask,
        "pe_name": svc.pe_name,
        "stats": _stats_json(svc.stats),
    }


def destination_to_json(d: Destination) -> Dict[str, Any]:
    return {
        "family": _family_name(d.family),
        "address": str(d.address),
        "port": d.port,
        "forward": d.forward.name.lower(),
        "weight": d.weight,
        "upper_threshold": d.upper_threshold,
        "lower_threshold": d.lower_threshold,
        "tunnel_type": d.tunnel_type.name.lower() if d.forward == Forward.TUNNEL else None,
        "tunnel_port": d.tunnel_port,
        "tunnel_flags": {0: "nocsum", 1: "csum", 2: "remcsum"}.get(int(d.tunnel_flags) & 3, "nocsum"),
        "active_connections": d.active_connections,
        "inactive_connections": d.inactive_connections,
        "persistent_connections": d.persistent_connections,
        "stats": _stats_json(d.stats),
    }


def table_to_json(info: Optional[Info], table: Iterable[Tuple[Service, Sequence[Destination]]],
                  sort: bool = True) -> Dict[str, Any]:
    doc: Dict[str, Any] = {}
    if info is not None:
        doc["version"] = info.version
        doc["conn_tab_size"] = info.conn_tab_size
    services = []
    for svc, dests in _entries(table, sort):
        entry = service_to_json(svc)
        entry["destinations"] = [destination_to_json(d) for d in dests]
        services.append(entry)
    doc["services"] = services
    return doc


def timeouts_to_json(t: Timeouts) -> Dict[str, Any]:
    return {"timeouts": {"tcp": t.tcp, "tcp_fin": t.tcp_fin, "udp": t.udp}}


def daemons_to_json(daemons: Iterable[Daemon]) -> Dict[str, Any]:
    return {"daemons": [{
        "state": "master" if d.state == DaemonState.MASTER else "backup",
        "interface": d.interface, "sync_id": d.sync_id, "max_len": d.max_len,
        "mcast_group": None if d.mcast_group is None else str(d.mcast_group),
        "mcast_port": d.mcast_port, "mcast_ttl": d.mcast_ttl} for d in daemons]}


def connections_to_json(conns: Iterable[Connection]) -> Dict[str, Any]:
    return {"connections": [{
        "protocol": _conn_proto(c).lower(), "client_address": str(c.client_address),
        "client_port": c.client_port, "virtual_address": str(c.virtual_address),
        "virtual_port": c.virtual_port, "destination_address": str(c.destination_address),
        "destination_port": c.destination_port, "state": c.state, "expires": c.expires}
        for c in conns]}

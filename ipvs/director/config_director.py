"""The ``[director]`` table of a configuration file: its own keys, the
``sysctl`` settings, ``[director.sync]`` (the sync daemon, keepalived's
FIFO) and ``[director.announce]``."""

from __future__ import annotations

import ipaddress
import re
import socket
from typing import Any, Dict, Optional, Tuple

import ipvs
from ipvs.director.config_errors import Path, _Ctx
from ipvs.director.config_records import AnnounceConfig, DirectorConfig, ServiceConfig
from ipvs.director.config_values import _hostport, _integer, _model, _number, _type, _unknown

__all__ = ["DIRECTOR_KEYS", "SYSCTL_NAMES", "ANNOUNCE_KEYS", "SYNC_KEYS"]

DIRECTOR_KEYS = ("netns", "control", "control_group", "metrics", "metrics_rates",
                 "drain_timeout", "resync_interval", "sync", "state_file",
                 "max_checks_in_flight", "sysctl", "announce")
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
ANNOUNCE_KEYS = ("via", "interface", "when", "withdraw_grace")
SYNC_KEYS = ("state", "interface", "sync_id", "max_len", "mcast_group", "mcast_port",
             "mcast_ttl", "keepalived_fifo", "vrrp_instance")


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

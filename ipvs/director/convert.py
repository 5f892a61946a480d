"""``ipvs-director convert KEEPALIVED_CONF``: a keepalived.conf turned into
the director's TOML.

The file is read by convert_read.py (keepalived's syntax, includes).  Only
the load-balancing part is converted: ``virtual_server`` blocks, their
real servers and their checkers (and the ``track_file`` blocks FILE_CHECK
refers to); each checker's own keywords are converted by its check type's
module (``checks.KEEPALIVED``), the settings every checker shares here.
Everything else (VRRP, global settings...) and every statement that has no
equivalent is reported on stderr as ``FILE:LINE: ...``; the conversion
still succeeds (exit 0).  Input that cannot be read or parsed exits 1.
"""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import shlex
import sys
from typing import Any, Dict, List, Optional, Sequence, Tuple

from ipvs.director.checks import KEEPALIVED
from ipvs.director.checks.common import DEFAULT_CONNECT_TIMEOUT
from ipvs.director.convert_read import (INCLUDES, MAX_INCLUDE_DEPTH, ConvertError, Statement,
                                        read)

__all__ = ["ConvertError", "Statement", "read", "convert", "convert_file", "to_toml", "main"]

#: keepalived's checker keywords, each with the director's check type
CHECKERS = {kw: t.name for kw, t in KEEPALIVED.items()}
FORWARD = {"NAT": "masq", "DR": "route", "TUN": "tunnel"}
SERVICE_FLAGS = {"ops": "onepacket", "flag-1": "sched1", "flag-2": "sched2",
                 "flag-3": "sched3", "sh-port": "sh_port", "sh-fallback": "sh_fallback",
                 "mh-port": "mh_port", "mh-fallback": "mh_fallback"}
# keepalived's defaults (man keepalived.conf; DEFAULT_CONNECT_TIMEOUT in checks.common)
DEFAULT_DELAY_LOOP = 60.0
DEFAULT_PERSISTENCE = 360
SHELL_CHARS = set("|&;<>()$`\\*?[]~\n")   # a command with these runs through /bin/sh -c
# the names of the parts, importable from here as before the split
_REEXPORTED = (DEFAULT_CONNECT_TIMEOUT, INCLUDES, MAX_INCLUDE_DEPTH)


# ------------------------------------------------------------ converting

class _Conv:
    def __init__(self) -> None:
        self.warnings: List[str] = []
        self.track_files: Dict[str, Statement] = {}

    def warn(self, st: Statement, why: str) -> None:
        self.warnings.append("%s: %s: %s" % (st.where, " ".join([st.keyword] + st.args), why))

    def skip(self, st: Statement, why: str) -> None:
        self.warn(st, "not carried over (%s)" % why)

    # -- values
    def arg(self, st: Statement, i: int = 0) -> str:
        if len(st.args) <= i:
            raise ConvertError("%s needs a value" % st.keyword, st.filename, st.line)
        return st.args[i]

    def integer(self, st: Statement, lo: int = 0, hi: int = 0x7FFFFFFF) -> int:
        v = self.arg(st)
        try:
            n = int(v)
        except ValueError:
            raise ConvertError("%s: not an integer: %r" % (st.keyword, v),
                               st.filename, st.line) from None
        if not lo <= n <= hi:
            raise ConvertError("%s: %d is out of range %d..%d" % (st.keyword, n, lo, hi),
                               st.filename, st.line)
        return n

    def timer(self, st: Statement) -> float:
        v = self.arg(st)
        try:
            t = float(v)
        except ValueError:
            raise ConvertError("%s: not a number of seconds: %r" % (st.keyword, v),
                               st.filename, st.line) from None
        if not t >= 0 or t != t:
            raise ConvertError("%s: must be 0 or more" % st.keyword, st.filename, st.line)
        return int(t) if t == int(t) else t

    def boolean(self, st: Statement) -> bool:
        if not st.args:
            return True
        v = st.args[0].lower()
        if v in ("yes", "true", "on", "1"):
            return True
        if v in ("no", "false", "off", "0"):
            return False
        raise ConvertError("%s: not a boolean: %r" % (st.keyword, st.args[0]),
                           st.filename, st.line)

    def address(self, st: Statement, value: str) -> str:
        try:
            return str(ipaddress.ip_address(value))
        except ValueError:
            raise ConvertError("%s: not an IP address: %r" % (st.keyword, value),
                               st.filename, st.line) from None

    def port(self, st: Statement, value: str) -> int:
        try:
            p = int(value)
        except ValueError:
            p = -1
        if not 0 <= p <= 65535:
            raise ConvertError("%s: not a port: %r" % (st.keyword, value),
                               st.filename, st.line)
        return p

    def argv(self, st: Statement, whole: bool = False) -> List[str]:
        """A command line as an argv: split like a shell would, or given to
        /bin/sh -c when it uses shell syntax.  ``whole``: every word is the
        command (misc_path); else words after the first are keepalived's
        user and group (notify_up/down)."""
        line = " ".join(st.args) if whole and st.args else self.arg(st)
        if not whole and len(st.args) > 1:
            self.skip(dataclasses.replace(st, args=st.args[1:]),
                      "the command runs as the director's user")
        if any(c in SHELL_CHARS for c in line):
            return ["/bin/sh", "-c", line]
        try:
            words = shlex.split(line)
        except ValueError:
            return ["/bin/sh", "-c", line]
        if not words:
            raise ConvertError("%s: empty command" % st.keyword, st.filename, st.line)
        return words

    def forward(self, st: Statement, out: Dict[str, Any]) -> None:
        kind = self.arg(st).upper()
        if kind not in FORWARD:
            raise ConvertError("%s: unknown method %r (NAT, DR or TUN)" % (st.keyword, st.args[0]),
                               st.filename, st.line)
        out["forward"] = FORWARD[kind]
        rest = [a.lower() for a in st.args[1:]]
        if kind == "TUN" and rest:
            i = 0
            while i < len(rest):
                w = rest[i]
                if w == "type" and i + 1 < len(rest) and rest[i + 1] in ("ipip", "gue", "gre"):
                    out["tunnel_type"] = rest[i + 1]
                    i += 2
                elif w == "port" and i + 1 < len(rest):
                    out["tunnel_port"] = self.port(st, rest[i + 1])
                    i += 2
                elif w in ("nocsum", "csum", "remcsum"):
                    out["tunnel_flags"] = w
                    i += 1
                else:
                    raise ConvertError("%s: unknown tunnel option %r" % (st.keyword, w),
                                       st.filename, st.line)
        elif rest:
            self.skip(st, "words after %s" % kind)

    # -- the file
    def convert(self, stmts: Sequence[Statement]) -> Dict[str, Any]:
        for st in stmts:   # track_file blocks may come after their users
            if st.keyword in ("track_file", "vrrp_track_file") and st.block is not None:
                if st.args:
                    self.track_files[st.args[0]] = st
        services: List[Dict[str, Any]] = []
        for st in stmts:
            if st.keyword == "virtual_server":
                svc = self.service(st)
                if svc is not None:
                    services.append(svc)
            elif st.keyword in ("track_file", "vrrp_track_file"):
                continue
            elif st.keyword == "virtual_server_group":
                self.skip(st, "virtual server groups have no equivalent: "
                              "write one [[service]] per address")
            elif st.keyword in ("global_defs", "vrrp_instance", "vrrp_sync_group",
                                "vrrp_script", "static_ipaddress", "static_routes",
                                "static_rules", "vrrp_track_process", "bfd_instance",
                                "linkbeat_interfaces", "net_namespace"):
                self.skip(st, "not the director's part: VRRP, routes and global "
                              "settings stay with their own tools")
            elif st.keyword == "SSL":
                self.skip(st, "SSL_GET here does not present a client certificate")
            else:
                self.skip(st, "unknown or unsupported top-level statement")
        return {"service": services} if services else {}

    def service(self, st: Statement) -> Optional[Dict[str, Any]]:
        a = st.args
        out: Dict[str, Any] = {}
        if a and a[0] == "group":
            self.skip(st, "virtual server groups have no equivalent")
            return None
        if a and a[0] == "fwmark":
            if len(a) != 2:
                raise ConvertError("virtual_server fwmark takes one mark", st.filename, st.line)
            mark = self.integer(dataclasses.replace(st, args=a[1:]), 1, 0xFFFFFFFF)
            out["fwmark"] = mark
        else:
            if len(a) not in (1, 2):
                raise ConvertError("virtual_server takes ADDRESS [PORT], fwmark N or group NAME",
                                   st.filename, st.line)
            out["address"] = self.address(st, a[0])
            out["port"] = self.port(st, a[1]) if len(a) == 2 else 0
            out["protocol"] = "tcp"
        if st.block is None:
            raise ConvertError("virtual_server without a { block }", st.filename, st.line)
        defaults: Dict[str, Any] = {"forward": "masq", "on_failure": "remove", "initial": "up",
                                    "interval": DEFAULT_DELAY_LOOP}
        flags: List[str] = []
        rs_stmts: List[Statement] = []
        sorry: Optional[Tuple[str, Optional[int]]] = None
        sorry_st = quorum_st = st
        for s in st.block:
            k = s.keyword
            if k in ("lb_algo", "lvs_sched"):
                out["scheduler"] = self.arg(s).lower()
            elif k in ("lb_kind", "lvs_method"):
                fw: Dict[str, Any] = {}
                self.forward(s, fw)
                defaults.update(fw)
            elif k == "protocol":
                p = self.arg(s).lower()
                if p not in ("tcp", "udp", "sctp"):
                    raise ConvertError("protocol: unknown %r" % s.args[0], s.filename, s.line)
                if "fwmark" in out:
                    self.skip(s, "a fwmark service has no protocol")
                else:
                    out["protocol"] = p
            elif k == "persistence_timeout":
                flags.append("persistent")
                out["timeout"] = self.integer(s, 1) if s.args else DEFAULT_PERSISTENCE
            elif k == "persistence_granularity":
                m = self.arg(s)
                out["netmask"] = int(m) if m.isdigit() else m
            elif k == "persistence_engine":
                out["pe_name"] = self.arg(s)
            elif k in SERVICE_FLAGS:
                flags.append(SERVICE_FLAGS[k])
            elif k == "quorum":
                out["quorum"] = self.integer(s)
                quorum_st = s
            elif k == "hysteresis":
                out["hysteresis"] = self.integer(s)
            elif k == "sorry_server":
                addr = self.address(s, self.arg(s))
                sorry = (addr, self.port(s, s.args[1]) if len(s.args) > 1 else None)
                sorry_st = s
            elif k == "alpha":
                defaults["initial"] = "down" if self.boolean(s) else "up"
            elif k == "inhibit_on_failure":
                defaults["on_failure"] = "quiesce" if self.boolean(s) else "remove"
            elif k in ("delay_loop", "connect_timeout", "retry", "delay_before_retry",
                       "virtualhost"):
                self.timing(s, defaults)
            elif k == "ip_family":
                fam = self.arg(s).lower()
                if "fwmark" in out and fam in ("inet", "inet6"):
                    out["family"] = "ipv6" if fam == "inet6" else "ipv4"
                else:
                    self.skip(s, "the family follows from the address")
            elif k == "real_server":
                rs_stmts.append(s)
            elif k == "warmup":
                self.skip(s, "the director starts every probe at a random point of its "
                             "interval by itself")
            elif k in ("quorum_up", "quorum_down"):
                self.skip(s, "no quorum scripts: watch the quorum_lost / quorum_gained "
                             "events or ipvs_director_quorum_up")
            elif k in ("sorry_server_inhibit", "sorry_server_lvs_method"):
                self.skip(s, "the sorry server always takes the forwarding method of the "
                             "first real server and is removed when it leaves")
            elif k in ("smtp_alert", "snmp_name", "ha_suspend", "omega"):
                self.skip(s, "no e-mail alerts, SNMP, VIP-presence suspension or shutdown "
                             "notifications in the director")
            else:
                self.skip(s, "unknown or unsupported in virtual_server")
        if flags:
            out["flags"] = flags
        rss = [self.real_server(s, defaults, out) for s in rs_stmts]
        if sorry is not None:
            host, port = sorry
            if port is None:
                port = out.get("port", 0)
            host_s = "[%s]" % host if ":" in host else host
            out["sorry_server"] = "%s:%d" % (host_s, port)
            if any(r["on_failure"] == "remove" for r in rss):
                self.warn(sorry_st, "when the quorum is lost keepalived removes the real "
                                    "servers that lack inhibit_on_failure; the director "
                                    "keeps the live ones in the table with weight 0")
            if rss and "forward" in rss[0] and defaults.get("forward") != rss[0]["forward"]:
                self.warn(sorry_st, "the sorry server uses the first real server's "
                                    "forwarding method here")
        total = sum(r.get("weight", 1) for r in rss)
        if out.get("quorum", 1) > total and rss:
            self.warn(quorum_st, "above the real servers' total weight %d: keepalived "
                                 "lowers it to %d, so does the conversion" % (total, total))
            out["quorum"] = total
        if rss:
            out["real_server"] = rss
        return out

    def timing(self, s: Statement, d: Dict[str, Any]) -> None:
        """The checker settings a virtual_server or real_server gives its
        checkers (keepalived's names kept in ``d`` until the checks are made)."""
        k = s.keyword
        if k == "virtualhost":
            d["host"] = self.arg(s)
        elif k == "retry" or k == "nb_get_retry":
            if k == "nb_get_retry":
                self.warn(s, "keepalived 2.x no longer knows nb_get_retry (it ignores it); "
                             "taken as retry")
            d["retry"] = self.integer(s, 0, 999)
        elif k == "delay_loop":
            d["interval"] = self.timer(s)
        elif k == "connect_timeout":
            d["connect_timeout"] = self.timer(s)
        elif k == "delay_before_retry":
            d["delay_before_retry"] = self.timer(s)

    def real_server(self, st: Statement, vdefaults: Dict[str, Any],
                    svc: Dict[str, Any]) -> Dict[str, Any]:
        a = st.args
        if len(a) not in (1, 2):
            raise ConvertError("real_server takes ADDRESS [PORT]", st.filename, st.line)
        out: Dict[str, Any] = {"address": self.address(st, a[0])}
        out["port"] = self.port(st, a[1]) if len(a) == 2 else svc.get("port", 0)
        d = dict(vdefaults)
        checkers: List[Statement] = []
        for s in st.block or []:
            k = s.keyword
            if k == "weight":
                out["weight"] = self.integer(s)
            elif k == "lvs_method":
                fw: Dict[str, Any] = {}
                self.forward(s, fw)
                d.update(fw)
            elif k == "inhibit_on_failure":
                d["on_failure"] = "quiesce" if self.boolean(s) else "remove"
            elif k == "alpha":
                d["initial"] = "down" if self.boolean(s) else "up"
            elif k in ("notify_up", "notify_down"):
                out[k] = self.argv(s)
            elif k in ("uthreshold", "lthreshold"):
                out[{"uthreshold": "upper_threshold",
                     "lthreshold": "lower_threshold"}[k]] = self.integer(s, 0, 0xFFFFFFFF)
            elif k in ("delay_loop", "connect_timeout", "retry", "delay_before_retry",
                       "virtualhost"):
                self.timing(s, d)
            elif k in CHECKERS:
                checkers.append(s)
            elif k in ("BFD_CHECK", "PING_CHECK"):
                self.skip(s, "no BFD or ICMP echo checks in the director")
            elif k == "warmup":
                self.skip(s, "the director starts every probe at a random point of its "
                             "interval by itself")
            elif k in ("smtp_alert", "snmp_name"):
                self.skip(s, "no e-mail alerts or SNMP in the director")
            else:
                self.skip(s, "unknown or unsupported in real_server")
        out["forward"] = d["forward"]
        # keepalived clears the port of a fwmark service's real servers and
        # gives DR/TUN real servers the service's port; the checks keep
        # the port written in the file
        check_port = out["port"]
        if "fwmark" in svc and out["port"]:
            out["port"] = 0
            d["check_port"] = check_port
        elif out["forward"] in ("route", "tunnel") and out["port"] != svc.get("port", 0):
            self.warn(st, "keepalived uses the service's port %d for a %s real server "
                          "(the check keeps port %d)" % (svc["port"], out["forward"] == "route"
                                                          and "DR" or "TUN", check_port))
            out["port"] = svc["port"]
            d["check_port"] = check_port
        for k in ("tunnel_type", "tunnel_port", "tunnel_flags"):
            if k in d:
                out[k] = d[k]
        out["on_failure"] = d["on_failure"]
        checks: List[Dict[str, Any]] = []
        for s in checkers:
            checks.extend(self.checker(s, d, out.get("weight", 1)))
        if not checks:
            # keepalived keeps a real server without checkers up for good
            checks = [{"type": "none", "initial": "up"}]
        if len(checks) == 1:
            out["check"] = checks[0]
        else:
            out["checks"] = checks
        return out

    def checker(self, st: Statement, rdefaults: Dict[str, Any],
                rweight: int = 1) -> List[Dict[str, Any]]:
        """The checks of a checker block: the keywords every checker shares
        here, the rest by its check type (``checks.KEEPALIVED``)."""
        kind = KEEPALIVED[st.keyword]
        d = dict(rdefaults)
        c: Dict[str, Any] = {"type": kind.name}
        for s in st.block or []:
            k = s.keyword
            if k == "connect_ip" and kind.connects:
                c["address"] = self.address(s, self.arg(s))
            elif k == "connect_port" and kind.connects:
                c["port"] = self.port(s, self.arg(s))
            elif k in ("delay_loop", "connect_timeout", "retry", "nb_get_retry",
                       "delay_before_retry", "virtualhost") and kind.timed:
                self.timing(s, d)
            elif k == "alpha" and kind.timed:
                d["initial"] = "down" if self.boolean(s) else "up"
            elif kind.convert_keyword(self, s, c, d):
                pass
            elif k in ("bindto", "bind_port", "bind_if", "fwmark"):
                self.skip(s, "checks connect from the director's default source address")
            elif k == "warmup":
                self.skip(s, "the director starts every probe at a random point of its "
                             "interval by itself")
            elif k in ("http_protocol", "fast_recovery", "log_all_failures"):
                self.skip(s, "the director's HTTP check speaks HTTP/1.1 with Connection: "
                             "close and has no such setting")
            else:
                self.skip(s, "unknown or unsupported in %s" % st.keyword)
        if "check_port" in d and "port" not in c and kind.connects:
            c["port"] = d["check_port"]
        # timing: keepalived's names to the director's
        interval = d.get("interval", DEFAULT_DELAY_LOOP)
        c["interval"] = interval
        timeout = kind.convert_timeout(d, interval)
        if timeout is not None:
            c["timeout"] = timeout
        c["fall"] = kind.convert_retry(d) + 1
        c["rise"] = 1
        c["retry_interval"] = d.get("delay_before_retry",
                                    kind.convert_retry_delay(interval)) or interval
        c["initial"] = d["initial"]
        return kind.convert_finish(self, st, c, d, rweight)


def convert(stmts: Sequence[Statement]) -> Tuple[Dict[str, Any], List[str]]:
    """The director's configuration (as TOML data) for the statements of a
    keepalived.conf, and the warnings (``FILE:LINE: ...``)."""
    c = _Conv()
    data = c.convert(stmts)
    return data, c.warnings


def to_toml(data: Dict[str, Any], source: str = "") -> str:
    """TOML text of converted data (written by tomli_w)."""
    try:
        import tomli_w
    except ImportError:   # pragma: no cover - the director extra installs it
        raise RuntimeError("convert needs tomli_w: pip install 'ipvs[director]'") from None
    head = "# converted from %s by ipvs-director convert\n\n" % source if source else ""
    return head + tomli_w.dumps(data)


def convert_file(path: str) -> Tuple[str, List[str]]:
    """(TOML text, warnings) for a keepalived.conf; :class:`ConvertError`
    when it cannot be read or parsed."""
    warnings: List[str] = []
    stmts = read(path, warnings)
    data, more = convert(stmts)
    return to_toml(data, path), warnings + more


def main(argv: Optional[List[str]] = None) -> int:
    """``ipvs-director convert KEEPALIVED_CONF``: the TOML on stdout, every
    statement not carried over on stderr; exit 0, or 1 when the input cannot
    be read or parsed."""
    p = argparse.ArgumentParser(
        prog="ipvs-director convert",
        description="Print the director's TOML for the virtual_server blocks of a "
                    "keepalived.conf; statements that are not carried over are named "
                    "on stderr with their file and line.")
    p.add_argument("file", metavar="KEEPALIVED_CONF")
    args = p.parse_args(argv)
    from ipvs.director.config import ConfigError, parse
    try:
        text, warnings = convert_file(args.file)
    except ConvertError as e:
        print("ipvs-director convert: %s" % e, file=sys.stderr)
        return 1
    for w in warnings:
        print("ipvs-director convert: %s" % w, file=sys.stderr)
    try:
        parse(text, "<converted>")
    except ConfigError as e:
        print("ipvs-director convert: the result does not validate: %s" % e, file=sys.stderr)
        return 1
    sys.stdout.write(text)
    return 0

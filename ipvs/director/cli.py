"""``ipvs-director``: run the director, validate a file, or talk to a
running director through its control socket.

    ipvs-director -c FILE                    run (SIGHUP reloads, SIGTERM stops)
    ipvs-director -c FILE --check            validate FILE only (exit 0 or 1)
    ipvs-director [-s SOCKET | -c FILE] status [--json]
    ipvs-director [-s SOCKET | -c FILE] reload | events
    ipvs-director [-s SOCKET | -c FILE] drain|undrain SERVICE ADDRESS PORT
    ipvs-director [-s SOCKET | -c FILE] weight SERVICE ADDRESS PORT N|clear
    ipvs-director [-s SOCKET | -c FILE] role master|backup
    ipvs-director [-s SOCKET | -c FILE] maintenance on|off
    ipvs-director [-s SOCKET | -c FILE] announce      (ExaBGP's API process)
    ipvs-director -c FILE diff               what a director would write now (ipvsadm -R)
    ipvs-director convert KEEPALIVED_CONF    print a keepalived.conf as TOML

No documented path ends in a Python traceback: a control socket that is
missing or refuses, an error answer, a reader that goes away (``| head``)
and a stop with ``netns`` set end with one line at most.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Set

from ipvs.director import heap
from ipvs.director.config import Config, ConfigError, DirectorConfig, load

if TYPE_CHECKING:
    from ipvs.director.core import Director

__all__ = ["main", "status_table", "COMMANDS"]

_SERVER = (("service", "SERVICE"), ("address", "ADDRESS"), ("port", "PORT"))
#: the subcommands talking to a running director, with their arguments (name, metavar)
COMMANDS = {"status": (), "reload": (), "events": (), "drain": _SERVER, "undrain": _SERVER,
            "weight": _SERVER + (("weight", "N|clear"),), "role": (("state", "master|backup"),),
            "maintenance": (("on", "on|off"),), "announce": ()}
HELP = {
    "status": "the running director's services and real servers, in the way of "
              "ipvsadm -Ln (--json: the JSON of GET /status)",
    "reload": "read the file again (as SIGHUP does); the error and exit 1 when it is refused",
    "events": "follow the event stream (one JSON object a line)",
    "drain": "stop sending new connections to a real server; it is removed once its "
             "connections are gone or drain_timeout passed",
    "undrain": "end a drain: the real server follows its checks again",
    "weight": "set a real server's weight over the configured one; clear: back to "
              "the configured weight",
    "role": "switch the sync daemon of [director.sync] to master or backup",
    "maintenance": "on: withdraw every VIP of [director.announce] (the connections that "
                   "still arrive are served); off: announce again as health says",
    "announce": "ExaBGP's API process for [director.announce] via = \"exabgp\": print "
                "announce/withdraw route lines as the director decides",
    "diff": "print what a director on FILE would write to the kernel now, in "
            "ipvsadm -R syntax; writes nothing (exit 0: no difference, 1: some, 2: error)",
    "convert": "print a keepalived.conf's virtual servers as the director's TOML",
}
STATUS_PERIOD = 5.0       # s between two STATUS= lines to systemd at most


class _StdoutGone(Exception):
    """The reader of our stdout went away (``| head``)."""


def _out(text: str) -> None:
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:
        raise _StdoutGone() from None


def _quiet_stdout() -> None:
    """After a broken pipe: stdout to /dev/null, so that the interpreter's
    last flush has nowhere to fail (what CLI tools do on EPIPE)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass


def _err(text: str) -> None:
    try:
        sys.stderr.write("ipvs-director: %s\n" % text)
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


# ------------------------------------------------------------ the parser

def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ipvs-director",
        usage="%(prog)s [-h] [-c FILE] [-s SOCKET] [--check] [--log-format {text,json}] "
              "[COMMAND ...]",
        description="Keep IPVS services in the kernel with real server weights following "
                    "health checks (ipvs-director -c FILE); or talk to a running "
                    "director (a subcommand).",
        epilog="SERVICE is a service string such as \"TCP 10.0.0.1:80\", "
               "\"UDP [2001:db8::1]:53\", \"FWM 7\", \"FWM 7 IPv6\" (the protocol word in "
               "any case). Exit status of the subcommands: 0 on success, 1 when the "
               "director refused or cannot be reached, 2 on a usage error.")
    _common(p, top=True)
    p.add_argument("--check", action="store_true", help="validate FILE and exit")
    p.add_argument("--log-format", choices=("text", "json"), default="text",
                   help="format of the state change lines on stderr")
    sub = p.add_subparsers(dest="command", metavar="COMMAND",
                           title="subcommands (without one: run the director of -c FILE)")
    for name, words in COMMANDS.items():
        sp = sub.add_parser(name, help=HELP[name], description=HELP[name])
        _common(sp, top=False)
        if name == "status":
            sp.add_argument("--json", action="store_true",
                            help="print the JSON of GET /status instead of the table")
        for dest, metavar in words:
            sp.add_argument(dest, metavar=metavar)
    sp = sub.add_parser("diff", help=HELP["diff"], description=HELP["diff"])
    _common(sp, top=False)
    sub.add_parser("convert", help=HELP["convert"], add_help=False,
                   description=HELP["convert"]).add_argument(
        "rest", nargs=argparse.REMAINDER, metavar="KEEPALIVED_CONF")
    return p


def _common(p: argparse.ArgumentParser, top: bool) -> None:
    """-c and -s, before the subcommand or after it."""
    default = None if top else argparse.SUPPRESS
    p.add_argument("-c", "--config", metavar="FILE", default=default,
                   help="the TOML configuration file")
    p.add_argument("-s", "--socket", metavar="SOCKET", default=default,
                   help="control socket of a running director (default: the file's "
                        "[director] control, else %s)" % DirectorConfig.control)


# ------------------------------------------------------------ status table

_FORWARD = {"masq": "Masq", "route": "Route", "tunnel": "Tunnel", "local": "Local",
            "bypass": "Bypass"}
_HEADER = ("Prot LocalAddress:Port Scheduler Quorum Sorry\n"
           "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn State\n")


def _host_port(address: str, port: Any) -> str:
    return "%s:%s" % ("[%s]" % address if ":" in address else address, port)


def _server_line(rs: Dict[str, Any]) -> str:
    addr = _host_port(str(rs.get("address")), rs.get("port"))
    fwd = _FORWARD.get(str(rs.get("forward")), str(rs.get("forward") or "-"))
    weight = rs.get("weight")
    conns = rs.get("connections") or {}
    state = str(rs.get("state"))
    notes = []
    if not rs.get("in_file", True):
        notes.append("not in the file")
    if rs.get("weight_override") is not None:
        notes.append("api weight %s, file %s" % (rs["weight_override"],
                                                 rs.get("configured_weight")))
    last = rs.get("last_check") or {}
    if state in ("down", "falling", "rising") and last.get("result") not in (None, "success"):
        msg = str(last.get("message") or last.get("result"))
        notes.append(msg if len(msg) <= 60 else msg[:57] + "...")
    if weight is None:
        state += " (not in the kernel)"
    text = "  -> %-28s %-7s %-6s %-10s %-10s %s" % (
        addr, fwd, "-" if weight is None else weight,
        conns.get("active", "-") if conns else "-",
        conns.get("inactive", "-") if conns else "-", state)
    if notes:
        text += "  (%s)" % "; ".join(notes)
    return text + "\n"


def _service_line(svc: Dict[str, Any]) -> str:
    proto, _, ident = str(svc.get("service")).partition(" ")
    text = "%-4s %s %s" % (proto, ident, svc.get("scheduler"))
    quorum = svc.get("quorum")
    if svc.get("quorum_up") is False:
        text += "  quorum %s lost" % quorum
    elif quorum not in (None, 1):
        text += "  quorum %s" % quorum
    if svc.get("sorry_server"):
        text += "  sorry %s %s" % (svc["sorry_server"],
                                   "active" if svc.get("sorry_active") else "standby")
    if not svc.get("in_file", True):
        text += "  leaving (not in the file)"
    if not svc.get("in_kernel", True):
        text += "  not in the kernel"
    return text + "\n"


def _count(n: Any, what: str) -> str:
    return "%s %s%s" % (n, what, "" if n == 1 else "s")


def status_table(doc: Dict[str, Any]) -> str:
    """The text of ``ipvs-director status``: the JSON of ``GET /status`` in
    the way of ``ipvsadm -Ln``, with a State column (up, down, rising,
    falling, draining), the quorum and sorry server of each service, the
    sync role and the kernel's error when there is one."""
    services = doc.get("services") or []
    servers = [rs for s in services for rs in s.get("real_servers") or []]
    up = sum(1 for rs in servers if rs.get("state") in ("up", "falling"))
    draining = sum(1 for rs in servers if rs.get("state") == "draining")
    head = "ipvs-director %s: %s, %d of %s up" % (
        doc.get("config") or "-", _count(len(services), "service"), up,
        _count(len(servers), "real server"))
    if draining:
        head += ", %d draining" % draining
    out = [head + " (%s)\n" % _count(doc.get("rounds", 0), "round")]
    sync = doc.get("sync")
    if sync:
        role = "role %s (sync daemon on %s, syncid %s" % (
            sync.get("state"), sync.get("interface"), sync.get("sync_id"))
        if sync.get("vrrp_instance"):
            role += ", keepalived %s" % sync["vrrp_instance"]
            if sync.get("vrrp_last"):
                role += ": %s" % sync["vrrp_last"]
        role += ")"
        if sync.get("error"):
            role += ": error: %s" % sync["error"]
        out.append(role + "\n")
    sysctl = doc.get("sysctl")
    if isinstance(sysctl, dict) and sysctl:
        out.append("sysctl %s\n" % " ".join("%s=%s" % kv for kv in sorted(sysctl.items())))
    ann = doc.get("announce")
    if isinstance(ann, dict):
        vips = "; ".join("%s %s%s" % (v.get("vip"), "announced" if v.get("announced")
                                      else "withdrawn",
                                      "" if v.get("announced") or not v.get("reason")
                                      else " (%s)" % v["reason"])
                         for v in ann.get("vips") or [])
        out.append("announce via %s%s: %s\n" % (ann.get("via"), ", maintenance"
                                                if ann.get("maintenance") else "",
                                                vips or "no VIP"))
    if doc.get("kernel_error"):
        out.append("kernel error: %s\n" % doc["kernel_error"])
    out.append(_HEADER)
    for svc in services:
        out.append(_service_line(svc))
        out.extend(_server_line(rs) for rs in svc.get("real_servers") or [])
    return "".join(out)


# ------------------------------------------------------------ running

def _summary(director: "Director") -> str:
    """One line for systemd's STATUS=: services, real servers up."""
    total = up = 0
    for st in director.services.values():
        for rs in st.real_servers.values():
            if rs.cfg is None:
                continue
            total += 1
            if not rs.draining and rs.state in ("up", "falling"):
                up += 1
    text = "%s, %d of %s up" % (_count(len(director.services), "service"), up,
                                _count(total, "real server"))
    if director.last_round_error:
        text += "; kernel error: %s" % director.last_round_error
    return text


async def _keep_notified(director: "Director", notifier: Any) -> None:
    """WATCHDOG=1 at half of WATCHDOG_USEC while the writer's rounds run,
    and STATUS= when the summary changed."""
    loop = asyncio.get_running_loop()
    interval = notifier.watchdog_interval
    period = min(interval, STATUS_PERIOD) if interval else STATUS_PERIOD
    last_status = loop.time()
    while True:
        await asyncio.sleep(period)
        alive = director.writer_alive()
        if interval and alive:
            notifier.watchdog()
        if loop.time() - last_status >= STATUS_PERIOD - 0.01:
            last_status = loop.time()
            notifier.status(_summary(director) if alive else "the kernel writer is stalled")


async def _run(cfg: Config, path: str, log_format: str) -> int:
    from ipvs.director.control import ControlServer
    from ipvs.director.core import Director
    from ipvs.director.sdnotify import Notifier
    notifier = Notifier()
    director = Director(cfg, path=path, log_format=log_format,
                        state_file=cfg.director.state_path)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    pending: Set["asyncio.Task[None]"] = set()

    def reload() -> None:
        async def go() -> None:
            if not director.started:
                director.emit("reload_failed", message="still starting: signal again")
                return
            try:
                await director.reload()
            except ConfigError:
                pass  # logged as reload_failed; the running configuration stays
            except Exception as e:
                director.emit("reload_failed", message="%s: %s" % (type(e).__name__, e))
        t = loop.create_task(go())
        pending.add(t)
        t.add_done_callback(pending.discard)
    loop.add_signal_handler(signal.SIGHUP, reload)
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    metrics = None
    if cfg.director.metrics is not None:
        from ipvs.director.metrics import DirectorMetrics
        metrics = DirectorMetrics(cfg.director.netns, cfg.director.metrics_rates)
        director.metrics = metrics
    try:
        await director.start()
    except Exception as e:
        _err("cannot start: %s" % e)
        notifier.send("STATUS=cannot start: %s" % e)
        await director.stop()
        notifier.close()
        return 1
    finally:
        heap.resume()          # paused by main() for the parse and first round
    control = ControlServer(director, cfg.director.control, cfg.director.control_group)
    try:
        await control.start()
        if metrics is not None:
            metrics.serve(*cfg.director.metrics)
    except Exception as e:
        _err(str(e))
        notifier.send("STATUS=%s" % e)
        await director.stop()
        await control.close()
        notifier.close()
        return 1
    # the first round is written and the control socket listens
    notifier.ready(_summary(director))
    keeper = None
    if notifier.enabled:
        if notifier.watchdog_interval:
            notifier.watchdog()
        keeper = loop.create_task(_keep_notified(director, notifier))
    await stop.wait()
    notifier.stopping("stopping: the kernel table is left as it is")
    try:
        # [director.announce]: withdraw the VIPs and keep serving
        # withdraw_grace seconds, the control socket still answering
        await director.withdraw()
    except Exception as e:
        director.emit("error", message="withdraw at stop: %s: %s" % (type(e).__name__, e))
    if keeper is not None:
        keeper.cancel()
        await asyncio.gather(keeper, return_exceptions=True)
    director.emit("stopping", message="the kernel table is left as it is")
    await control.close()
    await director.stop()
    if metrics is not None:
        metrics.close()
    notifier.close()
    return 0


# ------------------------------------------------------------ subcommands

def _socket(args: argparse.Namespace) -> Optional[str]:
    if args.socket is not None:
        return str(args.socket)
    if args.config:
        try:
            return load(args.config).director.control
        except ConfigError as e:
            _err(str(e))
            return None
    return DirectorConfig.control


def _body(args: argparse.Namespace) -> Optional[Dict[str, Any]]:
    """The request body of a subcommand; ValueError for a bad argument."""
    cmd = args.command
    if cmd == "role":
        if args.state not in ("master", "backup"):
            raise ValueError("role takes master or backup")
        return {"state": args.state}
    if cmd == "maintenance":
        if args.on not in ("on", "off"):
            raise ValueError("maintenance takes on or off")
        return {"on": args.on == "on"}
    if cmd not in ("drain", "undrain", "weight"):
        return None
    try:
        port = int(args.port)
    except ValueError:
        raise ValueError("PORT must be an integer, not %r" % args.port) from None
    body: Dict[str, Any] = {"service": args.service, "address": args.address, "port": port}
    if cmd == "weight":
        if args.weight == "clear":
            body["weight"] = None
        else:
            try:
                body["weight"] = int(args.weight)
            except ValueError:
                raise ValueError("N must be an integer or clear, not %r" % args.weight) from None
    return body


def _error_message(data: bytes, status: int) -> str:
    try:
        doc = json.loads(data)
        if isinstance(doc, dict) and doc.get("error"):
            return str(doc["error"])
    except ValueError:
        pass
    text = data.decode("utf-8", "replace").strip()
    return text or "HTTP %d" % status


def _client(args: argparse.Namespace) -> int:
    from ipvs.director.control import request
    try:
        body = _body(args)
    except ValueError as e:
        _err(str(e))
        return 2
    sock = _socket(args)
    if sock is None:
        return 1
    if args.command == "announce":
        from ipvs.director.announce import main as announce_main
        return announce_main(sock)
    method, target = {"status": ("GET", "/status"), "events": ("GET", "/events"),
                      "reload": ("POST", "/reload")}.get(args.command,
                                                         ("POST", "/" + args.command))

    def line(raw: bytes) -> None:
        _out(raw.decode("utf-8", "replace") + "\n")
    try:
        status, data = request(sock, method, target, body,
                               timeout=None if args.command == "events" else 120.0,
                               stream=line if args.command == "events" else None)
    except KeyboardInterrupt:
        return 0
    except OSError as e:
        _err("%s: %s" % (sock, e.strerror or e))
        return 1
    if not 200 <= status < 300:
        msg = _error_message(data, status)
        _err("reload failed: %s" % msg if args.command == "reload" else msg)
        return 1
    if not data:
        return 0
    try:
        doc = json.loads(data)
    except ValueError:
        _out(data.decode("utf-8", "replace"))
        return 0
    if args.command == "status" and not args.json:
        _out(status_table(doc))
    else:
        _out(json.dumps(doc, indent=2) + "\n")
    return 0


def _diff(args: argparse.Namespace) -> int:
    if not args.config:
        _err("diff needs -c FILE")
        return 2
    from ipvs.director.diff import main as diff_main
    return diff_main(args.config, args.socket, out=_DiffOut())


class _DiffOut:
    """stdout for diff's lines, a broken pipe becoming _StdoutGone."""

    def write(self, text: str) -> int:
        _out(text)
        return len(text)

    def flush(self) -> None:
        pass


# ------------------------------------------------------------ main

def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of ``ipvs-director`` and ``python -m ipvs.director``."""
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        rc = _main(argv)
        sys.stdout.flush()     # here, where a reader gone (| head) can be handled
        return rc
    except (_StdoutGone, BrokenPipeError):
        _quiet_stdout()
        return 0
    except KeyboardInterrupt:
        return 130


def _main(argv: List[str]) -> int:
    if argv[:1] == ["convert"]:
        from ipvs.director.convert import main as convert_main
        return convert_main(argv[1:])
    args = _parser().parse_args(argv)
    if args.command == "convert":
        from ipvs.director.convert import main as convert_main
        return convert_main(args.rest)
    if args.command == "diff":
        return _diff(args)
    if args.command:
        return _client(args)
    if not args.config:
        _err("-c FILE is needed (or a subcommand: %s)"
             % ", ".join(list(COMMANDS) + ["diff", "convert"]))
        return 2
    # no cyclic garbage collection while the file is parsed and the first
    # round built: its passes over millions of young objects were a third
    # of a cold start; _run() turns it back on once the director started
    heap.pause()
    try:
        cfg = load(args.config)
    except ConfigError as e:
        heap.resume()
        _err(str(e))
        return 1
    if args.check:
        heap.resume()
        print("%s: OK (%d services, %d real servers)" % (
            args.config, len(cfg.services), sum(len(s.real_servers) for s in cfg.services)))
        return 0
    import faulthandler
    faulthandler.register(signal.SIGUSR1)  # a traceback of every thread on demand
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING,
                        format="%(asctime)s %(levelname)s %(message)s")
    if not cfg.director.netns:
        return asyncio.run(_run(cfg, args.config, args.log_format))
    # the checks (and /metrics) run from the namespace of the table: this
    # thread (and the threads it starts) enter it for the director's life,
    # and leave it before the interpreter's teardown
    from ipvs import netns
    inside = netns.enter(cfg.director.netns)
    try:
        inside.__enter__()
    except (OSError, ValueError) as e:
        _err("netns %s: %s" % (cfg.director.netns, getattr(e, "strerror", None) or e))
        return 1
    try:
        return asyncio.run(_run(cfg, args.config, args.log_format))
    finally:
        try:
            inside.__exit__(None, None, None)
        except RuntimeError as e:   # could not switch back: the process ends anyway
            _err(str(e))

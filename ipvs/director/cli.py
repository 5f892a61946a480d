"""``ipvs-director``: run the director, validate a file, or talk to a
running director through its control socket.

    ipvs-director -c FILE                    run (SIGHUP reloads, SIGTERM stops)
    ipvs-director -c FILE --check            validate FILE only (exit 0 or 1)
    ipvs-director [-s SOCKET | -c FILE] status | reload | events
    ipvs-director [-s SOCKET | -c FILE] drain|undrain SERVICE ADDRESS PORT
    ipvs-director [-s SOCKET | -c FILE] weight SERVICE ADDRESS PORT N
    ipvs-director [-s SOCKET | -c FILE] role master|backup
    ipvs-director convert KEEPALIVED_CONF    print a keepalived.conf as TOML
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys
from typing import Any, List, Optional

from ipvs.director.config import Config, ConfigError, DirectorConfig, load

__all__ = ["main"]

_NETNS: Any = None
COMMANDS = {"status": 0, "reload": 0, "events": 0, "drain": 3, "undrain": 3, "weight": 4,
            "role": 1}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ipvs-director",
        description="Keep IPVS services in the kernel with real server weights following "
                    "health checks; or talk to a running director.")
    p.add_argument("-c", "--config", metavar="FILE", help="the TOML configuration file")
    p.add_argument("-s", "--socket", metavar="SOCKET",
                   help="control socket of a running director (default: the file's "
                        "[director] control, else %s)" % DirectorConfig.control)
    p.add_argument("--check", action="store_true", help="validate FILE and exit")
    p.add_argument("--log-format", choices=("text", "json"), default="text",
                   help="format of the state change lines on stderr")
    p.add_argument("command", nargs="?", choices=sorted(COMMANDS),
                   help="talk to a running director instead of running one")
    p.add_argument("args", nargs="*", help="SERVICE ADDRESS PORT [N], or master|backup")
    return p


async def _run(cfg: Config, path: str, log_format: str) -> int:
    from ipvs.director.control import ControlServer
    from ipvs.director.core import Director
    director = Director(cfg, path=path, log_format=log_format,
                        state_file=cfg.director.state_path)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    pending: set = set()

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
        print("ipvs-director: cannot start: %s" % e, file=sys.stderr)
        await director.stop()
        return 1
    finally:
        import gc
        gc.enable()            # stopped by main() for the parse and first round
    control = ControlServer(director, cfg.director.control, cfg.director.control_group)
    try:
        await control.start()
        if metrics is not None:
            metrics.serve(*cfg.director.metrics)
    except Exception as e:
        print("ipvs-director: %s" % e, file=sys.stderr)
        await director.stop()
        await control.close()
        return 1
    await stop.wait()
    director.emit("stopping", message="the kernel table is left as it is")
    await control.close()
    await director.stop()
    if metrics is not None:
        metrics.close()
    return 0


def _client(args: argparse.Namespace) -> int:
    from ipvs.director.control import request
    sock = args.socket
    if sock is None:
        if args.config:
            try:
                sock = load(args.config).director.control
            except ConfigError as e:
                print("ipvs-director: %s" % e, file=sys.stderr)
                return 1
        else:
            sock = DirectorConfig.control
    want = COMMANDS[args.command]
    if len(args.args) != want:
        print("ipvs-director: %s takes %s" % (args.command, {
            0: "no arguments", 1: "master or backup", 3: "SERVICE ADDRESS PORT",
            4: "SERVICE ADDRESS PORT N"}[want]),
            file=sys.stderr)
        return 2
    body: Optional[dict] = None
    if args.command == "role":
        if args.args[0] not in ("master", "backup"):
            print("ipvs-director: role takes master or backup", file=sys.stderr)
            return 2
        body = {"state": args.args[0]}
    elif want:
        try:
            body = {"service": args.args[0], "address": args.args[1], "port": int(args.args[2])}
            if want == 4:
                body["weight"] = int(args.args[3])
        except ValueError:
            print("ipvs-director: PORT and N must be integers", file=sys.stderr)
            return 2
    method, target = {"status": ("GET", "/status"), "events": ("GET", "/events"),
                      "reload": ("POST", "/reload")}.get(args.command,
                                                         ("POST", "/" + args.command))

    def line(raw: bytes) -> None:
        sys.stdout.write(raw.decode("utf-8", "replace") + "\n")
        sys.stdout.flush()
    try:
        status, data = request(sock, method, target, body,
                               timeout=None if args.command == "events" else 120.0,
                               stream=line if args.command == "events" else None)
    except KeyboardInterrupt:
        return 0
    except OSError as e:
        print("ipvs-director: %s: %s" % (sock, e.strerror or e), file=sys.stderr)
        return 1
    if data:
        try:
            print(json.dumps(json.loads(data), indent=2))
        except ValueError:
            sys.stdout.write(data.decode("utf-8", "replace"))
    return 0 if 200 <= status < 300 else 1


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of ``ipvs-director`` and ``python -m ipvs.director``."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["convert"]:
        from ipvs.director.convert import main as convert_main
        return convert_main(argv[1:])
    args = _parser().parse_args(argv)
    if args.command:
        return _client(args)
    if not args.config:
        print("ipvs-director: -c FILE is needed (or a command: %s)" % ", ".join(COMMANDS),
              file=sys.stderr)
        return 2
    # no cyclic garbage collection while the file is parsed and the first
    # round built: its passes over millions of young objects were a third
    # of a cold start; _run() turns it back on once the director started
    import gc
    gc.disable()
    try:
        cfg = load(args.config)
    except ConfigError as e:
        print("ipvs-director: %s" % e, file=sys.stderr)
        return 1
    if args.check:
        print("%s: OK (%d services, %d real servers)" % (
            args.config, len(cfg.services), sum(len(s.real_servers) for s in cfg.services)))
        return 0
    import faulthandler
    faulthandler.register(signal.SIGUSR1)  # a traceback of every thread on demand
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING,
                        format="%(asctime)s %(levelname)s %(message)s")
    if cfg.director.netns:
        # the checks (and /metrics) run from the namespace of the table
        from ipvs import netns
        try:
            # kept for the life of the process: its exit would switch back
            global _NETNS
            _NETNS = netns.enter(cfg.director.netns)
            _NETNS.__enter__()
        except OSError as e:
            print("ipvs-director: netns %s: %s" % (cfg.director.netns, e), file=sys.stderr)
            return 1
    return asyncio.run(_run(cfg, args.config, args.log_format))

"""``python -m ipvs.exporter`` (``ipvs-exporter``): the command line."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from typing import Any, Optional, Sequence

from ipvs.exporter.collector import IPVSCollector
from ipvs.exporter.http import DEFAULT_LISTEN, parse_listen, serve

__all__ = ["main"]

log = logging.getLogger("ipvs.exporter")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ipvs-exporter",
        description="Prometheus exporter for Linux IPVS: per-service and per-real-server "
                    "64-bit counters, weights and connection counts on /metrics.")
    p.add_argument("--listen", default=DEFAULT_LISTEN, metavar="ADDR:PORT",
                   help="address to serve /metrics on (default %(default)s; "
                        "[::1]:9587 for IPv6, :9587 for every address)")
    p.add_argument("--netns", action="append", default=[], metavar="NAME",
                   help="network namespace whose IPVS table is read (as `ip netns` names "
                        "it, or a path); repeat for several: every series then has a "
                        "`netns` label (default: the exporter's own namespace)")
    p.add_argument("--destination-labels", choices=("all", "none"), default="all",
                   help="all: per-real-server series too (default); none: only per-service "
                        "series and the totals")
    p.add_argument("--include", action="append", default=[], metavar="SERVICE",
                   help="export only this service (repeatable), e.g. 'TCP 10.0.0.1:80', "
                        "'UDP [2001:db8::1]:53', 'FWM 7', 'FWM 7 IPv6'")
    p.add_argument("--exclude", action="append", default=[], metavar="SERVICE",
                   help="never export this service (repeatable; same strings)")
    p.add_argument("--rates", action="store_true",
                   help="also export the kernel's rate estimates (*_per_second gauges); "
                        "off by default: Prometheus computes rates from the counters")
    p.add_argument("--totals", choices=("proc", "sum"), default="proc",
                   help="whole-table totals from the kernel's /proc/net/ip_vs_stats "
                        "(default; the sum over services where it cannot be read) or always "
                        "the sum over the services")
    p.add_argument("--timeout", type=float, default=5.0, metavar="SECONDS",
                   help="seconds the kernel may take to answer one request (default 5)")
    p.add_argument("--log-level", default="INFO",
                   choices=("DEBUG", "INFO", "WARNING", "ERROR"), help="default INFO")
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of ``ipvs-exporter``: serve until SIGTERM or SIGINT."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=getattr(logging, args.log_level),
                        format="%(asctime)s ipvs-exporter %(levelname)s %(message)s")
    try:
        import prometheus_client  # noqa: F401
    except ImportError:
        print("ipvs-exporter: prometheus_client is missing: pip install 'ipvs[exporter]'",
              file=sys.stderr)
        return 2
    try:
        parse_listen(args.listen)
        collector = IPVSCollector(args.netns or None, rates=args.rates,
                                  destination_labels=args.destination_labels,
                                  include=args.include, exclude=args.exclude,
                                  totals=args.totals, timeout=args.timeout)
    except (ValueError, TypeError) as e:
        print("ipvs-exporter: %s" % e, file=sys.stderr)
        return 2
    try:
        httpd, _t = serve(collector, args.listen)
    except OSError as e:
        print("ipvs-exporter: cannot listen on %s: %s" % (args.listen, e), file=sys.stderr)
        return 1
    host, port = httpd.server_address[:2]
    log.info("serving /metrics on %s:%d (namespaces: %s)",
             "[%s]" % host if ":" in str(host) else host, port,
             ", ".join(n or "own" for n in collector.namespaces))
    done = threading.Event()

    def stop(signum: int, frame: Any) -> None:
        done.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    while not done.wait(3600):
        pass
    httpd.shutdown()
    httpd.server_close()
    collector.close()
    log.info("stopped")
    return 0

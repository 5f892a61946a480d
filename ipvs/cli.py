"""``python -m ipvs`` / ``ipvs``: an ipvsadm 1.31-compatible command line.

Commands, options, defaults, output and error messages follow what Debian's
ipvsadm 1.31 does (observed, see tests/unit/golden/); extras are ``--json``
for the listing commands and ``--netns NAME``.  See docs/cli.md.

This module runs commands; ipvs/_cli_parse.py parses them.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, TextIO, Tuple

import ipvs
import ipvs.errors
from ipvs import (IPVS, BatchError, Daemon, DaemonState, Destination, IPVSError,
                  IPVSUnavailableError, Service)
from ipvs import _format as F
from ipvs._cli_parse import (TRY_HELP, VERSION_LINE, Args, CliError, build_destination,
                             build_service, parse_args)

__all__ = ["main", "CliError", "parse_args", "build_service", "build_destination", "rules"]

Table = List[Tuple[Service, List[Destination]]]

# ------------------------------------------------------ command -> API call
# Each command that changes the table, as the IPVS method it becomes and how
# its arguments are built from the parsed line. Used for single commands and
# for -R's batches alike.

def _service_full(a: Args) -> Tuple[Any, ...]:
    return (build_service(a),)


def _service_key(a: Args) -> Tuple[Any, ...]:
    return (build_service(a, full=False),)


def _server_full(a: Args) -> Tuple[Any, ...]:
    svc = build_service(a, full=False)
    return (svc, build_destination(a, svc))


def _server_key(a: Args) -> Tuple[Any, ...]:
    svc = build_service(a, full=False)
    return (svc, build_destination(a, svc, full=False))


TABLE_CALLS: Dict[str, Tuple[str, Callable[[Args], Tuple[Any, ...]]]] = {
    "add-service": ("add_service", _service_full),
    "edit-service": ("update_service", _service_full),
    "delete-service": ("delete_service", _service_key),
    "add-server": ("add_destination", _server_full),
    "edit-server": ("update_destination", _server_full),
    "delete-server": ("delete_destination", _server_key),
}


ApiCall = Tuple[str, Tuple[Any, ...]]


def _api_call(a: Args) -> Optional[ApiCall]:
    """(IPVS method, arguments) of a table-changing line, else None; a value
    the model refuses is a CliError (status 2), as a bad option is."""
    if a.command not in TABLE_CALLS:
        return None
    method, build = TABLE_CALLS[a.command]
    try:
        return method, build(a)
    except (ValueError, TypeError) as e:
        raise CliError(str(e), 2) from None


def _open(netns: Optional[str]) -> IPVS:
    try:
        return IPVS(netns=netns)
    except IPVSUnavailableError as e:
        why = os.strerror(e.errno) if e.errno else "Protocol not available"
        raise CliError("Can't initialize ipvs: %s\nAre you sure that IP Virtual Server is "
                       "built in the kernel or as module?" % why, 2)
    except IPVSError as e:
        raise CliError(ipvs.errors.ipvsadm_message(e), 255)
    except (OSError, ValueError, TypeError) as e:
        why = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        raise CliError("Can't initialize ipvs: %s" % why, 2)


# ---------------------------------------------------------------- execution

class Runner:
    """Runs parsed commands on one handle, opened on first use."""

    def __init__(self, netns: Optional[str], out: TextIO, err: TextIO) -> None:
        self.netns = netns
        self.out = out
        self.err = err
        self._lb: Optional[IPVS] = None

    @property
    def lb(self) -> IPVS:
        if self._lb is None:
            self._lb = _open(self.netns)
        return self._lb

    def close(self) -> None:
        if self._lb is not None:
            self._lb.close()
            self._lb = None

    def _table(self) -> Table:
        return list(self.lb.table().items())

    def run(self, a: Args) -> int:
        """Execute one parsed command; kernel errors become CliError(255)
        (1 for listings, as ipvsadm)."""
        try:
            return self._run(a)
        except IPVSError as e:
            raise CliError(ipvs.errors.ipvsadm_message(e), 1 if a.command == "list" else 255)
        except (ValueError, TypeError) as e:
            raise CliError(str(e), 2)

    def _run(self, a: Args) -> int:
        cmd = a.command
        lb = self.lb
        call = _api_call(a)
        if call is not None:
            getattr(lb, call[0])(*call[1])
        elif cmd == "flush":
            lb.flush()
        elif cmd == "zero":
            lb.zero(build_service(a, full=False) if "service-address" in a.seen else None)
        elif cmd == "set":
            tcp, fin, udp = a.values["set"]
            lb.set_timeouts(tcp=tcp or None, tcp_fin=fin or None, udp=udp or None)
        elif cmd == "start-daemon":
            iface = a.values.get("mcast-interface")
            if not iface or len(iface) > 15:
                raise CliError("No such device", 255)  # what the kernel's answer makes ipvsadm say
            assert a.command_arg is not None
            lb.start_daemon(Daemon(a.command_arg, iface, a.values.get("syncid", 0),
                                   a.values.get("sync-maxlen", 0), a.values.get("mcast-group"),
                                   a.values.get("mcast-port", 0), a.values.get("mcast-ttl", 0)))
        elif cmd == "stop-daemon":
            lb.stop_daemon(DaemonState.MASTER if a.command_arg == "master" else DaemonState.BACKUP)
        elif cmd == "list":
            self._list(a)
        elif cmd == "save":
            if not self._json(a, None):
                self.out.write(F.save_table(self._table(), numeric="numeric" in a.seen))
        return 0

    def _json(self, a: Args, doc_fn: Optional[Callable[[], Any]]) -> bool:
        """With --json: write doc_fn()'s document (the whole table when None)
        and return True; else False."""
        if "json" not in a.values:
            return False
        doc = doc_fn() if doc_fn else F.table_to_json(self.lb.info(), self._table())
        self.out.write(json.dumps(doc, indent=2) + "\n")
        return True

    def _list(self, a: Args) -> None:
        s = a.seen
        lb = self.lb
        if "connection" in s:
            conns = lb.connections()
            if not self._json(a, lambda: F.connections_to_json(conns)):
                self.out.write(F.list_connections(conns, "numeric" in s, "persistent-conn" in s))
            return
        if "timeout" in s:
            t = lb.timeouts()
            if not self._json(a, lambda: F.timeouts_to_json(t)):
                self.out.write(F.format_timeouts(t))
            return
        if "daemon" in s:
            ds = lb.daemons()
            if not self._json(a, lambda: F.daemons_to_json(ds)):
                self.out.write(F.format_daemons(ds))
            return
        opts = F.ListOptions(numeric="numeric" in s, stats="stats" in s, rate="rate" in s,
                             exact="exact" in s, thresholds="thresholds" in s,
                             persistent_conn="persistent-conn" in s, tun_info="tun-info" in s,
                             sort="nosort" not in s)
        if "service-address" in s:
            svc = lb.get_service(build_service(a, full=False))
            table: Table = [(svc, lb.destinations(svc))]
            if not self._json(a, lambda: F.table_to_json(None, table, opts.sort)):
                self.out.write(F.list_table(None, table, opts))
            return
        info = lb.info()
        table = self._table()
        if not self._json(a, lambda: F.table_to_json(info, table, opts.sort)):
            self.out.write(F.list_table(info, table, opts))

    # ------------------------------------------------------------ restore
    def restore(self, text: str, line_numbers: bool = False) -> int:
        """-R, as ipvsadm does it: the lines run in order; on a line that
        does not parse, the lines before it are applied, its message is
        printed and -R exits with its status. Kernel errors print ipvsadm's
        message (nothing else) and do not stop; the exit status is the last
        line's (255 if it failed, else 0). Runs of service/server lines go to
        the kernel as one batch each. ``line_numbers`` (our --line-numbers)
        prefixes each message with "line N: "."""
        parsed: List[Tuple[int, Args, Optional[ApiCall]]] = []
        stop: Optional[Tuple[int, CliError]] = None
        for no, line in enumerate(text.splitlines(), 1):
            words = line.split()
            if words[:1] == ["ipvsadm"]:
                words = words[1:]
            if not words:
                continue
            try:
                a = parse_args(words, in_restore=True)
                parsed.append((no, a, _api_call(a)))
            except CliError as e:
                stop = (no, e)
                break

        def report(no: int, message: str) -> None:
            self.err.write(("line %d: %s\n" % (no, message)) if line_numbers
                           else message + "\n")

        status = 0
        i = 0
        while i < len(parsed):
            no, a, call = parsed[i]
            if call is None:
                try:
                    status = self.run(a)
                except CliError as e:
                    report(no, e.message)
                    status = e.status
                i += 1
                continue
            group: List[Tuple[int, ApiCall]] = []
            while i < len(parsed):
                no, a, call = parsed[i]
                if call is None:
                    break
                group.append((no, call))
                i += 1
            status = self._restore_batch(group, report)
        if stop is not None:
            self.out.flush()
            report(stop[0], stop[1].message)
            return stop[1].status
        return status

    def _restore_batch(self, group: List[Tuple[int, ApiCall]],
                       report: Callable[[int, str], None]) -> int:
        """Send one run of table-changing lines as one batch; returns the
        status of its last line."""
        failed: Dict[int, str] = {}   # position in the batch -> message
        try:
            with self.lb.batch() as b:
                for _, (method, args) in group:
                    getattr(b, method)(*args)
        except BatchError as e:
            failed = {call.index: ipvs.errors.ipvsadm_message(exc) for call, exc in e.failures}
        except IPVSError as e:        # the batch as a whole failed (e.g. no socket)
            failed = {len(group) - 1: ipvs.errors.ipvsadm_message(e)}
        for index in sorted(failed):
            report(group[index][0], failed[index])
        return 255 if (len(group) - 1) in failed else 0


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
  --line-numbers                      with -R: prefix each message with its line number
Daemon Options:
  --syncid sid                        syncid for connection sync (default=255)
  --sync-maxlen length                Max sync message length (default=1472)
  --mcast-interface interface         multicast interface for connection sync
  --mcast-group address               IPv4/IPv6 group (default=224.0.0.81)
  --mcast-port port                   UDP port (default=8848)
  --mcast-ttl ttl                     Multicast TTL (default=1)
"""


def _version_line() -> str:
    return "%s (python ipvs %s)" % (VERSION_LINE, ipvs.__version__)


def _only_extras(args: Sequence[str]) -> bool:
    """Nothing but our own --json / --netns NAME (or nothing at all): ipvsadm
    with no command lists the table, and so do we."""
    i = 0
    while i < len(args):
        if args[i] == "--json" or args[i].startswith("--netns="):
            i += 1
        elif args[i] == "--netns" and i + 1 < len(args):
            i += 2
        else:
            return False
    return True


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
            line_numbers = "--line-numbers" in args    # ours, for -R
            args = [w for w in args if w != "--line-numbers"]
            if _only_extras(args):
                args = ["-L"] + args
            a = parse_args(args)
            if a.command == "help":
                out.write(VERSION_LINE + "\n" + HELP)
                return 0
            if a.command == "version":
                out.write(_version_line() + "\n")
                return 0
            netns = a.values.get("netns")
            runner = Runner(netns if isinstance(netns, str) else None, out, err)
            if a.command == "restore":
                return runner.restore(inp.read(), line_numbers)
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


# ---------------------------------------------------------- calls as -R lines

_RULE_WORDS = {"add_service": "-A", "update_service": "-E", "delete_service": "-D",
               "add_destination": "-a", "update_destination": "-e",
               "delete_destination": "-d"}


def rules(calls: Iterable[Tuple[str, Service, Optional[Destination]]]) -> List[str]:
    """``ipvsadm -R`` lines (numeric) of table calls, in their order.

    ``calls`` are ``(method, Service, Destination or None)`` with the
    methods of :class:`ipvs.IPVS` that change the table: ``add_service``
    (``-A``), ``update_service`` (``-E``), ``delete_service`` (``-D``),
    ``add_destination`` (``-a``), ``update_destination`` (``-e``),
    ``delete_destination`` (``-d``).  Added and edited entries carry every
    option ``ipvsadm -S`` writes, plus ``-x``/``-y`` when a threshold is set;
    deletions name only the entry.  ``ipvs -R`` (and ``ipvsadm -R``) applies
    the lines.  ValueError for another method or a destination missing.
    """
    out: List[str] = []
    for method, svc, dest in calls:
        word = _RULE_WORDS.get(method)
        if word is None:
            raise ValueError("not a table call: %r" % (method,))
        if method.endswith("_service"):
            line = F.save_service(svc)             # -A <service> -s ... [options]
            if method == "delete_service":
                line = line.split(" -s ", 1)[0]    # the service alone
            out.append(word + line[2:])
            continue
        if dest is None:
            raise ValueError("%s needs a destination" % method)
        line = F.save_destination(svc, dest)       # -a <service> -r ADDR -m -w N ...
        if method == "delete_destination":
            words = line.split(" ")
            line = " ".join(words[:words.index("-r") + 2])
        else:
            if dest.upper_threshold:
                line += " -x %d" % dest.upper_threshold
            if dest.lower_threshold:
                line += " -y %d" % dest.lower_threshold
        out.append(word + line[2:])
    return out


if __name__ == "__main__":
    sys.exit(main())

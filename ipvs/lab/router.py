"""The router topology of ``ipvs.lab.Lab(router=True)`` and its BGP speakers.

A ``router`` namespace stands between the client and the directors'
segment. It runs Debian's BIRD 2 (the lab starts it with its own config file
and control socket in a temporary folder, and stops it at ``close()``) with
one BGP session per director, and installs what it learns as ECMP routes
(BIRD's kernel protocol with ``merge paths on``; the kernel hashes flows on
their ports, ``fib_multipath_hash_policy = 1``). Nothing else routes the VIP:
the client's default route goes to the router, which has no route to the VIP
but the ones BGP gives it. Direct routing only::

    client      eth0 10.201.0.2/24, fd00:201::2/64 (+ 10.201.0.3 .. .9);
       |             default via the router
    router      c0 10.201.0.1/24, fd00:201::1/64
       |        eth0 10.202.0.1/24, fd00:202::1/64   (lab.router_address);
       |             BIRD 2, AS 65000; forwarding, fib_multipath_hash_policy=1
    directorK   eth0 10.202.0.(10+K)/24, fd00:202::(10+K)/64 (hex), K = 1..8,
       |             default via the router; AS 65001; arp_ignore=1,
       |             arp_announce=2 (the VIPs go on lo: the director's job)
    server K    eth0 10.202.0.(20+K)/24, fd00:202::(20+K)/64 (hex); the VIPs
                     on lo, arp_ignore=1, arp_announce=2; default via the
                     router (their replies go to the client through it)
       router, directors and servers all on br0 in the ``switch`` namespace

The directors' BGP speakers are not the lab's: a director tells ExaBGP or
BIRD what to announce. For tests, ``start_director_bird`` and
``start_exabgp`` run one in a director's namespace (also stopped at
``close()``). The configurations below are written from BIRD 2's and
ExaBGP's documentation.
"""

from __future__ import annotations

import ipaddress
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from typing import TYPE_CHECKING, Dict, List, Optional, Sequence

from ipvs.lab.topology import (ARP_SYSCTLS, LabError, MissingTool, _ip_batch, _sysctl, client,
                               real_server)

if TYPE_CHECKING:
    from ipvs.lab import Lab

CLIENT_NET = "10.201.0"
CLIENT_NET6 = "fd00:201:"
SEGMENT_NET = "10.202.0"
SEGMENT_NET6 = "fd00:202:"
ROUTER_AS = 65000
DIRECTOR_AS = 65001
MAX_DIRECTORS = 8
#: the dummy interface a director's VIPs are announced from (``via = "interface"``)
VIP_INTERFACE = "ipvs-vips"

BIRD_INSTALL = "apt-get install bird2"
EXABGP_INSTALL = "pip install 'ipvs[bgp]'"

_SBIN = ("/usr/sbin", "/usr/local/sbin", "/sbin")


def _program(name: str) -> Optional[str]:
    found = shutil.which(name)
    if found:
        return found
    for folder in _SBIN:
        path = os.path.join(folder, name)
        if os.access(path, os.X_OK):
            return path
    return None


def bird_programs() -> "tuple[str, str]":
    """(bird, birdc) of BIRD 2; MissingTool naming the install command when
    either is missing or the BIRD found is not version 2."""
    bird, birdc = _program("bird"), _program("birdc")
    if not bird or not birdc:
        raise MissingTool("BIRD 2 (`bird`, `birdc`) is not installed", BIRD_INSTALL)
    try:
        proc = subprocess.run([bird, "--version"], capture_output=True, text=True,
                              timeout=10, check=False)
    except (OSError, subprocess.SubprocessError) as e:
        raise MissingTool("`%s --version` failed: %s" % (bird, e), BIRD_INSTALL) from e
    text = (proc.stdout + proc.stderr).strip()
    if "version 2." not in text:
        raise MissingTool("%s is not BIRD 2 (%r)" % (bird, text[:80]), BIRD_INSTALL)
    return bird, birdc


def exabgp_program() -> str:
    """ExaBGP's ``exabgp``: beside ``sys.executable`` (the running
    virtualenv's), else on PATH; MissingTool naming the install command."""
    beside = os.path.join(os.path.dirname(sys.executable), "exabgp")
    if os.access(beside, os.X_OK):
        return beside
    found = shutil.which("exabgp")
    if found:
        return found
    raise MissingTool("ExaBGP (`exabgp`) is not installed beside %s nor on PATH"
                      % sys.executable, EXABGP_INSTALL)


class _Daemon:
    """A program running in a namespace (``ip netns exec``), in a process
    group of its own, its output in ``log``."""

    def __init__(self, name: str, ns: str, argv: Sequence[str], folder: str,
                 env: Optional[Dict[str, str]] = None) -> None:
        self.name = name
        self.log = os.path.join(folder, name + ".log")
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(["ip", "netns", "exec", ns] + list(argv),
                                         stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT, cwd=folder, env=env,
                                         start_new_session=True)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def tail(self, size: int = 1500) -> str:
        try:
            with open(self.log, "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - size))
                return f.read().decode("utf-8", "replace").strip()
        except OSError:
            return ""

    def _descendants(self) -> List[int]:
        """The pids of its children, grandchildren... now (from /proc)."""
        parent: Dict[int, int] = {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open("/proc/%s/stat" % entry) as f:
                    stat = f.read()
            except OSError:
                continue
            # "pid (comm) state ppid ...": comm may hold spaces and parentheses
            fields = stat.rsplit(")", 1)[-1].split()
            if len(fields) > 1:
                parent[int(entry)] = int(fields[1])
        found: List[int] = []
        wanted = {self.proc.pid}
        while True:
            more = [p for p, pp in parent.items() if pp in wanted and p not in found]
            if not more:
                return found
            found += more
            wanted = set(more)

    def stop(self, grace: float = 5.0) -> None:
        """SIGTERM to its process group, SIGKILL after ``grace`` seconds; its
        descendants that left the group (ExaBGP's API process) are killed
        too."""
        children = self._descendants() if self.proc.poll() is None else []
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
            if self.proc.poll() is not None:
                break
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.proc.wait(wait)
                break
            except subprocess.TimeoutExpired:
                continue
        # what is left of its group, and of its children elsewhere
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        for pid in children:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        if self.proc.poll() is None:
            self.proc.wait(5)


class _Bird:
    """One BIRD 2 process: its config, control socket and log in ``folder``."""

    def __init__(self, name: str, ns: str, config: str, folder: str) -> None:
        bird, self.birdc_path = bird_programs()
        self.name = name
        self.conf = os.path.join(folder, name + ".conf")
        self.socket = os.path.join(folder, name + ".ctl")
        with open(self.conf, "w") as f:
            f.write(config)
        check = subprocess.run([bird, "-p", "-c", self.conf], capture_output=True, text=True,
                               timeout=30, check=False)
        if check.returncode != 0:
            raise LabError("BIRD refused the config %s: %s"
                           % (self.conf, (check.stdout + check.stderr).strip()))
        self.daemon = _Daemon(name, ns, [bird, "-f", "-c", self.conf, "-s", self.socket],
                              folder)
        deadline = time.monotonic() + 20
        while True:
            if not self.daemon.alive():
                raise LabError("BIRD (%s) exited at start: %s" % (name, self.daemon.tail()))
            if os.path.exists(self.socket):
                try:
                    if "up" in self.birdc("show status"):
                        return
                except LabError:
                    pass
            if time.monotonic() > deadline:
                self.daemon.stop()
                raise LabError("BIRD (%s) did not answer on %s within 20 s: %s"
                               % (name, self.socket, self.daemon.tail()))
            time.sleep(0.1)

    def birdc(self, command: str) -> str:
        try:
            proc = subprocess.run([self.birdc_path, "-s", self.socket] + shlex.split(command),
                                  capture_output=True, text=True, timeout=15, check=False)
        except subprocess.TimeoutExpired as e:
            raise LabError("birdc %s: no answer in 15 s" % command) from e
        if proc.returncode != 0:
            raise LabError("birdc -s %s %s (exit %d): %s"
                           % (self.socket, command, proc.returncode,
                              (proc.stdout + proc.stderr).strip()))
        return proc.stdout

    def stop(self) -> None:
        self.daemon.stop()


def _bgp_timers(hold: int) -> str:
    keepalive = max(1, hold // 3)
    # short connect and error waits: a session comes back within seconds
    # after a cut link is restored or a speaker restarts
    return ("hold time %d; keepalive time %d; connect delay time 1; "
            "connect retry time 1; error wait time 1, 2;" % (hold, keepalive))


def router_bird_config(router_address: str, directors: Sequence[str], hold: int) -> str:
    """The router's BIRD 2 config: one eBGP session per director (AS 65000 to
    65001), every route learnt put in the kernel's main table, equal ones
    merged into one ECMP route."""
    lines = [
        "# ipvs.lab: the router (AS %d), one BGP session per director" % ROUTER_AS,
        "log stderr all;",
        "router id %s;" % router_address,
        "",
        "protocol device { scan time 2; }",
        "",
        "# what BGP learns goes to the kernel; equal routes from several",
        "# directors become one route with a next hop per director (ECMP)",
        "protocol kernel lab_kernel {",
        "    ipv4 { import none; export all; };",
        "    merge paths on;",
        "}",
        "",
        "template bgp lab_director {",
        "    local %s as %d;" % (router_address, ROUTER_AS),
        "    %s" % _bgp_timers(hold),
        "    ipv4 { import all; export none; };",
        "}",
    ]
    for i, address in enumerate(directors, 1):
        lines += ["", "protocol bgp director%d from lab_director {" % i,
                  "    neighbor %s as %d;" % (address, DIRECTOR_AS), "}"]
    return "\n".join(lines) + "\n"


def director_bird_config(address: str, router_address: str, hold: int,
                         interface: Optional[str], extra: str = "") -> str:
    """A director's BIRD 2 config: a BGP session to the router (AS 65001 to
    65000) announcing the /32 addresses on ``interface`` (``protocol
    direct``) and the routes of any static protocol that ``extra`` adds."""
    lines = [
        "# ipvs.lab: a director's speaker (AS %d) towards the router" % DIRECTOR_AS,
        "log stderr all;",
        "router id %s;" % address,
        "",
        "protocol device { scan time 2; }",
    ]
    if interface:
        lines += ["",
                  "# every address on %s is a VIP to announce" % interface,
                  "protocol direct lab_vips {",
                  "    ipv4;",
                  '    interface "%s";' % interface,
                  "}"]
    lines += [
        "",
        "protocol bgp lab_router {",
        "    local %s as %d;" % (address, DIRECTOR_AS),
        "    neighbor %s as %d;" % (router_address, ROUTER_AS),
        "    %s" % _bgp_timers(hold),
        "    ipv4 { import none; export where source ~ [ RTS_DEVICE, RTS_STATIC ]; };",
        "}",
    ]
    if extra:
        lines += ["", extra.strip()]
    return "\n".join(lines) + "\n"


def exabgp_config(address: str, router_address: str, hold: int, run: str) -> str:
    """ExaBGP's config: one neighbor (the router, AS 65001 to 65000) and an
    API process (text encoder) that says what to announce."""
    return "\n".join([
        "# ipvs.lab: a director's ExaBGP (AS %d) towards the router" % DIRECTOR_AS,
        "process lab_announce {",
        "    run %s;" % run,
        "    encoder text;",
        "}",
        "",
        "neighbor %s {" % router_address,
        "    router-id %s;" % address,
        "    local-address %s;" % address,
        "    local-as %d;" % DIRECTOR_AS,
        "    peer-as %d;" % ROUTER_AS,
        "    hold-time %d;" % hold,
        "    family { ipv4 unicast; }",
        "    api { processes [ lab_announce ]; }",
        "}",
    ]) + "\n"


class RouterLab:
    """The router part of a ``Lab(router=True)``: addresses (set on the lab
    at construction), the build, BIRD on the router, the speakers started in
    directors, and their stop at ``close()``."""

    def __init__(self, lab: "Lab", directors: int, bgp_hold: int) -> None:
        if isinstance(bgp_hold, bool) or not isinstance(bgp_hold, int) or \
                not 3 <= bgp_hold <= 65535:
            raise ValueError("bgp_hold must be an int 3..65535 (seconds), got %r" % (bgp_hold,))
        self.lab = lab
        self.hold = bgp_hold
        tag = lab.client[:-len("-client")]
        lab.router = tag + "-router"
        lab.switch = tag + "-switch"
        lab.directors = [tag + "-director%d" % (i + 1) for i in range(directors)]
        lab.director = lab.directors[0]
        lab.client_address = CLIENT_NET + ".2"
        lab.client_address6 = CLIENT_NET6 + ":2"
        lab.client_extra = ["%s.%d" % (CLIENT_NET, i) for i in range(3, 10)]
        self.router_address = SEGMENT_NET + ".1"
        self.router_address6 = SEGMENT_NET6 + ":1"
        lab.director_addresses = ["%s.%d" % (SEGMENT_NET, 11 + i) for i in range(directors)]
        self.director_addresses6 = ["%s:%x" % (SEGMENT_NET6, 0x11 + i)
                                    for i in range(directors)]
        n = len(lab.servers)
        lab.server_addresses = ["%s.%d" % (SEGMENT_NET, 21 + i) for i in range(n)]
        lab.server_addresses6 = ["%s:%x" % (SEGMENT_NET6, 0x21 + i) for i in range(n)]
        lab.by_address = dict(zip(lab.server_addresses, lab.names))
        lab.by_address.update(zip(lab.server_addresses6, lab.names))
        self.folder: Optional[str] = None
        self.bird: Optional[_Bird] = None
        self.speakers: Dict[int, List[object]] = {}

    # ------------------------------------------------------------ build
    def build(self) -> None:
        """Links, addresses, sysctls, then BIRD on the router (the
        namespaces exist already)."""
        lab = self.lab
        sw, router = lab.switch, lab.router
        assert sw is not None and router is not None
        bird_programs()  # a missing BIRD fails before anything is built
        _ip_batch(["link add br0 type bridge", "link set br0 up", "link set lo up"], sw)
        links = ["link add eth0 netns %s type veth peer name c0 netns %s" % (lab.client, router),
                 "link add eth0 netns %s type veth peer name r0 netns %s" % (router, sw)]
        links += ["link add eth0 netns %s type veth peer name d%d netns %s" % (ns, i, sw)
                  for i, ns in enumerate(lab.directors, 1)]
        links += ["link add eth0 netns %s type veth peer name s%d netns %s" % (ns, i, sw)
                  for i, ns in enumerate(lab.servers, 1)]
        _ip_batch(links)
        ports = ["r0"] + ["d%d" % i for i in range(1, len(lab.directors) + 1)] + \
            ["s%d" % i for i in range(1, len(lab.servers) + 1)]
        _ip_batch(["link set %s master br0 up" % p for p in ports], sw)

        client(lab, ("%s.1" % CLIENT_NET, "%s:1" % CLIENT_NET6))

        v6 = "nodad"  # addresses usable at once
        _ip_batch(["link set lo up", "link set c0 up", "link set eth0 up",
                   "addr add %s.1/24 dev c0" % CLIENT_NET,
                   "addr add %s:1/64 dev c0 %s" % (CLIENT_NET6, v6),
                   "addr add %s/24 dev eth0" % self.router_address,
                   "addr add %s/64 dev eth0 %s" % (self.router_address6, v6)], router)
        _sysctl(router, {
            "net.ipv4.ip_forward": "1",
            "net.ipv6.conf.all.forwarding": "1",
            # ECMP on the 5-tuple: one client's flows spread over the directors
            "net.ipv4.fib_multipath_hash_policy": "1",
            # the servers answer from the VIP, which is routed back to the
            # segment only while BGP announces it
            "net.ipv4.conf.all.rp_filter": "0",
            "net.ipv4.conf.c0.rp_filter": "0",
            "net.ipv4.conf.eth0.rp_filter": "0",
        })
        for i, ns in enumerate(lab.directors):
            _ip_batch(["link set lo up", "link set eth0 up",
                       "addr add %s/24 dev eth0" % lab.director_addresses[i],
                       "addr add %s/64 dev eth0 %s" % (self.director_addresses6[i], v6),
                       "route add default via %s" % self.router_address,
                       "route add default via %s" % self.router_address6], ns)
            _sysctl(ns, ARP_SYSCTLS)
        for i, ns in enumerate(lab.servers):
            real_server(ns, lab.server_addresses[i], lab.server_addresses6[i],
                        (self.router_address, self.router_address6))

        self.folder = tempfile.mkdtemp(prefix="ipvslab-bgp-")
        self.bird = _Bird("router", router,
                          router_bird_config(self.router_address, lab.director_addresses,
                                             self.hold), self.folder)

    def close(self) -> None:
        """Stop every speaker and the router's BIRD; remove the folder."""
        for index in list(self.speakers):
            self.stop_speakers(index)
        if self.bird is not None:
            self.bird.stop()
            self.bird = None
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None

    # ------------------------------------------------------------- use
    def _index(self, index: int) -> int:
        n = len(self.lab.directors)
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < n:
            raise ValueError("director index must be 0..%d" % (n - 1))
        if not self.lab.started or self.folder is None:
            raise LabError("the lab is not started")
        return index

    def router_paths(self, vip: str) -> List[str]:
        """The router's next hops for ``vip`` now (its /32 or /128 route in
        the main table), sorted; [] when it has none."""
        v6 = ":" in vip
        prefix = "%s/%d" % (ipaddress.ip_address(vip), 128 if v6 else 32)
        argv = ["ip", "-n", self.lab.router or "", "-j"] + (["-6"] if v6 else []) + \
            ["route", "show", prefix]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=15, check=False)
        if proc.returncode != 0:
            raise LabError("`%s` failed: %s" % (" ".join(argv), proc.stderr.strip()))
        hops = set()
        for route in json.loads(proc.stdout or "[]"):
            for hop in route.get("nexthops") or [route]:
                if hop.get("gateway"):
                    hops.add(hop["gateway"])
        return sorted(hops, key=ipaddress.ip_address)

    def set_link(self, index: int, up: bool) -> None:
        """Director ``index``'s port on the segment's bridge down (as if its
        cable were cut: neither side is told) or up again."""
        self._index(index)
        _ip_batch(["link set d%d %s" % (index + 1, "up" if up else "down")], self.lab.switch)

    def birdc(self, command: str, director: Optional[int] = None) -> str:
        if director is None:
            if self.bird is None:
                raise LabError("the lab is not started")
            return self.bird.birdc(command)
        self._index(director)
        for speaker in self.speakers.get(director, []):
            if isinstance(speaker, _Bird):
                return speaker.birdc(command)
        raise LabError("no BIRD runs in director %d (start_director_bird)" % director)

    def _check_free(self, index: int) -> None:
        if any(self._alive(s) for s in self.speakers.get(index, [])):
            raise LabError("a speaker already runs in director %d (stop_speakers first)" % index)

    @staticmethod
    def _alive(speaker: object) -> bool:
        if isinstance(speaker, _Bird):
            return speaker.daemon.alive()
        return isinstance(speaker, _Daemon) and speaker.alive()

    def start_director_bird(self, index: int, interface: Optional[str] = VIP_INTERFACE,
                            config_extra: str = "") -> None:
        self._index(index)
        self._check_free(index)
        assert self.folder is not None
        config = director_bird_config(self.lab.director_addresses[index], self.router_address,
                                      self.hold, interface, config_extra)
        bird = _Bird("director%d" % (index + 1), self.lab.directors[index], config, self.folder)
        self.speakers[index] = [bird]

    def start_exabgp(self, index: int, process_argv: Sequence[str]) -> None:
        self._index(index)
        argv = list(process_argv)
        if not argv or not all(isinstance(a, str) for a in argv):
            raise ValueError("process_argv must be a non-empty list of strings")
        program = exabgp_program()
        self._check_free(index)
        assert self.folder is not None
        name = "exabgp%d" % (index + 1)
        # ExaBGP runs a program path with arguments split on blanks: a
        # wrapper script keeps any argv intact
        run = os.path.join(self.folder, name + "-process.sh")
        with open(run, "w") as f:
            f.write("#!/bin/sh\nexec %s\n" % " ".join(shlex.quote(a) for a in argv))
        os.chmod(run, 0o755)
        conf = os.path.join(self.folder, name + ".conf")
        with open(conf, "w") as f:
            f.write(exabgp_config(self.lab.director_addresses[index], self.router_address,
                                  self.hold, run))
        env = dict(os.environ)
        env.update({
            "EXABGP_ENVFILE": os.path.join(self.folder, "no-exabgp.env"),  # not /etc's
            "exabgp_daemon_daemonize": "false",
            "exabgp_daemon_drop": "false",     # root stays root: the folder is 0700
            "exabgp_daemon_pid": "",
            "exabgp_api_cli": "false",         # no named pipes for exabgp-cli
            "exabgp_log_destination": "stdout",
            "exabgp_tcp_bind": "",             # it connects; it does not listen
        })
        daemon = _Daemon(name, self.lab.directors[index], [program, "server", conf],
                         self.folder, env)
        self.speakers[index] = [daemon]

    def stop_speakers(self, index: int) -> None:
        for speaker in self.speakers.pop(index, []):
            if isinstance(speaker, (_Bird, _Daemon)):
                speaker.stop()

    def speaker_log(self, index: int) -> str:
        """The end of the output of director ``index``'s speaker ('' if none)."""
        for speaker in self.speakers.get(index, []):
            daemon = speaker.daemon if isinstance(speaker, _Bird) else speaker
            if isinstance(daemon, _Daemon):
                return daemon.tail(4000)
        return ""

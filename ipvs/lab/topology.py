"""The lab's topology: its addresses, the namespaces' links, addresses,
routes and sysctls (``ip -batch`` in each namespace), for the one-director
lab (a veth pair from the director to the client and to each real server)
and the two-director lab (everyone on one bridged segment); the router lab's
is in router.py.  See the package's docstring for the pictures."""

from __future__ import annotations

import subprocess
from typing import TYPE_CHECKING, Dict, List, Optional, Sequence

from ipvs import netns

if TYPE_CHECKING:
    from ipvs.lab import Lab

__all__ = ["LabError", "MissingTool", "VIP", "VIP6", "CLIENT_NET", "CLIENT_NET6",
           "CLIENT_ADDRESS", "CLIENT_ADDRESS6", "CLIENT_EXTRA"]

CLIENT_NET = "10.200.0"
CLIENT_NET6 = "fd00:200:"
VIP = "10.200.0.100"
VIP6 = "fd00:200::100"
CLIENT_ADDRESS = "10.200.0.2"
CLIENT_ADDRESS6 = "fd00:200::2"
# extra client addresses (10.200.0.3 .. 10.200.0.9), for source-hashing tests
CLIENT_EXTRA = [f"{CLIENT_NET}.{i}" for i in range(3, 10)]


class LabError(RuntimeError):
    """Setting up the lab failed (an ``ip`` command, a sysctl...)."""


class MissingTool(LabError):
    """A program the lab needs is not installed: the message ends with the
    command that installs it (also in ``install``)."""

    def __init__(self, what: str, install: str) -> None:
        super().__init__("%s: %s" % (what, install))
        self.install = install


def _ip_batch(commands: List[str], ns: Optional[str] = None, timeout: float = 60) -> None:
    argv = ["ip"] + (["-n", ns] if ns else []) + ["-batch", "-"]
    try:
        proc = subprocess.run(argv, input="\n".join(commands) + "\n", text=True,
                              capture_output=True, timeout=timeout, check=False)
    except FileNotFoundError:
        raise LabError("the `ip` command (iproute2) is not installed") from None
    if proc.returncode != 0:
        raise LabError("`%s` failed (exit %d): %s" % (" ".join(argv), proc.returncode,
                                                     proc.stderr.strip()))


def _sysctl(ns: str, values: Dict[str, str]) -> None:
    """Write /proc/sys/net/... values inside namespace ``ns``.

    /proc/sys/net shows the namespace of the thread that opens the file, so
    this runs in a helper thread that enters ``ns`` (the caller never moves).
    """
    def work() -> None:
        with netns.enter(ns):
            for key, value in values.items():
                with open("/proc/sys/" + key.replace(".", "/"), "w") as f:
                    f.write(value)

    try:
        netns._in_thread(work)
    except Exception as e:
        raise LabError("sysctl in %s: %s" % (ns, e)) from e


#: answer ARP only for addresses of the interface asked, never for the VIPs
#: on lo (real servers under direct routing; the router lab's directors)
ARP_SYSCTLS = {"net.ipv4.conf.all.arp_ignore": "1", "net.ipv4.conf.all.arp_announce": "2",
               "net.ipv4.conf.eth0.arp_ignore": "1", "net.ipv4.conf.eth0.arp_announce": "2"}


def client(lab: "Lab", gateways: Sequence[str] = ()) -> None:
    """The client's namespace: its addresses on eth0 (``client_address``,
    ``client_address6``, ``client_extra``), default routes via ``gateways``."""
    v6 = "nodad"  # no duplicate address detection: addresses usable at once
    _ip_batch(["link set lo up", "link set eth0 up",
               "addr add %s/24 dev eth0" % lab.client_address,
               "addr add %s/64 dev eth0 %s" % (lab.client_address6, v6)]
              + ["addr add %s/24 dev eth0" % a for a in lab.client_extra]
              + ["route add default via %s" % gw for gw in gateways], lab.client)


def real_server(ns: str, address: str, address6: str, gateways: Sequence[str] = ()) -> None:
    """A real server's namespace: its addresses on eth0, the VIPs on lo (for
    direct routing, ROUTE), default routes via ``gateways``, ARP_SYSCTLS."""
    v6 = "nodad"  # no duplicate address detection: addresses usable at once
    _ip_batch(["link set lo up", "link set eth0 up",
               "addr add %s/24 dev eth0" % address,
               "addr add %s/64 dev eth0 %s" % (address6, v6),
               "addr add %s/32 dev lo" % VIP,
               "addr add %s/128 dev lo %s" % (VIP6, v6)]
              + ["route add default via %s" % gw for gw in gateways], ns)
    _sysctl(ns, ARP_SYSCTLS)


def build_star(lab: "Lab") -> None:
    """One director: a veth pair from it to the client and to each real
    server (their gateway); the VIPs on the director and on the servers' lo."""
    links = ["link add c0 netns %s type veth peer name eth0 netns %s"
             % (lab.director, lab.client)]
    for i, ns in enumerate(lab.servers, 1):
        links.append("link add s%d netns %s type veth peer name eth0 netns %s"
                     % (i, lab.director, ns))
    _ip_batch(links)

    client(lab, ("%s.1" % CLIENT_NET, "fd00:200::1"))

    v6 = "nodad"  # no duplicate address detection: addresses usable at once
    cmds = ["link set lo up", "link set c0 up",
            "addr add %s.1/24 dev c0" % CLIENT_NET,
            "addr add fd00:200::1/64 dev c0 %s" % v6,
            "addr add %s/32 dev c0" % VIP,
            "addr add %s/128 dev c0 %s" % (VIP6, v6)]
    for i in range(1, len(lab.servers) + 1):
        cmds += ["link set s%d up" % i,
                 "addr add 10.200.%d.1/24 dev s%d" % (i, i),
                 "addr add fd00:200:%d::1/64 dev s%d %s" % (i, i, v6)]
    _ip_batch(cmds, lab.director)
    director_sysctls = {
        "net.ipv4.ip_forward": "1",
        "net.ipv6.conf.all.forwarding": "1",
    }
    # Direct routing here: the servers' replies (source = VIP) come back
    # through the director, their gateway; the VIP is local on the
    # director, so without accept_local it drops them as martians.
    for i in range(1, len(lab.servers) + 1):
        director_sysctls["net.ipv4.conf.s%d.accept_local" % i] = "1"
    _sysctl(lab.director, director_sysctls)

    for i, ns in enumerate(lab.servers, 1):
        real_server(ns, lab.server_addresses[i - 1], lab.server_addresses6[i - 1],
                     ("10.200.%d.1" % i, "fd00:200:%d::1" % i))


def build_segment(lab: "Lab") -> None:
    """Two directors: everything on one bridged segment (``lab.switch``),
    direct routing (the real servers answer the client themselves)."""
    sw = lab.switch
    assert sw is not None
    _ip_batch(["link add br0 type bridge", "link set br0 up", "link set lo up"], sw)
    members = [lab.client] + lab.directors + lab.servers
    _ip_batch(["link add eth0 netns %s type veth peer name p%d netns %s" % (ns, i, sw)
               for i, ns in enumerate(members)])
    _ip_batch(["link set p%d master br0 up" % i for i in range(len(members))], sw)
    client(lab)
    v6 = "nodad"
    for i, ns in enumerate(lab.directors):
        cmds = ["link set lo up", "link set eth0 up",
                "addr add %s/24 dev eth0" % lab.director_addresses[i],
                "addr add fd00:200::%x/64 dev eth0 %s" % (0x11 + i, v6)]
        if i == lab.active_director:
            cmds += vip_commands("add")
        _ip_batch(cmds, ns)
    for i, ns in enumerate(lab.servers):
        real_server(ns, lab.server_addresses[i], lab.server_addresses6[i])


def vip_commands(verb: str) -> List[str]:
    """The ``ip`` commands that put the VIPs on (``add``) or take them off
    (``del``) a director's eth0."""
    return ["addr %s %s/32 dev eth0" % (verb, VIP),
            "addr %s %s/128 dev eth0%s" % (verb, VIP6, " nodad" if verb == "add" else "")]

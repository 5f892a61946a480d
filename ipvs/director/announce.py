"""Telling a BGP speaker which VIPs to announce (``[director.announce]``):
active-active directors behind a router's ECMP, the way Maglev, Katran and
kube-router's IPVS mode scale out.

* While it runs the director keeps every VIP of its services on ``lo``
  (/32, /128): the flows a router still sends to it are served whether it
  announces them or not.  It leaves them there when it stops.
* A VIP is announced while all (``when = "all"``) or any of its services
  have quorum and at least one healthy real server, unless the director is
  in maintenance or stopping.
* ``via = "interface"``: an announced VIP is also on a dummy interface of
  its own (made by the director; nothing else is on it), which BIRD's
  ``protocol direct`` or FRR's ``redistribute connected`` exports.
* ``via = "exabgp"``: ExaBGP runs ``ipvs-director -s SOCKET announce`` as
  its API process (:func:`exabgp_process`), which prints announce and
  withdraw lines as the director decides and withdraws every VIP at once
  when the director's control socket closes.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import socket
import sys
import time
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Sequence, Tuple

from ipvs.director.config import AnnounceConfig

if TYPE_CHECKING:
    from ipvs.director.core import Director

__all__ = ["Announcer", "exabgp_process"]

HEALTHY = ("up", "falling")


def _prefix(vip: str) -> str:
    return vip + ("/128" if ":" in vip else "/32")


async def _ip(args: Sequence[str]) -> Tuple[int, str]:
    """``ip ARGS`` in the director's namespace (the process is in it)."""
    try:
        proc = await asyncio.create_subprocess_exec(
            "ip", *args, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE)
    except OSError as e:
        return 127, "ip: %s" % (e.strerror or e)
    out, err = await proc.communicate()
    return proc.returncode or 0, (err or out).decode("utf-8", "replace").strip()


class Announcer:
    """The announce state of one director's VIPs."""

    def __init__(self, director: "Director", cfg: AnnounceConfig,
                 ip: Callable[[Sequence[str]], Any] = _ip) -> None:
        self.director = director
        self.cfg = cfg
        self._ip = ip
        self.maintenance = False
        self.stopping = False
        #: {vip: (announced, reason)} as last decided
        self.state: Dict[str, Tuple[bool, str]] = {}
        self._on_lo: set = set()
        self._iface_ready = False

    # ------------------------------------------------------------ decision
    def vips(self) -> Dict[str, List[Any]]:
        """{vip: [ServiceState]} of the file's services with an address."""
        out: Dict[str, List[Any]] = {}
        for st in self.director.services.values():
            if st.cfg is None or st.service.fwmark:
                continue
            out.setdefault(str(st.service.address), []).append(st)
        return out

    @staticmethod
    def _service_ok(st: Any) -> Optional[str]:
        """None when the service can take traffic, else why not."""
        if st.quorum_up is False:
            return "%s: quorum lost" % st.name
        if not any(rs.cfg is not None and not rs.draining and rs.state in HEALTHY
                   for rs in st.real_servers.values()):
            return "%s: no healthy real server" % st.name
        return None

    def decide(self) -> Dict[str, Tuple[bool, str]]:
        """{vip: (announce?, reason)} now."""
        out = {}
        for vip, services in self.vips().items():
            if self.stopping:
                out[vip] = (False, "stopping")
                continue
            if self.maintenance:
                out[vip] = (False, "maintenance")
                continue
            bad = [r for r in (self._service_ok(st) for st in services) if r]
            if self.cfg.when == "all":
                ok = not bad
            else:
                ok = len(bad) < len(services)
            if ok:
                out[vip] = (True, "healthy" if not bad else "healthy: %s" % ", ".join(
                    st.name for st in services if self._service_ok(st) is None))
            else:
                out[vip] = (False, "; ".join(bad))
        return out

    async def update(self) -> None:
        """Follow the decision: the addresses, the events and the metric."""
        want = self.decide()
        vips = set(want) | set(self.state)
        await self._keep_local(want)
        for vip in sorted(vips):
            new = want.get(vip, (False, "not in the file"))
            old = self.state.get(vip)
            if old is not None and old[0] == new[0]:
                self.state[vip] = new
                continue
            if old is None and not new[0]:
                self.state[vip] = new      # never announced: nothing to withdraw
                self._metric(vip, False)
                continue
            if self.cfg.via == "interface":
                await self._interface(vip, new[0])
            self.state[vip] = new
            self.director.emit("announce" if new[0] else "withdraw", vip=vip, reason=new[1])
            self._metric(vip, new[0])
        for vip in [v for v in self.state if v not in want]:
            del self.state[vip]
            if self.director.metrics is not None:
                self.director.metrics.vip_forget(vip)

    def _metric(self, vip: str, on: bool) -> None:
        if self.director.metrics is not None:
            self.director.metrics.vip(vip, on)

    async def _keep_local(self, want: Dict[str, Tuple[bool, str]]) -> None:
        """Every VIP on lo (an address already there is fine)."""
        for vip in want:
            if vip in self._on_lo:
                continue
            code, msg = await self._ip(["addr", "replace", _prefix(vip), "dev", "lo"])
            if code == 0:
                self._on_lo.add(vip)
            else:
                self.director.emit("error", message="VIP %s on lo: %s" % (vip, msg))

    async def _interface(self, vip: str, on: bool) -> None:
        name = self.cfg.interface
        if not self._iface_ready:
            code, msg = await self._ip(["link", "add", name, "type", "dummy"])
            if code != 0 and "exists" not in msg:
                self.director.emit("error", message="interface %s: %s" % (name, msg))
                return
            await self._ip(["link", "set", name, "up"])
            # nothing but the announced VIPs on it
            await self._ip(["addr", "flush", "dev", name])
            self._iface_ready = True
        verb = "replace" if on else "del"
        code, msg = await self._ip(["addr", verb, _prefix(vip), "dev", name])
        if code != 0 and not (not on and "Cannot assign" in msg):
            self.director.emit("error", message="VIP %s on %s: %s" % (vip, name, msg))

    # ------------------------------------------------------------ API
    async def set_maintenance(self, on: bool) -> Dict[str, Any]:
        if self.maintenance != on:
            self.maintenance = on
            self.director.emit("maintenance", on=on)
        await self.update()
        return self.status()

    async def withdraw_all(self) -> None:
        """At a stop: withdraw every VIP (the table and lo stay)."""
        self.stopping = True
        await self.update()

    def status(self) -> Dict[str, Any]:
        return {"via": self.cfg.via, "when": self.cfg.when, "maintenance": self.maintenance,
                "vips": [{"vip": vip, "announced": on, "reason": why}
                         for vip, (on, why) in sorted(self.state.items(),
                                                      key=lambda kv: _sort_key(kv[0]))]}


def _sort_key(vip: str) -> Tuple[int, int]:
    a = ipaddress.ip_address(vip)
    return (a.version, int(a))


# ------------------------------------------------------------ ExaBGP's process

def exabgp_process(sock: str, out: Any = None, retry: float = 1.0,
                   forever: bool = True) -> int:
    """``ipvs-director -s SOCKET announce``: ExaBGP's API process.  Prints
    ``announce route VIP/32 next-hop self`` / ``withdraw route ...`` as the
    director decides; withdraws every VIP at once when the director's
    control socket closes, and waits for it to come back (every ``retry``
    seconds; it never exits on its own, since ExaBGP gives up on a process
    that dies often).  Returns when ExaBGP goes away (its pipe closes)."""
    out = out if out is not None else sys.stdout
    announced: set = set()

    def say(verb: str, vip: str) -> None:
        out.write("%s route %s next-hop self\n" % (verb, _prefix(vip)))
        out.flush()

    def follow(vips: Dict[str, bool]) -> None:
        for vip, on in sorted(vips.items()):
            if on and vip not in announced:
                say("announce", vip)
                announced.add(vip)
            elif not on and vip in announced:
                say("withdraw", vip)
                announced.discard(vip)

    try:
        while True:
            try:
                _stream(sock, follow)
            except OSError:
                pass
            follow({vip: False for vip in announced})   # the director is gone
            if not forever:
                return 0
            time.sleep(retry)
    except BrokenPipeError:
        return 0           # ExaBGP went away


def _stream(sock: str, follow: Callable[[Dict[str, bool]], None]) -> None:
    """One connection: the events stream first (nothing is missed), then
    the state now, then each announce/withdraw event; returns at its end."""
    from ipvs.director.control import request
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(sock)
        s.sendall(b"GET /events HTTP/1.1\r\nHost: director\r\n\r\n")
        f = s.makefile("rb")
        head = f.readline()
        if b" 200 " not in head:
            return
        while f.readline().strip():
            pass                        # the rest of the header
        status, body = request(sock, "GET", "/announce", timeout=10)
        if status != 200:
            return
        follow({v["vip"]: v["announced"] for v in json.loads(body)["vips"]})
        for line in f:
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            if ev.get("event") in ("announce", "withdraw"):
                follow({ev["vip"]: ev["event"] == "announce"})
    finally:
        s.close()


def _ignore_stdin() -> None:
    """Read and drop what ExaBGP writes to the process (its acks), so its
    pipe never fills."""
    import threading

    def drain() -> None:
        try:
            while sys.stdin.buffer.read1(65536):
                pass
        except (OSError, ValueError):
            pass
    threading.Thread(target=drain, daemon=True).start()


def main(sock: str) -> int:
    """The subcommand's entry point."""
    _ignore_stdin()
    try:
        return exabgp_process(sock)
    except KeyboardInterrupt:
        return 0
    finally:
        try:
            sys.stdout.flush()
        except (BrokenPipeError, ValueError):
            import os
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())



"""All kernel access of the director, in one place.

Through ``ipvs.AsyncIPVS``: its requests run in the handle's own worker,
never blocking the director's event loop.  Only three things are needed:
read the table, send one batch of calls, reopen after the module went away.
"""

from __future__ import annotations

import contextlib
from typing import Any, Dict, List, Optional, Sequence, Tuple

import ipvs

Call = Tuple[str, ipvs.Service, Optional[ipvs.Destination]]
SYSCTL_DIR = "/proc/sys/net/ipv4/vs/"


class Kernel:
    """The IPVS table of one namespace, from asyncio."""

    def __init__(self, netns: Optional[str] = None) -> None:
        self.netns = netns
        self._h: Optional[ipvs.AsyncIPVS] = None

    async def _handle(self) -> ipvs.AsyncIPVS:
        if self._h is None:
            self._h = ipvs.AsyncIPVS(netns=self.netns)
        return self._h

    async def reopen(self) -> None:
        """Drop the handle (after an error); the next call opens a new one."""
        h, self._h = self._h, None
        if h is not None:
            try:
                await h.close()
            except Exception:
                pass

    async def close(self) -> None:
        await self.reopen()

    def sysctl_read(self, name: str) -> str:
        """The text of /proc/sys/net/ipv4/vs/NAME in the table's namespace."""
        with self._in_netns():
            with open(SYSCTL_DIR + name) as f:
                return f.read()

    def sysctl_write(self, name: str, value: str) -> None:
        with self._in_netns():
            with open(SYSCTL_DIR + name, "w") as f:
                f.write(value + "\n")

    def _in_netns(self) -> Any:
        # /proc/sys/net is the namespace of the thread that opens the file
        if self.netns is None:
            return contextlib.nullcontext()
        from ipvs import netns
        return netns.enter(self.netns)

    async def table(self) -> Dict[ipvs.Service, List[ipvs.Destination]]:
        """{Service: [Destination]} of the whole namespace, with counters."""
        h = await self._handle()
        return await h.table()

    async def run(self, calls: Sequence[Call]) -> None:
        """Send ``calls`` ([(method, service, destination or None)]) as one
        batch; a failure raises ``ipvs.BatchError``."""
        if not calls:
            return
        h = await self._handle()

        def queue(b: Any) -> None:
            for method, svc, dest in calls:
                if dest is None:
                    getattr(b, method)(svc)
                else:
                    getattr(b, method)(svc, dest)
        async with h.batch() as b:
            queue(b)


class MemoryKernel:
    """A stand-in kernel for unit tests of the director's logic: a dict
    table, the same two calls, and a record of every batch sent."""

    def __init__(self) -> None:
        self.tables: Dict[Any, Tuple[ipvs.Service, Dict[Any, ipvs.Destination]]] = {}
        self.batches: List[List[Call]] = []
        self.fail: Optional[BaseException] = None
        #: net.ipv4.vs settings by name (a missing name: as the kernel
        #: without it, FileNotFoundError)
        self.sysctl: Dict[str, str] = {}

    def sysctl_read(self, name: str) -> str:
        if name not in self.sysctl:
            raise FileNotFoundError(2, "No such file or directory", SYSCTL_DIR + name)
        return self.sysctl[name] + "\n"

    def sysctl_write(self, name: str, value: str) -> None:
        self.sysctl_read(name)
        self.sysctl[name] = value

    async def table(self) -> Dict[ipvs.Service, List[ipvs.Destination]]:
        if self.fail is not None:
            raise self.fail
        return {svc: list(d.values()) for svc, d in self.tables.values()}

    async def run(self, calls: Sequence[Call]) -> None:
        if self.fail is not None:
            raise self.fail
        self.batches.append(list(calls))
        try:
            self._apply(calls)
        except (KeyError, AssertionError) as e:
            # as the kernel refuses a call (an OSError, as IPVSError is)
            raise OSError("memory kernel refused a call: %r" % (e,)) from None

    def _apply(self, calls: Sequence[Call]) -> None:
        for method, svc, dest in calls:
            if method == "add_service":
                assert svc.key not in self.tables, "exists"
                self.tables[svc.key] = (svc, {})
            elif method == "update_service":
                self.tables[svc.key] = (svc, self.tables[svc.key][1])
            elif method == "delete_service":
                del self.tables[svc.key]
            else:
                assert dest is not None
                dests = self.tables[svc.key][1]
                if method == "add_destination":
                    assert dest.key not in dests, "exists"
                    dests[dest.key] = dest
                elif method == "update_destination":
                    old = dests[dest.key]
                    dests[dest.key] = dest.replace(
                        active_connections=old.active_connections,
                        inactive_connections=old.inactive_connections,
                        persistent_connections=old.persistent_connections)
                else:
                    del dests[dest.key]

    async def reopen(self) -> None:
        pass

    async def close(self) -> None:
        pass

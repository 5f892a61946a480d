"""All kernel access of the director, in one place.

Through ``ipvs.AsyncIPVS``: its requests run in the handle's own worker,
never blocking the director's event loop.  Only three things are needed:
read the table, bring the director's own services to what it wants with
the library's ``apply()`` (its one planner; the director plans nothing
itself), reopen after the module went away.  Plus the net.ipv4.vs
settings of ``[director] sysctl``.
"""

from __future__ import annotations

import contextlib
import itertools
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Tuple

import ipvs

SYSCTL_DIR = "/proc/sys/net/ipv4/vs/"
#: {Service: [Destination]}: what ``apply()`` takes
Records = Mapping[ipvs.Service, Iterable[ipvs.Destination]]


class LazyHandle:
    """An ``ipvs.AsyncIPVS``-like handle made on first use by ``make`` and
    dropped (closed) after an error: the next use makes a new one (after
    an IPVS module reload the old socket answers nothing useful)."""

    def __init__(self, make: Callable[[], Any]) -> None:
        self._make = make
        self._h: Any = None

    def get(self) -> Any:
        if self._h is None:
            self._h = self._make()
        return self._h

    def new(self) -> Any:
        """A handle of its own (a slow call blocks no other caller)."""
        return self._make()

    async def drop(self) -> None:
        h, self._h = self._h, None
        if h is not None:
            with contextlib.suppress(Exception):
                await h.close()


class Kernel:
    """The IPVS table of one namespace, from asyncio (``backend`` as
    ``ipvs.AsyncIPVS`` takes it: the memory backend for tests)."""

    def __init__(self, netns: Optional[str] = None, *, backend: str = "auto") -> None:
        self.netns = netns
        self.backend = backend
        self._handle = LazyHandle(self._open)

    def _open(self) -> ipvs.AsyncIPVS:
        return ipvs.AsyncIPVS(netns=self.netns, backend=self.backend)

    async def reopen(self) -> None:
        """Drop the handle (after an error); the next call opens a new one."""
        await self._handle.drop()

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
        return await self._handle.get().table()  # type: ignore[no-any-return]

    async def services(self) -> List[ipvs.Service]:
        """The services of the namespace (no destinations: a cheap dump)."""
        return await self._handle.get().services()  # type: ignore[no-any-return]

    async def apply(self, desired: Records, current: Records,
                    changed: Optional[List[ipvs.Service]] = None,
                    dry_run: bool = False) -> List[ipvs.Change]:
        """``apply(desired, current=current, changed=changed, prune=True)``
        of the library: the calls turning ``current`` (what the director
        last read and wrote of its own services) into ``desired``, sent as
        one batch unless ``dry_run``.  Returns the plan's changes; a refused
        call raises ``ipvs.BatchError`` (the others stay applied)."""
        if not desired and not current:
            return []
        plan = await self._handle.get().apply(desired, current=current, changed=changed,
                                              prune=True, dry_run=dry_run)
        return plan.changes  # type: ignore[no-any-return]


_memory_names = itertools.count(1)


class MemoryKernel(Kernel):
    """The director's kernel over the library's memory backend, for tests
    of the director's logic: the same ``apply()`` path as in production,
    on an in-process table that refuses what the kernel refuses.

    ``handle()`` opens a plain ``ipvs.IPVS`` on the same table (a test
    changes the table behind the director's back with it: ``with
    kernel.handle() as h: h.flush()``); ``tables`` is the table
    now, {service key: (Service, {destination key: Destination})};
    ``batches`` the changes of every apply sent; ``fail``, when set, is
    raised by the next calls; ``sysctl`` the net.ipv4.vs settings by name
    (a missing name reads as the kernel without it: FileNotFoundError)."""

    def __init__(self) -> None:
        from ipvs import testing   # the memory backend's namespace registry
        name = "director-memory-%d" % next(_memory_names)
        testing.add_netns(name)
        super().__init__(name, backend="memory")
        self.batches: List[List[Tuple[str, ipvs.Service, Optional[ipvs.Destination]]]] = []
        self.fail: Optional[BaseException] = None
        self.sysctl: Dict[str, str] = {}

    def handle(self) -> ipvs.IPVS:
        return ipvs.IPVS(backend="memory", netns=self.netns)

    @property
    def tables(self) -> Dict[Any, Tuple[ipvs.Service, Dict[Any, ipvs.Destination]]]:
        with self.handle() as h:
            return {svc.key: (svc, {d.key: d for d in dests})
                    for svc, dests in h.table().items()}

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
        return await super().table()

    async def services(self) -> List[ipvs.Service]:
        if self.fail is not None:
            raise self.fail
        return await super().services()

    async def apply(self, desired: Records, current: Records,
                    changed: Optional[List[ipvs.Service]] = None,
                    dry_run: bool = False) -> List[ipvs.Change]:
        if self.fail is not None:
            raise self.fail
        changes = await super().apply(desired, current, changed, dry_run)
        if changes and not dry_run:
            self.batches.append([tuple(c) for c in changes])  # type: ignore[misc]
        return changes

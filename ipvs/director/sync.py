"""The director's sync daemon and role (``[director.sync]``, ``POST /role``).

The kernel's IPVS sync daemon copies connection entries from a master
director to a backup one, so that connections established through the
master keep their real server when the VIP moves.  The director keeps the
daemon of its current role running (started at start, started again by the
resync when it is gone) and switches it when told (``POST /role``, called by
keepalived's VRRP notify scripts).

A switch starts the new role's daemon first and then stops the old one:
the new role works at once, and a slow stop (stopping a backup daemon may
take long in some kernels) never delays it.  The stop goes on in the
background on a handle of its own when it takes longer than a short wait.

Only the daemons of the configured interface and sync id that this module
started are stopped; a daemon of the other state found at start is left
alone.

With ``keepalived_fifo`` the director also reads keepalived's
``notify_fifo`` itself and takes the role of the named VRRP instance
(MASTER: master; BACKUP, FAULT, STOP: backup).  Unlike notify scripts, the
FIFO's lines reach it when keepalived stops: keepalived 2.2.7 kills the
notify scripts still running about one second after it starts stopping
(measured in the sandbox: a script's 0.5 s step ran, its 2.5 s step never
did), so a ``notify_stop`` command that starts slowly on a loaded machine
never tells the director.
"""

from __future__ import annotations

import asyncio
import collections
import errno
import logging
import os
import re
import stat
from typing import Any, Callable, Deque, Dict, Optional

import ipvs
from ipvs.director._kernel import LazyHandle

__all__ = ["SyncKeeper", "FifoFollower", "STATES", "vrrp_role"]

log = logging.getLogger("ipvs.director")

STATES = ("master", "backup")
STOP_WAIT = 3.0           # s a role switch waits for the old daemon to stop
HANDLE_TIMEOUT = 60.0     # s per kernel request (stopping a daemon can be slow)


def _state_name(state: Any) -> str:
    return ipvs.DaemonState(int(state)).name.lower()


class SyncKeeper:
    """Keeps one sync daemon (the ``Daemon`` of ``[director.sync]`` with the
    current role as its state) in one namespace.

    ``handles`` makes a new ``ipvs.AsyncIPVS``-like handle (coroutines
    ``daemons()``, ``start_daemon(d)``, ``stop_daemon(state)``, ``close()``);
    by default one on ``netns``.  ``emit`` is the director's event function.
    """

    def __init__(self, daemon: ipvs.Daemon, *, netns: Optional[str] = None,
                 handles: Optional[Callable[[], Any]] = None,
                 emit: Optional[Callable[..., Any]] = None,
                 on_change: Optional[Callable[["SyncKeeper"], None]] = None) -> None:
        self.daemon = daemon
        self.role = _state_name(daemon.state)
        self.netns = netns
        self._handle = LazyHandle(
            handles or (lambda: ipvs.AsyncIPVS(netns=netns, timeout=HANDLE_TIMEOUT)))
        self._emit = emit or (lambda *a, **k: None)
        self._on_change = on_change
        self._lock = asyncio.Lock()
        self._stopping: Dict[str, "asyncio.Task[None]"] = {}
        self._retired: Optional[str] = None   # our old state, to stop if still running
        self.last_error: Optional[str] = None
        self.switches = 0
        #: the role was set by keepalived or the API (now or before a
        #: restart), not only taken from the file: the state file keeps it
        self.told = False

    # ------------------------------------------------------------ helpers
    def wanted(self) -> ipvs.Daemon:
        """The daemon of the current role."""
        return self.daemon.replace(state=self.role)

    def _matches(self, running: ipvs.Daemon) -> bool:
        """A running daemon is the wanted one: same interface and sync id,
        and the same of the optional fields the file sets (the kernel fills
        in its defaults for the others)."""
        w = self.wanted()
        if running.interface != w.interface or running.sync_id != w.sync_id:
            return False
        for f in ("max_len", "mcast_port", "mcast_ttl"):
            if getattr(w, f) and getattr(running, f) and getattr(w, f) != getattr(running, f):
                return False
        if w.mcast_group is not None and running.mcast_group is not None \
                and w.mcast_group != running.mcast_group:
            return False
        return True

    async def _running(self) -> Dict[str, ipvs.Daemon]:
        h = self._handle.get()
        return {_state_name(d.state): d for d in await h.daemons()}

    async def _stop_now(self, state: str) -> None:
        """Stop ``state``'s daemon on a handle of its own (a slow stop blocks
        nobody); a daemon already gone is fine."""
        h = self._handle.new()
        try:
            await h.stop_daemon(state)
        except ipvs.DaemonNotRunningError:
            pass
        finally:
            try:
                await h.close()
            except Exception:
                pass

    def _stop_later(self, state: str) -> "asyncio.Task[None]":
        task = self._stopping.get(state)
        if task is None or task.done():
            task = asyncio.get_running_loop().create_task(self._stop_now(state))
            self._stopping[state] = task

            def done(t: "asyncio.Task[None]") -> None:
                if self._stopping.get(state) is t:
                    del self._stopping[state]
                if not t.cancelled() and t.exception() is not None:
                    e = t.exception()
                    self.last_error = "stop %s: %s" % (state, e)
                    self._emit("error", message="sync daemon: " + self.last_error)
                elif not t.cancelled() and self._retired == state:
                    self._retired = None
            task.add_done_callback(done)
        return task

    # ------------------------------------------------------------ keeping
    async def keep(self) -> bool:
        """Start the current role's daemon when it is not running (also when
        a daemon of that state runs with other settings: it is restarted);
        stop the daemon of a role this director left if it still runs.
        True when something was started."""
        async with self._lock:
            try:
                running = await self._running()
                started = False
                cur = running.get(self.role)
                if cur is not None and not self._matches(cur) and self.role not in self._stopping:
                    await self._stop_now(self.role)
                    cur = None
                if cur is None and self.role not in self._stopping:
                    await self._handle.get().start_daemon(self.wanted())
                    self._emit("sync", state=self.role, interface=self.daemon.interface,
                               sync_id=self.daemon.sync_id, message="sync daemon started")
                    started = True
                old = self._retired
                if old is not None and old in running and old not in self._stopping:
                    self._stop_later(old)
                elif old is not None and old not in running:
                    self._retired = None
                self.last_error = None
                return started
            except (ipvs.IPVSError, OSError) as e:
                msg = str(e)
                if msg != self.last_error:
                    self._emit("error", message="sync daemon %s on %s: %s"
                               % (self.role, self.daemon.interface, msg))
                self.last_error = msg
                await self._handle.drop()
                return False

    async def switch(self, state: Any) -> Dict[str, Any]:
        """Take the role ``state`` ("master" or "backup"): start its daemon,
        then stop the old role's.  Raises ValueError for another state and
        the handle's errors when the new daemon cannot start (the role is
        switched all the same: the resync keeps trying)."""
        if state not in STATES:
            raise ValueError('"state" must be "master" or "backup"')
        old = self.role
        if not self.told:
            self.told = True
            if state == old and self._on_change is not None:
                self._on_change(self)
        if state != old:
            self.role = state
            self.switches += 1
            self._retired = old
            if self._on_change is not None:
                self._on_change(self)
            self._emit("role", state=state, previous=old, interface=self.daemon.interface,
                       sync_id=self.daemon.sync_id)
        async with self._lock:
            try:
                # a stop of this state still going on (a quick switch back):
                # let it end first, else it would stop the daemon wanted now
                pending = self._stopping.get(state)
                if pending is not None:
                    try:
                        await asyncio.wait_for(asyncio.shield(pending), HANDLE_TIMEOUT)
                    except (ipvs.IPVSError, OSError):
                        pass
                running = await self._running()
                if state in running and not self._matches(running[state]):
                    await self._stop_now(state)
                    del running[state]
                if state not in running:
                    await self._handle.get().start_daemon(self.wanted())
                self.last_error = None
            except (ipvs.IPVSError, OSError, asyncio.TimeoutError) as e:
                self.last_error = str(e) or type(e).__name__
                await self._handle.drop()
                raise
            stopping = None
            if state != old and old in running:
                task = self._stop_later(old)
                try:
                    await asyncio.wait_for(asyncio.shield(task), STOP_WAIT)
                except asyncio.TimeoutError:
                    stopping = old
                except (ipvs.IPVSError, OSError):
                    pass  # reported by the task's callback; keep() tries again
            elif state != old:
                self._retired = None
        out = self.status()
        out["previous"] = old
        if stopping:
            out["stopping"] = stopping
        return out

    async def reconfigure(self, daemon: Optional[ipvs.Daemon]) -> None:
        """A reload changed ``[director.sync]``: the current role stays; a
        daemon with other settings is restarted by the next keep()."""
        if daemon is None:
            return
        self.daemon = daemon

    async def retire(self) -> None:
        """``[director.sync]`` left the file: stop the current daemon."""
        async with self._lock:
            self._retired = None
            try:
                running = await self._running()
                if self.role in running and self._matches(running[self.role]):
                    await asyncio.wait_for(asyncio.shield(self._stop_later(self.role)), STOP_WAIT)
            except (ipvs.IPVSError, OSError, asyncio.TimeoutError):
                pass

    async def close(self) -> None:
        """Forget the handle (the daemon keeps running, like the table);
        background stops are given a moment to end."""
        pending = [t for t in self._stopping.values() if not t.done()]
        if pending:
            await asyncio.wait(pending, timeout=STOP_WAIT)
        await self._handle.drop()

    def status(self) -> Dict[str, Any]:
        """The role part of ``GET /status`` and of ``POST /role``'s answer."""
        d = self.daemon
        out: Dict[str, Any] = {"state": self.role, "interface": d.interface,
                               "sync_id": d.sync_id, "switches": self.switches,
                               "error": self.last_error}
        if d.mcast_group is not None:
            out["mcast_group"] = str(d.mcast_group)
        for f in ("max_len", "mcast_port", "mcast_ttl"):
            if getattr(d, f):
                out[f] = getattr(d, f)
        return out


# ---------------------------------------------------------------- keepalived's FIFO

# keepalived's notify_fifo lines: TYPE "NAME" STATE [PRIORITY]
_FIFO_LINE = re.compile(r'^(INSTANCE|GROUP) "([^"]*)" ([A-Z_]+)(?: (\d+))?$')
_VRRP_ROLES = {"MASTER": "master", "BACKUP": "backup", "FAULT": "backup", "STOP": "backup"}


def vrrp_role(line: str, name: str) -> Optional[str]:
    """The director's role that one line of keepalived's ``notify_fifo``
    gives, for the VRRP instance or sync group ``name``: "master",
    "backup", or None (another instance, a virtual server's line, a state
    that says nothing about the role)."""
    m = _FIFO_LINE.match(line.strip())
    if m is None or m.group(2) != name:
        return None
    return _VRRP_ROLES.get(m.group(3))


class FifoFollower:
    """Reads keepalived's ``notify_fifo`` at ``path`` and calls ``switch``
    (a coroutine function taking "master" or "backup") for each role change
    of the VRRP instance ``name``, in order.

    The FIFO is made (mode 0600) when the path does not exist; a path that
    exists and is not a FIFO is an OSError at ``open()``.  The follower
    holds a write end of its own, so that keepalived closing or restarting
    never ends the stream; ``close()`` leaves the FIFO in place (keepalived
    may still hold it open)."""

    def __init__(self, path: str, name: str, switch: Callable[[str], Any],
                 emit: Optional[Callable[..., Any]] = None) -> None:
        self.path = path
        self.name = name
        self._switch = switch
        self._emit = emit or (lambda *a, **k: None)
        self._rfd = -1
        self._wfd = -1
        self._buf = b""
        self._queue: Deque[str] = collections.deque()
        self._task: Optional["asyncio.Task[None]"] = None
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self.lines = 0          # lines read
        self.last: Optional[str] = None   # the last line of our instance

    def open(self) -> None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            os.mkfifo(self.path, 0o600)
        else:
            if not stat.S_ISFIFO(st.st_mode):
                raise OSError(errno.EEXIST, "keepalived_fifo %s exists and is not a FIFO"
                              % self.path)
        self._rfd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        self._wfd = os.open(self.path, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self._rfd, self._readable)

    def _readable(self) -> None:
        while True:
            try:
                data = os.read(self._rfd, 65536)
            except BlockingIOError:
                break
            except OSError as e:
                self._emit("error", message="keepalived_fifo %s: %s" % (self.path, e))
                break
            if not data:
                break
            self._buf += data
        *lines, self._buf = self._buf.split(b"\n")
        for raw in lines:
            self.lines += 1
            line = raw.decode("utf-8", "replace")
            role = vrrp_role(line, self.name)
            if role is None:
                continue
            self.last = line.strip()
            log.info("keepalived_fifo: %s", self.last)
            self._queue.append(role)
        if self._queue and (self._task is None or self._task.done()):
            assert self._loop is not None
            self._task = self._loop.create_task(self._drain())

    async def _drain(self) -> None:
        while self._queue:
            role = self._queue.popleft()
            try:
                await self._switch(role)
            except Exception as e:   # the keeper's resync tries again
                self._emit("error", message="role %s from keepalived_fifo: %s" % (role, e))

    async def close(self) -> None:
        if self._loop is not None and self._rfd >= 0:
            self._loop.remove_reader(self._rfd)
        for fd in (self._rfd, self._wfd):
            if fd >= 0:
                os.close(fd)
        self._rfd = self._wfd = -1
        if self._task is not None and not self._task.done():
            try:
                await asyncio.wait_for(asyncio.shield(self._task), STOP_WAIT)
            except Exception:
                pass


# ---------------------------------------------------------------- the director's side

class NoSync(LookupError):
    """A role switch asked of a director whose file has no [director.sync]."""


class DirectorSync:
    """The director's side of the sync daemon: its keeper (made, reconfigured
    or retired as the file says) and the follower of keepalived's FIFO.  It
    knows the director only through the callbacks it is given: ``emit``
    (events), ``save_state`` (a role to keep across restarts), ``metrics``
    (the director's metrics now, or None) and ``saved_role`` (the role the
    state file had at start)."""

    def __init__(self, *, netns: Optional[str], handles: Any, emit: Callable[..., Any],
                 save_state: Callable[[], None], metrics: Callable[[], Any],
                 saved_role: Callable[[], Optional[str]]) -> None:
        self.netns = netns
        self.handles = handles
        self.emit = emit
        self.save_state = save_state
        self.metrics = metrics
        self.saved_role = saved_role
        self.keeper: Optional[SyncKeeper] = None
        self.fifo: Optional[FifoFollower] = None

    async def keep(self, d: Any, config_changed: bool = False) -> None:
        """After the director's rounds (``d``: its [director] table, a
        DirectorConfig): make, reconfigure or retire the keeper as the
        configuration says, then keep the daemon running."""
        want = d.sync
        keeper = self.keeper
        if config_changed:
            await self._follow(d.sync_fifo if want is not None else None, d.sync_vrrp_instance)
            if want is None and keeper is not None:
                await keeper.retire()
                await keeper.close()
                self.keeper = None
                m = self.metrics()
                if m is not None:
                    m.role(None)
                return
            if want is not None and keeper is None:
                keeper = SyncKeeper(want, netns=self.netns, handles=self.handles,
                                    emit=self.emit, on_change=self._changed)
                saved = self.saved_role()
                if saved in STATES:
                    # keepalived does not repeat its state to a restarted director
                    keeper.role = saved
                    keeper.told = True
                    if saved != _state_name(want.state):
                        self.emit("role", state=saved, previous=_state_name(want.state),
                                  interface=want.interface, sync_id=want.sync_id,
                                  message="the role before the restart (state file)")
                self.keeper = keeper
            elif want is not None and keeper is not None:
                await keeper.reconfigure(want)
        if keeper is None:
            return
        self._metric(keeper)
        await keeper.keep()

    async def _follow(self, path: Optional[str], name: Optional[str]) -> None:
        """Start, move or stop the follower of keepalived's FIFO as the file
        says (a failure to open it is an error event; the control API stays)."""
        old = self.fifo
        if old is not None and (old.path, old.name) == (path, name):
            return
        if old is not None:
            await old.close()
            self.fifo = None
        if path is None or name is None:
            return
        f = FifoFollower(path, name, self.role, emit=self.emit)
        try:
            f.open()
        except OSError as e:
            self.emit("error", message="keepalived_fifo %s: %s" % (path, e))
            return
        self.fifo = f

    async def close(self) -> None:
        """The director stops: the FIFO's follower and the keeper close (the
        daemon itself keeps running)."""
        f, self.fifo = self.fifo, None
        if f is not None:
            await f.close()
        if self.keeper is not None:
            await self.keeper.close()

    def status(self) -> Optional[Dict[str, Any]]:
        """The ``sync`` part of ``GET /status``: the keeper's status, with the
        FIFO's path, instance and last line of that instance when one is read."""
        keeper = self.keeper
        if keeper is None:
            return None
        out = keeper.status()
        f = self.fifo
        if f is not None:
            out["keepalived_fifo"] = f.path
            out["vrrp_instance"] = f.name
            out["vrrp_last"] = f.last
        return out

    def _changed(self, keeper: SyncKeeper) -> None:
        """A role was set: the metric follows and the state file keeps it."""
        self._metric(keeper)
        self.save_state()

    def _metric(self, keeper: SyncKeeper) -> None:
        m = self.metrics()
        if m is not None:
            m.role(keeper.role)

    async def role(self, state: Any) -> Dict[str, Any]:
        """``POST /role``: switch the daemon to ``state``."""
        keeper = self.keeper
        if keeper is None:
            raise NoSync("no [director.sync] in the configuration: no sync daemon to switch")
        if state not in STATES:
            raise ValueError('"state" must be "master" or "backup"')
        return await keeper.switch(state)

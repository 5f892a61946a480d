"""The director's state file: what the kernel table cannot say about why a
real server has its weight.

The kernel keeps the weights (a draining real server has weight 0 there); the
file keeps the intent behind them, so that a restarted director carries on
instead of undoing it:

* manual drains (``drain`` through the control API), with the time each
  began, also once the real server was deleted at the end of its drain;
* weights set through the control API (``weight``);
* drains of real servers and services that left the file, with the time
  each began (the ``drain_timeout`` clock goes on across a restart);
* the sync daemon's role once keepalived (its FIFO) or ``POST /role`` set
  it: keepalived does not tell a restarted director its state again.

It is JSON, written atomically (a temporary file in the same directory,
fsync, rename over the old one), mode 0600::

    {"version": 1,
     "services": ["TCP 10.0.0.1:80"],           # left the file, draining
     "servers": [{"service": "TCP 10.0.0.2:80", "address": "10.0.1.2",
                  "port": 80, "drain": "manual", "since": 1764550000.0,
                  "weight": null}],
     "role": "master"}                          # or "backup", or null

``drain`` is "manual", "file" (left the file) or null; ``since`` the wall
clock time the drain began; ``weight`` the weight set through the API or
null.  Services and real servers are named the way the control API names
them; the service objects themselves are read back from the kernel.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple

__all__ = ["StateError", "StateFile", "default_path", "read_state", "write_state", "VERSION"]

VERSION = 1
MAX_SIZE = 64 << 20


class StateError(ValueError):
    """A state file that cannot be read or does not hold director state."""


def default_path(control: str) -> str:
    """The state file beside the control socket: ``/run/ipvs-director.sock``
    gives ``/run/ipvs-director.state``."""
    base = control[:-len(".sock")] if control.endswith(".sock") else control
    return base + ".state"


def _server(item: Any) -> Dict[str, Any]:
    if not isinstance(item, dict):
        raise StateError("a server entry is not an object")
    service, address, port = item.get("service"), item.get("address"), item.get("port")
    if not isinstance(service, str) or not isinstance(address, str):
        raise StateError("a server entry without service or address")
    if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port <= 65535:
        raise StateError("a server entry with a bad port")
    drain = item.get("drain")
    if drain not in (None, "manual", "file"):
        raise StateError("a server entry with a bad drain %r" % (drain,))
    since = item.get("since")
    if since is not None and (not isinstance(since, (int, float)) or isinstance(since, bool)):
        raise StateError("a server entry with a bad since")
    weight = item.get("weight")
    if weight is not None and (not isinstance(weight, int) or isinstance(weight, bool)
                               or not 0 <= weight <= 0x7FFFFFFF):
        raise StateError("a server entry with a bad weight")
    return {"service": service, "address": address, "port": port, "drain": drain,
            "since": None if since is None else float(since), "weight": weight}


def read_state(path: str) -> Dict[str, Any]:
    """The state in ``path``: ``{"services": [name], "servers": [entry]}``;
    empty when the file does not exist.  :class:`StateError` for a file
    that is unreadable, too large, or not director state."""
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_SIZE + 1)
    except FileNotFoundError:
        return {"services": [], "servers": [], "role": None}
    except OSError as e:
        raise StateError("%s: %s" % (path, e.strerror or e)) from None
    if len(raw) > MAX_SIZE:
        raise StateError("%s: larger than %d bytes" % (path, MAX_SIZE))
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise StateError("%s: not JSON: %s" % (path, e)) from None
    if not isinstance(data, dict) or data.get("version") != VERSION:
        raise StateError("%s: not a version %d director state file" % (path, VERSION))
    services = data.get("services", [])
    servers = data.get("servers", [])
    if not isinstance(services, list) or not all(isinstance(s, str) for s in services):
        raise StateError("%s: services must be a list of service strings" % path)
    if not isinstance(servers, list):
        raise StateError("%s: servers must be a list" % path)
    role = data.get("role")
    if role not in (None, "master", "backup"):
        raise StateError("%s: role must be \"master\", \"backup\" or null" % path)
    try:
        return {"services": list(services), "servers": [_server(s) for s in servers],
                "role": role}
    except StateError as e:
        raise StateError("%s: %s" % (path, e)) from None


def write_state(path: str, services: List[str], servers: List[Dict[str, Any]],
                role: Optional[str] = None) -> None:
    """Replace ``path`` with this state, atomically: readers (and a crash at
    any moment) see the old file or the new one, never a part."""
    data = {"version": VERSION, "services": services, "servers": servers, "role": role}
    text = json.dumps(data, indent=1, sort_keys=True) + "\n"
    directory = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(directory, ".%s.%d.tmp" % (os.path.basename(path), os.getpid()))
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    try:
        dfd = os.open(directory, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)


def find(servers: List[Dict[str, Any]], service: str, address: str,
         port: int) -> Optional[Dict[str, Any]]:
    """The entry of one real server, or None."""
    for s in servers:
        if s["service"] == service and s["address"] == address and s["port"] == port:
            return s
    return None


Saved = Tuple[List[str], List[Dict[str, Any]], Optional[str]]


class StateFile:
    """The director's side of the state file: what to keep of its run-time
    state, and putting it back after a restart.  ``path`` None keeps none;
    ``emit`` reports a file that cannot be written or read."""

    def __init__(self, path: Optional[str], emit: Callable[..., Any]) -> None:
        self.path = path
        self.emit = emit
        self.saved: Optional[Saved] = None      # what the file holds now

    @staticmethod
    def gather(services: Iterable[Any], role: Optional[str]) -> Saved:
        """What the file keeps: services that left the file (still
        draining), the real servers with a drain or an API weight, and the
        sync daemon's role once keepalived or the API set it."""
        offset = time.time() - time.monotonic()     # wall clock of a monotonic time
        services = list(services)
        names = [st.name for st in services if st.cfg is None]
        servers = []
        for st in services:
            for rs in st.real_servers.values():
                drain = None
                if rs.draining_since is not None and (rs.manual_drain or not rs.gone):
                    drain = "manual" if rs.manual_drain else "file"
                if drain is None and rs.weight_override is None:
                    continue
                servers.append({
                    "service": st.name, "address": str(rs.destination.address),
                    "port": rs.destination.port, "drain": drain,
                    "since": (float(round(offset + rs.draining_since))
                              if drain is not None and rs.draining_since is not None else None),
                    "weight": rs.weight_override})
        return names, servers, role

    def save(self, services: Iterable[Any], role: Optional[str]) -> None:
        """Write the file when what it keeps changed (atomically)."""
        if self.path is None:
            return
        state = self.gather(services, role)
        if state == self.saved:
            return
        if self.saved is None and not any(state) and not os.path.exists(self.path):
            self.saved = state      # nothing to keep: no file yet
            return
        try:
            write_state(self.path, *state)
        except OSError as e:
            self.emit("error", message="state file %s: %s" % (self.path, e.strerror or e))
            return
        self.saved = state

    def read(self) -> Saved:
        if self.path is None:
            return [], [], None
        try:
            data = read_state(self.path)
        except StateError as e:
            self.emit("error", message="state file not used: %s" % e)
            return [], [], None
        return data["services"], data["servers"], data["role"]

    async def restore_services(self, services: Dict[Any, Any], kernel: Any) -> Saved:
        """Services that left the file before a restart and were still
        draining: owned again (read back from the kernel), so that their
        drain goes on.  Returns the file's content."""
        from ipvs.director.config import service_name
        from ipvs.director.runtime import ServiceState
        saved = self.read()
        if saved[0]:
            wanted = set(saved[0])
            for svc in await kernel.table():
                name = service_name(svc)
                if name in wanted and svc.key not in services:
                    services[svc.key] = ServiceState(svc, name, None)
        return saved

    def restore_servers(self, services: Dict[Any, Any], table: Dict[Any, Any],
                        saved: Saved) -> None:
        """Manual drains, API weights and drain start times of the file,
        onto the real servers of the file and the kernel (``table``)."""
        mono, wall = time.monotonic(), time.time()
        by_name = {st.name: st for st in services.values()}
        for e in saved[1]:
            st = by_name.get(e["service"])
            if st is None:
                continue
            rs = next((r for r in st.real_servers.values()
                       if str(r.destination.address) == e["address"]
                       and r.destination.port == e["port"]), None)
            if rs is None:
                continue
            since = mono if e["since"] is None else mono - max(0.0, wall - e["since"])
            if e["drain"] == "manual" and rs.cfg is not None:
                rs.manual_drain = True
                rs.draining_since = since
                rs.gone = rs.key not in table.get(st.service.key, (None, {}))[1]
            elif e["drain"] is not None and rs.cfg is None and rs.draining:
                rs.draining_since = since   # its drain_timeout clock goes on
            if e["weight"] is not None and rs.cfg is not None:
                rs.weight_override = e["weight"]
        self.saved = saved if saved[0] or saved[1] else None

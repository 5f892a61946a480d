"""A small IPVS controller: keeps the services of a desired-state file in the
table, and touches nothing else.

    python examples/controller.py desired.json [--netns NAME] [--interval 1] [--resync 60]

The file (JSON, or TOML when its name ends in .toml) says what the
controller owns and what it wants:

    {"owns": ["10.0.0.0/24"],
     "services": [{"address": "10.0.0.1", "port": 80, "scheduler": "wrr",
                   "destinations": [{"address": "192.168.1.10", "port": 8080,
                                     "weight": 3, "forward": "masq"}]}]}

* Ownership: every service whose address lies in ``owns`` is this
  controller's (``apply(scope=...)``); other owners' services are never
  read into a plan, changed or deleted. The owned set comes from the file,
  so a restarted controller deletes what was removed while it was down.
* A change of the file is applied incrementally (``current=``,
  ``changed=``); every ``--resync`` seconds, and after a failed change, a
  full apply reads the table and repairs drift within the scope.
* Each change is logged (``weight 1 -> 3``); a `BatchError` logs each
  failed call. SIGTERM / SIGINT stop it, leaving the table as it is.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import logging
import signal
import sys
from typing import Any, Dict, FrozenSet, List, Optional, Sequence, Set, Tuple, Union

import ipvs

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.9 and 3.10
    import tomli as tomllib

log = logging.getLogger("ipvs-controller")

Desired = Dict[ipvs.Service, FrozenSet[ipvs.Destination]]
Network = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]


class FileError(ValueError):
    """The desired-state file cannot be used (the table is left as it is)."""


def parse(text: bytes, toml: bool) -> Tuple[Desired, List[Network]]:
    """(desired, owned networks) of a file's content; FileError if bad."""
    try:
        data: Any = tomllib.loads(text.decode()) if toml else json.loads(text)
        owns = [ipaddress.ip_network(n) for n in data.get("owns", [])]
        desired: Desired = {}
        keys: Set[Tuple[Any, ...]] = set()
        for entry in data.get("services", []):
            fields = dict(entry)
            dests = frozenset(ipvs.Destination(**d) for d in fields.pop("destinations", []))
            svc = ipvs.Service(**fields)
            if svc.key in keys:
                raise FileError("%s is given twice" % svc)
            keys.add(svc.key)
            desired[svc] = dests
    except FileError:
        raise
    except (ValueError, TypeError, AttributeError, UnicodeDecodeError) as e:
        raise FileError(str(e)) from None
    for svc in desired:
        if not owned(svc, owns):
            raise FileError("%s is outside what the file owns (%s)"
                            % (svc, ", ".join(map(str, owns)) or "nothing"))
    return desired, owns


def owned(svc: ipvs.Service, owns: Sequence[Network]) -> bool:
    """The scope: a service whose address lies in an owned network."""
    return svc.address is not None and any(svc.address in net for net in owns)


class Controller:
    """Applies one file to one table: `resync` (full) and `update` (the
    file's changes, incrementally)."""

    def __init__(self, lb: ipvs.AsyncIPVS, path: str) -> None:
        self.lb = lb
        self.path = path
        self.text: Optional[bytes] = None            # the file as last applied
        self.owns: List[Network] = []
        self.applied: Optional[Desired] = None       # what the table holds, as applied

    def scope(self, svc: ipvs.Service) -> bool:
        return owned(svc, self.owns)

    def read(self) -> Tuple[bytes, Desired, List[Network]]:
        try:
            with open(self.path, "rb") as f:
                text = f.read()
        except OSError as e:
            raise FileError(str(e)) from None
        return (text,) + parse(text, self.path.endswith(".toml"))

    async def resync(self) -> None:
        """Full apply: read the table, make the owned part equal to the file."""
        text, desired, owns = self.read()
        self.applied, self.owns = None, owns
        plan = await self.lb.apply(desired, scope=self.scope)
        self.report("resync", plan)
        self.text, self.applied = text, desired

    async def update(self) -> bool:
        """Apply what changed in the file since the last apply; False when
        nothing did. A failed batch falls back to a full resync."""
        text, new, owns = self.read()
        if text == self.text:
            return False
        if self.applied is None or owns != self.owns:
            await self.resync()                       # the scope itself changed
            return True
        old = self.applied
        changed = [s for s in old.keys() | new.keys() if old.get(s) != new.get(s)]
        try:
            plan = await self.lb.apply(new, current=old, changed=changed, scope=self.scope)
        except ipvs.BatchError as e:
            for call, exc in e.failures:
                log.error("failed: %s: %s", call, exc)
            log.warning("%d of %d calls failed: full resync", len(e.failures),
                        len(e.failures) + e.succeeded)
            await self.resync()
            return True
        self.report("update", plan)
        self.text, self.applied = text, new
        return True

    def report(self, what: str, plan: ipvs.Plan) -> None:
        for change in plan.changes:
            log.info("%s: %s", what, change)


async def run(path: str, *, netns: Optional[str] = None, interval: float = 1.0,
              resync: float = 60.0, stop: Optional[asyncio.Event] = None) -> None:
    """Poll the file every ``interval`` s, resync every ``resync`` s, until
    ``stop`` is set."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    async with ipvs.AsyncIPVS(netns=netns) as lb:
        ctl = Controller(lb, path)
        next_full = loop.time()
        while not stop.is_set():
            try:
                if loop.time() >= next_full:
                    await ctl.resync()
                    next_full = loop.time() + resync
                else:
                    await ctl.update()
            except FileError as e:
                log.error("%s: %s (the table is left as it is)", path, e)
            except ipvs.IPVSError as e:
                log.error("%s; full resync next", e)
                next_full = loop.time()
            try:
                await asyncio.wait_for(stop.wait(), interval)
            except asyncio.TimeoutError:
                pass


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(description="Keep a file's IPVS services in the table.")
    p.add_argument("path", help="the desired-state file (.json or .toml)")
    p.add_argument("--netns", help="the network namespace of the table (ip netns name)")
    p.add_argument("--interval", type=float, default=1.0, help="seconds between file checks")
    p.add_argument("--resync", type=float, default=60.0, help="seconds between full applies")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")

    async def go() -> None:
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            asyncio.get_running_loop().add_signal_handler(sig, stop.set)
        await run(args.path, netns=args.netns, interval=args.interval, resync=args.resync,
                  stop=stop)

    asyncio.run(go())
    return 0


if __name__ == "__main__":
    sys.exit(main())

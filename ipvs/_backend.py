"""What a backend handle offers: the interface between `ipvs.IPVS` (and the
front doors on it: `AsyncIPVS`, the planner) and the table it drives.

Two classes implement it: the compiled ``ipvs._libipvs.Handle`` (netlink or
sockopt, in C) and ``ipvs._memory.MemoryHandle`` (the in-process table).
tests/unit/test_backend_unit.py checks that both have every member, with
these parameters.

The one call shape: a table-changing call is the tuple ``(method, service,
destination)`` (`Op`; destination None for a service call, its port set),
from the planner's `Change` (a tuple of that shape), `Batch` and `AsyncBatch`
down to `Backend.batch`, unchanged on the way. The handle trusts its
arguments: they are checked once, where a call is made (`ipvs.IPVS`'s
methods, `Batch`, `AsyncBatch`, `AsyncIPVS`'s single writes).
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Protocol, Tuple

from ipvs._model import Daemon, Destination, Service, Timeouts
from ipvs.errors import IPVSError

__all__ = ["Backend", "Op", "OP_NAMES", "MEMBERS"]

#: one table-changing call: (method, service, destination or None)
Op = Tuple[str, Service, Optional[Destination]]

#: the methods an `Op` may name
OP_NAMES = ("add_service", "update_service", "delete_service",
            "add_destination", "update_destination", "delete_destination")


class Backend(Protocol):
    """A handle on one namespace's IPVS table. Methods on a closed handle
    raise ValueError; kernel errors are `IPVSError`s (ipvs.errors)."""

    @property
    def backend(self) -> str:
        """ "netlink", "sockopt" or "memory"."""

    @property
    def closed(self) -> bool: ...

    def close(self) -> None: ...

    def fileno(self) -> int:
        """The kernel socket (io.UnsupportedOperation where there is none)."""

    def set_timeout(self, timeout_ms: int) -> None:
        """The reply timeout in ms (0: forever)."""

    def info(self) -> Tuple[int, int]:
        """(packed IPVS version, connection table size)."""

    # ------------------------------------------------------------- reads
    def services(self) -> List[Service]: ...

    def get_service(self, svc: Service) -> Service: ...

    def destinations(self, svc: Service) -> List[Destination]: ...

    def listing(self) -> List[Tuple[Service, List[Destination]]]:
        """Every service with its destinations, in table order."""

    def timeouts(self) -> Timeouts: ...

    def daemons(self) -> List[Daemon]: ...

    def read_proc_net(self, name: str, op: Optional[str] = None) -> Optional[str]:
        """/proc/net/NAME of the handle's namespace."""

    # ------------------------------------------------------------ writes
    def batch(self, calls: List[Op]) -> List[Optional[IPVSError]]:
        """Send ``calls`` in order, in as few system calls as the transport
        allows; per call None (applied) or its exception. Raises only when
        the transport itself failed."""

    def _svc_op(self, op: str, svc: Service) -> None:
        """One service call (add/update/delete_service), raising its error."""

    def _dest_op(self, op: str, svc: Service, dest: Destination) -> None:
        """One destination call (add/update/delete_destination), port set."""

    def flush(self) -> None: ...

    def zero(self, svc: Optional[Service] = None) -> None: ...

    def set_timeouts(self, tcp: int, tcp_fin: int, udp: int) -> None: ...

    def start_daemon(self, daemon: Daemon) -> None: ...

    def stop_daemon(self, state: Any) -> None: ...


#: an optional member: the planner compares the table with what is wanted in
#: the handle itself where it has this (the compiled handle: on the raw C
#: records; see ipvs._plan._plan_compared), else it lists the table
#: (``listing``) and compares in Python
#:     compare(want, prune_dests) -> ([(key, Service)], {key: (deleted, writes)})
OPTIONAL: Dict[str, str] = {"compare": "the table compared with apply()'s want map"}


#: every member of `Backend`, by name
MEMBERS = tuple(sorted(n for n in vars(Backend) if not n.startswith("__")
                       and n not in ("_abc_impl", "_is_protocol", "_is_runtime_protocol")
                       and not n.startswith("_abc")))

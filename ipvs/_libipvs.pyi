"""Type stubs of the compiled module ipvs._libipvs (ipvs/_libipvs.pyx).

Keep in step with the .pyx: tests/unit/test_packaging.py checks that every
public name of the compiled module, and every method of ``Handle``, has a stub
here.  The friendly, validated API is ``ipvs.IPVS`` (ipvs/_handle.py); this
module trusts its arguments to be model objects.
"""

from typing import Any, Dict, List, Literal, Optional, Tuple, Union

from ipvs._model import Daemon as Daemon
from ipvs._model import DaemonState as DaemonState
from ipvs._model import Destination as Destination
from ipvs._model import Forward as Forward
from ipvs._model import Protocol as Protocol
from ipvs._model import Service as Service
from ipvs._model import ServiceFlags as ServiceFlags
from ipvs._model import Stats as Stats
from ipvs._model import Timeouts as Timeouts
from ipvs._model import TunnelFlags as TunnelFlags
from ipvs._model import TunnelType as TunnelType
from ipvs.errors import IPVSError

_OpName = Literal["add_service", "update_service", "delete_service",
                  "add_destination", "update_destination", "delete_destination"]
_SvcOpName = Literal["add_service", "update_service", "delete_service"]
_DestOpName = Literal["add_destination", "update_destination", "delete_destination"]

BACKEND_NAMES: Dict[int, str]
"""libipvs backend number -> "netlink" / "sockopt"."""
BACKENDS: Dict[str, int]
""""auto" / "netlink" / "sockopt" -> libipvs backend number."""
OPS: Dict[str, int]
"""Method name of a table-changing call -> libipvs IPVS_OP_* number."""


TEST_BUILD: bool
"""True only in a -DIPVS_TEST_HOOKS build (make test-hooks)."""


def debug_alloc_counts() -> Optional[Tuple[int, int]]:
    """(allocations, frees) of the C layer in a -DIPVS_DEBUG_ALLOC build, else None."""


class Handle:
    """An open libipvs handle (one kernel socket)."""

    def __init__(self, backend: int, netns_fd: int, timeout_ms: int) -> None: ...
    def close(self) -> None: ...
    @property
    def closed(self) -> bool: ...
    @property
    def backend(self) -> str: ...
    def fileno(self) -> int: ...
    def link_up(self, name: str) -> Optional[bool]:
        """Whether interface ``name`` is up in the handle's namespace (None: unknown)."""
    def set_timeout(self, timeout_ms: int) -> None: ...

    def info(self) -> Tuple[int, int]:
        """(packed kernel IPVS version, connection table size)."""
    def services(self) -> List[Service]: ...
    def get_service(self, svc: Service) -> Service: ...
    def _svc_op(self, op: _SvcOpName, svc: Service) -> None: ...
    def destinations(self, svc: Service) -> List[Destination]: ...
    def listing(self) -> List[Tuple[Service, List[Destination]]]: ...
    def compare(self, want: Dict[Any, Tuple[Service, Dict[Any, Destination]]],
                prune_dests: bool
                ) -> Tuple[List[Tuple[Any, Service]],
                           Dict[Any, Tuple[List[Destination], List[Tuple[str, Destination]]]]]:
        """The table's services as (key, Service), each key as
        ipvs._plan._svc_key gives it, and per wanted service whose
        destinations differ: (deleted, [(method, Destination)]) (see apply())."""
    def _dest_op(self, op: _DestOpName, svc: Service, dest: Destination) -> None: ...
    def flush(self) -> None: ...
    def zero(self, svc: Optional[Service] = None) -> None: ...
    def timeouts(self) -> Timeouts: ...
    def set_timeouts(self, tcp: int, tcp_fin: int, udp: int) -> None: ...
    def daemons(self) -> List[Daemon]: ...
    def start_daemon(self, daemon: Daemon) -> None: ...
    def stop_daemon(self, state: Union[DaemonState, int]) -> None: ...
    def batch(self, calls: List[Tuple[_OpName, Service, Optional[Destination]]]
              ) -> List[Optional[IPVSError]]:
        """Per call, None (applied) or its exception, in call order."""
    def read_proc_net(self, name: str, op: Optional[str] = None) -> str:
        """/proc/net/NAME of the handle's namespace; a failure (a missing file
        included) raises the exception of operation ``op``."""

def dest_map(dests: List[Any]) -> Dict[Any, Any]:
    """{(address or its int, port): Destination} for apply(); None: an item to check."""

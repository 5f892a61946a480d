"""ipvs: Linux IPVS (the kernel's layer-4 load balancer) from Python.

    import ipvs
    with ipvs.IPVS() as lb:
        svc = ipvs.Service(address="10.0.0.1", port=80, protocol="tcp", scheduler="rr")
        lb.add_service(svc)
        lb.add_destination(svc, ipvs.Destination("192.168.1.10", 8080,
                                                  forward=ipvs.Forward.MASQ))

The model and the errors are pure Python and import without the compiled
extension; ``IPVS`` (and the batch/apply types) load the extension on first use.
"""

from typing import TYPE_CHECKING, Any, List

from ipvs._version import __version__
from ipvs._model import (SCHEDULERS, Call, Connection, Daemon, DaemonState, Destination,
                         Forward, Info, Protocol, Service, ServiceFlags, Stats, Timeouts,
                         TunnelFlags, TunnelType)
from ipvs._service_string import canonical_service_string, parse_service, service_string
from ipvs.errors import (BatchError, DaemonExistsError, DaemonNotRunningError,
                         DestinationExistsError, DestinationNotFoundError, InvalidRequestError,
                         InconsistentDumpError, IPVSError, IPVSPermissionError, IPVSTimeoutError,
                         IPVSUnavailableError, PersistenceEngineNotFoundError,
                         SchedulerNotFoundError, ServiceExistsError, ServiceNotFoundError,
                         UnsupportedError)

__all__ = [
    "__version__",
    "IPVS", "Batch", "Change", "Plan", "Call", "AsyncIPVS", "AsyncBatch",
    "Service", "Destination", "Stats", "Info", "Timeouts", "Daemon", "Connection",
    "Protocol", "Forward", "ServiceFlags", "TunnelType", "TunnelFlags", "DaemonState",
    "SCHEDULERS", "service_string", "parse_service", "canonical_service_string",
    "IPVSError", "IPVSUnavailableError", "IPVSPermissionError", "IPVSTimeoutError",
    "UnsupportedError", "ServiceExistsError", "ServiceNotFoundError",
    "DestinationExistsError", "DestinationNotFoundError", "SchedulerNotFoundError",
    "PersistenceEngineNotFoundError", "DaemonExistsError", "DaemonNotRunningError",
    "InvalidRequestError", "BatchError", "InconsistentDumpError",
]

_LAZY = {"IPVS", "Batch", "Change", "Plan", "AsyncIPVS", "AsyncBatch"}
# Public submodules reachable as attributes after ``import ipvs`` (imported on
# first access: netns and testing pull in the extension or pytest helpers).
_SUBMODULES = ("netns", "testing", "lab", "sandbox")

if TYPE_CHECKING:  # type checkers see the lazy names; at run time __getattr__ loads them
    from ipvs._handle import IPVS, Batch, Change, Plan
    from ipvs._async import AsyncIPVS, AsyncBatch


def __getattr__(name: str) -> Any:  # PEP 562: load the compiled extension on first use
    if name in _LAZY:
        from ipvs import _async, _handle
        value = getattr(_async if name.startswith("Async") else _handle, name)
        globals()[name] = value
        return value
    if name in _SUBMODULES:
        import importlib
        try:
            module = importlib.import_module("ipvs." + name)
        except ModuleNotFoundError as e:
            if e.name != "ipvs." + name:
                raise  # the submodule exists; something it imports does not
            raise AttributeError("module 'ipvs' has no attribute %r" % name) from None
        globals()[name] = module
        return module
    raise AttributeError("module 'ipvs' has no attribute %r" % name)


def __dir__() -> List[str]:
    import importlib.util
    subs = {n for n in _SUBMODULES if importlib.util.find_spec("ipvs." + n) is not None}
    return sorted(set(globals()) | _LAZY | subs)

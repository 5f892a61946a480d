"""The exception hierarchy and the one table that maps kernel errno values to it.

Every kernel error becomes an :class:`IPVSError` (an ``OSError``) carrying
``errno``, ``operation`` and a message saying what went wrong in that
operation. The class depends on the operation *and* the errno, because the
kernel reuses errno values: ENOENT means "scheduler not found" for
``add_service`` but "no such destination" for ``delete_destination``.

The mapping is table driven (``_TABLE``); :func:`from_errno` is the only place
that turns a return code into an exception, and this module is the only one
in the package that knows errno values: the Cython layer hands over the C
layer's return code, the kernel's message and what the call was about, and
never words a message itself. :func:`ipvsadm_message` gives ipvsadm's wording
of an exception, for the command line.
"""

from __future__ import annotations

import errno as _errno
import ipaddress as _ipaddress
import os as _os
import socket as _socket
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Tuple, Type

if TYPE_CHECKING:
    from ipvs._model import Call

__all__ = [
    "IPVSError",
    "IPVSUnavailableError",
    "IPVSPermissionError",
    "IPVSTimeoutError",
    "UnsupportedError",
    "ServiceExistsError",
    "ServiceNotFoundError",
    "DestinationExistsError",
    "DestinationNotFoundError",
    "SchedulerNotFoundError",
    "PersistenceEngineNotFoundError",
    "DaemonExistsError",
    "DaemonNotRunningError",
    "InvalidRequestError",
    "BatchError",
    "InconsistentDumpError",
    "from_errno",
    "ipvsadm_message",
]


class IPVSError(OSError):
    """A kernel IPVS operation failed.

    Attributes: ``errno``, ``strerror`` (the message), ``operation`` (e.g.
    ``"add_destination"``) and ``kernel_message`` (the kernel's extended-ack
    text, or ``None``).
    """

    operation: Optional[str]
    kernel_message: Optional[str]

    def __init__(self, errno: int, message: str, operation: Optional[str] = None,
                 kernel_message: Optional[str] = None) -> None:
        super().__init__(errno, message)
        self.operation = operation
        self.kernel_message = kernel_message or None

    def __str__(self) -> str:
        name = _errno.errorcode.get(self.errno, str(self.errno)) if self.errno else None
        text = self.strerror or ""
        if self.kernel_message and self.kernel_message not in text:
            text = "%s (kernel: %s)" % (text, self.kernel_message)
        return "%s [%s]" % (text, name) if name else text

    def __reduce__(self) -> Any:
        return (type(self), (self.errno, self.strerror, self.operation, self.kernel_message))


class IPVSUnavailableError(IPVSError):
    """IPVS is not in this kernel, or the ip_vs module is not loaded."""


class IPVSPermissionError(IPVSError, PermissionError):
    """The caller lacks CAP_NET_ADMIN (EPERM / EACCES)."""


class IPVSTimeoutError(IPVSError, TimeoutError):
    """The kernel did not answer within the handle's timeout."""


class UnsupportedError(IPVSError):
    """The backend or the running kernel cannot do this."""


class ServiceExistsError(IPVSError, FileExistsError):
    """The virtual service already exists."""


class ServiceNotFoundError(IPVSError, LookupError):
    """No such virtual service."""


class DestinationExistsError(IPVSError, FileExistsError):
    """The real server already exists in this service."""


class DestinationNotFoundError(IPVSError, LookupError):
    """No such real server in this service."""


class SchedulerNotFoundError(IPVSError, LookupError):
    """The kernel has no scheduler of that name (module missing)."""


class PersistenceEngineNotFoundError(IPVSError, LookupError):
    """The kernel has no persistence engine of that name."""


class DaemonExistsError(IPVSError, FileExistsError):
    """A sync daemon of that state is already running."""


class DaemonNotRunningError(IPVSError, LookupError):
    """No sync daemon of that state is running."""


class InvalidRequestError(IPVSError, ValueError):
    """The kernel refused the values (EINVAL, ERANGE, ...)."""


class BatchError(IPVSError):
    """One or more calls of a batch failed.

    ``failures`` is a list of ``(call, exception)`` in call order, each call
    an `ipvs.Call` whose ``index`` is its position in the batch; ``succeeded``
    the number of calls the kernel applied.
    """

    failures: List[Tuple["Call", IPVSError]]
    succeeded: int

    def __init__(self, failures: List[Tuple["Call", IPVSError]], succeeded: int,
                 operation: str = "batch") -> None:
        first = failures[0][1] if failures else None
        n = len(failures)
        message = "%d of %d batched call%s failed" % (n, n + succeeded, "" if n + succeeded == 1 else "s")
        if first is not None:
            message += "; first: %s: %s" % (failures[0][0], first.strerror)
        super().__init__((first.errno or 0) if first is not None else 0, message, operation)
        self.failures = list(failures)
        self.succeeded = succeeded

    def __str__(self) -> str:
        return self.strerror or ""

    def __reduce__(self) -> Any:
        return (type(self), (self.failures, self.succeeded, self.operation))


class InconsistentDumpError(IPVSError):
    """A consistent read (``services(consistent=True)``,
    ``table(consistent=True)``) gave up: the table kept changing, so no two
    consecutive dumps agreed within the allowed number of tries. errno is
    EAGAIN: trying again later may succeed."""


# --------------------------------------------------------------------------
# The table. Keys: (operation, errno); operation "*" applies to every
# operation not matched more specifically. Values: (class, message template).
# Templates may use {target} (the object acted on, e.g. "service TCP
# 10.0.0.1:80"), {service}, {destination}, {scheduler}, {pe}, {interface},
# {state}, {operation} and {strerror}.
# --------------------------------------------------------------------------

_E = _errno
_AF_INET6 = int(_socket.AF_INET6)
_FWD_TUNNEL = 2          # Forward.TUNNEL (IP_VS_CONN_F_TUNNEL)
_TUN_GUE = 1             # TunnelType.GUE
_SVC_OPS = ("add_service", "update_service", "delete_service", "get_service", "zero")
_DEST_OPS = ("add_destination", "update_destination", "delete_destination")

_TABLE: Dict[Tuple[str, int], Tuple[Type[IPVSError], str]] = {
    # generic rows
    ("*", _E.EPERM): (IPVSPermissionError, "{operation}: permission denied (needs CAP_NET_ADMIN in the initial user namespace)"),
    ("*", _E.EACCES): (IPVSPermissionError, "{operation}: permission denied (needs CAP_NET_ADMIN)"),
    ("*", _E.ETIMEDOUT): (IPVSTimeoutError, "{operation}: no reply from the kernel within the handle's timeout"),
    ("*", _E.EOPNOTSUPP): (UnsupportedError, "{operation}: not supported by this backend or kernel"),
    ("*", _E.ENOPROTOOPT): (IPVSUnavailableError, "{operation}: IPVS is not available in this kernel (load it with `modprobe ip_vs`)"),
    ("*", _E.EINVAL): (InvalidRequestError, "{operation}: the kernel refused the values for {target} (invalid argument)"),
    ("*", _E.ERANGE): (InvalidRequestError, "{operation}: a value is out of range for {target} (weight must be >= 0, lower threshold <= upper)"),
    ("*", _E.EAFNOSUPPORT): (InvalidRequestError, "{operation}: address family not supported for {target}"),
    ("*", _E.EFAULT): (InvalidRequestError, "{operation}: the kernel refused the request for {target} (invalid protocol?)"),
    ("*", _E.ESRCH): (ServiceNotFoundError, "{operation}: no such service: {service}"),
    ("*", _E.EBADMSG): (IPVSError, "{operation}: malformed reply from the kernel"),
    ("*", _E.EPROTO): (IPVSError, "{operation}: unexpected reply from the kernel (protocol error)"),
    ("*", _E.ENOBUFS): (IPVSError, "{operation}: the kernel's replies overran the socket buffer"),
    ("*", _E.EBUSY): (IPVSError, "{operation}: the kernel is busy (another dump is running on this socket)"),
    ("*", _E.EDEADLK): (IPVSError, "{operation}: this thread is already inside a call on this handle (a signal handler interrupted it?); use another handle there"),
    ("*", _E.ENOTRECOVERABLE): (IPVSError, "{operation}: could not restore the calling thread's network namespace"),
    # opening a handle
    ("open", _E.ENOENT): (IPVSUnavailableError, "IPVS is not available: the kernel has no \"IPVS\" generic netlink family (load it with `modprobe ip_vs`)"),
    ("open", _E.EAFNOSUPPORT): (IPVSUnavailableError, "netlink is not available in this kernel"),
    ("open", _E.ENOPROTOOPT): (IPVSUnavailableError, "IPVS is not available in this kernel (load it with `modprobe ip_vs`)"),
    # services
    ("add_service", _E.EEXIST): (ServiceExistsError, "add_service: {service} already exists"),
    ("add_service", _E.ENOENT): (SchedulerNotFoundError, "add_service: scheduler {scheduler!r} not found (no module ip_vs_{scheduler}?)"),
    ("update_service", _E.ENOENT): (SchedulerNotFoundError, "update_service: scheduler {scheduler!r} not found (no module ip_vs_{scheduler}?)"),
    # destinations
    ("add_destination", _E.EEXIST): (DestinationExistsError, "add_destination: {destination} already exists in {service}"),
    ("add_destination", _E.ENOENT): (DestinationNotFoundError, "add_destination: {destination} not found in {service}"),
    ("update_destination", _E.ENOENT): (DestinationNotFoundError, "update_destination: no such {destination} in {service}"),
    ("delete_destination", _E.ENOENT): (DestinationNotFoundError, "delete_destination: no such {destination} in {service}"),
    ("modify_destination", _E.ENOENT): (DestinationNotFoundError, "modify_destination: no such {destination} in {service}"),
    # daemons
    ("start_daemon", _E.EEXIST): (DaemonExistsError, "start_daemon: a {state} sync daemon is already running"),
    ("start_daemon", _E.ENETUNREACH): (InvalidRequestError, "start_daemon: the multicast group cannot be reached through {interface!r} (network unreachable; an IPv6 group needs an interface with IPv6 multicast routes, not lo)"),
    ("start_daemon", _E.ENODEV): (InvalidRequestError, "start_daemon: no such interface {interface!r}"),
    ("start_daemon", _E.EINVAL): (InvalidRequestError, "start_daemon: the kernel refused the daemon settings (invalid argument; a destination whose family differs from its service's also prevents sync)"),
    ("stop_daemon", _E.ESRCH): (DaemonNotRunningError, "stop_daemon: no {state} sync daemon is running"),
    # /proc/net files of the handle's namespace (stats, connections)
    ("stats", _E.ENOENT): (IPVSUnavailableError, "stats: {target} is missing (IPVS not loaded?)"),
    ("connections", _E.ENOENT): (IPVSUnavailableError, "connections: {target} is missing (IPVS not loaded?)"),
}

# The persistence-engine variant of ENOENT on add/update_service (see from_errno).
_PE_NOT_FOUND = (PersistenceEngineNotFoundError,
                 "{operation}: persistence engine {pe!r} not found (no module ip_vs_pe_{pe}?)")


def _module_loaded(name: str) -> bool:
    return _os.path.isdir("/sys/module/" + name)


class _Default(dict):  # type: ignore[type-arg]
    def __missing__(self, key: str) -> str:
        return "?"


def from_errno(operation: str, err: int, *, kernel_message: Optional[str] = None,
               **context: Any) -> IPVSError:
    """Build the exception for a failed ``operation``.

    ``err`` is the errno, positive, or the C layer's negative return code
    (the sign is ignored). ``kernel_message`` is the kernel's extended-ack
    text, or for ``"open"`` and for EOPNOTSUPP the C layer's description of
    what failed. ``context`` fills the message: target, service, destination,
    scheduler, pe, interface, state, tries; ``_service`` / ``_dest`` (the
    request's objects) and ``_lo_up`` (a callable answering whether ``lo`` is
    up in the handle's namespace, None when unknown) let EINVAL and ERANGE
    say which of the kernel's reasons applies.
    """
    err = abs(err)
    kernel_message = kernel_message or None
    entry = _TABLE.get((operation, err)) or _TABLE.get(("*", err))
    if err == _E.ENOENT and operation in ("add_service", "update_service") and context.get("pe"):
        # The kernel answers ENOENT both for a missing scheduler and for a
        # missing persistence engine (it looks the scheduler up first). When
        # the scheduler's module is loaded, the engine is the one missing.
        sched = context.get("scheduler") or ""
        if _module_loaded("ip_vs_" + sched) or not _module_loaded("ip_vs_pe_" + context["pe"]):
            entry = _PE_NOT_FOUND
    if entry is None:
        cls: Type[IPVSError] = IPVSError
        template = "{operation}: {strerror} ({target})" if context.get("target") else "{operation}: {strerror}"
    else:
        cls, template = entry
    if kernel_message and err == _E.EOPNOTSUPP:
        # the C layer names the feature the backend or kernel lacks
        template, kernel_message = "{operation}: %s is not supported by this backend or kernel" % (
            kernel_message.replace("{", "{{").replace("}", "}}")), None
    elif operation == "open":
        # the table's text for open errors already says what to do; the C
        # layer's message is used only where the table has nothing specific
        if kernel_message and entry is None:
            template = "open: " + kernel_message.replace("{", "{{").replace("}", "}}")
        kernel_message = None
    fill = _Default(context)
    fill["operation"] = operation
    fill["strerror"] = _os.strerror(err) if err else "error"
    fill.setdefault("target", fill.get("service") or operation)
    try:
        message = template.format_map(fill)
    except (ValueError, KeyError, IndexError):  # a malformed context value
        message = "%s: %s" % (operation, fill["strerror"])
    why = _why(err, context.get("_service"), context.get("_dest"), context.get("_lo_up"))
    if why:
        message = "%s: %s" % (message, why)
    return cls(err, message, operation, kernel_message)


def address_taken(e: OSError) -> bool:
    """True when a bind or connect failed because the local address (or
    port) is in use or cannot be had now (EADDRINUSE, EADDRNOTAVAIL)."""
    return e.errno in (_errno.EADDRINUSE, _errno.EADDRNOTAVAIL)


def call_context(svc: Any, dest: Any = None) -> Dict[str, Any]:
    """The context `from_errno` words a message about a call on ``svc`` /
    ``dest`` with (the compiled handle and the memory backend both use it)."""
    ctx: Dict[str, Any] = {"_service": svc, "_dest": dest}   # the objects, for _why()
    if svc is not None:
        ctx["service"] = str(svc)
        ctx["scheduler"] = svc.scheduler
        ctx["pe"] = svc.pe_name or ""
    if dest is not None:
        ctx["destination"] = str(dest)
        ctx["target"] = "%s of %s" % (dest, svc)
    return ctx


def destination_missing(operation: str, destination: Any, service: Any) -> IPVSError:
    """The exception of an ``operation`` that found no ``destination`` in
    ``service`` by itself (not the kernel's answer): ENOENT, as the kernel's
    update_destination says it."""
    return from_errno(operation, _E.ENOENT, destination=destination, service=service)


def inconsistent_dump(operation: str, tries: int) -> InconsistentDumpError:
    """The exception of a consistent read (``consistent=True``) that gave up
    after ``tries`` dumps (errno EAGAIN)."""
    return InconsistentDumpError(
        _E.EAGAIN, "%s: the IPVS table kept changing: no two consecutive dumps agreed in "
        "%d tries (consistent=True)" % (operation, tries), operation)


def _lo_state(lo_up: Optional[Callable[[], Optional[bool]]]) -> Optional[bool]:
    if lo_up is None:
        return None
    try:
        return lo_up()
    except Exception:  # the handle is gone or the question failed: unknown
        return None


def _why(err: int, svc: Any, dest: Any,
         lo_up: Optional[Callable[[], Optional[bool]]] = None) -> Optional[str]:
    """Which of the kernel's reasons for EINVAL / ERANGE applies (the kernel
    itself says nothing but the errno), judged from the request's values and,
    for an address the kernel would not take as unicast, from the state of
    ``lo`` in the handle's namespace."""
    try:
        if dest is not None and svc is not None:
            if err == _E.ERANGE:
                if dest.weight < 0:
                    return "weight %d is negative" % dest.weight
                if dest.lower_threshold > dest.upper_threshold:
                    return "lower threshold %d is above upper threshold %d" % (
                        dest.lower_threshold, dest.upper_threshold)
            elif err == _E.EINVAL:
                if dest.family != svc.family and int(dest.forward) != _FWD_TUNNEL:
                    return ("the destination's address family differs from the service's, "
                            "which only TUNNEL destinations may do")
                if dest.family != svc.family:
                    return ("a destination of another address family is refused while a "
                            "sync daemon runs")
                if int(dest.forward) == _FWD_TUNNEL and int(dest.tunnel_type) == _TUN_GUE \
                        and not dest.tunnel_port:
                    return "a GUE tunnel needs a tunnel port"
                big = _threshold_over_int_max(dest)
                if big:
                    return big
                return _not_unicast(dest.address, lo_up)
        elif svc is not None and err == _E.EINVAL:
            if int(svc.family) == _AF_INET6 and not 1 <= svc.netmask <= 128:
                return "an IPv6 persistence netmask must be a prefix length 1..128, got %d" % svc.netmask
    except (AttributeError, TypeError, ValueError):
        pass
    return None


def _not_unicast(address: Any, lo_up: Optional[Callable[[], Optional[bool]]]) -> str:
    """Why the kernel did not take ``address`` as a unicast address."""
    addr = _ipaddress.ip_address(address)
    if addr.is_multicast:
        return "%s is not a unicast address (a multicast address)" % addr
    if addr.is_unspecified:
        return "%s is not a unicast address (the unspecified address)" % addr
    if addr.version == 4 and int(addr) == 0xFFFFFFFF:
        return "%s is not a unicast address (the broadcast address)" % addr
    if addr.version == 4 and _lo_state(lo_up) is False:
        # with lo down the namespace has no local routes, and the kernel
        # takes no IPv4 address for a unicast one
        return ("%s is not a unicast address in the handle's namespace while its lo is "
                "down (bring it up: ip link set lo up)" % addr)
    return ("the kernel does not take %s as a unicast address in the handle's namespace "
            "(a broadcast address of a local subnet, or an address it has no route for?)" % addr)


# --------------------------------------------------------------------------
# ipvsadm's wording, for the command line: ipvsadm prints its own text for
# the errno values it knows (libipvs's ipvs_strerror) and strerror otherwise.
# Keys as in _TABLE.
# --------------------------------------------------------------------------

_IPVSADM: Dict[Tuple[str, int], str] = {
    ("add_service", _E.EEXIST): "Service already exists",
    ("add_destination", _E.EEXIST): "Destination already exists",
    ("stop_daemon", _E.ESRCH): "No daemon is running",
    ("add_service", _E.ENOENT): "Scheduler or persistence engine not found",
    ("update_service", _E.ENOENT): "Scheduler or persistence engine not found",
    ("*", _E.ESRCH): "No such service",
    ("*", _E.EINVAL): "Invalid operation.  Possibly wrong module version, address not unicast, ...",
    ("*", _E.EPERM): "Permission denied (you must be root)",
}
for _op in _DEST_OPS:
    _IPVSADM[(_op, _E.ESRCH)] = "Service not defined"
    _IPVSADM[(_op, _E.ENOENT)] = "No such destination"

# ipvsadm's text when no IPVS socket can be opened at all
_IPVSADM_NO_IPVS = ("Can't initialize ipvs: %s\nAre you sure that IP Virtual Server is "
                    "built in the kernel or as module?" % _os.strerror(_E.ENOPROTOOPT))


def ipvsadm_message(exc: BaseException) -> str:
    """The message ipvsadm prints for ``exc`` (an exception of a call).

    Kernel errors get ipvsadm's own wording where it has one, else the C
    library's strerror text of the errno; an :class:`IPVSUnavailableError`
    from opening gets ipvsadm's two "Can't initialize ipvs" lines; anything
    without an errno its ``str()``.
    """
    err = getattr(exc, "errno", None) or 0
    op = getattr(exc, "operation", None) or ""
    if isinstance(exc, IPVSUnavailableError) and op == "open":
        return _IPVSADM_NO_IPVS
    text = _IPVSADM.get((op, err)) or _IPVSADM.get(("*", err))
    if text is not None:
        return text
    if err:
        return _os.strerror(err)
    return str(exc)


def no_such_interface() -> str:
    """ipvsadm's message for a sync daemon interface name the kernel would
    refuse (empty or longer than 15 bytes): the kernel's ENODEV text."""
    return _os.strerror(_E.ENODEV)


_INT_MAX = (1 << 31) - 1


def _threshold_over_int_max(dest: Any) -> Optional[str]:
    """Kernels from 6.12 on refuse a connection threshold above INT_MAX with
    EINVAL (6.1 stores up to 2**32-1): name the threshold, not the address."""
    for field in ("upper_threshold", "lower_threshold"):
        value = getattr(dest, field, 0)
        if isinstance(value, int) and value > _INT_MAX:
            return ("%s %d is above %d, the largest threshold this kernel accepts "
                    "(Linux 6.12 and later; 6.1 accepted up to %d)"
                    % (field.replace("_", " "), value, _INT_MAX, (1 << 32) - 1))
    return None

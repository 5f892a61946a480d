"""pytest plugin for code that uses ``ipvs`` (entry point ``pytest11: ipvs``).

Fixtures
    ``ipvs_netns``   name of a fresh, private network namespace with ``lo``
                     up; removed after the test.
    ``ipvs_handle``  an ``ipvs.IPVS(netns=ipvs_netns)`` handle, closed after
                     the test: a test never touches the host's IPVS table.
    ``ipvsadm``      ``ipvsadm(*args) -> str`` runs Debian's ipvsadm inside
                     that same namespace and returns its stdout (raises
                     ``IpvsadmError`` with its stderr on failure);
                     ``ipvsadm.run(*args)`` returns the CompletedProcess.
    ``ipvs_memory``  an ``ipvs.IPVS(backend="memory")`` handle on fresh,
                     empty memory tables (no root, no kernel needed). While
                     the test runs, ``IPVS()`` / ``AsyncIPVS()`` opened with
                     backend "auto" (the default) by the code under test
                     are memory handles on the same tables, and
                     ``ipvs.netns.create()`` registers memory namespaces.
                     Run inside ``python -m ipvs.sandbox``, its handles
                     follow the booted kernel's profile.

Functions for tests on the memory backend: ``reset_memory()``,
``set_counters(service, dest=None, *, netns=None, active=, inactive=,
persistent=, stats=)``, ``add_interface(name, *, netns=None)``,
``add_netns(netns)`` / ``remove_netns(netns)`` (the registry of namespaces
that memory handles may be opened on) and ``sandbox_kernel_profile()``.

Marker
    ``@pytest.mark.kernel``: the test needs root and a kernel with IPVS.
    Without them it is skipped with the reason, unless the environment has
    ``IPVS_REQUIRE_KERNEL=1`` (set in the sandbox and CI): then it fails, so
    kernel tests are never skipped silently.  The fixtures above apply the
    same rule.

Run kernel tests where the host has no IPVS with
``python -m ipvs.sandbox -- python -m pytest ...`` (Debian's user-mode-linux).
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import socket
import struct
import subprocess

from typing import Any, Iterator, Optional

import pytest

__all__ = [
    "ipvs_kernel_available",
    "kernel_unavailable_reason",
    "require_kernel",
    "IpvsadmError",
    "Ipvsadm",
    "reset_memory",
    "set_counters",
    "add_interface",
    "add_netns",
    "remove_netns",
    "memory_auto",
    "sandbox_kernel_profile",
]

REQUIRE_ENV = "IPVS_REQUIRE_KERNEL"
HOW_TO = ("run them in the sandbox kernel: `python -m ipvs.sandbox -- python -m pytest ...` "
          "(needs Debian's user-mode-linux package)")
NO_IPVS_REASON = f"no IPVS in this kernel: {HOW_TO}"
NOT_ROOT_REASON = f"kernel tests need root (CAP_NET_ADMIN, CAP_SYS_ADMIN): {HOW_TO}"

_CAP_SYS_ADMIN = 21
_CAP_NET_ADMIN = 12


# -- kernel detection ------------------------------------------------------

def _genl_family_exists(name: str, timeout: float = 2.0) -> bool | None:
    """Ask the generic netlink controller for a family (CTRL_CMD_GETFAMILY).

    True/False, or None if the question could not be asked.
    """
    NETLINK_GENERIC, GENL_ID_CTRL = 16, 0x10
    NLM_F_REQUEST, NLM_F_ACK = 0x1, 0x4
    NLMSG_ERROR = 0x2
    CTRL_CMD_GETFAMILY, CTRL_ATTR_FAMILY_NAME = 3, 2
    try:
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC,
                             NETLINK_GENERIC)
    except (OSError, AttributeError):
        return None
    with sock:
        sock.settimeout(timeout)
        payload = name.encode() + b"\0"
        nla_len = 4 + len(payload)
        attr = struct.pack("HH", nla_len, CTRL_ATTR_FAMILY_NAME) + payload
        attr += b"\0" * (-len(attr) % 4)
        body = struct.pack("BBH", CTRL_CMD_GETFAMILY, 1, 0) + attr
        msg = struct.pack("IHHII", 16 + len(body), GENL_ID_CTRL,
                          NLM_F_REQUEST | NLM_F_ACK, 1, 0) + body
        try:
            sock.bind((0, 0))
            sock.send(msg)
            while True:
                data = sock.recv(65536)
                off = 0
                while off + 16 <= len(data):
                    length, mtype, _flags, seq, _pid = struct.unpack_from("IHHII", data, off)
                    if length < 16:
                        return None
                    if seq == 1:
                        if mtype == NLMSG_ERROR:
                            err = struct.unpack_from("i", data, off + 16)[0]
                            if err != 0:  # -ENOENT: no such family
                                return False
                            return None  # a bare ack without a reply
                        if mtype == GENL_ID_CTRL:
                            return True
                    off += (length + 3) & ~3
        except OSError:
            return None


def _has_caps() -> bool:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("CapEff:"):
                    caps = int(line.split()[1], 16)
                    need = (1 << _CAP_SYS_ADMIN) | (1 << _CAP_NET_ADMIN)
                    return caps & need == need
    except OSError:
        pass
    return os.geteuid() == 0


@functools.lru_cache(maxsize=None)
def kernel_unavailable_reason() -> str | None:
    """None if kernel tests can run here, else why not."""
    if not _has_caps():
        return NOT_ROOT_REASON
    if os.path.exists("/proc/net/ip_vs"):
        return None
    found = _genl_family_exists("IPVS")
    if found:
        return None
    return NO_IPVS_REASON


def ipvs_kernel_available() -> bool:
    """True if we are root and the kernel has IPVS (its netlink family)."""
    return kernel_unavailable_reason() is None


def _required() -> bool:
    return os.environ.get(REQUIRE_ENV, "").strip().lower() in ("1", "true", "yes")


def require_kernel() -> None:
    """Skip the running test (or fail it under IPVS_REQUIRE_KERNEL=1)
    when kernel tests cannot run here."""
    reason = kernel_unavailable_reason()
    if reason is None:
        return
    if _required():
        pytest.fail(f"{REQUIRE_ENV}=1 but {reason}", pytrace=False)
    pytest.skip(reason)


# -- ipvsadm ---------------------------------------------------------------

class IpvsadmError(subprocess.CalledProcessError):
    def __str__(self):
        err = self.stderr or ""
        if isinstance(err, bytes):
            err = err.decode("utf-8", "replace")
        return (f"{' '.join(map(str, self.cmd))} exited with {self.returncode}: "
                f"{err.strip()}")


class Ipvsadm:
    """Runs Debian's ipvsadm inside one named network namespace."""

    def __init__(self, netns: str, binary: str | None = None):
        self.netns = netns
        self.binary = binary or shutil.which("ipvsadm") or "/usr/sbin/ipvsadm"

    def command(self, *args) -> list[str]:
        return ["ip", "netns", "exec", self.netns, self.binary, *map(str, args)]

    def run(self, *args, input=None, check=False, timeout=60):
        """Run ipvsadm ARGS; return the CompletedProcess (text mode)."""
        cmd = self.command(*args)
        proc = subprocess.run(cmd, input=input, capture_output=True, text=True,
                              timeout=timeout, check=False,
                              stdin=None if input is not None else subprocess.DEVNULL)
        if check and proc.returncode != 0:
            raise IpvsadmError(proc.returncode, cmd, proc.stdout, proc.stderr)
        return proc

    def __call__(self, *args, input=None, timeout=60) -> str:
        """Run ipvsadm ARGS; return stdout, raise IpvsadmError on failure."""
        return self.run(*args, input=input, check=True, timeout=timeout).stdout

    def __repr__(self):
        return f"Ipvsadm(netns={self.netns!r})"


# -- pytest hooks and fixtures ---------------------------------------------

def pytest_configure(config):
    config.addinivalue_line(
        "markers",
        "kernel: needs root and a kernel with IPVS (skipped otherwise; "
        f"fails instead when {REQUIRE_ENV}=1)")


def pytest_report_header(config):
    reason = kernel_unavailable_reason()
    state = "available" if reason is None else f"unavailable ({reason})"
    extra = " [in ipvs.sandbox]" if os.environ.get("IPVS_SANDBOX") == "1" else ""
    req = f", {REQUIRE_ENV}=1" if _required() else ""
    return f"ipvs: kernel tests {state}{req}{extra}"


def pytest_runtest_setup(item):
    if item.get_closest_marker("kernel") is not None:
        require_kernel()


@pytest.fixture
def ipvs_netns():
    """Name of a fresh network namespace with ``lo`` up, removed after."""
    require_kernel()
    from ipvs import netns

    with netns.temporary() as name:
        netns.link_up(name, "lo")
        yield name


@pytest.fixture
def ipvs_handle(ipvs_netns):
    """``ipvs.IPVS(netns=...)`` in a fresh namespace, closed after."""
    import ipvs

    handle = ipvs.IPVS(netns=ipvs_netns)
    try:
        yield handle
    finally:
        handle.close()


@pytest.fixture
def ipvsadm(ipvs_netns):
    """``ipvsadm(*args) -> stdout`` inside the test's namespace."""
    tool = Ipvsadm(ipvs_netns)
    if not os.access(tool.binary, os.X_OK):
        msg = "ipvsadm not installed (apt-get install ipvsadm)"
        if _required():
            pytest.fail(msg, pytrace=False)
        pytest.skip(msg)
    return tool


# -- the memory backend ----------------------------------------------------

def reset_memory() -> None:
    """Empty every memory table of this process (all ``netns`` values):
    services, destinations, counters, timeouts, sync daemons; and forget
    every registered namespace."""
    from ipvs import _memory

    _memory.reset()


def set_counters(service: Any, dest: Any = None, *, netns: Any = None,
                 active: Optional[int] = None, inactive: Optional[int] = None,
                 persistent: Optional[int] = None, stats: Any = None) -> None:
    """Set the counters that a memory table reports, so that drain and
    metrics logic can be tested: a service's ``stats`` (an ``ipvs.Stats`` or
    a dict of its fields), or one destination's ``active``, ``inactive``,
    ``persistent`` connection counts and ``stats``. None leaves a value as it
    is; ``zero()`` clears stats as the kernel does (not connection counts).
    The service and destination must exist in the table of ``netns``."""
    from ipvs import _memory

    _memory.set_counters(service, dest, netns=netns, active=active, inactive=inactive,
                         persistent=persistent, stats=stats)


def add_interface(name: str, *, netns: Any = None, mtu: int = 1500) -> None:
    """Let a memory namespace have interface ``name`` (a fresh one has only
    ``lo``), e.g. for ``start_daemon(Daemon("master", "eth0"))``. A named
    ``netns`` is registered (see `add_netns`) if it was not."""
    from ipvs import _memory

    _memory.add_interface(name, netns=netns, mtu=mtu)


def add_netns(netns: str) -> None:
    """Register the namespace ``netns`` (a name as ``ip netns`` uses, or a
    path) for the memory backend: ``IPVS(backend="memory", netns=...)``
    opens only registered ones (others raise FileNotFoundError, as the
    kernel backend does for a namespace that does not exist). Registering
    one twice is harmless; `reset_memory` forgets them all."""
    from ipvs import _memory

    _memory.register_netns(netns)


def remove_netns(netns: str) -> None:
    """Unregister a memory namespace and empty its table (handles open on it
    keep working). FileNotFoundError when it is not registered."""
    from ipvs import _memory

    _memory.unregister_netns(netns)


def sandbox_kernel_profile() -> Optional[str]:
    """The memory backend's profile ("6.1", "6.12", "7") of the kernel this
    process runs on when it runs inside ``python -m ipvs.sandbox``; None
    elsewhere (memory handles then follow their default, "6.12")."""
    from ipvs import _memory

    if os.environ.get("IPVS_SANDBOX") != "1":
        return None
    return _memory.profile_of(os.uname().release)


@contextlib.contextmanager
def memory_auto(kernel: Optional[str] = None) -> Iterator[None]:
    """Within the block, ``IPVS()`` / ``AsyncIPVS()`` with backend "auto"
    open memory handles (what the ``ipvs_memory`` fixture does) and
    ``ipvs.netns.create()`` registers memory namespaces; ``kernel`` ("6.1",
    "6.12", "7") is the profile of memory handles opened without one
    (default "6.12")."""
    from ipvs import _memory

    _memory.enable_auto(True, kernel)
    try:
        yield
    finally:
        _memory.enable_auto(False)


@pytest.fixture
def ipvs_memory() -> Iterator[Any]:
    """A memory handle (netns None) on fresh tables; backend "auto" means
    memory until the test ends. Needs neither root nor IPVS. Inside the
    sandbox, handles follow the booted kernel's profile."""
    import ipvs

    reset_memory()
    with memory_auto(sandbox_kernel_profile()):
        handle = ipvs.IPVS(backend="memory")
        try:
            yield handle
        finally:
            handle.close()
            reset_memory()

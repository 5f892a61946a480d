"""Named network namespaces, the same ones ``ip netns`` shows.

A named namespace is a bind mount of a network namespace file on
``/run/netns/NAME``; ``/run/netns`` itself is a bind mount of itself with
shared propagation, exactly as ``ip netns add`` leaves it, so both tools see
and can remove each other's namespaces.

Namespace switches are per thread (``setns`` acts on the calling thread):
``create`` and ``link_up`` do their switching in a short-lived helper
thread, so the caller's thread never changes namespace.  ``enter`` switches
the *calling* thread and switches it back; if switching back fails the
thread is left in the wrong namespace and a RuntimeError says so.

While ``ipvs.IPVS()`` opens memory handles (the ``ipvs_memory`` pytest
fixture, ``ipvs.testing.memory_auto``), ``create``, ``remove``, ``exists``,
``names``, ``temporary`` and ``link_up`` work on the memory backend's
registry of namespaces instead of /run/netns, so the code under test makes
and finds its namespaces there (``enter`` and ``open_netns`` stay real).

Standard library and libc (ctypes) only.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import fcntl
import os
import secrets
import socket
import struct
import sys
import threading
from typing import Any, Callable, Dict, Iterator, Optional, TypeVar, Union

T = TypeVar("T")
#: what names a namespace: a name under /run/netns, a path, or an open fd
NetnsTarget = Union[str, bytes, "os.PathLike[str]", int]

__all__ = [
    "NETNS_RUN_DIR",
    "create",
    "remove",
    "exists",
    "names",
    "path",
    "validate_name",
    "temporary",
    "enter",
    "link_up",
    "open_netns",
    "current_id",
]

NETNS_RUN_DIR = "/run/netns"
SELF_NS = "/proc/thread-self/ns/net"

CLONE_NEWNET = 0x40000000
MS_BIND = 0x1000
MS_REC = 0x4000
MS_SHARED = 1 << 20
MNT_DETACH = 2
NAME_MAX = 255

SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1
IFNAMSIZ = 16

_libc: Optional[ctypes.CDLL] = None


def _lib() -> ctypes.CDLL:
    global _libc
    if _libc is None:
        lib = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        lib.unshare.argtypes = [ctypes.c_int]
        lib.setns.argtypes = [ctypes.c_int, ctypes.c_int]
        lib.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p,
                              ctypes.c_ulong, ctypes.c_void_p]
        lib.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
        _libc = lib
    return _libc


def _check(ret: int, what: str, filename: Optional[str] = None) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}", filename)


def _enc(s: Optional[str]) -> Optional[bytes]:
    return None if s is None else os.fsencode(s)


def _mount(source: Optional[str], target: str, fstype: Optional[str], flags: int) -> None:
    _check(_lib().mount(_enc(source), _enc(target), _enc(fstype), flags, None),
           "mount", target)


def _setns(fd: int, nstype: int = CLONE_NEWNET) -> None:
    _check(_lib().setns(fd, nstype), "setns")


# -- names -----------------------------------------------------------------

def validate_name(name: object) -> str:
    """Return ``name`` if ``ip netns`` would accept it, else raise.

    TypeError for a non-str; ValueError for an empty name, '.', '..', a name
    with '/' or NUL, or one longer than 255 bytes.
    """
    if not isinstance(name, str):
        raise TypeError(f"namespace name must be str, not {type(name).__name__}")
    if not name:
        raise ValueError("namespace name must not be empty")
    if name in (".", ".."):
        raise ValueError(f"invalid namespace name {name!r}")
    if "/" in name or "\0" in name:
        raise ValueError(f"namespace name must not contain '/' or NUL: {name!r}")
    if len(os.fsencode(name)) > NAME_MAX:
        raise ValueError(f"namespace name longer than {NAME_MAX} bytes")
    return name


def path(name: str) -> str:
    """The file of the named namespace: /run/netns/NAME."""
    return os.path.join(NETNS_RUN_DIR, validate_name(name))


def _memory() -> Any:
    """The memory backend while ``IPVS()`` opens memory handles: its registry
    of namespaces stands in for /run/netns. None otherwise."""
    mem = sys.modules.get("ipvs._memory")
    return mem if mem is not None and mem.auto_enabled() else None


def exists(name: str) -> bool:
    """True if /run/netns/NAME exists (as ``ip netns list`` would show it)."""
    mem = _memory()
    if mem is not None:
        return bool(mem.netns_known(validate_name(name)))
    return os.path.lexists(path(name))


def names() -> list[str]:
    """Sorted names of the named namespaces (``ip netns list``)."""
    mem = _memory()
    if mem is not None:
        return list(mem.netns_names())
    try:
        return sorted(os.listdir(NETNS_RUN_DIR))
    except FileNotFoundError:
        return []


# -- helpers ---------------------------------------------------------------

def _in_thread(fn: Callable[..., T], *args: Any) -> Optional[T]:
    """Run fn(*args) in a fresh OS thread and return its result or raise.

    The thread may change its namespace freely: it ends right after.
    """
    box: Dict[str, Any] = {}

    def target() -> None:
        try:
            box["result"] = fn(*args)
        except BaseException as e:  # re-raised in the caller
            box["error"] = e

    t = threading.Thread(target=target, name="ipvs-netns-helper", daemon=True)
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]
    result: Optional[T] = box.get("result")
    return result


def _ensure_run_dir() -> None:
    """Make /run/netns a shared bind mount of itself (like ``ip netns add``)."""
    os.makedirs(NETNS_RUN_DIR, mode=0o755, exist_ok=True)
    made_bind = False
    while True:
        try:
            _mount("", NETNS_RUN_DIR, "none", MS_SHARED | MS_REC)
            return
        except OSError as e:
            if e.errno != errno.EINVAL or made_bind:
                raise
        _mount(NETNS_RUN_DIR, NETNS_RUN_DIR, "none", MS_BIND | MS_REC)
        made_bind = True


def open_netns(target: NetnsTarget) -> int:
    """Open a namespace given as a name, a path or an fd; return a new fd.

    A ``str`` without '/' is a name under /run/netns; one with '/' (or any
    os.PathLike) is a path such as /proc/PID/ns/net; an int is duplicated.
    The caller closes the returned descriptor.
    """
    if isinstance(target, bool):
        raise TypeError("namespace must be a name, a path or a file descriptor")
    if isinstance(target, int):
        return os.dup(target)
    if isinstance(target, os.PathLike):
        target = os.fspath(target)
    if isinstance(target, bytes):
        target = os.fsdecode(target)
    if not isinstance(target, str):
        raise TypeError("namespace must be a name, a path or a file descriptor")
    file = target if "/" in target else path(target)
    return os.open(file, os.O_RDONLY | os.O_CLOEXEC)


def current_id() -> tuple[int, int]:
    """(st_dev, st_ino) of the calling thread's network namespace."""
    st = os.stat(SELF_NS)
    return st.st_dev, st.st_ino


# -- create / remove -------------------------------------------------------

def _unshare_and_bind(file: str) -> None:
    _check(_lib().unshare(CLONE_NEWNET), "unshare(CLONE_NEWNET)")
    _mount(SELF_NS, file, "none", MS_BIND)


def create(name: str) -> str:
    """Create the named network namespace; return its path.

    FileExistsError if it exists; PermissionError without CAP_SYS_ADMIN.
    Its ``lo`` is down, as after ``ip netns add`` (see ``link_up``).
    """
    file = path(name)
    mem = _memory()
    if mem is not None:
        if mem.netns_known(name):
            raise FileExistsError(errno.EEXIST, f"network namespace {name!r} exists", file)
        mem.register_netns(name)
        return file
    _ensure_run_dir()
    fd = os.open(file, os.O_RDONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0)
    os.close(fd)
    try:
        _in_thread(_unshare_and_bind, file)
    except BaseException:
        with contextlib.suppress(OSError):
            _lib().umount2(os.fsencode(file), MNT_DETACH)
            os.unlink(file)
        raise
    return file


def remove(name: str) -> None:
    """Remove the named namespace (``ip netns del``).

    FileNotFoundError if it does not exist.  The namespace itself lives on
    while processes or open descriptors still use it.
    """
    file = path(name)
    mem = _memory()
    if mem is not None:
        mem.unregister_netns(name)
        return
    if not os.path.lexists(file):
        raise FileNotFoundError(errno.ENOENT, f"no network namespace {name!r}", file)
    if _lib().umount2(os.fsencode(file), MNT_DETACH) != 0:
        err = ctypes.get_errno()
        if err != errno.EINVAL:  # EINVAL: not mounted (a stale file)
            raise OSError(err, f"umount2: {os.strerror(err)}", file)
    os.unlink(file)


@contextlib.contextmanager
def temporary(prefix: str = "ipvs-test-") -> Iterator[str]:
    """Create a uniquely named namespace, yield its name, remove it after."""
    for _ in range(100):
        name = f"{prefix}{os.getpid()}-{secrets.token_hex(4)}"
        try:
            create(name)
            break
        except FileExistsError:
            continue
    else:  # pragma: no cover
        raise FileExistsError(f"no free namespace name with prefix {prefix!r}")
    try:
        yield name
    finally:
        with contextlib.suppress(FileNotFoundError):
            remove(name)


# -- switching -------------------------------------------------------------

@contextlib.contextmanager
def enter(target: NetnsTarget) -> Iterator[None]:
    """Switch the calling thread into a namespace; switch back on exit.

    ``target`` is a name, a path or an fd (see ``open_netns``).  If switching
    back fails, RuntimeError: the thread is then in the wrong namespace.
    """
    saved = os.open(SELF_NS, os.O_RDONLY | os.O_CLOEXEC)
    try:
        fd = open_netns(target)
        try:
            _setns(fd)
        finally:
            os.close(fd)
        try:
            yield
        finally:
            try:
                _setns(saved)
            except OSError as e:
                raise RuntimeError(
                    "could not restore this thread's network namespace "
                    f"({e}); the thread is poisoned: it is still in the "
                    "namespace it entered") from e
    finally:
        os.close(saved)


def _link_up(fd: int, ifname: str) -> None:
    _setns(fd)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        name = ifname.encode()
        req = struct.pack(f"{IFNAMSIZ}sH22x", name, 0)
        res = fcntl.ioctl(s.fileno(), SIOCGIFFLAGS, req)
        flags = struct.unpack_from("H", res, IFNAMSIZ)[0]
        if not flags & IFF_UP:
            req = struct.pack(f"{IFNAMSIZ}sH22x", name, flags | IFF_UP)
            fcntl.ioctl(s.fileno(), SIOCSIFFLAGS, req)


def link_up(target: NetnsTarget, ifname: str = "lo") -> None:
    """Bring interface ``ifname`` up in a namespace (name, path or fd).

    A fresh namespace's ``lo`` is down, and the kernel then rejects IPv4
    IPVS destinations as not unicast.  Done without the ``ip`` binary, in a
    helper thread; the caller's namespace never changes.
    """
    if not ifname or len(ifname.encode()) >= IFNAMSIZ or "/" in ifname:
        raise ValueError(f"invalid interface name {ifname!r}")
    mem = _memory()
    if mem is not None and isinstance(target, (str, os.PathLike)):
        _memory_link_up(mem, os.fspath(target), ifname)
        return
    fd = open_netns(target)
    try:
        _in_thread(_link_up, fd, ifname)
    finally:
        os.close(fd)


def _memory_link_up(mem: Any, target: str, ifname: str) -> None:
    """link_up on a memory namespace: its interfaces are up; a missing
    namespace or interface fails as on the kernel."""
    if not mem.netns_known(target):
        file = target if "/" in target else path(target)
        raise FileNotFoundError(errno.ENOENT, f"no network namespace {target!r}", file)
    if ifname not in mem.table(target).interfaces:
        raise OSError(errno.ENODEV, f"{ifname}: {os.strerror(errno.ENODEV)}")

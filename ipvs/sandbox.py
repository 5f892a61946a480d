"""Run a command as root inside a User-Mode Linux kernel that has IPVS.

    python -m ipvs.sandbox [--mem 1024M] [--modules m1,m2] [--timeout S] -- COMMAND...

For hosts and CI containers whose kernel has no IPVS (or that may not touch
it).  Debian's ``user-mode-linux`` package provides ``linux.uml`` (a Linux
kernel that runs as an ordinary process) and its modules.  The sandbox boots
it with the host's filesystem as its root (hostfs), loads ``ip_vs``, every
scheduler module, the SIP persistence engine and ``veth``, brings ``lo`` up
and runs COMMAND as root in the caller's current directory with the caller's
environment.  COMMAND's stdout and stderr are streamed to the caller's; the
kernel's console goes to a log file.  The exit status is COMMAND's.

Inside, ``/tmp`` and ``/run`` are fresh tmpfs (the host's ``/tmp`` is hidden,
except the directories the command needs: its working directory, virtualenv
and program directory are bind-mounted at their usual paths).

Kernels: ``--list-kernels`` shows the installed kernel and the ones fetched
into the cache with ``--fetch-kernel SUITE`` (bookworm, trixie, sid: Debian's
user-mode-linux of that suite with the libc it needs, kept beside it; see
ipvs/_kernels.py).  ``--kernel VERSION`` picks one (a version prefix at a dot:
``6.1`` is the newest 6.1.x, ``7`` the newest 7.x); without it the installed
kernel boots (or the newest fetched one if none is installed).

Environment: IPVS_SANDBOX_KERNEL=VERSION picks a kernel like ``--kernel``;
IPVS_SANDBOX_UML=/path/to/linux.uml picks the kernel binary (its modules are
looked for beside it, then under /usr/lib/uml/modules; a missing path
disables the sandbox).

This module is standard library only: it must work before the extension is
built.
"""

from __future__ import annotations

import argparse
import glob
import io
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

from ipvs import _kernels

__all__ = [
    "SandboxError",
    "SandboxTimeout",
    "SandboxUnavailable",
    "INSTALL_HINT",
    "available",
    "missing",
    "run",
    "main",
    "kernels",
    "fetch_kernel",
]

INSTALL_HINT = (
    "install Debian's user-mode-linux: "
    "apt-get install user-mode-linux kmod ipvsadm iproute2"
)

UML_BINARY = "linux.uml"
UML_MODULES_ROOT = "/usr/lib/uml/modules"
DEFAULT_MEM = "1024M"
# Where the per-run folder lives: must be outside /tmp (a tmpfs hides it
# inside the sandbox) and visible through hostfs (everything is).
STATE_ROOT = "/var/tmp"
# Grace period for linux.uml to exit once the command has finished.
POWEROFF_GRACE = 30.0

_BASE_MODULES = ("ip_vs",)
_EXTRA_MODULES = ("veth",)
_EXCLUDED_MODULES = ("ip_vs_ftp",)
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class SandboxError(RuntimeError):
    """The sandbox kernel failed (not the command)."""


class SandboxUnavailable(SandboxError):
    """linux.uml or its modules are not installed."""


class SandboxTimeout(SandboxError, TimeoutError):
    """The command did not finish in time; the kernel was killed."""


# -- discovery -------------------------------------------------------------

def _uml_binary(kernel: str | None = None) -> str | None:
    """The linux.uml to boot: ``kernel`` (a version prefix), else
    IPVS_SANDBOX_UML, else IPVS_SANDBOX_KERNEL, else the installed one, else
    the newest fetched one.  Raises SandboxUnavailable when a version was
    asked for and no kernel matches."""
    wanted = kernel or (None if os.environ.get("IPVS_SANDBOX_UML")
                        else os.environ.get("IPVS_SANDBOX_KERNEL"))
    if wanted:
        try:
            return _kernels.pick(kernels(), wanted).binary
        except _kernels.KernelError as e:
            raise SandboxUnavailable(str(e)) from None
    override = os.environ.get("IPVS_SANDBOX_UML")
    if override:  # an explicit kernel binary (or a missing one, to disable)
        return override if os.access(override, os.X_OK) else None
    found = shutil.which(UML_BINARY)
    if found:
        return found
    for candidate in _kernels.INSTALLED_BINARIES:
        if os.access(candidate, os.X_OK):
            return candidate
    got = _kernels.fetched(_cache_root())
    if got:
        return max(got, key=lambda k: _kernels.version_key(k.version)).binary
    return None


def kernels() -> list[_kernels.Kernel]:
    """Every kernel the sandbox can boot: installed and fetched, oldest first."""
    return _kernels.all_kernels(_cache_root(), _uml_version)


def fetch_kernel(suite: str, log=None) -> _kernels.Kernel:
    """Fetch Debian SUITE's user-mode-linux into the cache (see _kernels)."""
    return _kernels.fetch(suite, _cache_root(), log or (lambda s: None))


_version_cache: dict[str, str | None] = {}


def _uml_version(binary: str) -> str | None:
    if binary not in _version_cache:
        _version_cache[binary] = _kernels.uml_version(binary)
    return _version_cache[binary]


def _cache_root() -> str:
    """Where fetched kernels and built helpers live (root: /var/cache/ipvs)."""
    if os.geteuid() == 0:
        return "/var/cache/ipvs"
    base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return os.path.join(base, "ipvs")


def _needs_xstate_shim(version: str | None) -> bool:
    """UML before 7.x keeps only 832 bytes of XSAVE state per thread and
    panics on hosts with a larger area (AVX-512, AMX): see _uml_xstate.c."""
    m = re.match(r"(\d+)\.", version or "")
    return bool(m) and int(m.group(1)) < 7


def _xstate_shim() -> str:
    """Build (once) and return the LD_PRELOAD library of _uml_xstate.c."""
    src = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_uml_xstate.c")
    with open(src, "rb") as f:
        text = f.read()
    import hashlib
    tag = hashlib.sha256(text).hexdigest()[:12]
    out_dir = os.path.join(_cache_root(), "uml-xstate")
    lib = os.path.join(out_dir, f"uml_xstate-{tag}.so")
    if os.path.exists(lib):
        return lib
    os.makedirs(out_dir, exist_ok=True)
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not cc:
        raise SandboxUnavailable(
            "this UML kernel needs a small LD_PRELOAD helper built with a C "
            "compiler on this host (its XSAVE area is larger than the kernel "
            "knows): apt-get install gcc")
    tmp = f"{lib}.{os.getpid()}.tmp"
    proc = subprocess.run([cc, "-O2", "-shared", "-fPIC", "-o", tmp, src, "-ldl"],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SandboxError(f"building {src} failed: {proc.stderr.strip()}")
    os.replace(tmp, lib)
    return lib


def _modules_dir(binary: str) -> str | None:
    """The module folder of ``binary``'s version: beside a fetched kernel,
    else under /usr/lib/uml/modules (the only folder there if there is one)."""
    version = _uml_version(binary)
    if version:
        path = _kernels.modules_beside(binary, version)
        if path:
            return path
        if os.path.exists(os.path.join(os.path.dirname(os.path.abspath(binary)),
                                       _kernels.INFO)):
            return None  # a fetched kernel uses only its own modules
    dirs = sorted(glob.glob(os.path.join(UML_MODULES_ROOT, "*")))
    dirs = [d for d in dirs if os.path.isdir(d)]
    return dirs[-1] if len(dirs) == 1 else None


def _ipvs_dir(moddir: str) -> str:
    return os.path.join(moddir, "kernel", "net", "netfilter", "ipvs")


def missing(kernel: str | None = None) -> list[str]:
    """What is missing for the sandbox to work (empty list: nothing);
    ``kernel`` is a version prefix as for ``--kernel``."""
    problems = []
    try:
        binary = _uml_binary(kernel)
    except SandboxUnavailable as e:
        return [str(e)]
    if binary is None:
        if os.environ.get("IPVS_SANDBOX_UML"):
            return [f"IPVS_SANDBOX_UML={os.environ['IPVS_SANDBOX_UML']} is not executable"]
        return [f"{UML_BINARY} not found on PATH"]
    moddir = _modules_dir(binary)
    if moddir is None:
        problems.append(
            f"no module folder for {binary} "
            f"(version {_uml_version(binary)!r}) beside it or under {UML_MODULES_ROOT}")
    elif not glob.glob(os.path.join(_ipvs_dir(moddir), "ip_vs.ko*")):
        problems.append(f"ip_vs.ko not found under {_ipvs_dir(moddir)}")
    for tool in ("modprobe", "ip"):
        if not any(os.access(os.path.join(d, tool), os.X_OK)
                   for d in ("/usr/sbin", "/sbin", "/usr/bin", "/bin")):
            problems.append(f"{tool} not found (kmod / iproute2)")
    if not os.path.isdir(STATE_ROOT) or not os.access(STATE_ROOT, os.W_OK):
        problems.append(f"{STATE_ROOT} is not a writable folder")
    return problems


def available(kernel: str | None = None) -> bool:
    """True when linux.uml, its IPVS modules, modprobe and ip are installed."""
    return not missing(kernel)


def default_modules(kernel: str | None = None) -> list[str]:
    """ip_vs, every scheduler, the SIP persistence engine, veth."""
    binary = _uml_binary(kernel)
    moddir = _modules_dir(binary) if binary else None
    names = list(_BASE_MODULES)
    if moddir:
        for path in sorted(glob.glob(os.path.join(_ipvs_dir(moddir), "ip_vs_*.ko*"))):
            name = os.path.basename(path).split(".ko", 1)[0]
            if name not in _EXCLUDED_MODULES and name not in names:
                names.append(name)
    names.extend(m for m in _EXTRA_MODULES if m not in names)
    return names


# -- the init script -------------------------------------------------------

def _under_tmp(path: str) -> bool:
    path = os.path.normpath(path)
    return path == "/tmp" or path.startswith("/tmp/")


def _tmp_binds(argv: list[str], cwd: str, env: dict[str, str]) -> list[str]:
    """Folders under the host's /tmp that the command needs to see."""
    wanted = [cwd]
    if env.get("VIRTUAL_ENV"):
        wanted.append(env["VIRTUAL_ENV"])
    prog = argv[0]
    if "/" not in prog:
        prog = shutil.which(prog, path=env.get("PATH")) or prog
    if os.path.isabs(prog):
        wanted.append(os.path.dirname(prog))
    binds = []
    for path in wanted:
        path = os.path.normpath(os.path.abspath(path))
        if _under_tmp(path) and path != "/tmp" and os.path.isdir(path):
            if path not in binds:
                binds.append(path)
    return binds


def _inner_env(env: dict[str, str]) -> dict[str, str]:
    inner = {k: v for k, v in env.items()
             if _ENV_NAME.match(k) and "\0" not in v}
    tmpdir = inner.get("TMPDIR")
    if not tmpdir or _under_tmp(tmpdir) or not os.path.isdir(tmpdir):
        inner["TMPDIR"] = "/tmp"
    for name in ("PWD", "OLDPWD", "SHLVL", "_"):
        inner.pop(name, None)
    inner["IPVS_SANDBOX"] = "1"
    return inner


def _write_scripts(state: str, argv: list[str], cwd: str, env: dict[str, str],
                   modules: list[str], moddir: str = UML_MODULES_ROOT + "/$V", *,
                   stdin: bool = False, merged: bool = False) -> str:
    """Write run.sh and init.sh into ``state``; return init.sh's path.

    ``moddir``: the kernel's module folder (a fetched kernel's sits beside
    it). ``stdin``: the command reads the chunks that `_Feed` writes into
    ``state``/in (else /dev/null). ``merged``: stdout and stderr go to one
    file, ``state``/stdout, so their bytes keep the order they were written."""
    q = shlex.quote
    out = os.path.join(state, "stdout")
    err = out if merged else os.path.join(state, "stderr")
    status = os.path.join(state, "status")
    run_sh = os.path.join(state, "run.sh")
    init_sh = os.path.join(state, "init.sh")

    lines = ["#!/bin/sh", "# generated by ipvs.sandbox: runs the command"]
    for key, value in sorted(_inner_env(env).items()):
        lines.append(f"export {key}={q(value)}")
    lines.append(f"cd {q(cwd)} || exit 127")
    lines.append("set -- " + " ".join(q(a) for a in argv))
    lines.append('exec "$@"')
    with open(run_sh, "w") as f:
        f.write("\n".join(lines) + "\n")

    binds = _tmp_binds(argv, cwd, env)
    init = [
        "#!/bin/sh",
        "# generated by ipvs.sandbox: PID 1 of the sandbox kernel",
        "export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        f"W={q(state)}",
        'exec >>"$W/init.log" 2>&1',
        "set -x",
        "mount -t proc proc /proc",
        "mount -t sysfs sys /sys",
        "mount -t tmpfs -o mode=755 run /run",
        "mkdir -p /run/netns /run/ipvs-sandbox/hosttmp",
    ]
    if binds:
        init.append("mount --bind /tmp /run/ipvs-sandbox/hosttmp")
    init.append("mount -t tmpfs -o mode=1777 tmp /tmp")
    for path in binds:
        rel = os.path.relpath(path, "/tmp")
        init.append(f"mkdir -p {q(path)} && "
                    f"mount --bind /run/ipvs-sandbox/hosttmp/{q(rel)} {q(path)}")
    if binds:
        init.append("umount -l /run/ipvs-sandbox/hosttmp")
    init += [
        "mountpoint -q /dev/shm 2>/dev/null || "
        "{ mkdir -p /dev/shm && mount -t tmpfs -o mode=1777 shm /dev/shm; }",
        "V=$(uname -r)",
        "mount -t tmpfs mods /lib/modules",
        "mkdir -p /lib/modules/$V",
        ("mount --bind " + (q(moddir) if "$" not in moddir else moddir)
         + " /lib/modules/$V"),
        # Problems the command should know about go to its stderr.
        "modprobe -a " + " ".join(q(m) for m in modules) + f" 2>>{q(err)} || "
        f'echo "ipvs.sandbox: warning: modprobe failed" >>{q(err)}',
        f"ip link set lo up 2>>{q(err)}",
        "set +x",
    ]
    if stdin:
        # the caller's stdin arrives as numbered chunk files (hostfs shows new
        # files at once); a reader in the sandbox feeds them to the command
        # through a FIFO and ends at the "eof" marker, or when the command ends
        init += [
            "mkfifo /run/ipvs-sandbox/stdin",
            "( i=1; n=0; while :; do f=$(printf '%s/in/%06d' \"$W\" $i); "
            'if [ -e "$f" ]; then cat "$f" || exit 0; i=$((i+1)); n=0; '
            'elif [ -e "$W/in/eof" ]; then [ -e "$f" ] || exit 0; '
            "elif [ $n -lt 40 ]; then n=$((n+1)); sleep 0.05; else sleep 0.5; fi; "
            "done ) >/run/ipvs-sandbox/stdin &",
            "feeder=$!",
            f"env -i /bin/sh {q(run_sh)} </run/ipvs-sandbox/stdin "
            + (f">>{q(out)} 2>&1" if merged else f">>{q(out)} 2>>{q(err)}"),
            "rc=$?",
            'kill "$feeder" 2>/dev/null',
        ]
    else:
        init += [
            f"env -i /bin/sh {q(run_sh)} </dev/null "
            + (f">>{q(out)} 2>&1" if merged else f">>{q(out)} 2>>{q(err)}"),
            "rc=$?",
        ]
    init += [
        "sync",
        f'echo "$rc" > {q(status)}.tmp && mv {q(status)}.tmp {q(status)}',
        "poweroff -f",
        "sleep 60",
    ]
    with open(init_sh, "w") as f:
        f.write("\n".join(init) + "\n")
    os.chmod(init_sh, 0o755)
    os.chmod(run_sh, 0o755)
    return init_sh


# -- output ----------------------------------------------------------------

class _Tail:
    """Copies what is appended to a file to a stream, as it arrives."""

    def __init__(self, path: str, stream):
        self.f = open(path, "rb")
        self.stream = stream

    def pump(self) -> bool:
        data = self.f.read()
        if not data:
            return False
        buf = getattr(self.stream, "buffer", None)
        if buf is None and isinstance(self.stream, (io.BufferedIOBase, io.RawIOBase)):
            buf = self.stream
        try:
            if buf is not None:
                buf.write(data)
                buf.flush()
            else:
                self.stream.write(data.decode("utf-8", "replace"))
                self.stream.flush()
        except (BrokenPipeError, ValueError):
            pass
        return True

    def close(self):
        self.f.close()


class _Feed(threading.Thread):
    """Copies the caller's stdin into numbered chunk files in ``folder`` (each
    written under a temporary name, then renamed), then writes ``eof``."""

    def __init__(self, folder: str, stream) -> None:
        super().__init__(name="ipvs-sandbox-stdin", daemon=True)
        self.folder = folder
        self.stream = stream    # (also keeps a file object, and so its fd, open)
        try:
            self.fd = stream.fileno()
        except (AttributeError, OSError, ValueError):
            self.fd = None

    def _read(self) -> bytes:
        if self.fd is not None:
            return os.read(self.fd, 1 << 16)
        data = self.stream.read(1 << 16)
        return data.encode() if isinstance(data, str) else (data or b"")

    def run(self) -> None:
        n = 0
        try:
            while True:
                data = self._read()
                if not data:
                    break
                n += 1
                tmp = os.path.join(self.folder, ".part")
                with open(tmp, "wb") as f:
                    f.write(data)
                os.rename(tmp, os.path.join(self.folder, "%06d" % n))
        except OSError:
            pass            # stdin closed under us, or the state folder is gone
        try:
            open(os.path.join(self.folder, "eof"), "wb").close()
        except OSError:
            pass


def _same_file(a, b) -> bool:
    """Do the streams ``a`` and ``b`` write to the same file (or pipe)?"""
    if a is b:
        return True
    try:
        sa, sb = os.fstat(a.fileno()), os.fstat(b.fileno())
    except (AttributeError, OSError, ValueError):
        return False
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


def _kill_group(proc: subprocess.Popen):
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    except PermissionError:
        proc.kill()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass


def _console_tail(path: str, lines: int = 20) -> str:
    try:
        with open(path, "rb") as f:
            data = f.read()[-8192:]
    except OSError:
        return ""
    text = data.decode("utf-8", "replace").splitlines()[-lines:]
    return "\n".join(text)


# -- public API ------------------------------------------------------------

def run(argv, *, cwd=None, env=None, mem=DEFAULT_MEM, timeout=None,
        modules=(), stdout=None, stderr=None, keep=False, stdin=None, kernel=None) -> int:
    """Run ``argv`` as root in a UML kernel with IPVS; return its exit status.

    ``cwd`` and ``env`` default to the caller's.  ``modules`` are loaded in
    addition to the defaults.  ``stdout``/``stderr`` are the streams that
    receive the command's output (default ``sys.stdout``/``sys.stderr``);
    when both are the same file, the command's bytes keep the order in
    which it wrote them.  ``stdin``: a stream the command reads as its
    standard input (None: /dev/null).
    Raises SandboxUnavailable, SandboxTimeout (``timeout`` seconds passed,
    the kernel was killed) or SandboxError (the kernel died before the
    command's status was written).  ``kernel`` picks a kernel by version
    prefix (see ``--kernel``).
    """
    argv = [os.fspath(a) for a in argv]
    if not argv:
        raise ValueError("empty command")
    problems = missing(kernel)
    if problems:
        raise SandboxUnavailable("; ".join(problems) + f" -- {INSTALL_HINT}")
    cwd = os.path.abspath(os.fspath(cwd) if cwd is not None else os.getcwd())
    env = dict(os.environ if env is None else env)
    stdout = sys.stdout if stdout is None else stdout
    stderr = sys.stderr if stderr is None else stderr
    mods = default_modules(kernel) + [m for m in modules if m]
    binary = _uml_binary(kernel)
    assert binary is not None
    moddir = _modules_dir(binary)
    assert moddir is not None

    state = tempfile.mkdtemp(prefix="ipvs-sandbox-", dir=STATE_ROOT)
    os.chmod(state, 0o755)
    try:
        for name in ("stdout", "stderr", "init.log"):
            open(os.path.join(state, name), "wb").close()
        merged = _same_file(stdout, stderr)
        if stdin is not None:
            os.mkdir(os.path.join(state, "in"))
            _Feed(os.path.join(state, "in"), stdin).start()
        init = _write_scripts(state, argv, cwd, env, mods, moddir, stdin=stdin is not None,
                              merged=merged)
        console = os.path.join(state, "console.log")
        status_path = os.path.join(state, "status")
        cmd = [binary, f"mem={mem}", "rootfstype=hostfs", "rootflags=/", "rw",
               f"init={init}", "con=null", "con0=null,fd:2"]
        host_env = {k: v for k, v in os.environ.items()}
        if _needs_xstate_shim(_uml_version(binary)):
            preload = host_env.get("LD_PRELOAD", "")
            host_env["LD_PRELOAD"] = " ".join(p for p in (_xstate_shim(), preload) if p)
        tails = [_Tail(os.path.join(state, "stdout"), stdout)]
        if not merged:
            tails.append(_Tail(os.path.join(state, "stderr"), stderr))
        with open(console, "wb") as log:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=log, cwd=state, env=host_env,
                                    start_new_session=True)
        deadline = None if timeout is None else time.monotonic() + timeout
        finished_at = None
        delay = 0.02
        try:
            while True:
                moved = any([t.pump() for t in tails])
                if proc.poll() is not None:
                    break
                now = time.monotonic()
                if finished_at is None and os.path.exists(status_path):
                    finished_at = now
                if finished_at is not None and now - finished_at > POWEROFF_GRACE:
                    _kill_group(proc)
                    break
                if deadline is not None and now > deadline:
                    _kill_group(proc)
                    for t in tails:
                        t.pump()
                    raise SandboxTimeout(
                        f"command did not finish within {timeout} s; "
                        f"killed {UML_BINARY}")
                delay = 0.02 if moved else min(delay * 1.5, 0.2)
                time.sleep(delay)
        except BaseException:
            _kill_group(proc)
            raise
        finally:
            for t in tails:
                t.pump()
                t.close()
        try:
            with open(status_path) as f:
                text = f.read().strip()
            return int(text)
        except (OSError, ValueError):
            tail = _console_tail(console)
            raise SandboxError(
                f"the kernel stopped before the command's exit status "
                f"was written ({UML_BINARY} exited with {proc.returncode}); "
                f"last console lines:\n{tail}") from None
    finally:
        if keep:
            print(f"ipvs.sandbox: kept {state}", file=sys.stderr)
        else:
            shutil.rmtree(state, ignore_errors=True)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m ipvs.sandbox",
        description="Run COMMAND as root inside a User-Mode Linux kernel "
                    "with IPVS (host filesystem as root, caller's cwd and "
                    "environment). Exit status is COMMAND's; 2 if the sandbox "
                    "is not installed, 124 on timeout, 125 if the kernel failed.",
    )
    p.add_argument("--mem", default=DEFAULT_MEM, help="kernel memory (default %(default)s)")
    p.add_argument("--modules", action="append", default=[],
                   help="extra kernel modules to load (comma separated, repeatable)")
    p.add_argument("--timeout", type=float, default=None, help="seconds before the kernel is killed")
    p.add_argument("--keep", action="store_true", help="keep the state folder (logs, scripts)")
    p.add_argument("--check", action="store_true", help="only report whether the sandbox is available")
    p.add_argument("--kernel", metavar="VERSION", default=None,
                   help="boot the newest kernel whose version starts with VERSION "
                        "(6.1, 6.12, 7 ...; default: $IPVS_SANDBOX_KERNEL, else the installed one)")
    p.add_argument("--list-kernels", action="store_true",
                   help="list the kernels the sandbox can boot (installed and fetched)")
    p.add_argument("--fetch-kernel", metavar="SUITE", choices=_kernels.SUITES,
                   help="download Debian SUITE's user-mode-linux (%(choices)s) into "
                        "the cache and make it bootable here")
    p.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND [ARGS...]")
    return p


def _report(problems: list[str]) -> None:
    for problem in problems:
        print(f"ipvs.sandbox: {problem}", file=sys.stderr)
    if not any(p.startswith("no sandbox kernel matches") for p in problems):
        print(f"ipvs.sandbox: {INSTALL_HINT}", file=sys.stderr)


def main(args=None) -> int:
    args = list(sys.argv[1:] if args is None else args)
    ns = _parser().parse_args(args)
    command = ns.command
    if command and command[0] == "--":
        command = command[1:]
    if ns.fetch_kernel:
        try:
            k = fetch_kernel(ns.fetch_kernel,
                             lambda s: print(f"ipvs.sandbox: {s}", file=sys.stderr))
        except (_kernels.KernelError, OSError) as e:
            print(f"ipvs.sandbox: cannot fetch {ns.fetch_kernel}'s kernel: {e}",
                  file=sys.stderr)
            return 2
        print(k.line())
        if not command and not ns.check and not ns.list_kernels:
            return 0
    if ns.list_kernels:
        found = kernels()
        for k in found:
            print(k.line())
        if not found:
            print(f"ipvs.sandbox: no kernel installed or fetched -- {INSTALL_HINT}, "
                  f"or python -m ipvs.sandbox --fetch-kernel SUITE", file=sys.stderr)
            return 2
        if not command and not ns.check:
            return 0
    kernel = ns.kernel
    problems = missing(kernel)
    if ns.check:
        if problems:
            _report(problems)
            return 2
        binary = _uml_binary(kernel)
        print(f"ipvs.sandbox: available ({_uml_version(binary)} {binary})")
        return 0
    if not command:
        _parser().print_usage(sys.stderr)
        print("ipvs.sandbox: no COMMAND given (use: -- COMMAND...)", file=sys.stderr)
        return 2
    if problems:
        _report(problems)
        return 2
    modules = [m for chunk in ns.modules for m in chunk.split(",") if m.strip()]
    try:
        return run(command, mem=ns.mem, timeout=ns.timeout, modules=modules,
                   keep=ns.keep, stdin=sys.stdin, kernel=kernel)
    except SandboxTimeout as e:
        print(f"ipvs.sandbox: {e}", file=sys.stderr)
        return 124
    except SandboxError as e:
        print(f"ipvs.sandbox: {e}", file=sys.stderr)
        return 125
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())

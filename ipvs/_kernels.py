"""The sandbox's kernels: the installed one and the ones fetched from Debian.

``python -m ipvs.sandbox --fetch-kernel SUITE`` downloads the suite's
``user-mode-linux`` package and the ``libc6`` it was built against into a
private folder of the cache, points the kernel binary's ELF interpreter and
run path at that libc (patchelf) and keeps the kernel's modules beside it:

    CACHE/kernels/VERSION/linux.uml         the bootable binary
    CACHE/kernels/VERSION/root/...          both packages, extracted
    CACHE/kernels/VERSION/kernel.info       "suite=...", "version=..." lines

The host's libc, apt sources and apt state are never touched: apt-get runs
with its own sources list, lists and cache folder (CACHE/apt/SUITE).

Standard library only (imported by ipvs.sandbox before the extension exists).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple

SUITES = ("bookworm", "trixie", "sid")
MIRROR = "http://deb.debian.org/debian"
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
INSTALLED_BINARIES = ("/usr/bin/linux.uml", "/usr/local/bin/linux.uml")
INSTALLED_MODULES = "/usr/lib/uml/modules"
LIBDIR = "usr/lib/x86_64-linux-gnu"
INFO = "kernel.info"


class KernelError(RuntimeError):
    """A kernel cannot be fetched or is not there."""


@dataclass(frozen=True)
class Kernel:
    """One bootable UML kernel: where it comes from and where it lives."""

    version: str
    origin: str            # "installed" | "fetched"
    suite: str             # Debian suite it came from ("" if unknown)
    binary: str
    modules: Optional[str]  # folder named VERSION with modules.dep, or None

    def line(self) -> str:
        return f"{self.version:<10} {self.origin:<9} {self.suite or '-':<9} {self.binary}"


def version_key(version: str) -> Tuple[int, ...]:
    """Numeric sort key of "6.12.113" (non-numeric tails sort as 0)."""
    parts = []
    for piece in version.split("."):
        m = re.match(r"\d+", piece)
        parts.append(int(m.group(0)) if m else 0)
    return tuple(parts)


def matches(version: str, wanted: str) -> bool:
    """True when ``version`` is ``wanted`` or starts with it at a dot:
    "6.1" matches 6.1.176 but not 6.12.113; "7" matches every 7.x."""
    wanted = wanted.strip().rstrip(".")
    return version == wanted or version.startswith(wanted + ".")


def kernels_root(cache_root: str) -> str:
    return os.path.join(cache_root, "kernels")


def uml_version(binary: str) -> Optional[str]:
    """The release string ``linux.uml --version`` prints (its last line)."""
    try:
        out = subprocess.run(
            [binary, "--version"], stdin=subprocess.DEVNULL,
            capture_output=True, timeout=30, check=False,
        ).stdout.decode("ascii", "replace").strip().splitlines()
    except (OSError, subprocess.SubprocessError):
        return None
    return (out[-1].strip() or None) if out else None


def modules_beside(binary: str, version: Optional[str]) -> Optional[str]:
    """The module folder of ``binary``: beside a fetched kernel
    (DIR/root/usr/lib/uml/modules/VERSION, or DIR/../lib/uml/modules/VERSION
    for a binary in an extracted usr/bin), else the installed one."""
    if not version:
        return None
    here = os.path.dirname(os.path.abspath(binary))
    for cand in (os.path.join(here, "root", "usr", "lib", "uml", "modules", version),
                 os.path.join(here, "..", "lib", "uml", "modules", version),
                 os.path.join(INSTALLED_MODULES, version)):
        if os.path.isfile(os.path.join(cand, "modules.dep")) or os.path.isdir(
                os.path.join(cand, "kernel")):
            return os.path.normpath(cand)
    return None


def _host_suite() -> str:
    try:
        with open("/etc/os-release") as f:
            for line in f:
                if line.startswith("VERSION_CODENAME="):
                    return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return ""


def _read_info(folder: str) -> Dict[str, str]:
    info = {}
    try:
        with open(os.path.join(folder, INFO)) as f:
            for line in f:
                if "=" in line:
                    k, v = line.rstrip("\n").split("=", 1)
                    info[k] = v
    except OSError:
        pass
    return info


def installed(version_of: Callable[[str], Optional[str]] = uml_version) -> List[Kernel]:
    """The kernel of the user-mode-linux package installed on this host."""
    found = []
    seen = set()
    for binary in [shutil.which("linux.uml"), *INSTALLED_BINARIES]:
        if not binary or not os.access(binary, os.X_OK):
            continue
        real = os.path.realpath(binary)
        if real in seen:
            continue
        seen.add(real)
        version = version_of(binary)
        if version:
            found.append(Kernel(version, "installed", _host_suite(), binary,
                                modules_beside(binary, version)))
    return found


def fetched(cache_root: str) -> List[Kernel]:
    """The kernels fetched into the cache (complete ones only)."""
    root = kernels_root(cache_root)
    out: List[Kernel] = []
    try:
        names = sorted(os.listdir(root))
    except OSError:
        return out
    for name in names:
        folder = os.path.join(root, name)
        binary = os.path.join(folder, "linux.uml")
        info = _read_info(folder)
        if not info.get("version") or not os.access(binary, os.X_OK):
            continue
        out.append(Kernel(info["version"], "fetched", info.get("suite", ""), binary,
                          modules_beside(binary, info["version"])))
    return out


def all_kernels(cache_root: str,
                version_of: Callable[[str], Optional[str]] = uml_version) -> List[Kernel]:
    """Installed and fetched kernels, oldest version first."""
    found = installed(version_of) + fetched(cache_root)
    return sorted(found, key=lambda k: (version_key(k.version), k.origin != "installed"))


def pick(kernels: List[Kernel], wanted: str) -> Kernel:
    """The newest kernel whose version matches ``wanted`` (a prefix at a dot);
    the installed one wins a tie.  KernelError names what exists."""
    hits = [k for k in kernels if matches(k.version, wanted)]
    if not hits:
        have = ", ".join(k.version for k in kernels) or "none"
        raise KernelError(
            f"no sandbox kernel matches {wanted!r} (available: {have}); fetch one "
            f"with: python -m ipvs.sandbox --fetch-kernel SUITE ({', '.join(SUITES)})")
    best = max(version_key(k.version) for k in hits)
    best_hits = [k for k in hits if version_key(k.version) == best]
    best_hits.sort(key=lambda k: k.origin != "installed")
    return best_hits[0]


# -- fetching ----------------------------------------------------------------

def _run(cmd: List[str], what: str, cwd: Optional[str] = None) -> str:
    try:
        proc = subprocess.run(cmd, cwd=cwd, stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise KernelError(f"{what}: {cmd[0]} is not installed") from None
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        raise KernelError(f"{what} failed (exit {proc.returncode}): " + " | ".join(detail))
    return proc.stdout


def _apt(aptdir: str) -> List[str]:
    return ["apt-get", "-q",
            "-o", f"Dir::Etc::SourceList={aptdir}/etc/sources.list",
            "-o", "Dir::Etc::SourceParts=/dev/null",
            "-o", f"Dir::State::Lists={aptdir}/lists",
            "-o", f"Dir::Cache={aptdir}/cache",
            "-o", "Dir::State::status=/dev/null"] + (
                # files land in our own folder: no download as user _apt
                ["-o", "APT::Sandbox::User=root"] if os.geteuid() == 0 else [])


def fetch(suite: str, cache_root: str, log: Callable[[str], None] = lambda s: None) -> Kernel:
    """Download SUITE's user-mode-linux and libc6 into the cache and make the
    kernel bootable here; return it.  KernelError says what went wrong."""
    if suite not in SUITES:
        raise KernelError(f"unknown suite {suite!r}: one of {', '.join(SUITES)}")
    for tool in ("apt-get", "dpkg-deb", "patchelf"):
        if shutil.which(tool) is None:
            pkg = {"apt-get": "apt", "dpkg-deb": "dpkg"}.get(tool, tool)
            raise KernelError(f"fetching a kernel needs {tool}: apt-get install {pkg}")
    if not os.path.exists(KEYRING):
        raise KernelError(f"{KEYRING} is missing: apt-get install debian-archive-keyring")
    root = kernels_root(cache_root)
    aptdir = os.path.join(cache_root, "apt", suite)
    for sub in ("etc", "lists/partial", "cache/archives/partial"):
        os.makedirs(os.path.join(aptdir, sub), exist_ok=True)
    with open(os.path.join(aptdir, "etc", "sources.list"), "w") as f:
        f.write(f"deb [signed-by={KEYRING}] {MIRROR} {suite} main\n")
    apt = _apt(aptdir)
    log(f"apt-get update ({suite})")
    _run(apt + ["update"], f"apt-get update for {suite} ({MIRROR})")
    os.makedirs(root, exist_ok=True)
    work = tempfile.mkdtemp(prefix=f".fetch-{suite}-", dir=root)
    try:
        log(f"apt-get download user-mode-linux libc6 ({suite})")
        _run(apt + ["download", "user-mode-linux", "libc6"],
             f"downloading {suite}'s user-mode-linux and libc6", cwd=work)
        debs = sorted(n for n in os.listdir(work) if n.endswith(".deb"))
        if not any(n.startswith("user-mode-linux_") for n in debs):
            raise KernelError(f"{suite} has no user-mode-linux package for this architecture")
        extracted = os.path.join(work, "root")
        for deb in debs:
            _run(["dpkg-deb", "-x", os.path.join(work, deb), extracted], f"extracting {deb}")
        moddirs = os.path.join(extracted, "usr", "lib", "uml", "modules")
        versions = sorted(os.listdir(moddirs)) if os.path.isdir(moddirs) else []
        if len(versions) != 1:
            raise KernelError(f"{suite}'s user-mode-linux has {len(versions)} module "
                              f"folders under usr/lib/uml/modules (expected one)")
        version = versions[0]
        binary = os.path.join(work, "linux.uml")
        shutil.copy2(os.path.join(extracted, "usr", "bin", "linux.uml"), binary)
        final = os.path.join(root, version)
        libdir = os.path.join(final, "root", LIBDIR)
        _run(["patchelf", "--set-interpreter", os.path.join(libdir, "ld-linux-x86-64.so.2"),
              "--set-rpath", libdir, binary], "patchelf on linux.uml")
        pkgs = " ".join(d[:-4] for d in debs)
        with open(os.path.join(work, INFO), "w") as f:
            f.write(f"suite={suite}\nversion={version}\npackages={pkgs}\n")
        for deb in debs:
            os.unlink(os.path.join(work, deb))
        if os.path.exists(final):
            old = final + f".old-{os.getpid()}"
            os.rename(final, old)
            shutil.rmtree(old, ignore_errors=True)
        os.rename(work, final)
        work = ""
        os.chmod(final, 0o755)
    finally:
        if work:
            shutil.rmtree(work, ignore_errors=True)
    kernel = Kernel(version, "fetched", suite, os.path.join(final, "linux.uml"),
                    modules_beside(os.path.join(final, "linux.uml"), version))
    got = uml_version(kernel.binary)
    if got != version:
        raise KernelError(f"the fetched {suite} kernel does not run here: "
                          f"{kernel.binary} --version gave {got!r}, expected {version!r}")
    return kernel

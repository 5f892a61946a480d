"""The ip_vs kernel module unloaded and loaded again, for the tests that do
it (sandbox only): tests/lab/test_director_module.py,
tests/lab/test_director_faults.py, tests/kernel/test_module_reload.py.

These tests share the kernel with every other test of the run, in any
order.  So ``kernel_as_found()`` makes sure ip_vs is loaded before (what
the sandbox boots with) and, however the test ends, puts back the
modprobe path and every ip_vs module that was loaded, then checks that
the kernel is as it was found: the same ip_vs modules and modprobe path.
While ip_vs is unloaded the modprobe path is /bin/false: the generic
netlink family lookup (any handle's open) would auto-load it by alias.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from typing import Iterator, Set

import pytest

MODPROBE = "/proc/sys/kernel/modprobe"

sandbox_only = pytest.mark.skipif(os.environ.get("IPVS_SANDBOX") != "1",
                                  reason="unloads ip_vs: only inside python -m ipvs.sandbox")


def modules() -> Set[str]:
    """The ip_vs modules loaded now (ip_vs, its schedulers, ...)."""
    with open("/proc/modules") as f:
        return {line.split()[0] for line in f if line.startswith("ip_vs")}


def modprobe_path() -> str:
    with open(MODPROBE) as f:
        return f.read()


def rmmod(m: str) -> None:
    for _ in range(100):       # namespaces of earlier tests die asynchronously
        p = subprocess.run(["rmmod", m], capture_output=True, text=True)
        if p.returncode == 0:
            return
        time.sleep(0.1)
    raise AssertionError("rmmod %s: %s" % (m, p.stderr))


def unload(loaded: Set[str]) -> None:
    """Unloads ``loaded`` (the users first, ip_vs last), with the modprobe
    path set to /bin/false so nothing loads it again meanwhile (reload()
    puts the path back)."""
    with open(MODPROBE, "w") as f:
        f.write("/bin/false\n")
    for m in sorted(loaded - {"ip_vs"}):
        rmmod(m)
    rmmod("ip_vs")


def reload(loaded: Set[str], saved: str) -> None:
    """The modprobe path ``saved`` back, and every module of ``loaded``
    that is missing loaded again (ip_vs first)."""
    if modprobe_path() != saved:
        with open(MODPROBE, "w") as f:
            f.write(saved)
    for m in sorted(loaded - modules(), key=lambda m: m != "ip_vs"):
        subprocess.run(["modprobe", m], check=False)


@contextlib.contextmanager
def kernel_as_found() -> Iterator[Set[str]]:
    """ip_vs loaded (the test needs a module to unload); yields the ip_vs
    modules loaded at the start; afterwards (whatever happened) reloads
    what is missing and checks the modules and the modprobe path are as
    they were."""
    subprocess.run(["modprobe", "ip_vs"], check=False)
    before, saved = modules(), modprobe_path()
    assert "ip_vs" in before, "ip_vs cannot be loaded"
    try:
        yield before
    finally:
        reload(before, saved)
    assert modprobe_path() == saved
    assert modules() == before, (sorted(modules()), sorted(before))

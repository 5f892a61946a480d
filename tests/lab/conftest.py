"""Lab, director, exporter and pair tests: traffic through namespaces in a
kernel with IPVS, run on one kernel only (scripts/test.sh runs this folder
once, in the default sandbox kernel).  Every test here needs the kernel.

The fixtures the director tests share: ``lab`` (a fresh three-server lab
per test; modules that need another lab define their own) and
``director_factory`` (director processes of tests/lab/harness.py, killed
after the test, their stderr printed).  The helpers are in harness.py."""
import os
from typing import List

import pytest

from ipvs.lab import Lab
from tests.lab import kmod
from tests.lab.harness import DirectorProc


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "tests/lab/" in str(item.fspath).replace("\\", "/"):
            item.add_marker(pytest.mark.kernel)


@pytest.fixture
def lab():
    with Lab(3) as lb:
        yield lb


@pytest.fixture
def director_factory(tmp_path):
    """make(text, name="director.toml", log="stderr.log"): a DirectorProc
    (not started) on ``text`` written to tmp_path/name, its control socket
    tmp_path/ctl.sock (the one config() names)."""
    made: List[DirectorProc] = []

    def make(text: str, name: str = "director.toml", log: str = "stderr.log") -> DirectorProc:
        path = tmp_path / name
        path.write_text(text)
        d = DirectorProc(str(path), str(tmp_path / "ctl.sock"), str(tmp_path / log))
        made.append(d)
        return d
    yield make
    for d in made:
        d.kill()
        if os.path.exists(d.log):  # shown by pytest when the test failed
            print("---- director stderr ----\n" + d.stderr()[-4000:])


@pytest.fixture
def ip_vs_as_found():
    """For a test that unloads ip_vs: the ip_vs modules loaded at its start
    (ip_vs among them); after it, whatever happened, the modules and the
    modprobe path as they were (tests/lab/kmod.py), checked.  List it
    first, so that it ends after the test's lab and directors."""
    with kmod.kernel_as_found() as before:
        yield before

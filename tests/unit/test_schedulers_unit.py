"""``ipvs.SCHEDULERS``: every scheduler name a kernel may offer, with the
kernel version that added it (from the kernel's git history: the first ten
came with IPVS in 2.6.0; fo, ovf, mh and twos were merged for 3.18, 4.3,
4.18 and 5.12). Exported, read-only, documented, and the memory backend's
schedulers are Debian's builds of it."""
from __future__ import annotations

import os
import re

import pytest

import ipvs
from ipvs import _memory

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_names_and_versions():
    assert dict(ipvs.SCHEDULERS) == {
        "rr": "2.6", "wrr": "2.6", "lc": "2.6", "wlc": "2.6", "lblc": "2.6", "lblcr": "2.6",
        "dh": "2.6", "sh": "2.6", "sed": "2.6", "nq": "2.6",
        "fo": "3.18", "ovf": "4.3", "mh": "4.18", "twos": "5.12"}
    for name, version in ipvs.SCHEDULERS.items():
        assert re.fullmatch(r"[a-z]{1,15}", name) and re.fullmatch(r"\d+\.\d+", version)
        ipvs.Service(address="10.0.0.1", port=80, scheduler=name)     # a valid name


def test_exported_and_read_only():
    assert "SCHEDULERS" in ipvs.__all__ and "SCHEDULERS" in dir(ipvs)
    from ipvs import SCHEDULERS
    assert SCHEDULERS is ipvs.SCHEDULERS
    with pytest.raises(TypeError):
        ipvs.SCHEDULERS["new"] = "9.9"   # type: ignore[index]


def test_in_version_order_of_the_kernels():
    versions = [tuple(map(int, v.split("."))) for v in ipvs.SCHEDULERS.values()]
    assert versions == sorted(versions)


@pytest.mark.parametrize("kernel", _memory.KERNELS)
def test_the_memory_backend_offers_debians_builds(kernel):
    """Debian's 6.1, 6.12 and 7.x build every scheduler but twos; "none"
    (no scheduler) is accepted too."""
    assert _memory.SCHEDULERS == (set(ipvs.SCHEDULERS) - {"twos"}) | {"none"}
    with ipvs.IPVS(backend="memory", kernel=kernel, netns=None) as lb:
        try:
            for i, name in enumerate(sorted(ipvs.SCHEDULERS)):
                svc = ipvs.Service(address="10.0.0.1", port=1000 + i, scheduler=name)
                if name == "twos":
                    with pytest.raises(ipvs.SchedulerNotFoundError):
                        lb.add_service(svc)
                else:
                    lb.add_service(svc)
        finally:
            lb.flush()


def test_documented_in_the_reference():
    path = os.path.join(ROOT, "docs", "reference.md")
    if not os.path.exists(path):
        pytest.skip("docs/ is not here")
    text = open(path, encoding="utf-8").read()
    assert "`ipvs.SCHEDULERS`" in text
    for name, version in ipvs.SCHEDULERS.items():
        assert re.search(r"\| `%s` [^|]*\| %s \|" % (name, re.escape(version)), text), name

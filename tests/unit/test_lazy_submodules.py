"""`import ipvs` makes the public submodules reachable as attributes, loading
each one only on first access (API.md names ipvs.netns, ipvs.testing,
ipvs.lab, ipvs.sandbox)."""
import subprocess
import sys

import pytest

import ipvs


def _run(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.strip()


def test_netns_names_after_plain_import():
    assert _run("import ipvs; print(callable(ipvs.netns.names))") == "True"
    assert isinstance(ipvs.netns.names(), list)


def test_submodules_load_lazily():
    out = _run("import sys, ipvs\n"
               "print([m for m in ('ipvs.netns', 'ipvs.testing', 'ipvs.sandbox') if m in sys.modules])\n"
               "ipvs.testing; ipvs.sandbox\n"
               "print(sorted(m for m in ('ipvs.testing', 'ipvs.sandbox') if m in sys.modules))")
    assert out.splitlines() == ["[]", "['ipvs.sandbox', 'ipvs.testing']"]


def test_submodule_attributes_and_dir():
    import ipvs.sandbox as sb
    assert ipvs.sandbox is sb and ipvs.testing.__name__ == "ipvs.testing"
    assert {"netns", "testing", "sandbox"} <= set(dir(ipvs))
    with pytest.raises(AttributeError, match="no attribute 'nosuchmodule'"):
        ipvs.nosuchmodule  # noqa: B018


def test_a_missing_named_submodule_is_an_attribute_error(monkeypatch):
    monkeypatch.setattr(ipvs, "_SUBMODULES", ipvs._SUBMODULES + ("notyet",))
    assert not hasattr(ipvs, "notyet")

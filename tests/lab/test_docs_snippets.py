"""Every Python example of the documentation site runs as shown.

Each fenced ``python`` block of the pages under docs/ is run as root in the
kernel with IPVS (the sandbox), in a fresh network namespace of its own
(``ip netns exec``), so ``ipvs.IPVS()`` in an example reaches a private
table. A block that defines pytest tests (``def test_``) is run with pytest.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from ipvs import netns

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DOCS = os.path.join(ROOT, "docs")
FENCE = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.S | re.M)


def _pages() -> list[str]:
    found = []
    for folder, _dirs, files in os.walk(DOCS):
        if "_build" in folder or "_generated" in folder:
            continue
        found += [os.path.join(folder, f) for f in files if f.endswith(".md")]
    return sorted(found)


def _snippets() -> list:
    params = []
    for page in _pages():
        with open(page, encoding="utf-8") as f:
            text = f.read()
        for i, m in enumerate(FENCE.finditer(text), 1):
            line = text.count("\n", 0, m.start()) + 2
            rel = os.path.relpath(page, ROOT)
            params.append(pytest.param(m.group(1), id=f"{rel}:{line}"))
    return params


SNIPPETS = _snippets()


def test_the_docs_have_python_examples():
    assert len(SNIPPETS) >= 5


@pytest.mark.parametrize("code", SNIPPETS)
def test_example_runs(code, tmp_path):
    with netns.temporary("ipvs-docs-") as name:
        netns.link_up(name, "lo")
        if re.search(r"^def test_", code, re.M):
            script = tmp_path / "test_example.py"
            script.write_text(code)
            cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(script)]
        else:
            script = tmp_path / "example.py"
            script.write_text(code)
            cmd = [sys.executable, str(script)]
        proc = subprocess.run(["ip", "netns", "exec", name, *cmd], cwd=tmp_path,
                              capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"

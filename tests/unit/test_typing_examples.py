"""`mypy --strict` over what a user copies: the README's Python example and
examples/ (issue 14: ``svc.stats.connections`` must type-check). mypy is in
the ``test`` extra, so this runs wherever the unit tests run from the source
tree (CI included)."""
from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
README = os.path.join(ROOT, "README.md")


def readme_examples() -> list:
    with open(README) as f:
        return re.findall(r"```python\n(.*?)```", f.read(), re.S)


def test_readme_example_and_examples_pass_mypy_strict(tmp_path):
    if not os.path.exists(README) or not os.path.isdir(os.path.join(ROOT, "examples")):
        pytest.skip("not a source tree (README.md and examples/ are not installed)")
    try:
        import mypy  # noqa: F401
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("mypy is missing (it is in the test extra): pip install -e '.[test]'")
        pytest.skip("mypy not installed (pip install -e '.[test]')")
    blocks = readme_examples()
    assert blocks, "the README has no ```python example"
    files = []
    for i, code in enumerate(blocks):
        path = tmp_path / ("readme_example_%d.py" % i)
        path.write_text(code)
        files.append(str(path))
    examples = sorted(os.path.join(ROOT, "examples", n)
                      for n in os.listdir(os.path.join(ROOT, "examples")) if n.endswith(".py"))
    r = subprocess.run([sys.executable, "-m", "mypy", "--strict", "--no-incremental",
                        "--cache-dir", str(tmp_path / "cache"),
                        "--config-file", os.path.join(ROOT, "pyproject.toml"),
                        *files, *examples], cwd=ROOT, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr

"""Packaging checks: the one version, the stubs of the compiled module, the
sdist's file list.

These run both in the source tree and against an installed wheel
(wheels/build.sh runs the unit tests from a copy of tests/ only); the checks
that need the source tree skip themselves without it.

The sdist file list is computed without building anything: ``setup.py
egg_info`` (what ``sdist`` uses for its list: setuptools' defaults + MANIFEST.in)
with a stand-in for ``Cython.Build.cythonize``, so that the test needs neither
Cython nor the network and writes nothing into the tree.  With
``IPVS_SDIST=path/to/ipvs-X.tar.gz`` the same rules are checked on a real
sdist instead (wheels/build.sh does that on the one it builds).
"""

from __future__ import annotations

import ast
import importlib
import importlib.metadata
import os
import re
import subprocess
import sys
import tarfile
import textwrap

import pytest

import ipvs
import ipvs._version

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PKG_DIR = os.path.dirname(os.path.abspath(ipvs.__file__))
IN_SOURCE_TREE = all(os.path.exists(os.path.join(ROOT, f))
                     for f in ("setup.py", "MANIFEST.in", "ipvs/_libipvs.pyx"))

# PEP 440 public version
_PEP440 = re.compile(r"^\d+(\.\d+)*((a|b|rc)\d+)?(\.post\d+)?(\.dev\d+)?$")


# ---------------------------------------------------------------- version

def test_version_is_the_one_in_version_module():
    assert ipvs.__version__ == ipvs._version.__version__
    assert isinstance(ipvs.__version__, str) and _PEP440.match(ipvs.__version__), ipvs.__version__


def test_version_defined_in_one_place():
    """Only ipvs/_version.py assigns __version__ (pyproject reads it from there)."""
    assigners = []
    for name in sorted(os.listdir(PKG_DIR)):
        if not name.endswith(".py"):
            continue
        with open(os.path.join(PKG_DIR, name), encoding="utf-8") as f:
            tree = ast.parse(f.read())
        for node in tree.body:
            targets = node.targets if isinstance(node, ast.Assign) else (
                [node.target] if isinstance(node, ast.AnnAssign) else [])
            if any(isinstance(t, ast.Name) and t.id == "__version__" for t in targets):
                assigners.append(name)
    assert assigners == ["_version.py"]


def test_version_matches_installed_metadata():
    """A real install (not an editable one, whose metadata may lag) reports
    the same version in its metadata."""
    try:
        dist = importlib.metadata.distribution("ipvs")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("ipvs is not installed (imported from the source tree)")
    files = {str(f) for f in (dist.files or [])}
    if "ipvs/_version.py" not in files:
        pytest.skip("editable install: metadata is as of the last pip install")
    assert dist.version == ipvs.__version__


@pytest.mark.skipif(not IN_SOURCE_TREE, reason="needs the source tree")
def test_pyproject_takes_version_from_version_module():
    with open(os.path.join(ROOT, "pyproject.toml"), encoding="utf-8") as f:
        text = f.read()
    assert re.search(r'^dynamic\s*=\s*\[[^\]]*"version"', text, re.M)
    assert re.search(r'^version\s*=\s*\{\s*attr\s*=\s*"ipvs\._version\.__version__"\s*\}', text, re.M)


# ------------------------------------------------------------------ stubs

def _extension():
    try:
        return importlib.import_module("ipvs._libipvs")
    except ImportError as e:  # pragma: no cover - the extension is normally built
        pytest.skip("ipvs._libipvs is not built: %s" % e)


def _stub_tree(ext):
    path = os.path.join(os.path.dirname(ext.__file__), "_libipvs.pyi")
    assert os.path.exists(path), "no stub file next to the extension: %s" % path
    with open(path, encoding="utf-8") as f:
        return ast.parse(f.read(), path)


def _defined_names(body):
    names = {}
    for node in body:
        if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            names[node.name] = node
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names[node.target.id] = node
        elif isinstance(node, ast.Assign):
            for t in node.targets:
                if isinstance(t, ast.Name):
                    names[t.id] = node
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for a in node.names:
                if a.asname is not None:     # re-export: "import x as x"
                    names[a.asname] = node
    return names


def test_py_typed_marker_ships():
    assert os.path.exists(os.path.join(PKG_DIR, "py.typed"))


def test_every_public_name_of_the_extension_has_a_stub():
    ext = _extension()
    stubs = _defined_names(_stub_tree(ext).body)
    public = {n for n in dir(ext) if not n.startswith("_")}
    missing = sorted(public - set(stubs))
    assert not missing, "ipvs/_libipvs.pyi lacks: %s" % ", ".join(missing)
    stale = sorted(n for n in stubs if not n.startswith("_") and not hasattr(ext, n))
    assert not stale, "ipvs/_libipvs.pyi has names the module lacks: %s" % ", ".join(stale)


def _params_from_signature_doc(doc):
    """Parameter names from Cython's embedded signature, e.g.
    'batch(self, list calls)' -> ['self', 'calls']; None if there is none."""
    first = (doc or "").strip().splitlines()[0] if doc and doc.strip() else ""
    m = re.match(r"^(?:\w+\.)?\w+\((.*)\)", first)
    if not m:
        return None
    params = []
    for part in m.group(1).split(","):
        part = part.split("=")[0].strip()
        if part and part not in ("*", "/"):
            params.append(part.split()[-1].lstrip("*"))
    return params


def test_every_method_of_the_extension_classes_has_a_stub():
    ext = _extension()
    stubs = _defined_names(_stub_tree(ext).body)
    checked = 0
    for name in sorted(n for n in dir(ext) if not n.startswith("_")):
        cls = getattr(ext, name)
        if not isinstance(cls, type) or cls.__module__ != ext.__name__:
            continue
        node = stubs[name]
        assert isinstance(node, ast.ClassDef), "%s should be stubbed as a class" % name
        members = _defined_names(node.body)
        runtime = {m for m in vars(cls) if not (m.startswith("__") and m.endswith("__"))}
        missing = sorted(runtime - set(members))
        assert not missing, "stub of %s lacks: %s" % (name, ", ".join(missing))
        stale = sorted(m for m in members if m not in runtime and m != "__init__")
        assert not stale, "stub of %s has members the class lacks: %s" % (name, ", ".join(stale))
        for m in sorted(runtime):
            fn = members[m]
            if not isinstance(fn, ast.FunctionDef) or any(
                    isinstance(d, ast.Name) and d.id == "property" for d in fn.decorator_list):
                continue
            want = _params_from_signature_doc(getattr(vars(cls)[m], "__doc__", None))
            if want is None:
                continue
            got = [a.arg for a in fn.args.posonlyargs + fn.args.args + fn.args.kwonlyargs]
            assert got == want, "%s.%s: stub parameters %s, compiled %s" % (name, m, got, want)
            checked += 1
    assert checked > 0, "no method signature could be compared (embedsignature off?)"


# ------------------------------------------------------------------ sdist

# (what, predicate over the set of paths) - paths are relative to the sdist root
_FORBIDDEN = [
    ("Cython output", lambda p: p == "ipvs/_libipvs.c"),
    ("compiled objects", lambda p: p.endswith((".so", ".o", ".a", ".pyc", ".pyo"))),
    ("caches", lambda p: any(part in ("__pycache__", ".pytest_cache", ".hypothesis", ".mypy_cache")
                             for part in p.split("/"))),
    ("build output", lambda p: p.startswith(("build/", "dist/", "wheels/dist/", ".venv/", ".git/"))),
]


def _expected_from_tree():
    """Files of the source tree that the sdist must carry."""
    want = {"setup.py", "pyproject.toml", "MANIFEST.in", "README.md",
            "ipvs/_libipvs.pyx", "ipvs/_libipvs.pxd", "ipvs/_libipvs.pyi", "ipvs/py.typed"}
    for d, exts in (("csrc", (".c", ".h")), ("ipvs", (".py",))):
        for name in os.listdir(os.path.join(ROOT, d)):
            if name.endswith(exts):
                want.add("%s/%s" % (d, name))
    for sub in ("unit", "kernel"):
        for name in os.listdir(os.path.join(ROOT, "tests", sub)):
            if name.endswith(".py"):
                want.add("tests/%s/%s" % (sub, name))
    want.add("tests/conftest.py")
    return want


def check_sdist_names(names, expected=()):
    """Problems (a list of strings) with an sdist's file list."""
    names = set(names)
    problems = ["missing: %s" % p for p in sorted(set(expected) - names)]
    for what, bad in _FORBIDDEN:
        hits = sorted(p for p in names if bad(p))
        if hits:
            problems.append("%s: %s" % (what, ", ".join(hits)))
    if not any(p.startswith("csrc/") for p in names):
        problems.append("no csrc/")
    if not any(p.startswith("tests/unit/") for p in names):
        problems.append("no tests/unit/")
    return problems


def _sdist_names_from_tarball(path):
    with tarfile.open(path) as tar:
        members = [m.name for m in tar.getmembers() if m.isfile()]
    top = {m.split("/", 1)[0] for m in members}
    assert len(top) == 1, "an sdist has one top-level folder, not %s" % sorted(top)
    return [m.split("/", 1)[1] for m in members]


# Like the real cythonize as far as the file list goes: each .pyx source
# becomes the .c that Cython would write (so MANIFEST.in must exclude it).
_CYTHON_STANDIN = textwrap.dedent("""\
    def cythonize(module_list, **kwargs):
        for ext in module_list:
            ext.sources = [s[:-4] + ".c" if s.endswith(".pyx") else s for s in ext.sources]
        return list(module_list)
""")


def _sdist_names_from_egg_info(tmp_path):
    try:
        import setuptools  # noqa: F401  (the check runs setup.py with this interpreter)
    except ImportError:
        pytest.skip("setuptools is not installed in this environment")
    stub = tmp_path / "stub" / "Cython" / "Build"
    stub.mkdir(parents=True)
    (stub.parent / "__init__.py").write_text("")
    (stub / "__init__.py").write_text(_CYTHON_STANDIN)
    base = tmp_path / "egg"
    base.mkdir()
    env = dict(os.environ, PYTHONPATH=str(tmp_path / "stub"), PYTHONDONTWRITEBYTECODE="1")
    proc = subprocess.run([sys.executable, "setup.py", "-q", "egg_info", "--egg-base", str(base)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with open(base / "ipvs.egg-info" / "SOURCES.txt", encoding="utf-8") as f:
        names = [line.strip() for line in f if line.strip()]
    # sdist adds these itself
    return [n for n in names if not n.startswith("ipvs.egg-info/")] + ["PKG-INFO"]


def test_sdist_file_list(tmp_path):
    real = os.environ.get("IPVS_SDIST")
    if real:
        names = _sdist_names_from_tarball(real)
    elif IN_SOURCE_TREE:
        names = _sdist_names_from_egg_info(tmp_path)
    else:
        pytest.skip("needs the source tree (or IPVS_SDIST=path/to/sdist)")
    expected = _expected_from_tree() if IN_SOURCE_TREE else set()
    problems = check_sdist_names(names, expected)
    assert not problems, "sdist file list:\n  " + "\n  ".join(problems)


def test_sdist_rules_catch_leftovers():
    bad = ["ipvs/_libipvs.c", "ipvs/_libipvs.cpython-311-x86_64-linux-gnu.so",
           "csrc/libipvs.o", "tests/unit/__pycache__/x.pyc", "build/lib/ipvs/x.py"]
    problems = check_sdist_names(["csrc/libipvs.c", "tests/unit/test_x.py"] + bad,
                                 expected={"csrc/libipvs.h"})
    text = "\n".join(problems)
    assert "missing: csrc/libipvs.h" in text
    for p in bad:
        assert p in text

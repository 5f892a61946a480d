"""Smoke test of an INSTALLED ipvs wheel (cibuildwheel's test-command and
wheels/build.sh run it from a directory that has no ipvs/ package).

Checks: the package and the compiled extension come from site-packages (not a
source tree); the wheel carries the stubs and py.typed, no build leftovers and
no grafted libraries (auditwheel's ipvs.libs/: the extension must need only
libc); __version__ agrees with the installed metadata; the model works; and
opening a handle either works or fails with an IPVSError (never a crash or an
ImportError).  Never writes to the kernel's IPVS table.
"""

import importlib.metadata
import os
import site as sitemod
import sys
import sysconfig


def main() -> int:
    here = os.path.realpath(os.getcwd())
    if os.path.isdir(os.path.join(here, "ipvs")):
        print("smoke_test: run me from a directory without an ipvs/ folder", file=sys.stderr)
        return 2

    import ipvs
    import ipvs._libipvs as ext

    site = {os.path.realpath(sysconfig.get_paths()[k]) for k in ("purelib", "platlib")}
    # Debian's Python: pip installs outside a venv go to .../dist-packages
    site |= {os.path.realpath(p) for p in getattr(sitemod, "getsitepackages", lambda: [])()}
    pkg_dir = os.path.realpath(os.path.dirname(ipvs.__file__))
    assert os.path.dirname(pkg_dir) in site, "ipvs imported from %s, not site-packages %s" % (pkg_dir, site)
    assert os.path.realpath(os.path.dirname(ext.__file__)) == pkg_dir, ext.__file__
    assert ext.__file__.endswith(sysconfig.get_config_var("EXT_SUFFIX")), ext.__file__

    dist_version = importlib.metadata.version("ipvs")
    assert ipvs.__version__ == dist_version, (ipvs.__version__, dist_version)

    files = [str(f) for f in (importlib.metadata.files("ipvs") or [])]
    for needed in ("ipvs/py.typed", "ipvs/_libipvs.pyi", "ipvs/__init__.py"):
        assert needed in files, "%s is missing from the wheel" % needed
    # ipvs/_uml_xstate.c is a source the sandbox compiles on hosts that need it
    shipped_sources = ("ipvs/_uml_xstate.c",)
    bad = [f for f in files if (f.endswith((".c", ".o", ".a")) and f not in shipped_sources) or f.startswith(("ipvs.libs/", "build/", "tests/", "csrc/"))]
    assert not bad, "the wheel carries build leftovers or grafted libraries: %s" % bad
    sos = [f for f in files if ".so" in os.path.basename(f)]
    assert len(sos) == 1 and sos[0].startswith("ipvs/_libipvs."), sos

    svc = ipvs.Service(address="10.0.0.1", port=80, protocol="tcp", scheduler="rr")
    dest = ipvs.Destination("192.168.1.10", 8080, weight=3, forward=ipvs.Forward.MASQ)
    assert eval(repr(svc), {"ipvs": ipvs, "Service": ipvs.Service, "socket": __import__("socket"),
                            "ServiceFlags": ipvs.ServiceFlags}) == svc
    assert dest.key == (dest.family, dest.address, 8080)
    assert set(ext.BACKENDS) == {"auto", "netlink", "sockopt"}

    try:
        with ipvs.IPVS(timeout=2) as lb:
            opened = "opened (%s, IPVS %s)" % (lb.backend, lb.info().version)
    except ipvs.IPVSError as e:
        opened = "not opened: %s: %s" % (type(e).__name__, e)

    print("smoke_test: ipvs %s from %s; handle %s" % (ipvs.__version__, pkg_dir, opened))
    return 0


if __name__ == "__main__":
    sys.exit(main())

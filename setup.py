"""Build of the extension ipvs._libipvs (ipvs/_libipvs.pyx + csrc/*.c) and,
in in-place and editable builds, of the private test module
ipvs._libipvs_test (ipvs/_libipvs_test.pyx + csrc/nlparse.c), which no wheel
carries.

Environment knobs (the first two for the Makefile's sanitizer/coverage builds):
  IPVS_CFLAGS       extra compiler flags, e.g. "-fsanitize=address,undefined -O1 -g"
  IPVS_LDFLAGS      extra linker flags
  IPVS_TEST_MODULE  unset: build ipvs._libipvs_test in in-place builds
                    (`setup.py build_ext --inplace`) and editable installs
                    (`pip install -e .`, scripts/test.sh) only, never in a
                    wheel or a plain install; 1: in every build (a wheel then
                    carries it, which wheels/build.sh refuses); 0: never.
"""
import glob
import os
import shlex

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from Cython.Build import cythonize

csrc = sorted(f for f in glob.glob("csrc/*.c")
              if not os.path.basename(f).startswith(("test_", "fuzz_")))

extra_compile = ["-Wall", "-Wextra", "-std=gnu11", "-fvisibility=hidden"]
extra_compile += shlex.split(os.environ.get("IPVS_CFLAGS", ""))
extra_link = shlex.split(os.environ.get("IPVS_LDFLAGS", ""))
directives = {"language_level": "3", "embedsignature": True}

ext = Extension(
    "ipvs._libipvs",
    sources=["ipvs/_libipvs.pyx"] + csrc,
    include_dirs=["csrc"],
    extra_compile_args=extra_compile,
    extra_link_args=extra_link,
)

TEST_MODULE = "ipvs._libipvs_test"


def _test_module():
    """The private test module's Extension, cythonized (its C under build/:
    never beside the sources, so neither git nor an sdist sees it)."""
    test_ext = Extension(
        TEST_MODULE,
        sources=["ipvs/_libipvs_test.pyx"],
        include_dirs=["csrc"],
        extra_compile_args=extra_compile,
        extra_link_args=extra_link,
    )
    (test_ext,) = cythonize([test_ext], compiler_directives=directives, quiet=True,
                            build_dir="build/cython")
    test_ext.sources.append("csrc/nlparse.c")    # the parser it replays replies through
    return test_ext


class BuildExt(build_ext):
    """build_ext that adds the private test module when IPVS_TEST_MODULE says
    so, or (unset) when building in place: `--inplace`, or an editable
    install (setuptools sets editable_mode for it)."""

    def _want_test_module(self):
        flag = os.environ.get("IPVS_TEST_MODULE", "")
        if flag not in ("", "0", "1"):
            raise SystemExit("IPVS_TEST_MODULE must be 0, 1 or unset, not %r" % flag)
        if flag:
            return flag == "1"
        return bool(self.inplace or getattr(self, "editable_mode", False))

    def finalize_options(self):
        # before the base class prepares the distribution's extensions
        mods = self.distribution.ext_modules
        if self._want_test_module() and not any(e.name == TEST_MODULE for e in mods):
            mods.append(_test_module())
        super().finalize_options()


setup(
    ext_modules=cythonize([ext], compiler_directives=directives, quiet=True),
    cmdclass={"build_ext": BuildExt},
)

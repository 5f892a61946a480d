"""Build of the one extension, ipvs._libipvs: ipvs/_libipvs.pyx + csrc/*.c.

Environment knobs (for the Makefile's sanitizer/coverage builds):
  IPVS_CFLAGS   extra compiler flags, e.g. "-fsanitize=address,undefined -O1 -g"
  IPVS_LDFLAGS  extra linker flags
"""
import glob
import os
import shlex

from setuptools import Extension, setup
from Cython.Build import cythonize

csrc = sorted(f for f in glob.glob("csrc/*.c")
              if not os.path.basename(f).startswith(("test_", "fuzz_")))

extra_compile = ["-Wall", "-Wextra", "-std=gnu11", "-fvisibility=hidden"]
extra_compile += shlex.split(os.environ.get("IPVS_CFLAGS", ""))
extra_link = shlex.split(os.environ.get("IPVS_LDFLAGS", ""))

ext = Extension(
    "ipvs._libipvs",
    sources=["ipvs/_libipvs.pyx"] + csrc,
    include_dirs=["csrc"],
    extra_compile_args=extra_compile,
    extra_link_args=extra_link,
)

setup(
    ext_modules=cythonize(
        [ext],
        compiler_directives={"language_level": "3", "embedsignature": True},
        quiet=True,
    ),
)

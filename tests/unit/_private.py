"""The private test module ipvs._libipvs_test (ipvs/_libipvs_test.pyx): the
entry points for tests that the release extension ipvs._libipvs does not
carry. setup.py builds it in in-place and editable builds (scripts/test.sh:
pip install -e) and never in a wheel.

From a source tree it must be there: its absence fails the tests that need
it. From an installed wheel (wheels/build.sh runs tests/unit against one)
they skip, saying why."""
import importlib
import os

import pytest

NAME = "ipvs._libipvs_test"


def in_source_tree() -> bool:
    """ipvs is imported from its source tree (in-place or editable build):
    the .pyx sources are beside the package (a wheel carries none)."""
    import ipvs
    return os.path.exists(os.path.join(os.path.dirname(ipvs.__file__), "_libipvs_test.pyx"))


def libipvs_test():
    """ipvs._libipvs_test, or pytest.skip (module level allowed) when ipvs
    is an installed build without it."""
    try:
        return importlib.import_module(NAME)
    except ImportError as e:
        error = e
    try:
        importlib.import_module("ipvs._libipvs")
    except ImportError as e:  # pragma: no cover - the extension is normally built
        pytest.skip("ipvs._libipvs is not built: %s" % e, allow_module_level=True)
    if in_source_tree():
        pytest.fail("%s is not built in this source tree (%s): in-place and editable "
                    "builds make it (setup.py build_ext --inplace, pip install -e .; "
                    "IPVS_TEST_MODULE=1 forces it)" % (NAME, error), pytrace=False)
    pytest.skip("%s is not in this installed build of ipvs (wheels never carry the "
                "private test module; these tests run from the source tree, "
                "scripts/test.sh)" % NAME, allow_module_level=True)

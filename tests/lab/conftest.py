"""Lab, director, exporter and pair tests: traffic through namespaces in a
kernel with IPVS, run on one kernel only (scripts/test.sh runs this folder
once, in the default sandbox kernel).  Every test here needs the kernel."""
import pytest


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "tests/lab/" in str(item.fspath).replace("\\", "/"):
            item.add_marker(pytest.mark.kernel)

"""Shared pytest setup for the ipvs test suite.

The ``ipvs.testing`` plugin (fixtures ipvs_netns, ipvs_handle, ipvsadm; the
``kernel`` marker) is normally registered by the package's ``pytest11`` entry
point.  When the entry point is not installed (e.g. the source tree is on
PYTHONPATH) it is registered here.  This is done in pytest_configure rather
than with ``pytest_plugins`` so that (a) it is never registered twice (the
entry point registers the same module under the name "ipvs") and (b) it works
whether or not this conftest is an initial one.
"""


def pytest_configure(config):
    import ipvs.testing as plugin

    if not config.pluginmanager.is_registered(plugin):
        config.pluginmanager.register(plugin, "ipvs.testing")

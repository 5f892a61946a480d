"""Availability: ip_vs unloaded and loaded again (sandbox only).

Other tests share this kernel, in any order, so this one unloads ip_vs in
a child process and leaves the kernel as it found it, checked at its end
(tests/lab/kmod.py ``kernel_as_found``): ip_vs loaded before, then the
modprobe path and every ip_vs module that was loaded (ip_vs, the
schedulers, ip_vs_pe_sip) put back whatever happened in the child.  The
generic netlink family lookup auto-loads ip_vs by module alias, so while
it is unloaded /proc/sys/kernel/modprobe is /bin/false.

Checks: with ip_vs absent a new handle raises IPVSUnavailableError telling
how to load it (all backends), handles opened before report
IPVSUnavailableError (ENOPROTOOPT) on every call; after the reload a new
handle works and the old handles work again (netlink re-resolves the
changed family id).
"""
import os
import subprocess
import sys

import pytest

from tests.lab.kmod import kernel_as_found, sandbox_only

pytestmark = pytest.mark.kernel

SCRIPT = r'''
import errno, os
import ipvs
from ipvs import Service, netns
from ipvs.testing import _genl_family_exists
from tests.lab.kmod import modprobe_path, modules, reload, unload

svc = Service(address="10.60.0.1", port=80, scheduler="rr")
report = []

with netns.temporary() as ns:
    netns.link_up(ns, "lo")
    old_nl = ipvs.IPVS(netns=ns, backend="netlink")
    old_so = ipvs.IPVS(netns=ns, backend="sockopt")
    mods, saved = modules(), modprobe_path()
    try:
        unload(mods)
        assert not os.path.exists("/sys/module/ip_vs")
        assert _genl_family_exists("IPVS") is False      # and not auto-loaded
        for backend in ("auto", "netlink", "sockopt"):
            try:
                ipvs.IPVS(netns=ns, backend=backend)
            except ipvs.IPVSUnavailableError as e:
                assert "modprobe ip_vs" in str(e), str(e)
                report.append("open %s: %s" % (backend, e))
            else:
                raise AssertionError("open %s worked without ip_vs" % backend)
        for name, h in (("netlink", old_nl), ("sockopt", old_so)):
            for call in (h.info, h.services, lambda: h.add_service(svc)):
                try:
                    call()
                except ipvs.IPVSUnavailableError as e:
                    assert e.errno == errno.ENOPROTOOPT, e
                    msg = str(e)
                else:
                    raise AssertionError("old %s handle worked without ip_vs" % name)
            report.append("old %s handle: %s" % (name, msg))
    finally:
        reload(mods, saved)
    assert modules() == mods, (modules(), mods)
    with ipvs.IPVS(netns=ns) as lb:
        assert lb.backend == "netlink"
        lb.add_service(svc)
        assert lb.services() == [svc]
    # the old handles work again (netlink: new family id, re-resolved)
    assert old_nl.services() == [svc]
    old_nl.delete_service(svc)
    old_so.add_service(svc)
    assert old_nl.services() == [svc] and old_so.services() == [svc]
    old_nl.flush()
    old_nl.close()
    old_so.close()
print("\n".join(report))
'''


@sandbox_only
def test_ip_vs_unloaded_and_reloaded():
    with kernel_as_found():
        p = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                           timeout=300, env=dict(os.environ, PYTHONPATH=os.getcwd()))
        print(p.stdout)
        assert p.returncode == 0, p.stdout + p.stderr

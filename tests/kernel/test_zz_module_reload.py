"""Availability: ip_vs unloaded and loaded again (sandbox only; runs last).

Other tests share this kernel, so this one runs at the end (file name) in a
child process, and puts everything back in a ``finally``: the modprobe path
and every ip_vs module that was loaded (ip_vs, the schedulers, ip_vs_pe_sip).
The generic netlink family lookup auto-loads ip_vs by module alias, so while
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

pytestmark = pytest.mark.kernel

MODPROBE = "/proc/sys/kernel/modprobe"

SCRIPT = r'''
import errno, os, subprocess, sys, time
import ipvs
from ipvs import Service, netns
from ipvs.testing import _genl_family_exists

MODPROBE = "/proc/sys/kernel/modprobe"
mods = [l.split()[0] for l in open("/proc/modules") if l.startswith("ip_vs")]
users = [m for m in mods if m != "ip_vs"]
saved = open(MODPROBE).read().strip()
svc = Service(address="10.60.0.1", port=80, scheduler="rr")
report = []

def rmmod(m):
    for _ in range(100):          # namespaces of earlier tests die asynchronously
        p = subprocess.run(["rmmod", m], capture_output=True, text=True)
        if p.returncode == 0:
            return
        time.sleep(0.1)
    raise SystemExit("rmmod %s: %s" % (m, p.stderr))

with netns.temporary() as ns:
    netns.link_up(ns, "lo")
    old_nl = ipvs.IPVS(netns=ns, backend="netlink")
    old_so = ipvs.IPVS(netns=ns, backend="sockopt")
    fam_before = None
    try:
        with open(MODPROBE, "w") as f:
            f.write("/bin/false\n")
        for m in users:
            rmmod(m)
        rmmod("ip_vs")
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
        with open(MODPROBE, "w") as f:
            f.write(saved + "\n")
        for m in ["ip_vs"] + users:
            subprocess.run(["modprobe", m], check=False)
    now = [l.split()[0] for l in open("/proc/modules") if l.startswith("ip_vs")]
    assert set(now) == set(mods), (now, mods)
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


def _modules():
    with open("/proc/modules") as f:
        return {line.split()[0] for line in f if line.startswith("ip_vs")}


@pytest.mark.skipif(os.environ.get("IPVS_SANDBOX") != "1",
                    reason="unloads ip_vs: only inside python -m ipvs.sandbox")
def test_ip_vs_unloaded_and_reloaded():
    before = _modules()
    with open(MODPROBE) as f:
        modprobe = f.read()
    try:
        p = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                           timeout=300, env=dict(os.environ, PYTHONPATH=os.getcwd()))
        print(p.stdout)
        assert p.returncode == 0, p.stdout + p.stderr
    finally:
        # whatever happened in the child: the kernel as the other tests need it
        with open(MODPROBE) as f:
            if f.read() != modprobe:
                with open(MODPROBE, "w") as g:
                    g.write(modprobe)
        for m in sorted(before - _modules(), key=lambda m: m != "ip_vs"):
            subprocess.run(["modprobe", m], check=False)
    assert _modules() == before

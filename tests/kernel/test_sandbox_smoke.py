"""The kernel the kernel tests run in has what they need (ipvs.sandbox or a host)."""

import os
import subprocess

import pytest

from ipvs import netns

pytestmark = pytest.mark.kernel

SCHEDULERS = ["rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "fo", "ovf", "mh"]


def test_ipvs_in_a_fresh_namespace():
    with netns.temporary() as name:
        with netns.enter(name):
            with open("/proc/thread-self/net/ip_vs") as f:
                text = f.read()
    assert text.startswith("IP Virtual Server version 1.")
    assert "->" in text and text.count("\n") == 3  # header only: an empty table


def test_debian_ipvsadm_works_there(ipvsadm, ipvs_netns):
    out = ipvsadm("-Ln")
    assert out.startswith("IP Virtual Server version")
    ipvsadm("-A", "-t", "192.0.2.1:80", "-s", "wlc")
    ipvsadm("-a", "-t", "192.0.2.1:80", "-r", "127.0.0.1:8080", "-m", "-w", "3")
    listing = ipvsadm("-Ln")
    assert "TCP  192.0.2.1:80 wlc" in listing and "127.0.0.1:8080" in listing
    proc = ipvsadm.run("-D", "-t", "192.0.2.2:80")
    assert proc.returncode != 0 and proc.stderr
    ipvsadm("-C")
    assert "192.0.2.1" not in ipvsadm("-Ln")


@pytest.mark.parametrize("sched", SCHEDULERS)
def test_scheduler_modules(ipvsadm, sched):
    ipvsadm("-A", "-t", "192.0.2.3:80", "-s", sched)
    assert f"192.0.2.3:80 {sched}" in ipvsadm("-Ln")


def test_sip_persistence_engine(ipvsadm):
    ipvsadm("-A", "-u", "192.0.2.4:5060", "-s", "rr", "-p", "60", "--pe", "sip")
    assert "pe sip" in ipvsadm("-Ln")


def test_veth_in_a_namespace(ipvs_netns):
    subprocess.run(["ip", "-n", ipvs_netns, "link", "add", "va0", "type", "veth",
                    "peer", "name", "vb0"], check=True)
    out = subprocess.run(["ip", "-n", ipvs_netns, "-o", "link"], capture_output=True,
                         text=True, check=True).stdout
    assert "va0@vb0" in out


def test_lo_is_up_in_the_fixture_namespace(ipvs_netns):
    out = subprocess.run(["ip", "-n", ipvs_netns, "-o", "link", "show", "lo"],
                         capture_output=True, text=True, check=True).stdout
    assert ",UP" in out


@pytest.mark.skipif(os.environ.get("IPVS_SANDBOX") != "1", reason="only inside ipvs.sandbox")
def test_sandbox_environment():
    assert os.geteuid() == 0
    assert os.environ.get("TMPDIR")
    assert os.access(os.environ["TMPDIR"], os.W_OK)
    assert os.path.ismount("/tmp")

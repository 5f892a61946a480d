"""Issue 3, services: every kind of virtual service round-trips through the
real kernel and reads back the same through ipvs *and* through Debian's
ipvsadm (``-Sn`` and ``-Ln``), on both backends where the backend can
express the service (else ``UnsupportedError`` is asserted and the test
skipped, see ``netlink_only``)."""
import socket

import pytest

import ipvs
from ipvs import Service, ServiceFlags as F

from .conftest import netlink_only

pytestmark = pytest.mark.kernel

# every scheduler module of the sandbox's 6.1 kernel ("twos" is absent there:
# see test_errors_kernel.py)
SCHEDULERS = ["rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq",
              "fo", "ovf", "mh"]


def sn(ipvsadm):
    return ipvsadm("-Sn").splitlines()


def ln_service_lines(ipvsadm):
    """The service lines of ``ipvsadm -Ln`` (not the header, not the ->)."""
    lines = ipvsadm("-Ln").splitlines()[3:]
    return [l.rstrip() for l in lines if not l.lstrip().startswith("->")]


# --------------------------------------------------------------- addresses

V4 = "10.0.0.1"
V6 = "2001:db8::1"
OPT = {"tcp": "-t", "udp": "-u", "sctp": "--sctp-service"}
LN_PROTO = {"tcp": "TCP", "udp": "UDP", "sctp": "SCTP"}


@pytest.mark.parametrize("proto", ["tcp", "udp", "sctp"])
@pytest.mark.parametrize("family", ["ipv4", "ipv6"])
def test_address_service_each_family_and_protocol(ipvs_handle, ipvsadm, family, proto):
    lb = ipvs_handle
    addr = V4 if family == "ipv4" else V6
    svc = Service(address=addr, port=8080, protocol=proto, scheduler="rr")
    if family == "ipv6":
        netlink_only(lb, lb.add_service, svc)
    lb.add_service(svc)
    host = addr if family == "ipv4" else "[%s]" % addr
    assert sn(ipvsadm) == ["-A %s %s:8080 -s rr" % (OPT[proto], host)]
    assert ln_service_lines(ipvsadm) == ["%-4s %s:8080 rr" % (LN_PROTO[proto], host)]
    got = lb.get_service(svc)
    assert got == svc
    assert got.family == (socket.AF_INET if family == "ipv4" else socket.AF_INET6)
    assert got.protocol == ipvs.Protocol(proto) and got.port == 8080 and got.fwmark == 0
    assert lb.services() == [svc]
    lb.delete_service(svc)
    assert sn(ipvsadm) == [] and lb.services() == []


@pytest.mark.parametrize("family", ["ipv4", "ipv6"])
def test_fwmark_service_each_family(ipvs_handle, ipvsadm, family):
    lb = ipvs_handle
    fam = socket.AF_INET if family == "ipv4" else socket.AF_INET6
    svc = Service(fwmark=77, family=fam, scheduler="wlc")
    if family == "ipv6":
        netlink_only(lb, lb.add_service, svc)
    lb.add_service(svc)
    assert sn(ipvsadm) == ["-A -f 77%s -s wlc" % (" -6" if family == "ipv6" else "")]
    assert ln_service_lines(ipvsadm) == ["FWM  77%s wlc" % (" IPv6" if family == "ipv6" else "")]
    got = lb.get_service(svc)
    assert got == svc and got.fwmark == 77 and got.address is None and got.family == fam
    # the kernel stores fwmark services as TCP
    assert got.protocol == ipvs.Protocol.TCP
    assert lb.services() == [svc]


def test_fwmark_same_mark_both_families_are_distinct(ipvs_handle, ipvsadm):
    lb = ipvs_handle
    s4 = Service(fwmark=5, scheduler="rr")
    s6 = Service(fwmark=5, family=socket.AF_INET6, scheduler="sh")
    lb.add_service(s4)
    netlink_only(lb, lb.add_service, s6)
    lb.add_service(s6)
    assert sorted(sn(ipvsadm)) == sorted(["-A -f 5 -s rr", "-A -f 5 -6 -s sh"])
    assert set(lb.services()) == {s4, s6}
    assert lb.get_service(s6).scheduler == "sh"
    lb.delete_service(s4)
    assert lb.services() == [s6]


# -------------------------------------------------------------- schedulers

@pytest.mark.parametrize("sched", SCHEDULERS)
def test_every_scheduler(ipvs_handle, ipvsadm, sched):
    lb = ipvs_handle
    svc = Service(address=V4, port=80, scheduler=sched)
    lb.add_service(svc)
    assert sn(ipvsadm) == ["-A -t 10.0.0.1:80 -s %s" % sched]
    assert lb.get_service(svc).scheduler == sched
    # and switch it to the next one by an update
    other = SCHEDULERS[(SCHEDULERS.index(sched) + 1) % len(SCHEDULERS)]
    lb.update_service(svc.replace(scheduler=other))
    assert sn(ipvsadm) == ["-A -t 10.0.0.1:80 -s %s" % other]
    assert lb.services() == [svc.replace(scheduler=other)]


@pytest.mark.parametrize("sched", ["rr", "mh"])
def test_scheduler_on_ipv6_fwmark(ipvs_handle, ipvsadm, sched):
    lb = ipvs_handle
    svc = Service(fwmark=9, family=socket.AF_INET6, scheduler=sched)
    netlink_only(lb, lb.add_service, svc)
    lb.add_service(svc)
    assert sn(ipvsadm) == ["-A -f 9 -6 -s %s" % sched]
    assert lb.get_service(svc) == svc


def test_scheduler_none_is_accepted(ipvs_handle, ipvsadm):
    """KERNEL-NOTES: the scheduler name "none" is accepted (no scheduler)."""
    lb = ipvs_handle
    svc = Service(address=V4, port=80, scheduler="none")
    lb.add_service(svc)
    assert lb.get_service(svc).scheduler == "none"
    assert sn(ipvsadm) == ["-A -t 10.0.0.1:80 -s none"]


# ------------------------------------------------------------------- flags

FLAG_CASES = [
    # (scheduler, flags, what ipvsadm -Sn prints after "-s SCHED", -Ln flag text)
    ("rr", F.ONEPACKET, " -o", " ops"),
    ("sh", F.SH_FALLBACK, " -b sh-fallback", " (sh-fallback)"),
    ("sh", F.SH_PORT, " -b sh-port", " (sh-port)"),
    ("sh", F.SH_FALLBACK | F.SH_PORT, " -b sh-fallback,sh-port", " (sh-fallback,sh-port)"),
    ("mh", F.MH_FALLBACK, " -b mh-fallback", " (mh-fallback)"),
    ("mh", F.MH_PORT, " -b mh-port", " (mh-port)"),
    ("mh", F.MH_FALLBACK | F.MH_PORT | F.ONEPACKET, " -o -b mh-fallback,mh-port",
     " (mh-fallback,mh-port) ops"),
    ("rr", F.SCHED3, " -b flag-3", " (flag-3)"),
]


@pytest.mark.parametrize("sched,flags,save,listing", FLAG_CASES,
                         ids=[f"{c[0]}-{int(c[1])}" for c in FLAG_CASES])
def test_service_flags(ipvs_handle, ipvsadm, sched, flags, save, listing):
    lb = ipvs_handle
    svc = Service(address=V4, port=53, protocol="udp", scheduler=sched, flags=flags)
    lb.add_service(svc)
    assert sn(ipvsadm) == ["-A -u 10.0.0.1:53 -s %s%s" % (sched, save)]
    assert ln_service_lines(ipvsadm) == ["UDP  10.0.0.1:53 %s%s" % (sched, listing)]
    got = lb.get_service(svc)
    assert got.flags == flags and got == svc
    assert not got.flags & F.HASHED  # kernel-internal, stripped


def test_persistent_flag_and_timeout(ipvs_handle, ipvsadm):
    lb = ipvs_handle
    svc = Service(address=V4, port=80, scheduler="wlc", flags=F.PERSISTENT)
    assert svc.timeout == 360  # what ipvsadm 1.31's bare -p sets
    lb.add_service(svc)
    assert sn(ipvsadm) == ["-A -t 10.0.0.1:80 -s wlc -p 360"]
    assert ln_service_lines(ipvsadm) == ["TCP  10.0.0.1:80 wlc persistent 360"]
    got = lb.get_service(svc)
    assert got.flags == F.PERSISTENT and got.timeout == 360 and got == svc
    # and ipvsadm's own bare -p gives the same service
    lb.delete_service(svc)
    ipvsadm("-A", "-t", "10.0.0.1:80", "-s", "wlc", "-p")
    assert lb.get_service(svc) == svc

    lb.update_service(svc.replace(timeout=3600))
    assert sn(ipvsadm) == ["-A -t 10.0.0.1:80 -s wlc -p 3600"]
    assert lb.get_service(svc).timeout == 3600


@pytest.mark.parametrize("mask_in,prefix,shown", [
    ("255.255.255.0", 24, "255.255.255.0"),
    (16, 16, "255.255.0.0"),
    ("255.255.255.255", 32, None),
    (0, 0, "0.0.0.0"),
])
def test_persistence_netmask_ipv4(ipvs_handle, ipvsadm, mask_in, prefix, shown):
    lb = ipvs_handle
    svc = Service(address=V4, port=80, scheduler="rr", timeout=120, netmask=mask_in)
    assert svc.netmask == prefix
    lb.add_service(svc)
    line = "-A -t 10.0.0.1:80 -s rr -p 120" + (" -M %s" % shown if shown else "")
    assert sn(ipvsadm) == [line]
    got = lb.get_service(svc)
    assert got.netmask == prefix and got == svc


@pytest.mark.parametrize("prefix", [1, 48, 64, 127, 128])
def test_persistence_netmask_ipv6(ipvs_handle, ipvsadm, prefix):
    lb = ipvs_handle
    svc = Service(address=V6, port=443, scheduler="sh", timeout=60, netmask=prefix)
    netlink_only(lb, lb.add_service, svc)
    lb.add_service(svc)
    line = "-A -t [2001:db8::1]:443 -s sh -p 60" + (" -M %d" % prefix if prefix != 128 else "")
    assert sn(ipvsadm) == [line]
    assert lb.get_service(svc).netmask == prefix
    assert lb.services() == [svc]


def test_persistence_engine_sip(ipvs_handle, ipvsadm):
    lb = ipvs_handle
    svc = Service(address=V4, port=5060, protocol="udp", scheduler="rr", timeout=30,
                  pe_name="sip")
    netlink_only(lb, lb.add_service, svc)
    lb.add_service(svc)
    assert sn(ipvsadm) == ["-A -u 10.0.0.1:5060 -s rr -p 30 --pe sip"]
    assert ln_service_lines(ipvsadm) == ["UDP  10.0.0.1:5060 rr persistent 30 pe sip"]
    got = lb.get_service(svc)
    assert got.pe_name == "sip" and got == svc

    # an update without pe_name takes the engine away (absent PE_NAME on
    # SET_SERVICE = no engine: verified here on 6.1)
    lb.update_service(svc.replace(pe_name=None))
    assert sn(ipvsadm) == ["-A -u 10.0.0.1:5060 -s rr -p 30"]
    assert lb.get_service(svc).pe_name is None
    # and an update can add it back
    lb.update_service(svc)
    assert lb.get_service(svc).pe_name == "sip"


def test_pe_on_ipv6_fwmark_with_prefix(ipvs_handle, ipvsadm):
    lb = ipvs_handle
    svc = Service(fwmark=3, family=socket.AF_INET6, scheduler="mh", timeout=90, netmask=64,
                  pe_name="sip", flags=F.MH_PORT)
    netlink_only(lb, lb.add_service, svc)
    lb.add_service(svc)
    assert sn(ipvsadm) == ["-A -f 3 -6 -s mh -p 90 -M 64 --pe sip -b mh-port"]
    assert lb.get_service(svc) == svc


def test_everything_at_once_matches_ipvsadm_listing(ipvs_handle, ipvsadm):
    lb = ipvs_handle
    svc = Service(address=V4, port=80, scheduler="sh", timeout=100, netmask="255.255.0.0",
                  flags=F.SH_FALLBACK | F.SH_PORT)
    lb.add_service(svc)
    assert sn(ipvsadm) == ["-A -t 10.0.0.1:80 -s sh -p 100 -M 255.255.0.0 -b sh-fallback,sh-port"]
    assert ln_service_lines(ipvsadm) == [
        "TCP  10.0.0.1:80 sh (sh-fallback,sh-port) persistent 100 mask 255.255.0.0"]


# ------------------------------------------------- update changes only that

def test_update_changes_exactly_what_changed(ipvs_handle, ipvsadm):
    lb = ipvs_handle
    base = Service(address=V4, port=80, protocol="udp", scheduler="sh", timeout=200,
                   netmask=24, flags=F.ONEPACKET | F.SH_PORT)
    lb.add_service(base)
    assert sn(ipvsadm) == ["-A -u 10.0.0.1:80 -s sh -p 200 -M 255.255.255.0 -o -b sh-port"]

    # scheduler only: flags, timeout, netmask stay
    s1 = base.replace(scheduler="mh")
    lb.update_service(s1)
    assert lb.get_service(base) == s1
    assert sn(ipvsadm) == ["-A -u 10.0.0.1:80 -s mh -p 200 -M 255.255.255.0 -o -b mh-port"]

    # clear one flag, set another: exactly those bits change
    s2 = s1.replace(flags=F.PERSISTENT | F.MH_PORT | F.MH_FALLBACK)
    lb.update_service(s2)
    got = lb.get_service(base)
    assert got.flags == F.PERSISTENT | F.MH_PORT | F.MH_FALLBACK and got == s2
    assert sn(ipvsadm) == ["-A -u 10.0.0.1:80 -s mh -p 200 -M 255.255.255.0 -b mh-fallback,mh-port"]

    # drop persistence altogether
    s3 = Service(address=V4, port=80, protocol="udp", scheduler="mh", netmask=24,
                 flags=F.MH_FALLBACK)
    lb.update_service(s3)
    got = lb.get_service(base)
    assert got.timeout == 0 and not got.flags & F.PERSISTENT and got == s3
    assert sn(ipvsadm) == ["-A -u 10.0.0.1:80 -s mh -b mh-fallback"]


def test_update_of_service_made_by_ipvsadm_keeps_its_flags(ipvs_handle, ipvsadm):
    """Read a service ipvsadm made, change one field, write it back: ipvsadm
    sees only that field changed."""
    lb = ipvs_handle
    ipvsadm("-A", "-u", "10.0.0.9:53", "-s", "sh", "-p", "50", "-M", "255.255.255.0", "-o",
            "-b", "sh-fallback,sh-port")
    (svc,) = lb.services()
    assert svc == Service(address="10.0.0.9", port=53, protocol="udp", scheduler="sh",
                          timeout=50, netmask=24,
                          flags=F.PERSISTENT | F.ONEPACKET | F.SH_FALLBACK | F.SH_PORT)
    lb.update_service(svc.replace(timeout=51))
    assert sn(ipvsadm) == ["-A -u 10.0.0.9:53 -s sh -p 51 -M 255.255.255.0 -o -b sh-fallback,sh-port"]


def test_services_listing_of_many_kinds(ipvs_handle, ipvsadm):
    lb = ipvs_handle
    svcs = [Service(address=V4, port=80, scheduler="rr"),
            Service(address="10.0.0.2", port=53, protocol="udp", scheduler="wrr"),
            Service(address="10.0.0.3", port=9, protocol="sctp", scheduler="lc"),
            Service(fwmark=1, scheduler="dh")]
    if lb.backend == "netlink":
        svcs += [Service(address=V6, port=80, scheduler="sed", timeout=10, netmask=96),
                 Service(fwmark=2, family=socket.AF_INET6, scheduler="nq")]
    for s in svcs:
        lb.add_service(s)
    assert sorted(lb.services(), key=repr) == sorted(svcs, key=repr)
    assert len(sn(ipvsadm)) == len(svcs)
    for s in svcs:
        got = lb.get_service(s)
        assert got == s and got.stats is not None

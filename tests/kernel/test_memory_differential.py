"""Differential test: the memory backend against the running kernel.

Hypothesis draws sequences of requests over a small universe of services,
destinations and sync daemons (small on purpose, so that requests collide:
exists, not found, mixed families, daemons against mixed destinations...).
Each sequence is sent to the real kernel (netlink backend, a fresh network
namespace) and to a fresh memory table following this kernel's profile
(from ``os.uname()``). Every outcome is compared -- the result, or the
exception's class, errno and message -- and after the sequence the whole
state: table (with stats), timeouts, daemons, info.

The number of sequences is bounded: ``IPVS_DIFF_EXAMPLES`` (default 30) of
up to ``IPVS_DIFF_LENGTH`` (default 20) requests. The figures are printed
(run with ``-s`` to see them).

Known, deliberate gaps of the universe (docs/memory-backend.md):
- service order in listings is compared as a set: the kernel's follows a
  hash of the namespace's address in kernel memory;
- an unknown scheduler is never drawn together with an unknown persistence
  engine: the kernel answers ENOENT for the scheduler (looked up first)
  and the memory backend says so, but the netlink backend's class for that
  ENOENT is guessed by errors.py from the loaded modules (it picks the
  engine); the errno is the same.
"""
from __future__ import annotations

import os
import socket
import time
from collections import Counter
from typing import Any, Dict, List, Optional, Tuple

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ipvs
from ipvs import Daemon, Destination, Service, ServiceFlags as F, TunnelFlags, TunnelType
from ipvs import netns as _netns
from ipvs.testing import add_netns, reset_memory

pytestmark = pytest.mark.kernel

EXAMPLES = int(os.environ.get("IPVS_DIFF_EXAMPLES", "30"))
LENGTH = int(os.environ.get("IPVS_DIFF_LENGTH", "20"))


def kernel_profile(release: Optional[str] = None) -> str:
    """The memory backend's profile for this kernel release ("6.1.0-..." -> "6.1")."""
    release = release or os.uname().release
    major, minor = (int(x) for x in release.split("-")[0].split(".")[:2])
    if major >= 7:
        return "7"
    if (major, minor) >= (6, 12):
        return "6.12"
    return "6.1"


# ---------------------------------------------------------------- universe

SERVICE_KEYS: List[Dict[str, Any]] = [
    dict(address="10.0.0.1", port=80, protocol="tcp"),
    dict(address="10.0.0.1", port=80, protocol="udp"),
    dict(address="10.0.0.2", port=0, protocol="sctp"),
    dict(address="2001:db8::1", port=443, protocol="tcp"),
    dict(fwmark=1),
    dict(fwmark=1, family=socket.AF_INET6),
]
SCHEDULERS = ["rr", "wlc", "sh", "mh", "rr", "none", "twos"]
FLAGS = [F(0), F.ONEPACKET, F.SCHED1 | F.SCHED2, F.SCHED3, F.PERSISTENT]
ENGINES = [None, None, None, None, "sip", "nosuchpe"]

DEST_ADDRESSES = ["192.168.1.1", "192.168.1.2", "2001:db8::10", "192.168.1.1", "2001:db8::11",
                  "127.0.0.1", "224.0.0.1",
                  "0.0.0.0", "127.255.255.255", "fe80::1", "::ffff:1.2.3.4", "ff02::1", "::1",
                  "240.0.0.1", "::"]
THRESHOLDS = [(0, 0), (0, 0), (100, 10), (5, 10), (0, 1), (2**31, 0), (2**32 - 1, 2**32 - 1),
              (2**31 - 1, 2**31 - 1)]
TUNNELS = [(TunnelType.IPIP, 0, TunnelFlags.NOCSUM), (TunnelType.IPIP, 0, TunnelFlags.NOCSUM),
           (TunnelType.GUE, 0, TunnelFlags.NOCSUM),
           (TunnelType.GUE, 6080, TunnelFlags.CSUM), (TunnelType.GRE, 0, TunnelFlags.REMCSUM),
           (TunnelType.GRE, 0, TunnelFlags.CSUM | TunnelFlags.REMCSUM)]


@st.composite
def services(draw: Any) -> Service:
    key = dict(draw(st.sampled_from(SERVICE_KEYS)))
    v6 = key.get("family") == socket.AF_INET6 or ":" in str(key.get("address", ""))
    sched = draw(st.sampled_from(SCHEDULERS))
    pe = draw(st.sampled_from(ENGINES))
    if sched == "twos" and pe == "nosuchpe":
        pe = None   # see the module docstring
    return Service(**key, scheduler=sched, flags=draw(st.sampled_from(FLAGS)),
                   timeout=draw(st.sampled_from([0, 0, 30, 360])),
                   netmask=draw(st.sampled_from([128, 64] if v6 else [32, 24, 0])),
                   pe_name=pe)


def D(*args: Any, weight: int = 1, lower_threshold: int = 0, **kw: Any) -> Destination:
    """A Destination built even where the model refuses the values (a negative
    weight, a lower threshold above the upper one), as ipvsadm sends them: the
    kernel's refusal (ERANGE) and the order of its checks are compared."""
    d = Destination(*args, **kw)
    return Destination._make(*{**d._asdict(), "weight": weight,
                               "lower_threshold": lower_threshold}.values())


@st.composite
def destinations(draw: Any) -> Destination:
    upper, lower = draw(st.sampled_from(THRESHOLDS))
    ttype, tport, tflags = draw(st.sampled_from(TUNNELS))
    return D(draw(st.sampled_from(DEST_ADDRESSES)),
                       draw(st.sampled_from([0, 80, 8080])),
             weight=draw(st.sampled_from([1, 0, 1, 7, -1])),
             forward=draw(st.sampled_from([0, 1, 2, 2, 3, 4])),
             upper_threshold=upper, lower_threshold=lower, tunnel_type=ttype,
             tunnel_port=tport, tunnel_flags=tflags)


@st.composite
def daemons(draw: Any) -> Daemon:
    return Daemon(draw(st.sampled_from(["master", "backup"])),
                  draw(st.sampled_from(["lo", "lo", "nosuch0"])),
                  sync_id=draw(st.sampled_from([0, 5])),
                  max_len=draw(st.sampled_from([0, 0, 500, 65535])),
                  mcast_group=draw(st.sampled_from([None, None, "239.1.1.1", "ff02::99",
                                                    "10.0.0.1"])),
                  mcast_port=draw(st.sampled_from([0, 9000])),
                  mcast_ttl=draw(st.sampled_from([0, 3])))


@st.composite
def fitting_destinations(draw: Any, svc: Service) -> Destination:
    """A destination the kernel most likely takes for ``svc``: its family,
    an ordinary address, sane values (any forwarding method)."""
    v6 = svc.family == socket.AF_INET6
    return Destination(draw(st.sampled_from(["2001:db8::10", "2001:db8::11"] if v6 else
                                            ["192.168.1.1", "192.168.1.2", "192.168.1.3"])),
                       draw(st.sampled_from([0, 80, 8080])),
                       weight=draw(st.sampled_from([0, 1, 5])),
                       forward=draw(st.sampled_from([0, 1, 2, 3, 4])),
                       upper_threshold=draw(st.sampled_from([0, 50])))


@st.composite
def dest_request(draw: Any, op: str, svc: Any) -> Tuple[Any, ...]:
    s = draw(svc)
    d = draw(st.one_of(fitting_destinations(s), fitting_destinations(s), destinations()))
    return (op, s, d)


def requests(pool: Optional[List[Service]] = None) -> Any:
    """One request; its services are mostly drawn from ``pool`` (the
    sequence's own), else from the whole universe."""
    svc: Any = services()
    if pool:
        same = st.sampled_from(pool)
        svc = st.one_of(same, same, same, svc)
    dest = destinations()
    call = st.one_of(
        st.tuples(st.sampled_from(["add_service", "update_service", "delete_service"]), svc,
                  st.none()),
        st.sampled_from(["add_destination", "update_destination", "delete_destination"]
                        ).flatmap(lambda op: dest_request(op, svc)))
    apply = st.tuples(st.just("apply"),
                      st.dictionaries(svc, st.lists(st.one_of(dest, fitting_destinations(
                          Service(address="10.0.0.1", port=80))), max_size=3), max_size=2),
                      st.sampled_from([False, "destinations", "destinations", True]),
                      st.booleans())
    weighted = [
        (8, dest_request("add_destination", svc)),
        (3, st.tuples(st.just("add_service"), svc)),
        (3, dest_request("update_destination", svc)),
        (2, dest_request("delete_destination", svc)),
        (2, st.tuples(st.just("update_service"), svc)),
        (1, st.tuples(st.just("delete_service"), svc)),
        (1, st.tuples(st.just("get_service"), svc)),
        (1, st.tuples(st.just("destinations"), svc)),
        (1, st.tuples(st.just("services"))),
        (1, st.tuples(st.just("table"))),
        (1, st.tuples(st.just("zero"), st.one_of(st.none(), svc))),
        (1, st.tuples(st.just("info"))),
        (1, st.tuples(st.just("set_timeouts"), st.sampled_from([None, 1, 900]),
                      st.sampled_from([None, 30]), st.sampled_from([None, 2147483]))),
        (2, st.tuples(st.just("start_daemon"), daemons())),
        (1, st.tuples(st.just("stop_daemon"), st.sampled_from(["master", "backup"]))),
        (3, st.tuples(st.just("batch"), st.lists(call, min_size=1, max_size=4))),
        (1, apply),
        (1, st.tuples(st.just("flush"))),
    ]
    # weights by repetition: adds often enough that most requests meet a
    # table with services and destinations in it
    return st.one_of(*[strat for n, strat in weighted for _ in range(n)])


@st.composite
def sequences(draw: Any, length: int = 20) -> List[Tuple[Any, ...]]:
    """A sequence of ``length`` requests: it adds one to three services of
    its own first, then mostly works on them."""
    pool = draw(st.lists(services(), min_size=1, max_size=3, unique_by=lambda s: s.key))
    pool = [s for s in pool if s.scheduler != "twos" and s.pe_name != "nosuchpe"] or \
        [Service(address="10.0.0.1", port=80, scheduler="rr")]
    seq: List[Tuple[Any, ...]] = [("add_service", s) for s in pool]
    seq += draw(st.lists(requests(pool), min_size=length - len(seq), max_size=length - len(seq)))
    return seq


# -------------------------------------------------------------- comparing

def norm(value: Any) -> Any:
    """What is compared of a result: records by repr (stats and counters
    included); services lists as sets, destinations in order."""
    if isinstance(value, ipvs.Plan):
        return ("plan", value.applied, sorted(repr(c) for c in value.changes))
    if isinstance(value, dict):
        return sorted((repr(s), [repr(d) for d in ds]) for s, ds in value.items())
    if isinstance(value, list):
        if value and all(isinstance(v, Service) for v in value):
            return sorted(repr(v) for v in value)
        return [repr(v) for v in value]
    return repr(value)


def norm_error(e: BaseException) -> Any:
    if isinstance(e, ipvs.BatchError):
        return ("BatchError", e.succeeded,
                [(repr(c), type(x).__name__, x.errno, x.strerror) for c, x in e.failures])
    if isinstance(e, ipvs.IPVSError):
        return (type(e).__name__, e.errno, e.strerror)
    return (type(e).__name__, str(e))


def perform(lb: ipvs.IPVS, req: Tuple[Any, ...]) -> Any:
    op, args = req[0], req[1:]
    if op == "set_timeouts":
        tcp, fin, udp = args
        return lb.set_timeouts(tcp=tcp, tcp_fin=fin, udp=udp)
    if op == "start_daemon":
        return lb.start_daemon(*args)
    if op == "stop_daemon":
        return lb.stop_daemon(*args)
    if op == "batch":
        with lb.batch() as b:
            for name, svc, dest in args[0]:
                if dest is None:
                    getattr(b, name)(svc)
                else:
                    getattr(b, name)(svc, dest)
        return None
    if op == "apply":
        desired, prune, dry_run = args
        return lb.apply(desired, prune=prune, dry_run=dry_run)
    return getattr(lb, op)(*args)


def outcome(lb: ipvs.IPVS, req: Tuple[Any, ...]) -> Any:
    try:
        return ("ok", norm(perform(lb, req)))
    except ipvs.IPVSError as e:
        return ("error",) + (norm_error(e),)
    except ValueError as e:   # the handle's own checks (e.g. apply given a key twice)
        return ("error", norm_error(e))


def state(lb: ipvs.IPVS) -> Any:
    return (norm(lb.table()), repr(lb.timeouts()), norm(lb.daemons()), repr(lb.info()))


def stop_daemons(lb: ipvs.IPVS) -> None:
    for d in lb.daemons():
        try:
            lb.stop_daemon(d.state)
        except ipvs.DaemonNotRunningError:
            pass


# -------------------------------------------------------------------- test

def test_memory_backend_matches_this_kernel() -> None:
    profile = kernel_profile()
    figures: Counter = Counter()
    kinds: Counter = Counter()

    @settings(max_examples=EXAMPLES, deadline=None, derandomize=False,
              suppress_health_check=list(HealthCheck))
    @given(seq=sequences(LENGTH))
    def run(seq: List[Tuple[Any, ...]]) -> None:
        reset_memory()
        with _netns.temporary("ipvs-diff-") as name:
            _netns.link_up(name, "lo")
            real = ipvs.IPVS(netns=name, backend="netlink", timeout=60)
            add_netns("diff")              # a namespace of the memory backend
            mem = ipvs.IPVS(backend="memory", kernel=profile, netns="diff")
            try:
                for i, req in enumerate(seq):
                    if req[0] == "stop_daemon":
                        time.sleep(0.05)   # let a daemon's thread run first (KERNEL-FACTS)
                    want = outcome(real, req)
                    got = outcome(mem, req)
                    figures["requests"] += 1
                    figures["outcomes"] += 1
                    kinds[(req[0], want[0] if want[0] == "ok" else want[1][0])] += 1
                    if want != got:
                        figures["differences"] += 1
                    assert got == want, "request %d of %d: %r" % (i + 1, len(seq), req)
                want, got = state(real), state(mem)
                figures["outcomes"] += 1
                if want != got:
                    figures["differences"] += 1
                assert got == want, "final state"
                figures["sequences"] += 1
            finally:
                stop_daemons(real)
                real.close()
                mem.close()
                reset_memory()

    run()
    print("\nmemory-vs-kernel differential (kernel %s, profile %s): %d sequences, %d requests, "
          "%d outcomes compared, %d differences"
          % (os.uname().release, profile, figures["sequences"], figures["requests"],
             figures["outcomes"], figures["differences"]))
    if os.environ.get("IPVS_DIFF_VERBOSE"):
        for (op, kind), n in sorted(kinds.items()):
            print("  %-20s %-32s %d" % (op, kind, n))
    assert figures["differences"] == 0
    assert figures["sequences"] >= min(EXAMPLES, 1)


@pytest.mark.parametrize("release,profile", [("6.1.0-31-amd64", "6.1"), ("6.12.113", "6.12"),
                                             ("7.2.7", "7"), ("6.11.0", "6.1")])
def test_kernel_profile_from_release(release: str, profile: str) -> None:
    assert kernel_profile(release) == profile


# ------------------------------------------------- orders of the checks

S4 = Service(address="10.0.0.1", port=80, scheduler="rr")
S6 = Service(address="2001:db8::1", port=80, scheduler="rr")
BIG = 2**31
EDGE_SETUP: List[Tuple[Any, ...]] = [
    ("add_service", S4), ("add_service", S6),
    ("add_destination", S4, Destination("192.168.1.1", 80, forward="masq")),
]
EDGE: List[Tuple[Any, ...]] = [
    # which refusal wins when a request has several faults
    (op, svc, d) for op in ("add_destination", "update_destination")
    for svc in (S4, Service(address="10.9.9.9", port=80))
    for d in (
        D("192.168.1.1", 80, forward="masq", upper_threshold=BIG),              # exists / big
        D("192.168.1.1", 80, forward="masq", upper_threshold=BIG, weight=-1),   # ERANGE / big
        D("192.168.1.2", 80, forward="masq", upper_threshold=5, lower_threshold=BIG),
        D("192.168.1.2", 80, forward="masq", lower_threshold=BIG, upper_threshold=BIG),
        D("2001:db8::5", 80, forward="masq", upper_threshold=BIG),              # mixed / big
        D("2001:db8::5", 80, forward="masq", weight=-1),                         # mixed / ERANGE
        D("2001:db8::5", 80, forward="tunnel", tunnel_type="gue", weight=-1),   # ERANGE / GUE
        D("192.168.1.2", 80, forward="tunnel", tunnel_type="gue", upper_threshold=BIG),
        D("224.0.0.1", 80, forward="masq", upper_threshold=BIG),                # unicast / big
        D("224.0.0.1", 80, forward="masq", weight=-1),                           # unicast / ERANGE
        D("224.0.0.1", 80, forward="tunnel", tunnel_type="gue"),                # unicast / GUE
        D("127.0.0.1", 80, forward="masq"), D("127.0.0.0", 80), D("0.1.2.3", 80),
        D("::", 80, forward="tunnel"), D("fe80::1", 80, forward="tunnel"),
        D("::1", 80, forward="tunnel"), D("::ffff:1.2.3.4", 80, forward="tunnel"),
        D("fec0::1", 80, forward="tunnel"), D("fc00::1", 80, forward="tunnel"),
        D("::1.2.3.4", 80, forward="tunnel"), D("240.0.0.1", 80),
    )
] + [
    ("add_service", S4.replace(scheduler="twos")),                  # exists before scheduler
    ("add_service", S4.replace(port=81, scheduler="twos", pe_name="sip")),
    ("add_service", S4.replace(port=81, pe_name="nosuchpe")),
    ("update_service", S4.replace(port=82, scheduler="twos")),      # missing before scheduler
    # daemons: group, mixed destinations, interface, running
    ("start_daemon", Daemon("master", "nosuch0", mcast_group="10.0.0.1")),
    ("start_daemon", Daemon("master", "nosuch0")),
    ("start_daemon", Daemon("master", "lo", max_len=1)),
    ("start_daemon", Daemon("master", "nosuch0")),                  # ENODEV before EEXIST
    ("start_daemon", Daemon("master", "lo")),
    ("start_daemon", Daemon("backup", "lo", mcast_group="ff02::5", max_len=70000 - 4465)),
    ("add_destination", S4, D("2001:db8::7", 80, forward="tunnel")),  # refused: daemons run
    ("daemons",),
    ("stop_daemon", "master"), ("stop_daemon", "backup"),
    ("add_destination", S4, D("2001:db8::7", 80, forward="tunnel")),
    ("start_daemon", Daemon("backup", "nosuch0")),                  # mixed before ENODEV
    ("delete_destination", S4, D("2001:db8::7", 80)),
    ("start_daemon", Daemon("master", "lo", mcast_group="ff02::5")),   # ENETUNREACH on lo
    ("daemons",),
]


def test_edge_requests_match_this_kernel(ipvs_netns):
    """Requests with several faults at once (which refusal the kernel gives
    first), special addresses and daemon settings: the same outcome on the
    kernel and on the memory backend with its profile."""
    profile = kernel_profile()
    reset_memory()
    real = ipvs.IPVS(netns=ipvs_netns, backend="netlink", timeout=60)
    add_netns("edge")
    mem = ipvs.IPVS(backend="memory", kernel=profile, netns="edge")
    try:
        for req in EDGE_SETUP + EDGE:
            if req[0] == "stop_daemon":
                time.sleep(0.3)
            want, got = outcome(real, req), outcome(mem, req)
            assert got == want, req
        assert state(mem) == state(real)
    finally:
        stop_daemons(real)
        real.close()
        mem.close()
        reset_memory()

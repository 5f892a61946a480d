"""Property-based fuzzing of the public API's argument handling (issue 9).

Random, mostly garbage, arguments for the records (Service, Destination,
Daemon, Timeouts, Stats) and the IPVS handle's methods: the only exceptions
allowed out are TypeError, ValueError and IPVSError (and its subclasses);
anything else -- another exception type, a crash of the extension -- fails.

Without a kernel, the handle's methods are fuzzed on a closed handle (the
argument checks come first; a closed handle then says ValueError). With a
kernel (root and IPVS, e.g. inside `python -m ipvs.sandbox`), the kernel part
fuzzes an open handle of both backends in a throw-away namespace, so that the
conversions to the C structs and the kernel's refusals are exercised too.
"""
import ipaddress
import math
import socket

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ipvs
from ipvs import (IPVS, Daemon, DaemonState, Destination, Forward, IPVSError, Protocol, Service,
                  ServiceFlags, Stats, Timeouts, TunnelFlags, TunnelType)

ALLOWED = (TypeError, ValueError, IPVSError)

ints = st.one_of(
    st.integers(min_value=-3, max_value=70000),
    st.sampled_from([-(2 ** 31) - 1, -(2 ** 31), 2 ** 16, 2 ** 31 - 1, 2 ** 31, 2 ** 32 - 1,
                     2 ** 32, 2 ** 63, 2 ** 64, 10 ** 30, -(10 ** 30)]),
)
texts = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["", "rr", "wlc", "none", "sip", "lo", "tcp", "UDP", "sctp", "masq",
                     "route", "tunnel", "gue", "master", "backup", "10.0.0.1", "::1",
                     "2001:db8::1", "10.0.0.1/24", "255.255.255.0", "1.2.3.4:80",
                     "a" * 15, "a" * 16, "rr\0x", "\udcff", "é", "0x10", " 42 "]),
)
addresses = st.one_of(
    st.ip_addresses(),
    st.ip_addresses().map(str),
    st.ip_addresses().map(lambda a: a.packed),
    st.ip_addresses().map(int),
)
garbage = st.recursive(
    st.one_of(
        st.none(), st.booleans(), ints, texts, addresses,
        st.floats(allow_nan=True, allow_infinity=True),
        st.just(math.nan), st.binary(max_size=20), st.just(object()),
        st.sampled_from([Protocol.TCP, Protocol.UDP, Forward.MASQ, Forward.TUNNEL,
                         ServiceFlags.PERSISTENT, ServiceFlags.NONE, TunnelType.GUE,
                         TunnelFlags.CSUM, DaemonState.MASTER, socket.AF_INET,
                         socket.AF_INET6, socket.AF_UNIX,
                         ipaddress.ip_network("10.0.0.0/8"), Stats()]),
    ),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.tuples(inner, inner),
                            st.dictionaries(st.text(max_size=5), inner, max_size=2)),
    max_leaves=4,
)

PARAMS = {
    Service: ["address", "port", "protocol", "scheduler", "fwmark", "family", "flags",
              "timeout", "netmask", "pe_name", "stats"],
    Destination: ["address", "port", "weight", "forward", "upper_threshold",
                  "lower_threshold", "tunnel_type", "tunnel_port", "tunnel_flags", "family",
                  "active_connections", "inactive_connections", "persistent_connections",
                  "stats"],
    Daemon: ["state", "interface", "sync_id", "max_len", "mcast_group", "mcast_port",
             "mcast_ttl"],
    Timeouts: ["tcp", "tcp_fin", "udp"],
    Stats: ["connections", "packets_in", "packets_out", "bytes_in", "bytes_out", "cps",
            "pps_in", "pps_out", "bps_in", "bps_out"],
}

# plausible values per parameter, mixed with garbage, so that the draws also
# get past the first check and reach the later ones
PLAUSIBLE = {
    "address": addresses, "port": ints, "protocol": st.one_of(texts, ints),
    "scheduler": texts, "fwmark": ints, "family": st.sampled_from([socket.AF_INET,
                                                                  socket.AF_INET6, 0, 1, 99]),
    "flags": ints, "timeout": ints, "netmask": st.one_of(ints, texts), "pe_name": texts,
    "weight": ints, "forward": st.one_of(texts, ints), "tunnel_type": st.one_of(texts, ints),
    "tunnel_port": ints, "tunnel_flags": ints, "state": st.one_of(texts, ints),
    "interface": texts, "mcast_group": addresses,
}


def _value(name):
    s = PLAUSIBLE.get(name)
    return st.one_of(s, garbage) if s is not None else st.one_of(ints, garbage)


@st.composite
def call_args(draw, cls):
    names = PARAMS[cls]
    nargs = draw(st.integers(0, 3))
    args = [draw(_value(names[i] if i < len(names) else "x")) for i in range(nargs)]
    kw = {}
    for name in draw(st.lists(st.sampled_from(names + ["bogus"]), max_size=5, unique=True)):
        kw[name] = draw(_value(name))
    return args, kw


def _exercise(obj):
    """What users do with a record: none of it may raise."""
    repr(obj)
    str(obj)
    hash(obj)
    assert obj == obj
    obj._asdict()


def _construct(cls, args, kw):
    try:
        obj = cls(*args, **kw)
    except ALLOWED:
        return None
    _exercise(obj)
    return obj


@pytest.mark.parametrize("cls", [Service, Destination, Daemon, Timeouts, Stats],
                         ids=lambda c: c.__name__)
@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_record_constructors(cls, data):
    args, kw = data.draw(call_args(cls))
    obj = _construct(cls, args, kw)
    if obj is not None and data.draw(st.booleans()):
        # replace() validates like the constructor
        changes = data.draw(st.dictionaries(st.sampled_from(PARAMS[cls] + ["bogus"]),
                                            garbage, max_size=2))
        try:
            _exercise(obj.replace(**changes))
        except ALLOWED:
            pass


services = st.builds(lambda a, p, s: Service(a, p, scheduler=s),
                     st.ip_addresses(), st.integers(0, 65535), st.sampled_from(["rr", "wlc"]))
dests = st.builds(lambda a, p, w, f: Destination(a, p, weight=w, forward=f),
                  st.ip_addresses(), st.integers(0, 65535), st.integers(0, 100),
                  st.sampled_from(list(Forward)))
svc_arg = st.one_of(services, garbage, st.builds(Service, fwmark=st.integers(1, 2 ** 32 - 1)))
dest_arg = st.one_of(dests, garbage)


def _method_calls():
    """(method name, strategy of (args, kwargs)) for every public IPVS method
    that takes arguments, plus the argument-less ones."""
    none = st.just(((), {}))
    one = lambda s: st.tuples(s).map(lambda t: (t, {}))          # noqa: E731
    two = lambda a, b: st.tuples(a, b).map(lambda t: (t, {}))   # noqa: E731
    timeouts_kw = st.dictionaries(st.sampled_from(["tcp", "tcp_fin", "udp", "bogus"]),
                                  st.one_of(ints, garbage), max_size=3).map(lambda d: ((), d))
    daemons = st.one_of(garbage, st.builds(Daemon, st.sampled_from(["master", "backup"]),
                                           st.sampled_from(["lo", "nosuch0", "eth0"]),
                                           sync_id=st.integers(0, 255)))
    return [
        ("add_service", one(svc_arg)), ("update_service", one(svc_arg)),
        ("delete_service", one(svc_arg)), ("get_service", one(svc_arg)),
        ("destinations", one(svc_arg)), ("zero", st.one_of(none, one(svc_arg))),
        ("add_destination", two(svc_arg, dest_arg)),
        ("update_destination", two(svc_arg, dest_arg)),
        ("delete_destination", two(svc_arg, dest_arg)),
        ("set_timeouts", timeouts_kw), ("start_daemon", one(daemons)),
        ("stop_daemon", one(st.one_of(garbage, texts, ints))),
        ("services", st.one_of(none, st.builds(lambda v: ((), {"consistent": v}), garbage))),
        ("table", st.one_of(none, st.builds(lambda v: ((), {"consistent": v}), garbage))),
        ("apply", st.one_of(one(garbage), one(st.dictionaries(services, st.lists(dests, max_size=2),
                                                                max_size=2)))),
        ("info", none), ("timeouts", none), ("daemons", none), ("flush", none),
        ("connections", none), ("stats", none),
    ]


METHODS = _method_calls()
method_calls = st.one_of(*[st.tuples(st.just(n), s) for n, s in METHODS])


def _call(lb, name, args, kw):
    try:
        getattr(lb, name)(*args, **kw)
    except ALLOWED:
        pass


def _closed_handle():
    """An IPVS object in its closed state, made without opening anything."""
    lb = IPVS.__new__(IPVS)
    lb._h = None
    lb._timeout = None
    lb._netns = None
    assert lb.closed
    return lb


@settings(max_examples=300, deadline=None)
@given(call=method_calls)
def test_methods_on_closed_handle(call):
    name, (args, kw) = call
    lb = _closed_handle()
    with pytest.raises(ALLOWED):
        getattr(lb, name)(*args, **kw)


@settings(max_examples=150, deadline=None)
@given(backend=st.one_of(garbage, texts).filter(lambda b: b not in ("auto", "netlink",
                                                                     "sockopt")),
       netns=garbage, timeout=garbage)
def test_constructor_garbage_never_opens(backend, netns, timeout):
    # the backend is always invalid, so nothing is ever opened
    with pytest.raises(ALLOWED):
        IPVS(netns=netns, backend=backend, timeout=timeout)


@pytest.mark.kernel
@pytest.mark.parametrize("backend", ["netlink", "sockopt"])
def test_methods_on_open_handle(backend):
    """With a kernel: garbage and random-but-valid arguments against an open
    handle in a throw-away namespace (never the namespace we started in)."""
    from ipvs import netns

    with netns.temporary() as ns:
        netns.link_up(ns, "lo")
        with IPVS(netns=ns, backend=backend, timeout=10) as lb:

            @settings(max_examples=300, deadline=None,
                      suppress_health_check=[HealthCheck.too_slow])
            @given(calls=st.lists(method_calls, min_size=1, max_size=6))
            def run(calls):
                for name, (args, kw) in calls:
                    _call(lb, name, args, kw)
                assert not lb.closed

            run()
            lb.flush()

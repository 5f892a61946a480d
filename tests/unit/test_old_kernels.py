"""Replies shaped as older kernels send them, through the parser and the model.

Kernels before 6.1 cannot boot here, but their replies differ from 6.1's only
by attributes they do not send yet:

* STATS64 (service and destination): since 4.1;
* the destination's ADDR_FAMILY: since 3.18 (before it a destination always
  had its service's family);
* the destination's TUN_TYPE / TUN_PORT (5.2) and TUN_FLAGS (5.3);
* the destination's PERSIST_CONNS counter: absent in some older builds.

The replies below were recorded by fuzz/capture.c (``make capture``, with
IPVS_SANDBOX_KERNEL=6.12 / 7 for the newer ones) on each sandbox kernel,
6.1.176 (the same files as the fuzzers' seed corpus), 6.12.113 and 7.2.7:
tests/unit/replies/VERSION holds their service, destination, info, config
and one error reply.  Each test removes attributes from them, replays the
result through ``_parse_nl_reply`` of the private test module
ipvs._libipvs_test (the C parser and the conversion the handle uses; from an
installed wheel, which does not carry that module, these tests skip) and checks the model objects: the same objects
with the missing values at their defaults, never a crash.
"""
from __future__ import annotations

import os
import socket
import struct
from typing import Iterable, List, Tuple

import pytest

import ipvs
from ipvs import Destination, Forward, Service, Stats, TunnelFlags, TunnelType

from ._private import libipvs_test

_libipvs_test = libipvs_test()

HERE = os.path.dirname(os.path.abspath(__file__))
# copies of capture.c's files (only tests/ travels with the wheel's test run)
CORPORA = {v: os.path.join(HERE, "replies", v) for v in ("6.1.176", "6.12.113", "7.2.7")}

NLA_TYPE_MASK = 0x3FFF
NLMSG_ERROR, NLMSG_DONE = 2, 3
CMD_ATTR_SERVICE, CMD_ATTR_DEST = 1, 2
SVC_STATS, SVC_PE_NAME, SVC_STATS64 = 10, 11, 12
DEST_PERSIST_CONNS, DEST_STATS, DEST_ADDR_FAMILY, DEST_STATS64 = 9, 10, 11, 12
DEST_TUN_TYPE, DEST_TUN_PORT, DEST_TUN_FLAGS = 13, 14, 15


# -------------------------------------------------- netlink (re)writing

def _align(n: int) -> int:
    return (n + 3) & ~3


def _attrs(buf: bytes) -> List[Tuple[int, bytes]]:
    """(type with flags, payload) of each attribute in an attribute area."""
    out, off = [], 0
    while off + 4 <= len(buf):
        length, typ = struct.unpack_from("=HH", buf, off)
        assert 4 <= length <= len(buf) - off, "recorded reply is malformed"
        out.append((typ, buf[off + 4:off + length]))
        off += _align(length)
    return out


def _pack(attrs: Iterable[Tuple[int, bytes]]) -> bytes:
    out = b""
    for typ, payload in attrs:
        raw = struct.pack("=HH", 4 + len(payload), typ) + payload
        out += raw + b"\0" * (_align(len(raw)) - len(raw))
    return out


def _messages(buf: bytes) -> List[Tuple[int, int, int, int, bytes]]:
    out, off = [], 0
    while off + 16 <= len(buf):
        length, typ, flags, seq, pid = struct.unpack_from("=IHHII", buf, off)
        out.append((typ, flags, seq, pid, buf[off + 16:off + length]))
        off += _align(length)
    return out


def _rewrite(buf: bytes, nested: int, drop: Iterable[int]) -> bytes:
    """``buf`` with the attributes ``drop`` removed from every top-level
    attribute of type ``nested`` (CMD_ATTR_SERVICE or CMD_ATTR_DEST)."""
    drop = set(drop)
    out = b""
    for typ, flags, seq, pid, data in _messages(buf):
        if typ > NLMSG_DONE + 13:  # a generic netlink family (IPVS), not control
            genl, top = data[:4], _attrs(data[4:])
            new_top = []
            for t, payload in top:
                if t & NLA_TYPE_MASK == nested:
                    payload = _pack((it, p) for it, p in _attrs(payload)
                                    if it & NLA_TYPE_MASK not in drop)
                new_top.append((t, payload))
            data = genl + _pack(new_top)
        out += struct.pack("=IHHII", 16 + len(data), typ, flags, seq, pid) + data
        out += b"\0" * (_align(len(out)) - len(out))
    return out


def _inner_types(buf: bytes, nested: int) -> List[int]:
    types = []
    for typ, _f, _s, _p, data in _messages(buf):
        if typ > 16:
            for t, payload in _attrs(data[4:]):
                if t & NLA_TYPE_MASK == nested:
                    types += [it & NLA_TYPE_MASK for it, _ in _attrs(payload)]
    return types


# ---------------------------------------------------------- recordings

class Recording:
    """The replies recorded on one kernel."""

    def __init__(self, version: str) -> None:
        self.version = version
        self.dir = CORPORA[version]

    def read(self, name: str) -> bytes:
        with open(os.path.join(self.dir, name), "rb") as f:
            return f.read()

    def names(self, prefix: str) -> List[str]:
        return sorted(n for n in os.listdir(self.dir)
                      if n.startswith(prefix) and n.endswith(".bin"))

    @property
    def service_files(self) -> List[str]:
        return [n for n in self.names("service") if n.startswith(("service-", "services-"))]

    @property
    def dest_pairs(self) -> List[Tuple[str, str]]:
        # dests-N were dumped from the service of service-N (its family decides
        # an address without ADDR_FAMILY)
        return [(n, "service-%s-00.bin" % n.split("-")[1]) for n in self.names("dests-")
                if n.split("-")[1].isdigit()]

    def svc_family(self, name: str) -> int:
        (svc,) = _objects(self.read(name), "service")
        return int(svc.family)


@pytest.fixture(params=sorted(CORPORA), ids=lambda v: "recorded-on-" + v)
def rec(request) -> Recording:
    return Recording(request.param)


def _parse(buf: bytes, svc_af: int = socket.AF_INET) -> List[Tuple[str, object]]:
    return _libipvs_test._parse_nl_reply(buf, svc_af)


def _objects(buf: bytes, kind: str, svc_af: int = socket.AF_INET) -> list:
    items = _parse(buf, svc_af)
    bad = [it for it in items if it[0] == "unparsed"]
    assert not bad, bad
    return [v for k, v in items if k == kind]


def test_the_recordings_are_there_and_have_what_older_kernels_lack(rec):
    assert len(rec.service_files) >= 8 and len(rec.dest_pairs) >= 8
    svc_types = set()
    for n in rec.service_files:
        svc_types.update(_inner_types(rec.read(n), CMD_ATTR_SERVICE))
    assert {SVC_STATS, SVC_STATS64} <= svc_types
    dest_types = set()
    for n, _ in rec.dest_pairs:
        dest_types.update(_inner_types(rec.read(n), CMD_ATTR_DEST))
    assert {DEST_STATS, DEST_STATS64, DEST_ADDR_FAMILY, DEST_TUN_TYPE, DEST_TUN_PORT,
            DEST_TUN_FLAGS, DEST_PERSIST_CONNS} <= dest_types


def test_parse_entry_point_on_every_kind_of_recorded_reply(rec):
    """The replay function itself: real replies give the model's objects."""
    (info,) = _objects(rec.read("info-00.bin"), "info")
    assert info[0] == 0x010201                          # IPVS 1.2.1
    # conn_tab_size: 4096 on 6.x; 0 on 7.x (recorded before the first service)
    assert info[1] == (0 if rec.version.startswith("7.") else 4096)
    vi = (info[0] >> 16, (info[0] >> 8) & 0xFF, info[0] & 0xFF)
    model = ipvs.Info("%d.%d.%d" % vi, vi, info[1])   # as IPVS.info() builds it
    assert model.version == "1.2.1" and model.conn_tab_size == info[1]
    (t,) = _objects(rec.read("config-00.bin"), "timeouts")
    assert t == ipvs.Timeouts(900, 120, 300)
    assert _parse(rec.read("services-empty-00.bin")) == [("done", None)]
    assert _parse(rec.read("err-dest-exists-00.bin")) == [("error", (17, ""))]  # EEXIST
    with pytest.raises(ValueError):
        _parse(b"\xff\xff\xff\x7f" + b"\0" * 12)           # broken framing


# ------------------------------------------------------------ services

def _replay_services(rec: Recording, drop: Iterable[int]) -> List[Tuple[Service, Service]]:
    pairs = []
    for n in rec.service_files:
        buf = rec.read(n)
        old = _rewrite(buf, CMD_ATTR_SERVICE, drop)
        assert not set(drop) & set(_inner_types(old, CMD_ATTR_SERVICE))
        new_objs, old_objs = _objects(buf, "service"), _objects(old, "service")
        assert len(new_objs) == len(old_objs) > 0 or n.startswith("services-")
        pairs += zip(new_objs, old_objs)
    assert len(pairs) >= 8
    return pairs


def test_services_without_stats64_before_4_1(rec):
    """STATS (32-bit counters, 64-bit bytes) alone: the same Stats."""
    for new, old in _replay_services(rec, [SVC_STATS64]):
        assert old == new and old.stats == new.stats and isinstance(old.stats, Stats)
        _check_model(old)


def test_services_without_any_stats(rec):
    for new, old in _replay_services(rec, [SVC_STATS, SVC_STATS64]):
        assert old == new and old.stats == ipvs.Stats()   # no stats sent: all zero
        _check_model(old)


def test_services_without_pe_name(rec):
    for new, old in _replay_services(rec, [SVC_PE_NAME]):
        assert old.pe_name is None and old == new.replace(pe_name=None)
        _check_model(old)


# --------------------------------------------------------- destinations

def _replay_dests(rec: Recording, drop: Iterable[int], same_family_only: bool = False
                  ) -> List[Tuple[Destination, Destination, int]]:
    out = []
    for n, svc_file in rec.dest_pairs:
        af = rec.svc_family(svc_file)
        buf = rec.read(n)
        old = _rewrite(buf, CMD_ATTR_DEST, drop)
        assert not set(drop) & set(_inner_types(old, CMD_ATTR_DEST))
        for new_d, old_d in zip(_objects(buf, "destination", af),
                                _objects(old, "destination", af)):
            if same_family_only and int(new_d.family) != af:
                continue
            out.append((new_d, old_d, af))
    assert len(out) >= 6
    return out


def test_destinations_without_stats64_before_4_1(rec):
    for new, old, _ in _replay_dests(rec, [DEST_STATS64]):
        assert old == new and old.stats == new.stats and old.stats is not None
        assert (old.active_connections, old.inactive_connections, old.persistent_connections) == \
            (new.active_connections, new.inactive_connections, new.persistent_connections)
        _check_model(old)


def test_destinations_without_address_family_before_3_18(rec):
    """Before 3.18 a destination had its service's family and no ADDR_FAMILY
    attribute: the service's family gives the address's."""
    pairs = _replay_dests(rec, [DEST_ADDR_FAMILY], same_family_only=True)
    assert {int(new.family) for new, _, _ in pairs} == {socket.AF_INET, socket.AF_INET6}
    for new, old, af in pairs:
        assert old == new and int(old.family) == af
        _check_model(old)


def test_mixed_family_destination_without_address_family_is_still_an_object(rec):
    """A reply no kernel sends (mixed families came with ADDR_FAMILY): the
    parser reads the address in the service's family, and nothing crashes."""
    for new, old, af in _replay_dests(rec, [DEST_ADDR_FAMILY]):
        assert isinstance(old, Destination) and int(old.family) == af
        assert old.port == new.port and old.weight == new.weight


def test_destinations_without_tunnel_attributes_before_5_2(rec):
    pairs = _replay_dests(rec, [DEST_TUN_TYPE, DEST_TUN_PORT, DEST_TUN_FLAGS])
    assert any(new.tunnel_type != TunnelType.IPIP or new.tunnel_port for new, _, _ in pairs), \
        "the recordings have a GUE/GRE destination"
    for new, old, _ in pairs:
        assert old.tunnel_type == TunnelType.IPIP and old.tunnel_port == 0
        assert old.tunnel_flags == TunnelFlags.NOCSUM
        assert old == new.replace(tunnel_type=TunnelType.IPIP, tunnel_port=0,
                                  tunnel_flags=TunnelFlags.NOCSUM)
        _check_model(old)


def test_destinations_without_tunnel_flags_before_5_3(rec):
    for new, old, _ in _replay_dests(rec, [DEST_TUN_FLAGS]):
        assert old.tunnel_flags == TunnelFlags.NOCSUM
        assert (old.tunnel_type, old.tunnel_port) == (new.tunnel_type, new.tunnel_port)
        assert old == new.replace(tunnel_flags=TunnelFlags.NOCSUM)


def test_destinations_without_persistent_connection_counter(rec):
    for new, old, _ in _replay_dests(rec, [DEST_PERSIST_CONNS]):
        assert old.persistent_connections == 0 and old == new
        assert old.active_connections == new.active_connections


def test_oldest_shape_all_at_once(rec):
    """A 3.x-shaped reply: no STATS64, ADDR_FAMILY, tunnel attributes or
    persistent counter."""
    drop = [DEST_STATS64, DEST_ADDR_FAMILY, DEST_TUN_TYPE, DEST_TUN_PORT, DEST_TUN_FLAGS,
            DEST_PERSIST_CONNS]
    pairs = _replay_dests(rec, drop, same_family_only=True)
    for new, old, af in pairs:
        assert old == new.replace(tunnel_type=TunnelType.IPIP, tunnel_port=0,
                                  tunnel_flags=TunnelFlags.NOCSUM)
        assert old.stats == new.stats and old.persistent_connections == 0
        _check_model(old)
    svcs = _replay_services(rec, [SVC_STATS64, SVC_PE_NAME])
    assert all(o == n.replace(pe_name=None) for n, o in svcs)


@pytest.mark.parametrize("attr", list(range(1, 16)))
def test_any_single_destination_attribute_missing_never_crashes(rec, attr):
    """Each attribute removed in turn: an object or a refusal, never a crash
    (the address and port are required: without them the parser refuses)."""
    for n, svc_file in rec.dest_pairs:
        af = rec.svc_family(svc_file)
        old = _rewrite(rec.read(n), CMD_ATTR_DEST, [attr])
        for kind, value in _parse(old, af):
            assert kind in ("destination", "unparsed", "done"), kind
            if kind == "destination":  # (values may be ones no kernel sends:
                assert isinstance(value, Destination)  # no replace() here)
                str(value), repr(value), hash(value)


@pytest.mark.parametrize("attr", list(range(1, 13)))
def test_any_single_service_attribute_missing_never_crashes(rec, attr):
    for n in rec.service_files:
        for kind, value in _parse(_rewrite(rec.read(n), CMD_ATTR_SERVICE, [attr])):
            assert kind in ("service", "unparsed", "done"), kind
            if kind == "service":
                assert isinstance(value, Service)
                str(value), repr(value), hash(value)


def _check_model(obj: object) -> None:
    """The parsed object is a full model object: validates like one built by
    hand, hashes, prints, and survives replace()."""
    assert obj.replace() == obj  # type: ignore[attr-defined]
    hash(obj), str(obj), repr(obj)
    if isinstance(obj, Destination):
        assert obj.forward in list(Forward)


def test_every_kernel_recorded_the_same_table():
    """capture.c builds the same table on each kernel: 6.1, 6.12 and 7.2
    replies parse to the same services and destinations (7.x dumps them in
    another order: its service table is hashed differently)."""
    def table(rec: Recording):
        svcs = frozenset(s for n in rec.names("service-") if n[8].isdigit()
                         for s in _objects(rec.read(n), "service"))
        dests = frozenset((rec.svc_family(f), d) for n, f in rec.dest_pairs
                          for d in _objects(rec.read(n), "destination", rec.svc_family(f)))
        return svcs, dests
    tables = {v: table(Recording(v)) for v in CORPORA}
    assert len(tables["6.1.176"][0]) == 8 and len(tables["6.1.176"][1]) >= 8
    assert tables["6.12.113"] == tables["6.1.176"] == tables["7.2.7"]

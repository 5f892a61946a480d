"""Replies shaped as older kernels send them, through the parser and the model.

Kernels before 6.1 cannot boot here, but their replies differ from 6.1's only
by attributes they do not send yet:

* STATS64 (service and destination): since 4.1;
* the destination's ADDR_FAMILY: since 3.18 (before it a destination always
  had its service's family);
* the destination's TUN_TYPE / TUN_PORT (5.2) and TUN_FLAGS (5.3);
* the destination's PERSIST_CONNS counter: absent in some older builds.

The replies below were recorded on the sandbox kernel (fuzz/corpus/nlparse,
written by fuzz/capture.c); each test removes attributes from them, replays the
result through ``ipvs._libipvs._parse_nl_reply`` (the C parser and the
conversion the handle uses) and checks the model objects: the same objects
with the missing values at their defaults, never a crash.
"""
from __future__ import annotations

import os
import socket
import struct
from typing import Callable, Dict, Iterable, List, Optional, Tuple

import pytest

import ipvs
from ipvs import Destination, Forward, Service, Stats, TunnelFlags, TunnelType

_libipvs = pytest.importorskip("ipvs._libipvs")

CORPUS = os.path.join(os.path.dirname(__file__), "..", "..", "fuzz", "corpus", "nlparse")

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

def _read(name: str) -> bytes:
    with open(os.path.join(CORPUS, name), "rb") as f:
        return f.read()


def _names(prefix: str) -> List[str]:
    return sorted(n for n in os.listdir(CORPUS) if n.startswith(prefix) and n.endswith(".bin"))


def _parse(buf: bytes, svc_af: int = socket.AF_INET) -> List[Tuple[str, object]]:
    return _libipvs._parse_nl_reply(buf, svc_af)


def _objects(buf: bytes, kind: str, svc_af: int = socket.AF_INET) -> list:
    items = _parse(buf, svc_af)
    bad = [it for it in items if it[0] == "unparsed"]
    assert not bad, bad
    return [v for k, v in items if k == kind]


SERVICE_FILES = [n for n in _names("service") if n.startswith(("service-", "services-"))]
# dests-N were dumped from the service of service-N (its family decides an
# address without ADDR_FAMILY)
DEST_PAIRS = [(n, "service-%s-00.bin" % n.split("-")[1]) for n in _names("dests-")
              if n.split("-")[1].isdigit()]


def _svc_family(name: str) -> int:
    (svc,) = _objects(_read(name), "service")
    return int(svc.family)


def test_the_recordings_are_there_and_have_what_older_kernels_lack():
    assert len(SERVICE_FILES) >= 8 and len(DEST_PAIRS) >= 8
    svc_types = set()
    for n in SERVICE_FILES:
        svc_types.update(_inner_types(_read(n), CMD_ATTR_SERVICE))
    assert {SVC_STATS, SVC_STATS64} <= svc_types
    dest_types = set()
    for n, _ in DEST_PAIRS:
        dest_types.update(_inner_types(_read(n), CMD_ATTR_DEST))
    assert {DEST_STATS, DEST_STATS64, DEST_ADDR_FAMILY, DEST_TUN_TYPE, DEST_TUN_PORT,
            DEST_TUN_FLAGS, DEST_PERSIST_CONNS} <= dest_types


def test_parse_entry_point_on_every_kind_of_recorded_reply():
    """The replay function itself: real replies give the model's objects."""
    (info,) = _objects(_read("info-00.bin"), "info")
    assert info[0] == 0x010201 and info[1] > 0          # IPVS 1.2.1
    vi = (info[0] >> 16, (info[0] >> 8) & 0xFF, info[0] & 0xFF)
    model = ipvs.Info("%d.%d.%d" % vi, vi, info[1])   # as IPVS.info() builds it
    assert model.version == "1.2.1" and model.conn_tab_size == info[1]
    (t,) = _objects(_read("config-00.bin"), "timeouts")
    assert t == ipvs.Timeouts(900, 120, 300)
    assert _parse(_read("services-empty-00.bin")) == [("done", None)]
    assert [k for k, _ in _parse(_read("err-dest-exists-00.bin"))] == ["error"]
    assert _parse(_read("err-dest-exists-00.bin"))[0][1][0] == 17  # EEXIST
    with pytest.raises(ValueError):
        _parse(b"\xff\xff\xff\x7f" + b"\0" * 12)           # broken framing


# ------------------------------------------------------------ services

def _replay_services(drop: Iterable[int]) -> List[Tuple[Service, Service]]:
    pairs = []
    for n in SERVICE_FILES:
        buf = _read(n)
        old = _rewrite(buf, CMD_ATTR_SERVICE, drop)
        assert not set(drop) & set(_inner_types(old, CMD_ATTR_SERVICE))
        new_objs, old_objs = _objects(buf, "service"), _objects(old, "service")
        assert len(new_objs) == len(old_objs) > 0 or n.startswith("services-")
        pairs += zip(new_objs, old_objs)
    assert len(pairs) >= 8
    return pairs


def test_services_without_stats64_before_4_1():
    """STATS (32-bit counters, 64-bit bytes) alone: the same Stats."""
    for new, old in _replay_services([SVC_STATS64]):
        assert old == new and old.stats == new.stats and isinstance(old.stats, Stats)
        _check_model(old)


def test_services_without_any_stats():
    for new, old in _replay_services([SVC_STATS, SVC_STATS64]):
        assert old == new and old.stats is None
        _check_model(old)


def test_services_without_pe_name():
    for new, old in _replay_services([SVC_PE_NAME]):
        assert old.pe_name is None and old == new.replace(pe_name=None)
        _check_model(old)


# --------------------------------------------------------- destinations

def _replay_dests(drop: Iterable[int], same_family_only: bool = False
                  ) -> List[Tuple[Destination, Destination, int]]:
    out = []
    for n, svc_file in DEST_PAIRS:
        af = _svc_family(svc_file)
        buf = _read(n)
        old = _rewrite(buf, CMD_ATTR_DEST, drop)
        assert not set(drop) & set(_inner_types(old, CMD_ATTR_DEST))
        for new_d, old_d in zip(_objects(buf, "destination", af),
                                _objects(old, "destination", af)):
            if same_family_only and int(new_d.family) != af:
                continue
            out.append((new_d, old_d, af))
    assert len(out) >= 6
    return out


def test_destinations_without_stats64_before_4_1():
    for new, old, _ in _replay_dests([DEST_STATS64]):
        assert old == new and old.stats == new.stats and old.stats is not None
        assert (old.active_connections, old.inactive_connections, old.persistent_connections) == \
            (new.active_connections, new.inactive_connections, new.persistent_connections)
        _check_model(old)


def test_destinations_without_address_family_before_3_18():
    """Before 3.18 a destination had its service's family and no ADDR_FAMILY
    attribute: the service's family gives the address's."""
    pairs = _replay_dests([DEST_ADDR_FAMILY], same_family_only=True)
    assert {int(new.family) for new, _, _ in pairs} == {socket.AF_INET, socket.AF_INET6}
    for new, old, af in pairs:
        assert old == new and int(old.family) == af
        _check_model(old)


def test_mixed_family_destination_without_address_family_is_still_an_object():
    """A reply no kernel sends (mixed families came with ADDR_FAMILY): the
    parser reads the address in the service's family, and nothing crashes."""
    for new, old, af in _replay_dests([DEST_ADDR_FAMILY]):
        assert isinstance(old, Destination) and int(old.family) == af
        assert old.port == new.port and old.weight == new.weight


def test_destinations_without_tunnel_attributes_before_5_2():
    pairs = _replay_dests([DEST_TUN_TYPE, DEST_TUN_PORT, DEST_TUN_FLAGS])
    assert any(new.tunnel_type != TunnelType.IPIP or new.tunnel_port for new, _, _ in pairs), \
        "the recordings have a GUE/GRE destination"
    for new, old, _ in pairs:
        assert old.tunnel_type == TunnelType.IPIP and old.tunnel_port == 0
        assert old.tunnel_flags == TunnelFlags.NOCSUM
        assert old == new.replace(tunnel_type=TunnelType.IPIP, tunnel_port=0,
                                  tunnel_flags=TunnelFlags.NOCSUM)
        _check_model(old)


def test_destinations_without_tunnel_flags_before_5_3():
    for new, old, _ in _replay_dests([DEST_TUN_FLAGS]):
        assert old.tunnel_flags == TunnelFlags.NOCSUM
        assert (old.tunnel_type, old.tunnel_port) == (new.tunnel_type, new.tunnel_port)
        assert old == new.replace(tunnel_flags=TunnelFlags.NOCSUM)


def test_destinations_without_persistent_connection_counter():
    for new, old, _ in _replay_dests([DEST_PERSIST_CONNS]):
        assert old.persistent_connections == 0 and old == new
        assert old.active_connections == new.active_connections


def test_oldest_shape_all_at_once():
    """A 3.x-shaped reply: no STATS64, ADDR_FAMILY, tunnel attributes or
    persistent counter."""
    drop = [DEST_STATS64, DEST_ADDR_FAMILY, DEST_TUN_TYPE, DEST_TUN_PORT, DEST_TUN_FLAGS,
            DEST_PERSIST_CONNS]
    pairs = _replay_dests(drop, same_family_only=True)
    for new, old, af in pairs:
        assert old == new.replace(tunnel_type=TunnelType.IPIP, tunnel_port=0,
                                  tunnel_flags=TunnelFlags.NOCSUM)
        assert old.stats == new.stats and old.persistent_connections == 0
        _check_model(old)
    svcs = _replay_services([SVC_STATS64, SVC_PE_NAME])
    assert all(o == n.replace(pe_name=None) for n, o in svcs)


@pytest.mark.parametrize("attr", list(range(1, 16)))
def test_any_single_destination_attribute_missing_never_crashes(attr):
    """Each attribute removed in turn: an object or a refusal, never a crash
    (the address and port are required: without them the parser refuses)."""
    for n, svc_file in DEST_PAIRS:
        af = _svc_family(svc_file)
        old = _rewrite(_read(n), CMD_ATTR_DEST, [attr])
        for kind, value in _parse(old, af):
            assert kind in ("destination", "unparsed", "done"), kind
            if kind == "destination":  # (values may be ones no kernel sends:
                assert isinstance(value, Destination)  # no replace() here)
                str(value), repr(value), hash(value)


@pytest.mark.parametrize("attr", list(range(1, 13)))
def test_any_single_service_attribute_missing_never_crashes(attr):
    for n in SERVICE_FILES:
        for kind, value in _parse(_rewrite(_read(n), CMD_ATTR_SERVICE, [attr])):
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

"""apply() for controllers, on the memory backend and on a stand-in of the
compiled handle: ``changed=`` names services by key (a key in neither
mapping is ignored), ``scope=`` limits what is compared, written and pruned,
and every `Change` carries ``before`` / ``after`` with a ``str()`` that says
what changes. IPVS, AsyncIPVS and the memory backend agree. The kernel side:
tests/kernel/test_apply_controllers.py."""
from __future__ import annotations

import asyncio
import copy
import pickle
from typing import Any, Dict, List

import pytest

import ipvs
from ipvs import Change, Destination, Service
from ipvs._handle import _svc_key
from ipvs.testing import reset_memory

WEB = Service(address="10.0.0.1", port=80, scheduler="rr")
WEBP = WEB.replace(timeout=300)                 # same key, other settings
API = Service(address="10.0.0.2", port=443, scheduler="rr")
MARK = Service(fwmark=7, scheduler="mh")
FOREIGN = Service(address="10.9.0.1", port=80, scheduler="wlc")
D1 = Destination("192.168.1.1", 8080, forward="masq")
D2 = Destination("192.168.1.2", 8080, forward="masq")
D9 = Destination("192.168.9.1", 80)


@pytest.fixture(autouse=True)
def _fresh():
    reset_memory()
    yield
    reset_memory()


@pytest.fixture
def lb():
    with ipvs.IPVS(backend="memory") as h:
        yield h


def steps(plan: ipvs.Plan) -> List[tuple]:
    return [(c.action, c.service, c.destination) for c in plan.changes]


def with_foreign(lb: ipvs.IPVS) -> None:
    lb.add_service(FOREIGN)
    lb.add_destination(FOREIGN, D9)


# ---------------------------------------------------------------- changed=

@pytest.mark.parametrize("name", [WEB, WEBP, Service(address="10.0.0.1", port=80)],
                         ids=["old-record", "new-record", "key-only"])
def test_changed_names_a_service_by_key(lb, name):
    """The issue's case: the record named is neither of the mappings' own."""
    lb.apply({WEBP: [D1]})
    plan = lb.apply({WEBP: [D2]}, current={WEBP: [D1]}, changed=[name], dry_run=True)
    assert steps(plan) == [("add_destination", WEBP, D2), ("delete_destination", WEBP, D1)]


def test_changed_key_of_a_settings_change_updates_the_service(lb):
    lb.apply({WEB: [D1]})
    for name in ([WEB], [WEBP], [WEB, WEBP], [Service(address="10.0.0.1", port=80)]):
        plan = lb.apply({WEBP: [D1]}, current={WEB: [D1]}, changed=name, dry_run=True)
        assert steps(plan) == [("update_service", WEBP, None)], name
    plan = lb.apply({WEBP: [D1]}, current={WEB: [D1]}, changed=[WEB])
    assert lb.get_service(WEB).timeout == 300 and plan.applied


def test_changed_key_in_neither_mapping_is_ignored(lb):
    lb.apply({WEB: [D1]})
    plan = lb.apply({WEB: [D1, D2]}, current={WEB: [D1]}, changed=[API, MARK])
    assert not plan and not plan.applied
    # with a known one beside it, only the known one is planned
    plan = lb.apply({WEB: [D1, D2]}, current={WEB: [D1]}, changed=[API, WEB])
    assert steps(plan) == [("add_destination", WEB, D2)]


def test_changed_removed_and_added_services_by_key(lb):
    lb.apply({WEB: [D1], API: [D2]})
    key_only = [Service(address="10.0.0.2", port=443), Service(fwmark=7)]
    plan = lb.apply({WEB: [D1], MARK: [D2]}, current={WEB: [D1], API: [D2]},
                    changed=key_only)
    assert steps(plan) == [("delete_service", API, None), ("add_service", MARK, None),
                           ("add_destination", MARK, D2.replace(port=8080))]
    assert {s.key for s in lb.services()} == {WEB.key, MARK.key}


def test_changed_checks_the_mappings_it_reads(lb):
    with pytest.raises(TypeError):     # found through the index: a key that is not a Service
        lb.apply({WEB: [D1], "10.0.0.2:443": []}, current={}, changed=[WEBP])


def test_async_changed_by_key_and_scope_agree_with_sync(lb):
    with_foreign(lb)
    lb.apply({WEBP: [D1]}, scope={WEB})
    sync = lb.apply({WEBP: [D2]}, current={WEBP: [D1]}, changed=[WEB], scope=[WEB.key],
                    dry_run=True)

    async def main():
        async with ipvs.AsyncIPVS(backend="memory") as alb:
            a = await alb.apply({WEBP: [D2]}, current={WEBP: [D1]}, changed=[WEB],
                                scope=[WEB.key], dry_run=True)
            neither = await alb.apply({WEBP: [D2]}, current={WEBP: [D1]}, changed=[API])
            full = await alb.apply({}, scope=lambda s: s.port == 80, dry_run=True)
            return a, neither, full
    a, neither, full = asyncio.run(main())
    assert steps(a) == steps(sync) == [("add_destination", WEBP, D2),
                                       ("delete_destination", WEBP, D1)]
    assert not neither
    assert steps(full) == [("delete_service", FOREIGN, None), ("delete_service", WEBP, None)]


# ------------------------------------------------------------------ scope=

SCOPES = {
    "keys": lambda: {WEB.key, API.key},
    "records": lambda: [WEBP, API],
    "predicate": lambda: (lambda s: s.address is not None and str(s.address).startswith("10.0.")),
    "mapping": lambda: {WEB: [], API: []},
}


@pytest.mark.parametrize("kind", SCOPES)
def test_scope_full_apply_keeps_the_foreign_service(lb, kind):
    with_foreign(lb)
    scope = SCOPES[kind]()
    lb.apply({WEB: [D1], API: [D2]}, scope=scope)
    # prune=True deletes the in-scope service desired no longer has, only it
    plan = lb.apply({WEB: [D1, D2]}, scope=scope)
    assert steps(plan) == [("delete_service", API, None), ("add_destination", WEB, D2)]
    assert lb.table() == {FOREIGN: [D9], WEB: [D2, D1]}
    assert not lb.apply({WEB: [D1, D2]}, scope=scope)
    # without scope, the same apply deletes the other owner's service
    assert steps(lb.apply({WEB: [D1, D2]}, dry_run=True)) == [("delete_service", FOREIGN, None)]


@pytest.mark.parametrize("kind", SCOPES)
def test_scope_incremental_apply_keeps_the_foreign_service(lb, kind):
    with_foreign(lb)
    scope = SCOPES[kind]()
    old = {WEB: [D1], API: [D2]}
    lb.apply(old, scope=scope)
    # current may hold more than the caller owns: what is out of scope is not compared
    current = {**old, FOREIGN: [D9]}
    plan = lb.apply({WEB: [D2]}, current=current, scope=scope)
    assert steps(plan) == [("delete_service", API, None), ("add_destination", WEB, D2),
                           ("delete_destination", WEB, D1)]
    assert lb.table() == {FOREIGN: [D9], WEB: [D2]}
    # changed=: a foreign name is ignored, an owned one is planned
    plan = lb.apply({WEB: [D1]}, current={WEB: [D2], FOREIGN: [D9]},
                    changed=[FOREIGN, WEB], scope=scope)
    assert steps(plan) == [("add_destination", WEB, D1), ("delete_destination", WEB, D2)]
    assert lb.table() == {FOREIGN: [D9], WEB: [D1]}


def test_scope_leaves_out_desired_entries_outside_it(lb):
    with_foreign(lb)
    plan = lb.apply({WEB: [D1], FOREIGN: [D1]}, scope={WEB})
    assert steps(plan) == [("add_service", WEB, None), ("add_destination", WEB, D1)]
    assert lb.destinations(FOREIGN) == [D9]
    # so one desired mapping can be applied in slices, one scope at a time
    lb.apply({WEB: [D1], FOREIGN: [D1]}, scope={FOREIGN})
    assert lb.destinations(FOREIGN) == [D1]


def test_scope_with_prune_destinations_and_false(lb):
    with_foreign(lb)
    lb.apply({WEB: [D1, D2], API: []}, scope={WEB, API}, prune=False)
    plan = lb.apply({WEB: [D1]}, scope={WEB, API}, prune="destinations")
    assert steps(plan) == [("delete_destination", WEB, D2)]
    assert not lb.apply({WEB: [D1]}, scope={WEB, API}, prune=False)
    assert {s.key for s in lb.services()} == {FOREIGN.key, WEB.key, API.key}


def test_scope_dry_run_writes_nothing(lb):
    with_foreign(lb)
    before = lb.table()
    plan = lb.apply({WEB: [D1]}, scope={WEB, FOREIGN}, dry_run=True)
    assert steps(plan) == [("delete_service", FOREIGN, None), ("add_service", WEB, None),
                           ("add_destination", WEB, D1)]
    assert not plan.applied and lb.table() == before


def test_scope_predicate_sees_desired_and_table_records(lb):
    with_foreign(lb)
    seen: List[Service] = []

    def mine(s: Service) -> bool:
        seen.append(s)
        return s.port == 80 and s.address is not None and s.address.packed[1] == 0
    lb.apply({WEB: [D1]}, scope=mine)
    assert set(seen) >= {WEB, FOREIGN}
    assert lb.table() == {FOREIGN: [D9], WEB: [D1]}


def test_empty_scope_plans_nothing(lb):
    with_foreign(lb)
    assert not lb.apply({WEB: [D1]}, scope=set())
    assert not lb.apply({}, scope=())


@pytest.mark.parametrize("scope, exc", [
    (WEB, TypeError), ("10.0.0.1:80", TypeError), (7, TypeError), ([D1], TypeError),
    ([("10.0.0.1", 80)], ValueError), ([(2, "tcp", "not an address", 80)], ValueError),
])
def test_bad_scope(lb, scope, exc):
    with_foreign(lb)
    with pytest.raises(exc, match="scope"):
        lb.apply({}, scope=scope)
    assert lb.table() == {FOREIGN: [D9]}


def test_scope_keys_of_every_kind_of_service(lb):
    v6 = Service(address="2001:db8::1", port=443, protocol="udp")
    mark6 = Service(fwmark=9, family=10)
    lb.apply({v6: [], mark6: [], MARK: []})
    plan = lb.apply({}, scope={v6.key, mark6.key}, dry_run=True)
    assert {(c.action, c.service.key) for c in plan.changes} == {
        ("delete_service", v6.key), ("delete_service", mark6.key)}
    assert len(plan.changes) == 2


class FakeCompiled:
    """The compiled handle's compare() contract over a dict, recording what
    apply() asked of it."""

    def __init__(self, table: Dict[Service, List[Destination]]) -> None:
        self.table = table
        self.dumped: List[Service] = []
        self.closed = False

    def compare(self, want, prune_dests):
        from ipvs._plan import _svc_key
        diffs = {}
        for svc, dests in self.table.items():
            w = want.get(_svc_key(svc))
            if w is None:
                continue
            self.dumped.append(svc)
            have = {d.key: d for d in dests}
            wanted = {d.key: d for d in w[1].values()}
            deleted = [d for k, d in have.items() if k not in wanted] if prune_dests else []
            writes = [("add_destination" if k not in have else "update_destination", d)
                      for k, d in wanted.items() if have.get(k) != d]
            if deleted or writes:
                diffs[_svc_key(svc)] = (deleted, writes)
        return [(_svc_key(s), s) for s in self.table], diffs

    def destinations(self, svc):
        self.dumped.append(svc)
        return list(self.table[svc])


def test_compared_path_never_dumps_a_foreign_service():
    from ipvs import _plan
    fake = FakeCompiled({FOREIGN: [D9], WEB: [D1, D2]})
    names, keep = _plan.checked({WEB: [D1.replace(weight=4)]}, True, None, None, {WEB})
    changes = _plan.make_plan(lambda: fake, {WEB: [D1.replace(weight=4)]}, True, None,
                              names, keep)
    assert [(c.action, c.destination) for c in changes] == [
        ("update_destination", D1.replace(weight=4)), ("delete_destination", D2)]
    assert FOREIGN not in fake.dumped
    upd = changes[0]
    assert upd.before == D1 and upd.after == D1.replace(weight=4)
    assert str(upd).endswith(": weight 1 -> 4")


def test_compared_and_listed_paths_make_one_plan_in_one_order():
    """The C comparison's path (_plan_compared, over FakeCompiled) and the
    Python one (plan_changes) give the same plan in the same order: deleted
    services first, then per service its adds and updates, its deletes last."""
    from ipvs import _plan
    D3 = Destination("192.168.1.3", 8080, forward="masq")
    D4 = Destination("192.168.1.4", 8080, forward="masq")
    have = {FOREIGN: [D9], WEB: [D1, D2, D3], API: [D1]}
    desired = {WEB: [D2.replace(weight=5), D4], API: [D2]}
    want = [("delete_service", FOREIGN, None),
            ("update_destination", WEB, D2.replace(weight=5)), ("add_destination", WEB, D4),
            ("delete_destination", WEB, D1), ("delete_destination", WEB, D3),
            ("add_destination", API, D2), ("delete_destination", API, D1)]
    for prune in (True, "destinations"):
        expect = want if prune is True else want[1:]
        names, keep = _plan.checked(desired, prune, None, None, None)
        compared = _plan.make_plan(lambda: FakeCompiled(dict(have)), desired, prune, None,
                                   names, keep)
        listed = _plan.plan_changes(_plan._want_map(have.items()), _plan._want_map(
            desired.items()), prune=prune)
        assert [tuple(c) for c in compared] == [tuple(c) for c in listed] == expect
        assert compared[0 if prune is not True else 1].before == D2


# ------------------------------------------------------------------ Change

def test_change_before_and_after_of_each_action(lb):
    lb.apply({WEB: [D1, D2]})
    plan = lb.apply({WEBP: [D1.replace(weight=3, forward="route"), Destination("10.1.1.1", 80)]})
    by = {(c.action, c.destination and str(c.destination.address)): c for c in plan.changes}
    upd_svc = by[("update_service", None)]
    assert upd_svc.before == WEB and upd_svc.after == WEBP
    assert str(upd_svc) == ("update_service service TCP 10.0.0.1:80: flags 0 -> PERSISTENT, "
                            "timeout 0 -> 300")
    upd = by[("update_destination", "192.168.1.1")]
    assert upd.before == D1 and upd.after == D1.replace(weight=3, forward="route")
    assert str(upd) == ("update_destination destination 192.168.1.1:8080 in service TCP "
                        "10.0.0.1:80: weight 1 -> 3, forward MASQ -> ROUTE")
    gone = by[("delete_destination", "192.168.1.2")]
    assert gone.before == D2 and gone.after is None
    assert str(gone) == "delete_destination destination 192.168.1.2:8080 in service TCP 10.0.0.1:80"
    new = by[("add_destination", "10.1.1.1")]
    assert new.before is None and new.after == Destination("10.1.1.1", 80)
    assert str(new).endswith(": weight 1, forward ROUTE")
    plan = lb.apply({API: [D1]})
    assert str(plan.changes[0]) == "delete_service service TCP 10.0.0.1:80"
    assert plan.changes[0].before.key == WEB.key and plan.changes[0].after is None
    assert str(plan.changes[1]) == "add_service service TCP 10.0.0.2:443: scheduler rr"
    assert plan.changes[1].after == API and plan.changes[1].before is None


def test_change_before_comes_from_current_in_an_incremental_apply(lb):
    lb.apply({WEB: [D1]})
    plan = lb.apply({WEB: [D1.replace(weight=7)]}, current={WEB: [D1]}, changed=[WEB])
    (c,) = plan.changes
    assert c.before is not None and c.before == D1 and c.after == D1.replace(weight=7)
    assert str(c).endswith("weight 1 -> 7")


def test_change_stays_a_three_tuple():
    c = Change("update_destination", WEB, D2, before=D1)
    action, service, destination = c
    assert (action, service, destination) == ("update_destination", WEB, D2)
    assert c == ("update_destination", WEB, D2) == Change("update_destination", WEB, D2)
    assert hash(c) == hash(("update_destination", WEB, D2)) and len(c) == 3
    assert c.action == "update_destination" and c[2] == D2
    assert c.before == D1 and c.after == D2
    assert Change("add_service", WEB).after == WEB and Change("add_service", WEB).before is None
    assert Change("delete_service", WEB).before == WEB
    assert Change("delete_service", WEB).after is None
    assert Change("update_service", WEB).before is None     # built without one: unknown
    assert str(Change("update_service", WEB)) == "update_service service TCP 10.0.0.1:80: scheduler rr"
    with pytest.raises(AttributeError):
        c.before = D2  # type: ignore[misc]
    with pytest.raises(AttributeError):
        c.action = "x"  # type: ignore[misc]
    for copied in (pickle.loads(pickle.dumps(c)), copy.copy(c), copy.deepcopy(c)):
        assert copied == c and copied.before == D1 and str(copied) == str(c)
    assert eval(repr(c), {"Change": Change, "Service": Service, "Destination": Destination,
                          "Forward": ipvs.Forward, "Protocol": ipvs.Protocol,
                          "ServiceFlags": ipvs.ServiceFlags, "socket": __import__("socket")}
                ).before == D1
    assert c._replace(destination=D1) == ("update_destination", WEB, D1)


def test_change_str_of_other_fields():
    tun = Destination("2001:db8::5", 80, forward="tunnel", tunnel_type=ipvs.TunnelType.GUE,
                      tunnel_port=6080)
    assert str(Change("add_destination", WEB, tun)).endswith(
        ": weight 1, forward TUNNEL, tunnel_type GUE, tunnel_port 6080")
    thr = D1.replace(upper_threshold=100, lower_threshold=10)
    assert str(Change("update_destination", WEB, thr, D1)).endswith(
        ": upper_threshold 0 -> 100, lower_threshold 0 -> 10")
    pe = WEBP.replace(pe_name="sip", protocol="udp", port=5060)
    assert str(Change("add_service", pe)).endswith(
        ": scheduler rr, flags PERSISTENT, timeout 300, pe_name sip, netmask 32")
    assert str(Change("update_service", MARK.replace(scheduler="sh"), None, MARK)).endswith(
        "service FWM 7: scheduler mh -> sh")
    assert str(Change("update_service", WEB, None, WEB)) == "update_service service TCP 10.0.0.1:80"


def test_plan_str_lists_each_change(lb):
    lb.apply({WEB: [D1]})
    plan = lb.apply({WEB: [D1.replace(weight=2)]}, dry_run=True)
    assert str(plan) == ("update_destination destination 192.168.1.1:8080 in service TCP "
                         "10.0.0.1:80: weight 1 -> 2")
    assert str(lb.apply({WEB: [D1]}, dry_run=True)) == "no changes"
    assert ipvs.Plan([Change("add_service", WEB)]) == [("add_service", WEB, None)]


def test_svc_key_stands_for_service_key():
    for s in (WEB, WEBP, API, MARK, Service(address="2001:db8::1", port=1, protocol="sctp")):
        assert (_svc_key(s) == _svc_key(s.replace(scheduler="sh"))) and s.key
    assert _svc_key(WEB) != _svc_key(API)

"""Unit tests of issue 14's model and handle behaviour, against a fake kernel
handle (no IPVS needed): Destination repr, omitted ports, stats always Stats,
modify_*, apply(prune=...), batch call positions, help() text."""
from __future__ import annotations

import pydoc
import re
import threading
from typing import Any, Dict, List, Optional, Tuple

import pytest

import ipvs
from ipvs import Destination, Forward, Service, Stats
from ipvs._handle import IPVS


class FakeKernel:
    """The subset of ipvs._libipvs.Handle that _handle.IPVS calls, over dicts."""

    closed = False
    backend = "fake"

    def __init__(self) -> None:
        self.svcs: Dict[Any, Service] = {}
        self.dests: Dict[Any, Dict[Any, Destination]] = {}
        self.log: List[Tuple[str, Any, Any]] = []

    def get_service(self, svc: Service) -> Service:
        if svc.key not in self.svcs:
            raise ipvs.ServiceNotFoundError(3, "no such service", "get_service")
        return self.svcs[svc.key]

    def _svc_op(self, op: str, svc: Service) -> None:
        self.log.append((op, svc, None))
        if op == "add_service":
            if svc.key in self.svcs:
                raise ipvs.ServiceExistsError(17, "exists", op)
            self.svcs[svc.key] = svc
            self.dests[svc.key] = {}
        elif svc.key not in self.svcs:
            raise ipvs.ServiceNotFoundError(3, "no such service", op)
        elif op == "update_service":
            self.svcs[svc.key] = svc
        else:
            del self.svcs[svc.key], self.dests[svc.key]

    def destinations(self, svc: Service) -> List[Destination]:
        self.get_service(svc)
        return list(self.dests[svc.key].values())

    def _dest_op(self, op: str, svc: Service, d: Destination) -> None:
        assert d.port is not None, "the handle must resolve an omitted port"
        self.log.append((op, svc, d))
        if svc.key not in self.svcs:
            raise ipvs.ServiceNotFoundError(3, "no such service", op)
        ds = self.dests[svc.key]
        if op == "add_destination":
            if d.key in ds:
                raise ipvs.DestinationExistsError(17, "exists", op)
            ds[d.key] = d
        elif d.key not in ds:
            raise ipvs.DestinationNotFoundError(2, "no such destination", op)
        elif op == "update_destination":
            ds[d.key] = d
        else:
            del ds[d.key]

    def listing(self) -> List[Tuple[Service, List[Destination]]]:
        return [(s, list(self.dests[k].values())) for k, s in self.svcs.items()]

    def batch(self, calls: List[Tuple[str, Service, Optional[Destination]]]
              ) -> List[Optional[ipvs.IPVSError]]:
        out: List[Optional[ipvs.IPVSError]] = []
        for method, svc, d in calls:
            try:
                if d is None:
                    self._svc_op(method, svc)
                else:
                    self._dest_op(method, svc, d)
                out.append(None)
            except ipvs.IPVSError as e:
                out.append(e)
        return out

    def close(self) -> None:
        pass


@pytest.fixture
def lb() -> Any:
    h = object.__new__(IPVS)
    h._h = FakeKernel()
    h._timeout = 5.0
    h._netns = None
    h._modify_lock = threading.RLock()
    return h


SVC = Service(address="10.0.0.1", port=80, scheduler="rr")


# ------------------------------------------------------------------ model

def test_destination_repr_always_shows_weight_and_forward():
    r = repr(Destination("192.168.1.1", 80))
    assert "weight=1" in r and "forward=Forward.ROUTE" in r
    r = repr(Destination("192.168.1.1", 80, weight=7, forward=Forward.MASQ))
    assert "weight=7" in r and "forward=Forward.MASQ" in r
    d = Destination("192.168.1.1", 80, weight=0, forward="masq")
    assert eval(repr(d), {"Destination": Destination, "Forward": Forward}) == d


def test_destination_port_omitted_is_none_and_explicit_zero_stays():
    assert Destination("192.168.1.1").port is None
    assert Destination("192.168.1.1", 0).port == 0
    assert Destination("192.168.1.1").for_service(SVC).port == 80
    assert Destination("192.168.1.1", 0).for_service(SVC).port == 0
    assert Destination("192.168.1.1", 8080).for_service(SVC).port == 8080
    assert Destination("192.168.1.1").for_service(Service(fwmark=3)).port == 0


def test_stats_always_a_stats_and_not_in_equality():
    for obj in (Service(address="10.0.0.1", port=80), Service(fwmark=1),
                Destination("10.0.0.2", 80)):
        assert isinstance(obj.stats, Stats) and obj.stats == Stats()
        assert obj.replace().stats == Stats()
    s = Service(address="10.0.0.1", port=80, stats=Stats(connections=4))
    assert s == Service(address="10.0.0.1", port=80) and s.stats.connections == 4
    assert "stats" not in repr(Service(address="10.0.0.1", port=80))


def test_call_is_public_with_index():
    c = ipvs.Call("add_service", SVC)
    assert (c.method, c.service, c.destination, c.index) == ("add_service", SVC, None, 0)
    assert ipvs.Call("delete_service", SVC, None, 3).index == 3


# ---------------------------------------------------------------- handle

def test_update_destination_replaces_modify_keeps(lb: Any):
    lb.add_service(SVC)
    lb.add_destination(SVC, Destination("192.168.1.1", 80, forward=Forward.MASQ, weight=2,
                                        upper_threshold=9))
    lb.modify_destination(SVC, Destination("192.168.1.1", 80), weight=7)
    (d,) = lb.destinations(SVC)
    assert (d.weight, d.forward, d.upper_threshold) == (7, Forward.MASQ, 9)
    # the port may be omitted: the service's
    lb.modify_destination(SVC, Destination("192.168.1.1"), upper_threshold=0)
    (d,) = lb.destinations(SVC)
    assert (d.weight, d.forward, d.upper_threshold) == (7, Forward.MASQ, 0)
    # update_destination writes the whole record
    lb.update_destination(SVC, Destination("192.168.1.1", 80, weight=7))
    assert lb.destinations(SVC)[0].forward == Forward.ROUTE


def test_modify_errors(lb: Any):
    with pytest.raises(ipvs.ServiceNotFoundError):
        lb.modify_service(SVC, scheduler="wlc")
    with pytest.raises(ipvs.ServiceNotFoundError):
        lb.modify_destination(SVC, Destination("192.168.1.1", 80), weight=1)
    lb.add_service(SVC)
    with pytest.raises(ipvs.DestinationNotFoundError) as ei:
        lb.modify_destination(SVC, Destination("192.168.1.1", 80), weight=1)
    assert ei.value.operation == "modify_destination"
    for field in ("port", "address", "family"):
        with pytest.raises(ValueError, match=field):
            lb.modify_destination(SVC, Destination("192.168.1.1", 80), **{field: 81})
    for field in ("port", "address", "protocol", "fwmark"):
        with pytest.raises(ValueError, match=field):
            lb.modify_service(SVC, **{field: 1})
    with pytest.raises(TypeError):
        lb.modify_service(SVC, nosuchfield=1)
    assert [op for op, _, _ in lb._h.log] == ["add_service"]  # nothing was written


def test_modify_service_keeps_other_settings(lb: Any):
    lb.add_service(SVC.replace(timeout=100, netmask=24))
    lb.modify_service(Service(address="10.0.0.1", port=80), scheduler="wlc")
    s = lb.get_service(SVC)
    assert (s.scheduler, s.timeout, s.netmask) == ("wlc", 100, 24)


def test_modify_is_atomic_per_handle(lb: Any):
    lb.add_service(SVC)
    lb.add_destination(SVC, Destination("192.168.1.1", 80, weight=0, upper_threshold=0))
    real = lb._h.destinations

    def slow(svc: Service) -> List[Destination]:
        out = real(svc)
        threading.Event().wait(0.002)  # widen the read-write window
        return out
    lb._h.destinations = slow

    def bump(field: str) -> None:
        for i in range(1, 31):
            lb.modify_destination(SVC, Destination("192.168.1.1", 80), **{field: i})
    ts = [threading.Thread(target=bump, args=(f,)) for f in ("weight", "upper_threshold")]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    (d,) = real(SVC)
    assert (d.weight, d.upper_threshold) == (30, 30)  # neither write lost the other's


def test_omitted_port_in_single_calls_batches_and_apply(lb: Any):
    fw = Service(fwmark=5)
    lb.add_service(SVC)
    lb.add_service(fw)
    lb.add_destination(SVC, Destination("192.168.1.1"))
    assert lb.destinations(SVC)[0].port == 80
    with lb.batch() as b:
        b.add_destination(SVC, Destination("192.168.1.2"))
        b.add_destination(fw, Destination("192.168.1.2"))
        b.add_destination(SVC, Destination("192.168.1.3", 0))
    assert sorted(d.port for d in lb.destinations(SVC)) == [0, 80, 80]
    assert lb.destinations(fw)[0].port == 0
    want = {SVC: [Destination("192.168.1.1"), Destination("192.168.1.2"),
                  Destination("192.168.1.3", 0)], fw: [Destination("192.168.1.2")]}
    assert not lb.apply(want)  # nothing to change: None resolved before comparing
    lb.delete_destination(SVC, Destination("192.168.1.1"))
    assert len(lb.destinations(SVC)) == 2


def test_batch_error_failures_carry_positions(lb: Any):
    d = Destination("192.168.1.1", 80)
    with pytest.raises(ipvs.BatchError) as ei:
        with lb.batch() as b:
            b.add_service(SVC)
            b.add_destination(SVC, d)
            b.add_service(SVC)          # 2: the same call as 0, fails
            b.add_destination(SVC, d)   # 3: the same call as 1, fails
            b.delete_service(Service(address="10.0.0.9", port=1))  # 4 fails
    e = ei.value
    assert [c.index for c, _ in e.failures] == [2, 3, 4]
    assert [c.method for c, _ in e.failures] == ["add_service", "add_destination",
                                                 "delete_service"]
    assert all(isinstance(c, ipvs.Call) for c, _ in e.failures)
    assert e.succeeded == 2


def test_apply_prune_values(lb: Any):
    other = Service(address="10.0.0.2", port=80)      # e.g. keepalived's
    lb.add_service(other)
    lb.add_destination(other, Destination("192.168.2.1", 80))
    lb.add_service(SVC)
    lb.add_destination(SVC, Destination("192.168.1.1", 80))
    want = {SVC: [Destination("192.168.1.2", 80)]}
    plan = lb.apply(want, prune=False, dry_run=True)
    assert [c.action for c in plan] == ["add_destination"]
    plan = lb.apply(want, prune="destinations", dry_run=True)
    assert [(c.action, str(c.destination)) for c in plan] == [
        ("add_destination", "destination 192.168.1.2:80"),
        ("delete_destination", "destination 192.168.1.1:80")]
    plan = lb.apply(want, prune=True, dry_run=True)
    assert [c.action for c in plan] == ["delete_service", "add_destination",
                                        "delete_destination"]
    lb.apply(want, prune="destinations")
    assert lb.destinations(other) == [Destination("192.168.2.1", 80)]
    assert lb.destinations(SVC) == [Destination("192.168.1.2", 80)]
    for bad in ("services", 1, 0, None):
        with pytest.raises(ValueError, match="prune"):
            lb.apply(want, prune=bad)


# ------------------------------------------------------------------ help

# (Change is a NamedTuple: its _asdict/_replace are namedtuple's API)
PUBLIC_CLASSES = [ipvs.IPVS, ipvs.Batch, ipvs.Service, ipvs.Destination, ipvs.Stats,
                  ipvs.Plan, ipvs.Timeouts, ipvs.Daemon, ipvs.Connection, ipvs.Info, ipvs.Call]


@pytest.mark.parametrize("cls", PUBLIC_CLASSES, ids=lambda c: c.__name__)
def test_help_shows_no_private_names_and_no_api_md(cls: type):
    text = pydoc.render_doc(cls, renderer=pydoc.plaintext)
    assert "API.md" not in text
    private = {n for n in re.findall(r"(?<![\w.])_[a-z]\w*", text)}
    assert not private, private


def test_every_public_method_has_its_own_docstring():
    missing = []
    for cls in (ipvs.IPVS, ipvs.Batch):
        for name, member in vars(cls).items():
            if name.startswith("_"):
                continue
            fn = member.fget if isinstance(member, property) else member
            if callable(fn) and not (getattr(fn, "__doc__", None) or "").strip():
                missing.append("%s.%s" % (cls.__name__, name))
    assert not missing, missing
    for name in ("update_service", "update_destination"):
        assert "whole record" in getattr(ipvs.IPVS, name).__doc__
    for name in ("modify_service", "modify_destination"):
        doc = getattr(ipvs.IPVS, name).__doc__
        assert "NotFoundError" in doc and "ValueError" in doc
    doc = ipvs.IPVS.apply.__doc__
    assert '"destinations"' in doc and "``True``" in doc and "``False``" in doc


def test_readme_links_only_files_in_the_repo():
    import os
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    readme = os.path.join(root, "README.md")
    if not os.path.exists(readme):
        pytest.skip("not a source tree")
    text = open(readme).read()
    links = re.findall(r"\]\(([^)]+)\)", text)
    assert "docs/reference.md" in links
    for target in links:
        path = target.split("#")[0]
        assert not path.startswith(("..", "/")), target
        assert os.path.exists(os.path.join(root, path)), target
    assert "API.md" not in text

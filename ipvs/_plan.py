"""apply()'s planner: a desired state against the table (or against what the
caller says the table holds), as the smallest ordered list of `Change` steps.

There is one planner for every backend. `IPVS.apply` calls `make_plan` with
the handle it holds: the compiled handle reads the table and compares the
destinations in C (``compare``); the memory backend's handle lists its table
(``listing``) and `plan_changes` compares it here. `AsyncIPVS.apply` runs
`IPVS.apply` in its worker thread.

What the planner takes beyond ``desired`` (see `IPVS.apply`):

* ``current``: the table as the caller knows it; the table is not read.
* ``changed``: the services (by key) whose entries differ between
  ``current`` and ``desired``; nothing else is looked at.
* ``scope``: the services the caller owns (keys, records or a predicate);
  nothing outside it is compared, written or deleted.

The order of a plan, on every path: the deleted services first (table
order), then each wanted service in ``desired``'s order: its add or update,
its destinations' adds and updates (``desired``'s order), and last the
deletes of its destinations that ``desired`` no longer lists (table order),
so that a service is never left without its new destinations in between.
"""

from __future__ import annotations

import enum
import ipaddress
import operator
from typing import (Any, Callable, Dict, Iterable, Iterator, List, Literal, Mapping,
                    NamedTuple, Optional, Sequence, Tuple, Union)

from ipvs import _libipvs
from ipvs._batch import need as _need
from ipvs._model import Destination, Service
from ipvs.errors import IPVSError

__all__ = ["Change", "Plan", "make_plan", "plan_changes", "ScopeLike", "PruneLike"]

#: what `IPVS.apply` may delete: True (the whole table, or the whole scope),
#: "destinations" (only destinations of the services it is given), False
PruneLike = Union[bool, Literal["destinations"]]
#: the services an `IPVS.apply` call owns: keys (``Service.key``) or records
#: (taken by key), or a predicate taking a `Service`
ScopeLike = Union[Iterable[Any], Callable[[Service], bool]]
#: a record a change replaces or writes
Record = Union[Service, Destination]
#: in scope? (the record, its apply() key)
_Keep = Callable[[Service, Any], bool]


# ------------------------------------------------------------------ Change

class _ChangeFields(NamedTuple):
    action: str
    service: Service
    destination: Optional[Destination] = None


class Change(_ChangeFields):
    """One step of a plan: ``action`` is the IPVS method that performs it on
    ``service`` (and ``destination``, None for a service step).

    ``before`` and ``after`` are the records the step replaces and writes:
    an add has no ``before``, a delete no ``after``; an update has both
    (``before`` as the table held it, or as ``current`` said). ``str()``
    names the step and the fields it changes (``weight 1 -> 3``).

    A `Change` is the tuple ``(action, service, destination)``: it unpacks
    into those three, and equality and hashing compare those three only.
    """

    # a planned update stores the record it replaces; for adds and deletes
    # before/after follow from the action (nothing is stored)
    _before: Optional[Record] = None
    _after: Optional[Record] = None

    def __new__(cls, action: str, service: Service, destination: Optional[Destination] = None,
                before: Optional[Record] = None, after: Optional[Record] = None) -> "Change":
        self = tuple.__new__(cls, (action, service, destination))
        if before is not None:
            object.__setattr__(self, "_before", before)
        if after is not None:
            object.__setattr__(self, "_after", after)
        return self

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("Change is immutable")

    def __reduce__(self) -> Any:
        return (Change, (self[0], self[1], self[2], self._before, self._after))

    @property
    def before(self) -> Optional[Record]:
        """The record this step replaces: the table's (or ``current``'s)
        record for an update or a delete, None for an add."""
        if self._before is not None:
            return self._before
        if self[0].startswith("delete"):
            return self[2] if self[2] is not None else self[1]
        return None

    @property
    def after(self) -> Optional[Record]:
        """The record this step writes: the service or destination of an
        add or an update, None for a delete."""
        if self._after is not None:
            return self._after
        if self[0].startswith("delete"):
            return None
        return self[2] if self[2] is not None else self[1]

    def __repr__(self) -> str:
        extra = "".join(", %s=%r" % (name, value) for name, value in
                        (("before", self._before), ("after", self._after)) if value is not None)
        return "Change(action=%r, service=%r, destination=%r%s)" % (
            self[0], self[1], self[2], extra)

    def __str__(self) -> str:
        if self[2] is None:
            head = "%s %s" % (self[0], self[1])
        else:
            head = "%s %s in %s" % (self[0], self[2], self[1])
        detail = describe(self.before, self.after)
        return head + ": " + detail if detail else head


def _word(value: Any) -> str:
    """A field's value as a change description shows it."""
    if value is None:
        return "none"
    if isinstance(value, enum.IntFlag):
        if not int(value):
            return "0"
        names: Dict[int, str] = {}
        for member in type(value):
            bit = int(member)
            if member.name and bit and bit & (bit - 1) == 0 and bit & int(value):
                names.setdefault(bit, member.name)
        return "|".join(n for _, n in sorted(names.items())) or str(int(value))
    if isinstance(value, enum.Enum):
        return value.name
    return str(value)


def _added_fields(rec: Record) -> List[str]:
    """The settings an add writes that matter to a reader: scheduler and
    persistence of a service, weight and forwarding of a destination (and
    what is not the default)."""
    if isinstance(rec, Service):
        shown = ["scheduler"]
        shown += [f for f in ("flags", "timeout", "pe_name") if getattr(rec, f)]
        if rec.timeout:
            shown.append("netmask")
    else:
        shown = ["weight", "forward"]
        shown += [f for f in ("upper_threshold", "lower_threshold") if getattr(rec, f)]
        if int(rec.forward) == 2:   # TUNNEL: its settings travel with it
            shown += ["tunnel_type"] + [f for f in ("tunnel_port", "tunnel_flags")
                                        if getattr(rec, f)]
    return ["%s %s" % (f, _word(getattr(rec, f))) for f in shown]


def describe(before: Optional[Record], after: Optional[Record]) -> str:
    """What a step changes: ``"weight 1 -> 3, forward ROUTE -> MASQ"`` for an
    update, the main settings for an add, "" for a delete (or an update
    whose records do not differ)."""
    if after is None:
        return ""
    if before is None:
        return ", ".join(_added_fields(after))
    fields: Sequence[str] = type(after)._compare
    return ", ".join("%s %s -> %s" % (f, _word(getattr(before, f)), _word(getattr(after, f)))
                     for f in fields if getattr(before, f) != getattr(after, f))


# -------------------------------------------------------------------- Plan

class Plan:
    """The changes `IPVS.apply` made (or would make, with ``dry_run``)."""

    __slots__ = ("changes", "applied")

    def __init__(self, changes: Sequence[Change], applied: bool = False) -> None:
        self.changes: List[Change] = list(changes)
        self.applied = applied

    def __bool__(self) -> bool:
        return bool(self.changes)

    def __len__(self) -> int:
        return len(self.changes)

    def __iter__(self) -> Iterator[Change]:
        return iter(self.changes)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Plan):
            return self.changes == other.changes
        if isinstance(other, list):
            return self.changes == other
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return "Plan(%r, applied=%r)" % (self.changes, self.applied)

    def __str__(self) -> str:
        if not self.changes:
            return "no changes"
        return "\n".join(str(c) for c in self.changes)


# -------------------------------------------------------------------- keys

# An IPv4Address's int without a Python-level call: its `_ip` slot read by a
# C-level attrgetter where the stdlib stores it so (CPython 3.9-3.13), else int().
_V4_INT: Any = (operator.attrgetter("_ip") if hasattr(ipaddress.IPv4Address(0), "_ip")
                else int)

_MISSING = object()


def _dest_map_py(dests: Iterable[Destination], v4: Any = ipaddress.IPv4Address,
                 v4int: Any = _V4_INT, dcls: type = Destination) -> Dict[Any, Destination]:
    """{key: destination} for apply(). The key stands for ``d.key``, (family,
    address, port), with an IPv4 address as its int (the family follows from
    the address): hashing an ipaddress object runs Python code, and apply()
    hashes every destination several times (a third of its time at 100,000).

    An item that is not a `Destination`, or one whose port is None, is put
    under the key None instead (the caller checks and fills in: one pass over
    the list, not three)."""
    out: Dict[Any, Destination] = {}
    for d in dests:
        if d.__class__ is not dcls or d.port is None:
            out[None] = d
            continue
        a = d.address
        out[(v4int(a) if a.__class__ is v4 else a, d.port)] = d
    return out


# the same, in the Cython module (it reads the records' slots directly): a
# quarter of apply()'s Python time at 100,000 destinations
_dest_map: Any = getattr(_libipvs, "dest_map", _dest_map_py)


def _dest_key(d: Destination, v4: Any = ipaddress.IPv4Address, v4int: Any = _V4_INT) -> Any:
    """_dest_map's key of one destination (port set)."""
    a = d.address
    return (v4int(a) if a.__class__ is v4 else a, d.port)


def _listed_map(dests: List[Destination]) -> Dict[Any, Destination]:
    """_dest_map of a listing (ports set; a backend may hand back the
    caller's own objects, of a subclass too)."""
    dmap = _dest_map(dests)
    if None in dmap:
        dmap = {_dest_key(d): d for d in dests}
    return dmap  # type: ignore[no-any-return]


def _svc_key(s: Service, v4: Any = ipaddress.IPv4Address, v4int: Any = _V4_INT) -> Any:
    """What stands for ``s.key`` in apply()'s maps: plain ints for the enums
    and an IPv4 address (their hashes run Python code), the same identity."""
    if s.fwmark:
        return (int(s.family), -1, s.fwmark)
    a = s.address
    return (int(s.family), int(s.protocol), v4int(a) if a.__class__ is v4 else a, s.port)


WantMap = Dict[Any, Tuple[Service, Dict[Any, Destination]]]


def _want_map(items: Iterable[Tuple[Service, Iterable[Destination]]], what: str = "desired",
              keep: Optional[_Keep] = None) -> WantMap:
    """{service key: (Service, {dest key: Destination})} of apply()'s input,
    checked (types, nothing given twice); ports of None filled in. With
    ``keep``, only the services it accepts."""
    want: WantMap = {}
    for svc, dests in items:
        _need(Service, "service", svc)
        key = _svc_key(svc)
        if keep is not None and not keep(svc, key):
            continue
        if key in want:
            raise ValueError("apply: %s is given twice%s"
                             % (svc, "" if what == "desired" else " in " + what))
        dests = list(dests)
        dmap = _dest_map(dests)
        if dmap.pop(None, _MISSING) is not _MISSING:
            # a port of None, or something that is not a Destination
            for d in dests:
                _need(Destination, "destination", d)
            dests = [d.for_service(svc) for d in dests]
            dmap = {_dest_key(d): d for d in dests}
        if len(dmap) != len(dests):
            seen: Dict[Any, Destination] = {}
            for d in dests:
                if seen.setdefault(d.key, d) is not d:
                    raise ValueError("apply: %s is given twice in %s%s"
                                     % (d, svc, "" if what == "desired" else " (" + what + ")"))
        want[key] = (svc, dmap)
    return want


# ------------------------------------------------------------------- scope

def _scope_test(scope: Optional[ScopeLike]) -> Optional[_Keep]:
    """apply()'s ``scope`` as a test of (service, key); None: everything."""
    if scope is None:
        return None
    if callable(scope):
        test = scope
        return lambda svc, key: bool(test(svc))
    if isinstance(scope, (Service, Destination, str, bytes)) or not isinstance(scope, Iterable):
        raise TypeError("apply: scope must be a set of service keys or Services, or a "
                        "predicate taking a Service, not %s" % type(scope).__name__)
    keys = {_svc_key(_scope_service(item)) for item in scope}
    return lambda svc, key: key in keys


def _scope_service(item: Any) -> Service:
    """A member of a scope set as a Service: itself, or built from a key
    (``Service.key``: (family, protocol, address, port) or (family,
    "fwmark", mark))."""
    if isinstance(item, Service):
        return item
    if isinstance(item, tuple):
        try:
            if len(item) == 3 and item[1] == "fwmark":
                return Service(fwmark=item[2], family=item[0])
            if len(item) == 4:
                return Service(address=item[2], port=item[3], protocol=item[1], family=item[0])
        except (TypeError, ValueError) as e:
            raise ValueError("apply: scope: %r is not a service key (%s)" % (item, e)) from None
        raise ValueError("apply: scope: %r is not a service key: (family, protocol, address, "
                         "port) or (family, \"fwmark\", mark), as Service.key gives" % (item,))
    raise TypeError("apply: scope members must be Services or service keys, not %s"
                    % type(item).__name__)


# ------------------------------------------------------------------ checks

def checked(desired: Any, prune: Any, current: Any, changed: Any, scope: Any
            ) -> Tuple[Optional[List[Service]], Optional[_Keep]]:
    """apply()'s arguments checked (TypeError / ValueError, before anything
    is read or written): the ``changed`` list and the scope's test."""
    if not isinstance(desired, Mapping):
        raise TypeError("apply: desired must be a mapping of Service to destinations")
    if not (prune is True or prune is False or prune == "destinations"):
        raise ValueError("apply: prune must be True, False or \"destinations\", got %r"
                         % (prune,))
    if current is not None and not isinstance(current, Mapping):
        raise TypeError("apply: current must be a mapping of Service to destinations")
    names = None
    if changed is not None:
        if current is None:
            raise ValueError("apply: changed needs current (what the table holds now)")
        if isinstance(changed, (Service, str, bytes, Mapping)):
            raise TypeError("apply: changed must be an iterable of Service")
        names = list(changed)
        for svc in names:
            _need(Service, "changed: service", svc)
    return names, _scope_test(scope)


# ------------------------------------------------------------------ planning

def make_plan(live: Callable[[], Any], desired: Mapping[Service, Iterable[Destination]],
              prune: PruneLike, current: Optional[Mapping[Service, Iterable[Destination]]],
              changed: Optional[List[Service]], keep: Optional[_Keep]) -> List[Change]:
    """The changes turning the table (of the handle ``live()`` returns) or
    ``current`` into ``desired``, for arguments that `checked` accepted."""
    if changed is not None:
        assert current is not None
        want, have = _named(desired, current, changed, keep)
        live()   # a closed handle refuses, as with a table to read
        return plan_changes(have, want, prune=prune)
    want = _want_map(desired.items(), keep=keep)
    outside = None if keep is None else (lambda s, k: k in want or keep(s, k))
    if current is not None:
        have = _want_map(current.items(), "current", outside)
        live()
        return plan_changes(have, want, prune=prune)
    h = live()
    if hasattr(h, "compare"):
        # the kernel's handle: compared on the raw records
        return _plan_compared(h, want, prune, keep)
    listing = h.listing()
    if outside is not None:
        listing = [(s, ds) for s, ds in listing if outside(s, _svc_key(s))]
    return plan_changes({_svc_key(s): (s, _listed_map(ds)) for s, ds in listing}, want,
                        prune=prune)


def _named(desired: Mapping[Service, Iterable[Destination]],
           current: Mapping[Service, Iterable[Destination]], changed: List[Service],
           keep: Optional[_Keep]) -> Tuple[WantMap, WantMap]:
    """(want, have) of an incremental apply: the entries of ``desired`` and
    ``current`` whose keys ``changed`` names. A name is a key: the record
    named, or any record with its key, is found in either mapping; a key
    in neither is ignored, as are keys out of scope."""
    names: Dict[Any, Service] = {}
    for s in changed:
        names.setdefault(_svc_key(s), s)
    indexes: Dict[int, Dict[Any, Service]] = {}

    def find(mapping: Mapping[Service, Any], s: Service, key: Any) -> Optional[Service]:
        if s in mapping:
            return s
        index = indexes.get(id(mapping))
        if index is None:   # once per mapping, and only when a name is not a record of it
            index = indexes[id(mapping)] = {}
            for rec in mapping:
                _need(Service, "service", rec)
                index.setdefault(_svc_key(rec), rec)
        return index.get(key)

    want_items: List[Tuple[Service, Iterable[Destination]]] = []
    have_items: List[Tuple[Service, Iterable[Destination]]] = []
    for key, s in names.items():
        d = find(desired, s, key)
        c = find(current, s, key)
        rec = d if d is not None else c
        if rec is None or (keep is not None and not keep(rec, key)):
            continue
        if d is not None:
            want_items.append((d, desired[d]))
        if c is not None:
            have_items.append((c, current[c]))
    return _want_map(want_items), _want_map(have_items, "current")


# the compared fields of a record beyond its key: equal keys and equal rests
# are equal records (Service: for a non-fwmark service; see plan_changes)
_SVC_REST = operator.attrgetter("scheduler", "flags", "timeout", "netmask", "pe_name")
_DEST_REST = operator.attrgetter("weight", "forward", "upper_threshold", "lower_threshold",
                                 "tunnel_type", "tunnel_port", "tunnel_flags")
_new_change: Any = tuple.__new__    # Change(...) without its Python-level __new__
_set_before: Any = lambda c, rec: object.__setattr__(c, "_before", rec)  # noqa: E731


def _service_differs(svc: Service, cur: Service, srest: Any = _SVC_REST) -> bool:
    """``cur`` (the table's, same key) needs an update_service to become
    ``svc``. An update carries every setting; one without a persistence
    engine clears the kernel's (verified on 6.1)."""
    return svc is not cur and (srest(svc) != srest(cur) or bool(svc.fwmark and svc != cur))


def _update(action: str, svc: Service, dest: Optional[Destination],
            before: Optional[Record]) -> Change:
    c: Change = _new_change(Change, (action, svc, dest))
    if before is not None:
        _set_before(c, before)
    return c


def _service_steps(changes: List[Change], svc: Service, dests: Mapping[Any, Destination],
                   cur_svc: Optional[Service]) -> bool:
    """The steps of one wanted service against the table's record of it
    (None: missing): its add and its destinations' (True: nothing more to
    compare), or an update where its settings differ."""
    if cur_svc is None:
        changes.append(_new_change(Change, ("add_service", svc, None)))
        changes.extend([_new_change(Change, ("add_destination", svc, d))
                        for d in dests.values()])
        return True
    if _service_differs(svc, cur_svc):
        changes.append(_update("update_service", svc, None, cur_svc))
    return False


def _plan_compared(h: Any, want: WantMap, prune: PruneLike,
                   keep: Optional[_Keep]) -> List[Change]:
    """`plan_changes` of the table against ``want``, the destinations compared
    in C by ``h.compare`` (the same plan, in the same order). The records an
    update replaces (its ``before``) come from one more dump of that service's
    destinations (the C comparison keeps only the new ones)."""
    services, diffs = h.compare(want, bool(prune))   # [(key, Service)]: keyed in C
    changes: List[Change] = []
    add = changes.append
    new, C = _new_change, Change
    have: Dict[Any, Service] = {}
    for key, svc in services:
        have[key] = svc
        if prune is True and key not in want and (keep is None or keep(svc, key)):
            add(new(C, ("delete_service", svc, None)))
    for key, (svc, dests) in want.items():
        cur_svc = have.get(key)
        if _service_steps(changes, svc, dests, cur_svc):
            continue
        assert cur_svc is not None
        diff = diffs.get(key)
        if diff is not None:
            deleted, writes = diff
            olds: Optional[Dict[Any, Destination]] = None
            for action, d in writes:
                if action != "update_destination":
                    add(new(C, (action, svc, d)))
                    continue
                if olds is None:
                    olds = _table_dests(h, cur_svc)
                add(_update(action, svc, d, olds.get(_dest_key(d))))
            # removals last: the service keeps serving from the new destinations
            changes.extend([new(C, ("delete_destination", svc, d)) for d in deleted])
    return changes


def _table_dests(h: Any, svc: Service) -> Dict[Any, Destination]:
    """{dest key: Destination} of one service as the table has it now ({}
    when it is gone: the plan's updates then have no ``before``)."""
    try:
        return _listed_map(h.destinations(svc))
    except IPVSError:
        return {}


def plan_changes(current: Mapping[Any, Tuple[Service, Mapping[Any, Destination]]],
                 want: Mapping[Any, Tuple[Service, Mapping[Any, Destination]]], *,
                 prune: PruneLike = True) -> List[Change]:
    """The minimal ordered list of changes turning ``current`` into ``want``
    (both {service key: (Service, {dest key: Destination})}); ``prune`` as
    `IPVS.apply` takes it."""
    changes: List[Change] = []
    add = changes.append
    new, C = _new_change, Change
    drest = _DEST_REST
    if prune is True:
        for key, (svc, _) in current.items():
            if key not in want:
                add(new(C, ("delete_service", svc, None)))
    for key, (svc, dests) in want.items():
        have = current.get(key)
        if _service_steps(changes, svc, dests, None if have is None else have[0]):
            continue
        assert have is not None
        cur_dests = have[1]
        get = cur_dests.get
        for dkey, d in dests.items():
            cd = get(dkey)
            if cd is None:
                add(new(C, ("add_destination", svc, d)))
            elif cd is not d and drest(cd) != drest(d):
                add(_update("update_destination", svc, d, cd))
        # removals last: the service keeps serving from the new destinations
        if prune and cur_dests.keys() - dests.keys():
            for dkey, d in cur_dests.items():
                if dkey not in dests:
                    add(new(C, ("delete_destination", svc, d)))
    return changes

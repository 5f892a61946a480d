"""docs/reference.md shows the real signatures: every ``name(parameters)``
written there in code (a signature, not a call: calls are written with their
receiver, ``lb.table(consistent=True)``, or with values that are not
parameters) names a public callable whose ``inspect.signature`` has those
parameters, kinds and defaults; every public method of `ipvs.IPVS` is there.
The checker is tested on wrong lines too."""
from __future__ import annotations

import ast
import builtins
import inspect
import os
import re
from typing import Any, Iterator, List, Optional, Tuple

import pytest

import ipvs
import ipvs.errors
import ipvs.netns
import ipvs.testing

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
REFERENCE = os.path.join(ROOT, "docs", "reference.md")

#: where a bare name is looked up, in order
NAMESPACES = (ipvs, ipvs.IPVS, ipvs.Batch, ipvs.Plan, ipvs.Service, ipvs.Destination,
              ipvs.netns, ipvs.errors, ipvs.testing)
SPAN = re.compile(r"`([A-Za-z_][\w.]*)\(([^`]*)\)`")
TEXT_BLOCK = re.compile(r"^```text[ \t]*\n(.*?)^```", re.S | re.M)
FENCE = re.compile(r"^```.*?^```", re.S | re.M)


def reference() -> str:
    if not os.path.exists(REFERENCE):
        pytest.skip("docs/ is not here (not a source tree)")
    with open(REFERENCE, encoding="utf-8") as f:
        return f.read()


def _code(text: str) -> Iterator[Tuple[int, str]]:
    """(offset, `name(...)`) of inline code spans and of the lines of
    ```text blocks (the signature display of a section)."""
    for m in TEXT_BLOCK.finditer(text):
        start = m.start(1)
        for line in m.group(1).splitlines(keepends=True):
            if line.strip():
                yield start, "`%s`" % line.strip()
            start += len(line)
    # inline spans outside fenced blocks (blanked, keeping the offsets)
    prose = FENCE.sub(lambda m: re.sub(r"[^\n]", " ", m.group(0)), text)
    for m in re.finditer(r"`[^`]+`", prose):
        yield m.start(), m.group(0)


def signature_spans(text: str) -> List[Tuple[int, str, str]]:
    """(line, name, parameters) of each code span written as a signature."""
    found = []
    for offset, code in _code(text):
        m = SPAN.fullmatch(code)
        if m is None:
            continue
        name, params = m.group(1), " ".join(m.group(2).split())
        head = name.split(".")[0]
        if "." in name and head != "ipvs":
            continue                       # a call on an object: lb.table(...)
        if hasattr(builtins, head):
            continue                       # help(...), bool(...)
        try:
            ast.parse("def f(%s): pass" % params)
        except SyntaxError:
            continue                       # a call with values: Destination("10.0.0.1")
        found.append((text.count("\n", 0, offset) + 1, name, params))
    return found


def resolve(name: str) -> Optional[Any]:
    parts = name.split(".")
    if parts[0] == "ipvs":
        obj: Any = ipvs
        for p in parts[1:]:
            obj = getattr(obj, p, None)
            if obj is None:
                return None
        return obj
    for ns in NAMESPACES:
        obj = getattr(ns, name, None)
        if obj is not None and callable(obj):
            return obj
    return None


def documented(params: str) -> inspect.Signature:
    fn = ast.parse("def f(%s): pass" % params).body[0]
    assert isinstance(fn, ast.FunctionDef)
    P, a = inspect.Parameter, fn.args
    ns = dict(vars(ipvs))

    def value(node: Optional[ast.expr]) -> Any:
        if node is None:
            return P.empty
        return eval(compile(ast.Expression(node), "<reference>", "eval"), ns)
    out = []
    positional = a.posonlyargs + a.args
    defaults = [None] * (len(positional) - len(a.defaults)) + list(a.defaults)
    for i, (arg, d) in enumerate(zip(positional, defaults)):
        kind = P.POSITIONAL_ONLY if i < len(a.posonlyargs) else P.POSITIONAL_OR_KEYWORD
        out.append(P(arg.arg, kind, default=value(d)))
    if a.vararg:
        out.append(P(a.vararg.arg, P.VAR_POSITIONAL))
    for arg, d in zip(a.kwonlyargs, a.kw_defaults):
        out.append(P(arg.arg, P.KEYWORD_ONLY, default=value(d)))
    if a.kwarg:
        out.append(P(a.kwarg.arg, P.VAR_KEYWORD))
    return inspect.Signature(out)


def actual(obj: Any) -> inspect.Signature:
    sig = inspect.signature(obj)
    params = [p.replace(annotation=inspect.Parameter.empty) for p in sig.parameters.values()
              if p.name != "self"]
    return inspect.Signature(params)


def _default(p: inspect.Parameter) -> str:
    return "nothing" if p.default is inspect.Parameter.empty else repr(p.default)


def problems_of(text: str) -> List[str]:
    out = []
    for line, name, params in signature_spans(text):
        obj = resolve(name)
        if obj is None:
            out.append("line %d: %s(...) names nothing public" % (line, name))
            continue
        want, got = documented(params), actual(obj)
        if [(p.name, p.kind) for p in want.parameters.values()] != \
                [(p.name, p.kind) for p in got.parameters.values()]:
            out.append("line %d: %s%s, but the runtime has %s%s" % (line, name, want, name, got))
            continue
        for w, g in zip(want.parameters.values(), got.parameters.values()):
            if w.default != g.default or type(w.default) is not type(g.default):
                out.append("line %d: %s: %s defaults to %s there, %s at run time"
                           % (line, name, w.name, _default(w), _default(g)))
    return out


def test_every_signature_in_the_reference_is_the_real_one():
    assert problems_of(reference()) == []


def test_the_reference_checks_enough():
    spans = signature_spans(reference())
    names = {n.split(".")[-1] for _, n, _ in spans}
    public = {n for n, v in vars(ipvs.IPVS).items()
              if not n.startswith("_") and (inspect.isfunction(v))}
    assert public - names == set(), "IPVS methods without a signature in docs/reference.md"
    assert {"IPVS", "Service", "Destination", "Change", "create", "link_up"} <= names
    assert len(spans) >= 40


@pytest.mark.parametrize("line, words", [
    ("`apply(desired, *, prune=True, dry_run=False)`", "runtime has"),
    ("`zero(service=0)`", "defaults to 0"),
    ("`ipvs.IPVS(*, backend=\"netlink\", netns=None, timeout=5.0, kernel=None)`",
     "defaults to 'netlink'"),
    ("`get_service(svc)`", "runtime has"),
    ("`modify_service(service, **changes)`", "runtime has"),
    ("`services(consistent=False)`", "runtime has"),
    ("`frobnicate(service)`", "names nothing public"),
    ("`Destination(address, port=None, *, weight=2, forward=Forward.ROUTE,\n"
     "upper_threshold=0, lower_threshold=0, tunnel_type=TunnelType.IPIP,\n"
     "tunnel_port=0, tunnel_flags=TunnelFlags.NOCSUM, family=None, active_connections=0,\n"
     "inactive_connections=0, persistent_connections=0, stats=None)`", "weight defaults to 2"),
    ("```text\nipvs.IPVS(*, backend=\"auto\", netns=None, timeout=5.0)\n```", "runtime has"),
])
def test_a_wrong_line_is_caught(line, words):
    problems = problems_of("text\n" + line + "\n")
    assert problems and words in problems[0], problems


def test_calls_are_not_signatures():
    text = ("`lb.table(consistent=True)` `Destination(\"10.0.0.1\", 80)` `help(ipvs.IPVS)` "
            "`b.send()` `(call, exception)`")
    assert signature_spans(text) == []

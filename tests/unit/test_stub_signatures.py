"""The type stubs say what the runtime does: every function and method of
ipvs/_async.pyi and ipvs/_libipvs.pyi is compared with ``inspect.signature``
of the runtime object (parameter names, kinds, defaults; types where the
runtime is annotated; coroutine or not), and every public method of the
runtime classes has a stub. The comparison itself is tested on deliberately
wrong stubs. Also: ``help()`` of AsyncIPVS shows the real signatures, and
``Lab.ipvs()`` is typed."""
from __future__ import annotations

import ast
import importlib
import inspect
import sys
import os
import pydoc
import typing
from types import ModuleType
from typing import Any, Dict, List, Optional

import pytest

import ipvs

# inspect.signature(eval_str=True) came in Python 3.10: the stubs are the
# same for every version, so comparing them on 3.10+ is enough
pytestmark = pytest.mark.skipif(sys.version_info < (3, 10),
                                reason="inspect.signature(eval_str=True) needs Python 3.10")

STUBS = {"_async.pyi": "ipvs._async", "_libipvs.pyi": "ipvs._libipvs"}
UNSPECIFIED = object()      # a stub default of ``...``: some default, not said which


def stub_text(name: str) -> str:
    module = importlib.import_module(STUBS[name])
    path = os.path.join(os.path.dirname(module.__file__), name)
    with open(path, encoding="utf-8") as f:
        return f.read()


def _namespace(tree: ast.Module, module: ModuleType) -> Dict[str, Any]:
    """Names a stub's annotations use: the runtime module's, then the stub's
    own imports and aliases (run as written)."""
    ns: Dict[str, Any] = dict(vars(module))
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            exec(compile(ast.Module([node], []), "<stub>", "exec"), ns)
        elif isinstance(node, ast.Assign) and not (isinstance(node.value, ast.Constant)
                                                   and node.value.value is Ellipsis):
            exec(compile(ast.Module([node], []), "<stub>", "exec"), ns)
    return ns


def _value(node: Optional[ast.expr], ns: Dict[str, Any]) -> Any:
    if node is None:
        return inspect.Parameter.empty
    if isinstance(node, ast.Constant) and node.value is Ellipsis:
        return UNSPECIFIED
    return eval(compile(ast.Expression(node), "<stub>", "eval"), ns)


def stub_signature(fn: ast.FunctionDef, ns: Dict[str, Any]) -> inspect.Signature:
    P = inspect.Parameter
    a = fn.args
    params: List[inspect.Parameter] = []
    positional = a.posonlyargs + a.args
    defaults = [None] * (len(positional) - len(a.defaults)) + list(a.defaults)
    for i, (arg, default) in enumerate(zip(positional, defaults)):
        kind = P.POSITIONAL_ONLY if i < len(a.posonlyargs) else P.POSITIONAL_OR_KEYWORD
        params.append(P(arg.arg, kind, default=_value(default, ns),
                        annotation=_value(arg.annotation, ns)))
    if a.vararg:
        params.append(P(a.vararg.arg, P.VAR_POSITIONAL, annotation=_value(a.vararg.annotation, ns)))
    for arg, default in zip(a.kwonlyargs, a.kw_defaults):
        params.append(P(arg.arg, P.KEYWORD_ONLY, default=_value(default, ns),
                        annotation=_value(arg.annotation, ns)))
    if a.kwarg:
        params.append(P(a.kwarg.arg, P.VAR_KEYWORD, annotation=_value(a.kwarg.annotation, ns)))
    return inspect.Signature(params, return_annotation=_value(fn.returns, ns))


def runtime_signature(obj: Any) -> Optional[inspect.Signature]:
    """``inspect.signature`` with the annotations evaluated (a quoted one
    under ``from __future__ import annotations`` takes two rounds)."""
    try:
        sig = inspect.signature(obj, eval_str=True)
    except (ValueError, TypeError, NameError):
        return None
    ns = getattr(inspect.unwrap(obj), "__globals__", {})

    def again(a: Any) -> Any:
        return eval(a, ns) if isinstance(a, str) else a
    return sig.replace(
        parameters=[p.replace(annotation=again(p.annotation)) for p in sig.parameters.values()],
        return_annotation=again(sig.return_annotation))


def _same_type(stub: Any, runtime: Any) -> bool:
    if runtime is inspect.Parameter.empty or runtime is None and stub is None:
        return True           # the runtime (compiled) says nothing: nothing to compare
    if isinstance(runtime, str):
        return False          # a runtime annotation that does not evaluate
    return bool(stub == runtime or (runtime is None and stub is type(None)))


def compare(where: str, stub: inspect.Signature, runtime: inspect.Signature) -> List[str]:
    out: List[str] = []
    sp, rp = list(stub.parameters.values()), list(runtime.parameters.values())
    if [(p.name, p.kind) for p in sp] != [(p.name, p.kind) for p in rp]:
        return ["%s: parameters %s in the stub, %s at run time" % (where, stub, runtime)]
    for s, r in zip(sp, rp):
        if (s.default is inspect.Parameter.empty) != (r.default is inspect.Parameter.empty):
            out.append("%s: %s has a default in only one of stub and runtime" % (where, s.name))
        elif s.default is not UNSPECIFIED and s.default != r.default:
            out.append("%s: %s defaults to %r in the stub, %r at run time"
                       % (where, s.name, s.default, r.default))
        if s.annotation is not inspect.Parameter.empty and not _same_type(s.annotation,
                                                                         r.annotation):
            out.append("%s: %s is %r in the stub, %r at run time"
                       % (where, s.name, s.annotation, r.annotation))
    if stub.return_annotation is not inspect.Signature.empty and not _same_type(
            stub.return_annotation, runtime.return_annotation):
        out.append("%s: returns %r in the stub, %r at run time"
                   % (where, stub.return_annotation, runtime.return_annotation))
    return out


def _generic(sig: Optional[inspect.Signature]) -> bool:
    """A compiled class's ``__init__``: (self, /, *args, **kwargs), unknown."""
    return sig is not None and [p.kind for p in sig.parameters.values()][1:] == [
        inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD]


def _functions(body: List[ast.stmt]) -> Dict[str, List[ast.FunctionDef]]:
    found: Dict[str, List[ast.FunctionDef]] = {}
    for node in body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            found.setdefault(node.name, []).append(node)   # type: ignore[arg-type]
    return found


def _decorators(fn: ast.FunctionDef) -> List[str]:
    return [ast.unparse(d) for d in fn.decorator_list]


def _check_function(where: str, fn: ast.FunctionDef, obj: Any, ns: Dict[str, Any],
                    problems: List[str]) -> None:
    is_async = isinstance(fn, ast.AsyncFunctionDef)
    if is_async != inspect.iscoroutinefunction(obj):
        problems.append("%s: %s in the stub, %s at run time" % (
            where, "a coroutine" if is_async else "not a coroutine",
            "a coroutine" if inspect.iscoroutinefunction(obj) else "not a coroutine"))
    runtime = runtime_signature(obj)
    if runtime is None or (fn.name == "__init__" and _generic(runtime)):
        return
    problems.extend(compare(where, stub_signature(fn, ns), runtime))


def stub_problems(text: str, module: ModuleType) -> List[str]:
    """Every difference between the stub ``text`` and ``module``."""
    tree = ast.parse(text)
    ns = _namespace(tree, module)
    problems: List[str] = []
    for name, (fn, *_) in _functions(tree.body).items():
        obj = getattr(module, name, None)
        if obj is None:
            problems.append("%s: in the stub, not at run time" % name)
        else:
            _check_function(name, fn, obj, ns, problems)
    for cls_node in (n for n in tree.body if isinstance(n, ast.ClassDef)):
        cls = getattr(module, cls_node.name, None)
        if cls is None:
            problems.append("%s: in the stub, not at run time" % cls_node.name)
            continue
        stubbed = _functions(cls_node.body)
        for name, fns in stubbed.items():
            where = "%s.%s" % (cls_node.name, name)
            member = inspect.getattr_static(cls, name, None)
            if member is None:
                problems.append("%s: in the stub, not at run time" % where)
                continue
            for fn in fns:
                decos = _decorators(fn)
                if "property" in decos or any(d.endswith(".setter") for d in decos):
                    if inspect.isgetsetdescriptor(member):
                        continue          # a compiled attribute: no signature to compare
                    if not isinstance(member, property):
                        problems.append("%s: a property in the stub only" % where)
                        continue
                    target = member.fset if any(d.endswith(".setter") for d in decos) \
                        else member.fget
                    if target is None:
                        problems.append("%s: no %s at run time" % (where, decos[0]))
                        continue
                    _check_function(where, fn, target, ns, problems)
                elif isinstance(member, property):
                    problems.append("%s: a property at run time only" % where)
                else:
                    _check_function(where, fn, getattr(cls, name), ns, problems)
        for name, member in vars(cls).items():
            if name.startswith("_") or name in stubbed:
                continue
            if callable(member) or isinstance(member, property):
                problems.append("%s.%s: at run time, not in the stub" % (cls_node.name, name))
    return problems


@pytest.mark.parametrize("name", sorted(STUBS))
def test_the_stub_matches_the_runtime(name):
    module = importlib.import_module(STUBS[name])
    assert stub_problems(stub_text(name), module) == []


def test_every_async_coroutine_is_compared_with_types():
    """The comparison is not vacuous: each coroutine's stub is checked with
    its parameter types against the IPVS method it runs."""
    from ipvs import _async
    for name in _async.METHODS:
        sig = runtime_signature(getattr(ipvs.AsyncIPVS, name))
        assert sig == runtime_signature(getattr(ipvs.IPVS, name)), name
        assert sig is not None and sig.return_annotation is not inspect.Signature.empty, name
    apply = runtime_signature(ipvs.AsyncIPVS.apply)
    assert list(apply.parameters) == ["self", "desired", "prune", "dry_run", "current",
                                      "changed", "scope"]


WRONG = [
    # (what is changed in the real stub, a word the complaint must contain)
    (("                    scope: Optional[ScopeLike] = None) -> Plan: ...",
      "                    ) -> Plan: ..."), "AsyncIPVS.apply"),
    (("prune: PruneLike = True, dry_run: bool = False,",
      "prune: PruneLike = True, dry_run: bool = True,"), "dry_run defaults to True"),
    (("changed: Optional[Iterable[Service]] = None,",
      "changed: Optional[Iterable[Destination]] = None,"), "changed is"),
    (("async def flush(self) -> None: ...", "def flush(self) -> None: ..."), "AsyncIPVS.flush"),
    (("async def info(self) -> Info: ...", "async def info(self) -> Stats: ..."), "returns"),
    (("    async def connections(self) -> List[Connection]: ...\n", ""),
     "AsyncIPVS.connections: at run time, not in the stub"),
    (("def fileno(self) -> int: ...", "def fileno(self, fd: int) -> int: ..."),
     "AsyncIPVS.fileno: parameters"),
    (("    def batch(self) -> AsyncBatch: ...\n",
      "    def batch(self) -> AsyncBatch: ...\n    def flip(self) -> None: ...\n"),
     "AsyncIPVS.flip: in the stub, not at run time"),
    (("async def services(self, *, consistent: bool = False)",
      "async def services(self, consistent: bool = False)"), "AsyncIPVS.services: parameters"),
]


@pytest.mark.parametrize("change, words", WRONG, ids=[w for _, w in WRONG])
def test_a_wrong_stub_is_caught(change, words):
    from ipvs import _async
    text = stub_text("_async.pyi")
    old, new = change
    assert text.count(old) == 1, old
    problems = stub_problems(text.replace(old, new), _async)
    assert problems and any(words in p for p in problems), problems


def test_a_wrong_compiled_stub_is_caught():
    from ipvs import _libipvs
    text = stub_text("_libipvs.pyi")
    old = "def read_proc_net(self, name: str, op: Optional[str] = None) -> str:"
    assert old in text
    bad = text.replace(old, "def read_proc_net(self, name: str, op: Optional[str] = 'x') -> str:")
    assert any("read_proc_net" in p for p in stub_problems(bad, _libipvs))
    bad = text.replace(old, "def read_proc_net(self, path: str, op: Optional[str] = None) -> str:")
    assert any("read_proc_net: parameters" in p for p in stub_problems(bad, _libipvs))


def test_help_shows_the_real_signatures():
    text = pydoc.render_doc(ipvs.AsyncIPVS, renderer=pydoc.plaintext)
    assert "async apply(self, desired" in text and "scope" in text
    assert "*args" not in text
    assert "async modify_destination(self, service" in text


def test_lab_ipvs_returns_an_ipvs_handle():
    from ipvs.lab import Lab
    assert typing.get_type_hints(Lab.ipvs)["return"] is ipvs.IPVS

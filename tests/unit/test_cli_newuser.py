"""Unit tests of issue 14's command-line items and of cli.py's split (issue
13): -R reports like ipvsadm, --netns NAME alone lists NAME's table, cli.py
imports only public names."""
from __future__ import annotations

import ast
import errno
import io
import os
from typing import Any, List

import pytest

import ipvs
from ipvs import cli

CLI = os.path.join(os.path.dirname(ipvs.__file__), "cli.py")
PARSE = os.path.join(os.path.dirname(ipvs.__file__), "_cli_parse.py")


def _run(args: List[str], stdin: str = "") -> Any:
    out, err = io.StringIO(), io.StringIO()
    rc = cli.main(args, stdin=io.StringIO(stdin), stdout=out, stderr=err)
    return rc, out.getvalue(), err.getvalue()


class KernelLike:
    """Enough of a handle for -R: add_service fails on a key it has seen."""

    def __init__(self) -> None:
        self.keys: set = set()
        self.sent: List[Any] = []
        self.netns = None

    def batch(self) -> Any:
        lb = self

        class B:
            calls: List[ipvs.Call] = []

            def __enter__(self) -> Any:
                self.calls = []
                return self

            def add_service(self, svc: ipvs.Service) -> None:
                self.calls.append(ipvs.Call("add_service", svc, None, len(self.calls)))

            def __exit__(self, *exc: Any) -> None:
                failures = []
                for c in self.calls:
                    lb.sent.append(c)
                    if c.service.key in lb.keys:
                        failures.append((c, ipvs.ServiceExistsError(errno.EEXIST, "x",
                                                                    "add_service")))
                    lb.keys.add(c.service.key)
                if failures:
                    raise ipvs.BatchError(failures, len(self.calls) - len(failures))
        return B()

    def zero(self, svc: Any = None) -> None:
        raise ipvs.ServiceNotFoundError(errno.ESRCH, "x", "zero")

    def close(self) -> None:
        pass


@pytest.fixture
def kernel(monkeypatch: Any) -> KernelLike:
    k = KernelLike()
    monkeypatch.setattr(cli, "_open", lambda netns: k)
    return k


A62 = "-A -t 10.0.0.62:80 -s rr\n"
A63 = "-A -t 10.0.0.63:80 -s rr\n"


def test_restore_duplicate_line_reports_only_the_kernels_message(kernel: KernelLike):
    # a duplicate of line 1 on line 2, line 3 fine: ipvsadm prints the message
    # once, no line number, and exits 0 (the last line's status)
    assert _run(["-R"], A62 + A62 + A63) == (0, "", "Service already exists\n")


def test_restore_status_is_the_last_lines(kernel: KernelLike):
    assert _run(["-R"], A62 + A63 + A62) == (255, "", "Service already exists\n")


def test_restore_line_numbers_behind_our_option(kernel: KernelLike):
    rc, out, err = _run(["-R", "--line-numbers"], A62 + "\n" + A63 + A62 + A63)
    assert (rc, err) == (255, "line 4: Service already exists\nline 5: Service already exists\n")


def test_restore_non_batch_line_between(kernel: KernelLike):
    rc, out, err = _run(["-R"], A62 + "-Z -t 10.0.0.99:80\n" + A62 + A63)
    assert (rc, err) == (0, "No such service\nService already exists\n")
    rc, out, err = _run(["-R"], "ipvsadm " + A62 + "-Z -t 10.0.0.99:80\n")
    assert (rc, err) == (255, "Service already exists\nNo such service\n")


def test_netns_alone_lists_that_namespace(monkeypatch: Any):
    opened = []

    class Lister:
        def info(self) -> ipvs.Info:
            return ipvs.Info("1.2.1", (1, 2, 1), 4096)

        def table(self) -> dict:
            return {ipvs.Service(address="10.0.0.1", port=80): []}

        def close(self) -> None:
            pass

    def fake_open(netns: Any) -> Lister:
        opened.append(netns)
        return Lister()
    monkeypatch.setattr(cli, "_open", fake_open)
    for args in (["--netns", "blue"], ["--netns=blue"], ["--netns", "blue", "--json"]):
        rc, out, err = _run(args)
        assert rc == 0 and "10.0.0.1" in out, (args, out, err)
    assert opened == ["blue", "blue", "blue"]
    rc, out, err = _run([])
    assert rc == 0 and out.startswith("IP Virtual Server version 1.2.1") and opened[-1] is None


# ------------------------------------------------------------ the split

def _imports(path: str) -> List[str]:
    tree = ast.parse(open(path).read())
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            names += ["%s.%s" % (node.module, a.name) for a in node.names]
        elif isinstance(node, ast.Import):
            names += [a.name for a in node.names]
    return names


def test_cli_imports_only_public_ipvs_names_its_formatter_and_parser():
    allowed_private = {"ipvs._format", "ipvs._cli_parse"}
    for name in _imports(CLI):
        if not name.startswith("ipvs"):
            continue
        module, _, attr = name.rpartition(".")
        if name in ("ipvs", "ipvs.errors") or module in allowed_private or name in allowed_private:
            continue
        assert module == "ipvs" and attr in ipvs.__all__, name
    for name in _imports(PARSE):
        if name.startswith("ipvs."):
            module, _, attr = name.rpartition(".")
            assert (module == "ipvs" and attr in ipvs.__all__) or module == "ipvs._format", name


def test_cli_has_no_dead_code_or_errno_numbers():
    for path in (CLI, PARSE):
        text = open(path).read()
        tree = ast.parse(text)
        assert "shlex" not in _imports(path) and "errno" not in _imports(path), path
        assert "hasattr(" not in text, path
        assert "strerror(1" not in text and "strerror(9" not in text
        for node in ast.walk(tree):   # os.strerror(<literal>)
            if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "strerror":
                assert not any(isinstance(a, ast.Constant) for a in node.args), path
    assert not hasattr(cli, "kernel_message")   # one table: ipvs.errors.ipvsadm_message
    assert len(open(CLI).read().splitlines()) < 600


def test_one_table_from_command_to_api_call():
    methods = {m for m, _ in cli.TABLE_CALLS.values()}
    assert methods == {"add_service", "update_service", "delete_service", "add_destination",
                       "update_destination", "delete_destination"}
    assert not hasattr(cli.Runner, "_batch_call")

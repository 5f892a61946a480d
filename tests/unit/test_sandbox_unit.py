"""ipvs.sandbox pieces that need no kernel: discovery, env, generated scripts."""

import io
import os

import pytest

from ipvs import sandbox


def test_missing_reports_install_hint(monkeypatch):
    monkeypatch.setattr(sandbox, "_uml_binary", lambda kernel=None: None)
    assert sandbox.missing() == ["linux.uml not found on PATH"]
    assert not sandbox.available()
    with pytest.raises(sandbox.SandboxUnavailable, match="apt-get install user-mode-linux"):
        sandbox.run(["true"])


def test_main_exits_2_when_unavailable(monkeypatch, capsys):
    monkeypatch.setattr(sandbox, "_uml_binary", lambda kernel=None: None)
    assert sandbox.main(["--", "true"]) == 2
    assert "apt-get install user-mode-linux kmod ipvsadm iproute2" in capsys.readouterr().err
    assert sandbox.main(["--check"]) == 2


def test_main_without_command(capsys):
    assert sandbox.main([]) == 2
    assert "no COMMAND" in capsys.readouterr().err


def test_inner_env_passes_everything_but_fixes_tmpdir():
    env = {"PATH": "/x/bin", "VIRTUAL_ENV": "/v", "PYTHONPATH": "/p", "CI": "true",
           "TMPDIR": "/tmp/hidden", "PWD": "/somewhere", "BASH_FUNC_f%%": "() { :; }"}
    inner = sandbox._inner_env(env)
    assert inner["PATH"] == "/x/bin" and inner["VIRTUAL_ENV"] == "/v"
    assert inner["PYTHONPATH"] == "/p" and inner["CI"] == "true"
    assert inner["TMPDIR"] == "/tmp"          # the host's /tmp is hidden inside
    assert inner["IPVS_SANDBOX"] == "1"
    assert "PWD" not in inner and "BASH_FUNC_f%%" not in inner


def test_inner_env_keeps_tmpdir_outside_tmp(tmp_path):
    d = "/var/tmp"
    assert sandbox._inner_env({"TMPDIR": d})["TMPDIR"] == d


def test_tmp_binds(tmp_path):
    cwd = "/tmp"  # /tmp itself is never bound
    assert sandbox._tmp_binds(["/bin/true"], cwd, {}) == []
    if str(tmp_path).startswith("/tmp/"):
        assert sandbox._tmp_binds(["true"], str(tmp_path), {"PATH": "/bin"}) == [str(tmp_path)]


def test_default_modules():
    mods = sandbox.default_modules()
    assert mods[0] == "ip_vs" and "veth" in mods and "ip_vs_ftp" not in mods
    if sandbox.available():
        assert {"ip_vs_rr", "ip_vs_wlc", "ip_vs_pe_sip"} <= set(mods)


def test_generated_scripts_quote_arguments(tmp_path):
    argv = ["printf", "%s\\n", "it's", "$HOME", "a b"]
    env = {"PATH": "/usr/bin:/bin", "WEIRD": "x'y\"z $q"}
    init = sandbox._write_scripts(str(tmp_path), argv, "/", env, ["ip_vs", "veth"])
    text = open(init).read()
    assert "modprobe -a ip_vs veth" in text and "poweroff -f" in text
    run_sh = (tmp_path / "run.sh").read_text()
    # run.sh is plain sh: executing it on the host reproduces argv and env exactly
    import subprocess
    out = subprocess.run(["env", "-i", "/bin/sh", str(tmp_path / "run.sh")],
                         capture_output=True, text=True, check=True).stdout
    assert out == "it's\n$HOME\na b\n"
    out = subprocess.run(["env", "-i", "/bin/sh", "-c",
                          run_sh.replace('exec "$@"', 'printf %s "$WEIRD"')],
                         capture_output=True, text=True, check=True).stdout
    assert out == "x'y\"z $q"


def test_tail_writes_text_streams(tmp_path):
    p = tmp_path / "f"
    p.write_bytes(b"abc\n")
    out = io.StringIO()
    t = sandbox._Tail(str(p), out)
    assert t.pump() and not t.pump()
    with open(p, "ab") as f:
        f.write(b"def\n")
    assert t.pump()
    t.close()
    assert out.getvalue() == "abc\ndef\n"


needs_uml = pytest.mark.skipif(
    not sandbox.available() or os.environ.get("IPVS_SANDBOX") == "1",
    reason="needs linux.uml (apt-get install user-mode-linux) and not already in the sandbox")


@needs_uml
def test_boot_runs_command_with_cwd_env_and_status(tmp_path):
    out, err = io.BytesIO(), io.BytesIO()
    script = (
        'echo "out $MY_VAR"; echo "err" >&2; pwd; echo made > made.txt; '
        'test -e /proc/net/ip_vs && echo ipvs; '
        'echo tmp > "$TMPDIR/x" && echo tmpdir-ok; id -u; exit 7'
    )
    env = dict(os.environ, MY_VAR="hello 'quoted' $x")
    rc = sandbox.run(["sh", "-c", script], cwd=tmp_path, env=env, stdout=out, stderr=err,
                     timeout=120)
    assert rc == 7
    lines = out.getvalue().decode().splitlines()
    assert lines == ["out hello 'quoted' $x", str(tmp_path), "ipvs", "tmpdir-ok", "0"]
    assert err.getvalue() == b"err\n"   # no kernel console noise
    assert (tmp_path / "made.txt").read_text() == "made\n"


@needs_uml
def test_timeout_kills_the_kernel():
    out = io.BytesIO()
    with pytest.raises(sandbox.SandboxTimeout):
        sandbox.run(["sh", "-c", "echo started; sleep 600"], timeout=15, stdout=out,
                    stderr=io.BytesIO())
    assert out.getvalue() == b"started\n"

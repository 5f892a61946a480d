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


# -- kernels: installed and fetched, picked by version ----------------------

from ipvs import _kernels  # noqa: E402


def _fake_fetched(root, version, suite, modules=True):
    """A cache folder laid out as _kernels.fetch() leaves it."""
    d = root / "kernels" / version
    d.mkdir(parents=True)
    binary = d / "linux.uml"
    binary.write_text("#!/bin/sh\necho 'User-Mode Linux'\necho %s\n" % version)
    binary.chmod(0o755)
    (d / "kernel.info").write_text("suite=%s\nversion=%s\n" % (suite, version))
    if modules:
        m = d / "root" / "usr" / "lib" / "uml" / "modules" / version
        (m / "kernel" / "net" / "netfilter" / "ipvs").mkdir(parents=True)
        (m / "modules.dep").write_text("")
        (m / "kernel" / "net" / "netfilter" / "ipvs" / "ip_vs.ko").write_text("")
    return str(binary)


def test_version_prefix_matches_at_a_dot():
    assert _kernels.matches("6.1.176", "6.1") and not _kernels.matches("6.12.113", "6.1")
    assert _kernels.matches("6.12.113", "6.12") and _kernels.matches("7.2.7", "7")
    assert _kernels.matches("7.2.7", "7.2.7") and not _kernels.matches("7.2.7", "7.2.70")
    assert not _kernels.matches("17.0.1", "7")
    assert _kernels.version_key("6.12.113") > _kernels.version_key("6.9.1")


def test_pick_newest_match_and_installed_wins_a_tie():
    K = _kernels.Kernel
    ks = [K("6.1.176", "installed", "bookworm", "/usr/bin/linux.uml", None),
          K("6.1.176", "fetched", "bookworm", "/c/6.1.176/linux.uml", None),
          K("6.12.100", "fetched", "trixie", "/c/a", None),
          K("6.12.113", "fetched", "trixie", "/c/b", None),
          K("7.2.7", "fetched", "sid", "/c/c", None)]
    assert _kernels.pick(ks, "6.12").version == "6.12.113"
    assert _kernels.pick(ks, "6.1").origin == "installed"
    assert _kernels.pick(ks, "7").binary == "/c/c"
    with pytest.raises(_kernels.KernelError) as e:
        _kernels.pick(ks, "5.15")
    text = str(e.value)
    assert "'5.15'" in text and "6.1.176, 6.1.176, 6.12.100" in text
    assert "--fetch-kernel SUITE (bookworm, trixie, sid)" in text


def test_fetched_kernels_and_their_modules(tmp_path):
    b7 = _fake_fetched(tmp_path, "7.2.7", "sid")
    _fake_fetched(tmp_path, "6.12.113", "trixie", modules=False)
    (tmp_path / "kernels" / ".fetch-sid-x").mkdir()          # an interrupted fetch
    found = _kernels.fetched(str(tmp_path))
    assert [(k.version, k.suite, k.origin) for k in found] == [
        ("6.12.113", "trixie", "fetched"), ("7.2.7", "sid", "fetched")]
    (k7,) = [k for k in found if k.version == "7.2.7"]
    assert k7.binary == b7
    assert k7.modules == str(tmp_path / "kernels/7.2.7/root/usr/lib/uml/modules/7.2.7")
    assert k7.line().split() == ["7.2.7", "fetched", "sid", b7]


def test_sandbox_picks_fetched_kernel_and_binds_its_modules(tmp_path, monkeypatch):
    b7 = _fake_fetched(tmp_path, "7.2.7", "sid")
    monkeypatch.setattr(sandbox, "_cache_root", lambda: str(tmp_path))
    monkeypatch.delenv("IPVS_SANDBOX_UML", raising=False)
    monkeypatch.delenv("IPVS_SANDBOX_KERNEL", raising=False)
    sandbox._version_cache.clear()
    assert sandbox._uml_binary("7") == b7
    assert sandbox._uml_binary("7.2") == b7
    monkeypatch.setenv("IPVS_SANDBOX_KERNEL", "7")
    assert sandbox._uml_binary() == b7
    moddir = sandbox._modules_dir(b7)
    assert moddir.endswith("/kernels/7.2.7/root/usr/lib/uml/modules/7.2.7")
    assert "ip_vs" in sandbox.default_modules("7")
    init = sandbox._write_scripts(str(tmp_path), ["true"], "/", {}, ["ip_vs"], moddir)
    assert "mount --bind %s /lib/modules/$V" % moddir in open(init).read()
    problems = sandbox.missing("5.4")
    assert len(problems) == 1 and "no sandbox kernel matches '5.4'" in problems[0]
    with pytest.raises(sandbox.SandboxUnavailable, match="5.4"):
        sandbox.run(["true"], kernel="5.4")


def test_main_lists_kernels_and_refuses_unknown_ones(tmp_path, monkeypatch, capsys):
    _fake_fetched(tmp_path, "7.2.7", "sid")
    monkeypatch.setattr(sandbox, "_cache_root", lambda: str(tmp_path))
    sandbox._version_cache.clear()
    assert sandbox.main(["--list-kernels"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert any(line.split()[:3] == ["7.2.7", "fetched", "sid"] for line in out)
    assert all(line.split()[1] in ("installed", "fetched") for line in out)
    assert sandbox.main(["--kernel", "4.19", "--check"]) == 2
    assert "no sandbox kernel matches '4.19'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        sandbox.main(["--fetch-kernel", "buster"])      # argparse: not a suite
    assert "invalid choice" in capsys.readouterr().err


def test_fetch_errors_are_clear(tmp_path, monkeypatch):
    with pytest.raises(_kernels.KernelError, match="unknown suite 'jessie'"):
        _kernels.fetch("jessie", str(tmp_path))
    monkeypatch.setattr(_kernels.shutil, "which",
                        lambda name, *a, **k: None if name == "patchelf" else "/usr/bin/" + name)
    with pytest.raises(_kernels.KernelError, match="apt-get install patchelf"):
        _kernels.fetch("sid", str(tmp_path))


def test_apt_never_touches_the_host_configuration(tmp_path):
    cmd = _kernels._apt(str(tmp_path))
    opts = dict(cmd[i + 1].split("=", 1) for i, a in enumerate(cmd) if a == "-o")
    assert opts["Dir::Etc::SourceList"].startswith(str(tmp_path))
    assert opts["Dir::Etc::SourceParts"] == "/dev/null"
    assert opts["Dir::State::Lists"].startswith(str(tmp_path))
    assert opts["Dir::Cache"].startswith(str(tmp_path))
    assert opts["Dir::State::status"] == "/dev/null"

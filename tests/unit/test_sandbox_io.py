"""ipvs.sandbox's I/O plumbing (issue 14): stdin passes through, and stdout
and stderr keep their order when the caller's are one file."""
from __future__ import annotations

import io
import os
import subprocess
import sys

import pytest

from ipvs import sandbox
from ._host import genl_socket_refused


def test_scripts_read_stdin_from_the_feed_and_merge_one_file(tmp_path):
    init = sandbox._write_scripts(str(tmp_path), ["cat"], "/", {}, ["ip_vs"],
                                  stdin=True, merged=True)
    text = open(init).read()
    out = os.path.join(str(tmp_path), "stdout")
    assert "</run/ipvs-sandbox/stdin >>%s 2>&1" % out in text
    assert "/in/eof" in text and "mkfifo" in text and 'kill "$feeder"' in text
    assert os.path.join(str(tmp_path), "stderr") not in text  # everything in one file
    init = sandbox._write_scripts(str(tmp_path), ["cat"], "/", {}, ["ip_vs"])
    text = open(init).read()
    assert "</dev/null" in text and "2>>%s" % os.path.join(str(tmp_path), "stderr") in text


def test_feed_writes_numbered_chunks_then_eof(tmp_path):
    r, w = os.pipe()
    os.write(w, b"first ")
    feed = sandbox._Feed(str(tmp_path), os.fdopen(r, "rb"))
    feed.start()
    os.write(w, b"second")
    os.close(w)
    feed.join(5)
    names = sorted(os.listdir(tmp_path))
    assert names[-1] == "eof" and all(n.isdigit() for n in names[:-1])
    data = b"".join(open(tmp_path / n, "rb").read() for n in names[:-1])
    assert data == b"first second"
    feed = sandbox._Feed(str(tmp_path / "x"), io.StringIO("text"))  # no fileno(); folder gone
    feed.run()   # never raises


def test_same_file(tmp_path):
    with open(tmp_path / "a", "w") as a, open(tmp_path / "a", "a") as a2, \
            open(tmp_path / "b", "w") as b:
        assert sandbox._same_file(a, a2) and not sandbox._same_file(a, b)
    s = io.StringIO()
    assert sandbox._same_file(s, s) and not sandbox._same_file(s, io.StringIO())


needs_sandbox = pytest.mark.skipif(
    not sandbox.available() or os.environ.get("IPVS_SANDBOX") == "1",
    reason="needs the UML sandbox (apt-get install user-mode-linux), from outside it")


def _sandbox(argv, input, **kw):
    return subprocess.run([sys.executable, "-m", "ipvs.sandbox", "--", *argv], input=input,
                          timeout=300, **kw)


@needs_sandbox
def test_stdin_passes_through_and_order_is_kept_in_one_file(tmp_path):
    script = "cat; echo out1; echo err1 >&2; echo out2; echo err2 >&2; cat </dev/null"
    with open(tmp_path / "both", "wb") as f:
        r = _sandbox(["sh", "-c", script], b"line1\nline2\n", stdout=f, stderr=subprocess.STDOUT)
    assert r.returncode == 0
    assert (tmp_path / "both").read_bytes() == b"line1\nline2\nout1\nerr1\nout2\nerr2\n"
    r = _sandbox(["sh", "-c", script], b"x\n", capture_output=True)
    assert (r.returncode, r.stdout, r.stderr) == (0, b"x\nout1\nout2\n", b"err1\nerr2\n")


@needs_sandbox
@pytest.mark.skipif(genl_socket_refused(),
                    reason="this interpreter cannot open generic netlink sockets (an emulator): "
                           "inside the sandbox it could not reach the kernel's IPVS either")
def test_restore_from_a_pipe(tmp_path):
    # what `ipvsadm -Sn | python -m ipvs.sandbox -- ipvs -R` needs, in a
    # namespace of the sandbox's own kernel
    rules = b"-A -t 10.0.0.1:80 -s rr\n-a -t 10.0.0.1:80 -r 192.168.1.1:80 -m -w 2\n"
    script = ("ip netns add r && ip -n r link set lo up && %s -m ipvs --netns r -R && ip netns exec r ipvsadm -Sn"
              % sys.executable)
    r = _sandbox(["sh", "-c", script], rules, capture_output=True)
    assert (r.returncode, r.stderr) == (0, b"")
    assert r.stdout == rules


def test_plugin_skip_reason_tells_pip_users_what_to_run():
    from ipvs import testing
    for reason in (testing.NO_IPVS_REASON, testing.NOT_ROOT_REASON):
        assert "python -m ipvs.sandbox -- python -m pytest" in reason
        assert "scripts/" not in reason   # a pip user has no scripts/ folder

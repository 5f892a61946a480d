"""``ipvs-director convert`` against keepalived itself: for each corpus file
(tests/lab/keepalived/*.conf) whose checks the lab can answer, keepalived
with the original file in one fresh lab and ipvs-director with the
converted file in another build the same ``ipvsadm -Sn`` table once their
checks settle.

Needs Debian's keepalived (2.2.7) and ipvsadm.  Run inside the sandbox:
    python -m ipvs.sandbox -- .venv/bin/python -m pytest -q -p no:cacheprovider \
        tests/lab/test_director_convert.py
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Dict, List, Optional

import pytest

from ipvs.director.convert import convert_file
from tests.lab.test_director import PUBLIC_LAB, DirectorProc, Lab, _Health

CORPUS = Path(__file__).parent / "keepalived"
HTTP_PORT = 8080
SETTLE_QUIET = 4.0      # s without a change before a keepalived table counts as settled
SETTLE_MAX = 40.0       # s at most for either side to settle
HOLD = 3.0              # s the director's table must stay equal

# the files whose checks the lab can answer (the others say "lab: no" in
# their first line: no TLS, DNS or SMTP servers here)
FILES = sorted(p.name for p in CORPUS.glob("*.conf")
               if "lab: no" not in p.read_text().splitlines()[0])
# what the test writes next to the filled files, per corpus file
EXTRA_FILES = {"file.conf": {"weight": "3\n"}}
# files the notify commands of the corpus leave behind: {name: text}
NOTIFIED = {"multi.conf": {"rs2.notify": "down\n"}}
# the documented differences: lines only the director's table has (filled
# like the corpus); every other line must be the same
DIRECTOR_ONLY = {"quorum-remove.conf": ["-a -t {vip}:80 -r {rs1}:{port} -m -w 0"]}


def fill(lab, dest: Path) -> Dict[str, str]:
    """Copies of the corpus (include.d too) with the lab's addresses."""
    values = {"vip": lab.vip, "port": str(lab.port), "http_port": str(HTTP_PORT),
              "dir": str(dest)}
    for i, a in enumerate(lab.server_addresses, 1):
        values["rs%d" % i] = a
    for src in CORPUS.rglob("*"):
        if src.is_file():
            out = dest / src.relative_to(CORPUS)
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(re.sub(r"\{(vip|rs\d|port|http_port|dir)\}",
                                  lambda m: values[m.group(1)], src.read_text()))
    return values


def table(ns: str) -> List[str]:
    """``ipvsadm -Sn`` in namespace ``ns``, its lines sorted (the kernel lists
    destinations in the order they were added, which may differ)."""
    out = subprocess.run(["ip", "netns", "exec", ns, "ipvsadm", "-Sn"], capture_output=True,
                         text=True, timeout=20, check=True).stdout
    return sorted(line.strip() for line in out.splitlines() if line.strip())


def settle(ns: str, quiet: float = SETTLE_QUIET, limit: float = SETTLE_MAX,
           alive=lambda: True) -> List[str]:
    """The table once it has not changed for ``quiet`` seconds."""
    deadline = time.monotonic() + limit
    last = table(ns)
    since = time.monotonic()
    while time.monotonic() < deadline:
        assert alive(), "the process keeping the table died"
        time.sleep(0.25)
        now = table(ns)
        if now != last:
            last, since = now, time.monotonic()
        elif last and time.monotonic() - since >= quiet:
            return last
    raise AssertionError("the table did not settle in %gs: %s" % (limit, last))


class Keepalived:
    def __init__(self, ns: str, conf: Path, work: Path) -> None:
        self.log = open(work / "keepalived.log", "wb")
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", ns, "keepalived", "-n", "-l", "-C", "-G",
             "-f", str(conf), "-p", str(work / "keepalived.pid"),
             "-c", str(work / "checkers.pid")],
            stdout=self.log, stderr=subprocess.STDOUT)
        self.path = work / "keepalived.log"

    def output(self) -> str:
        return self.path.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.log.close()


def _lab_with_http():
    lab = Lab(3).start()
    health = None if PUBLIC_LAB else _Health(lab)
    return lab, health


def _close(lab, health) -> None:
    try:
        if health is not None:
            health.close()
    finally:
        lab.close()


def keepalived_table(name: str, work: Path) -> List[str]:
    lab, health = _lab_with_http()
    ka: Optional[Keepalived] = None
    try:
        fill(lab, work)
        for fname, text in EXTRA_FILES.get(name, {}).items():
            (work / fname).write_text(text)
        ka = Keepalived(lab.director, work / name, work)
        try:
            got = settle(lab.director, alive=lambda: ka.proc.poll() is None)
        except AssertionError as e:
            raise AssertionError("%s\n---- keepalived ----\n%s" % (e, ka.output()[-4000:]))
        for fname, text in NOTIFIED.get(name, {}).items():
            assert (work / fname).read_text() == text, fname
        ka.stop()
        # keepalived removes its entries on SIGTERM
        assert table(lab.director) == [], ka.output()[-2000:]
        return got
    finally:
        if ka is not None:
            ka.stop()
        _close(lab, health)


def director_table(name: str, work: Path, want: List[str]) -> List[str]:
    lab, health = _lab_with_http()
    d: Optional[DirectorProc] = None
    try:
        fill(lab, work)
        for fname, text in EXTRA_FILES.get(name, {}).items():
            (work / fname).write_text(text)
        toml, warnings = convert_file(str(work / name))
        path = work / "director.toml"
        path.write_text('[director]\nnetns = "%s"\ncontrol = "%s"\n\n%s'
                        % (lab.director, work / "ctl.sock", toml))
        d = DirectorProc(str(path), str(work / "ctl.sock"), str(work / "director.log")).start()
        deadline = time.monotonic() + SETTLE_MAX
        got = table(lab.director)
        while got != want and time.monotonic() < deadline:
            assert d.proc is not None and d.proc.poll() is None, d.stderr()[-3000:]
            time.sleep(0.25)
            got = table(lab.director)
        assert got == want, ("director table differs from keepalived's\n%s\n---- toml ----\n"
                             "%s\n---- director ----\n%s" % (
                                 _diff(want, got), toml, d.stderr()[-3000:]))
        end = time.monotonic() + HOLD
        while time.monotonic() < end:
            time.sleep(0.25)
            assert table(lab.director) == want, _diff(want, table(lab.director))
        for fname, text in NOTIFIED.get(name, {}).items():
            assert (work / fname).read_text() == text, fname
        return got
    finally:
        if d is not None:
            d.stop() if d.proc is not None and d.proc.poll() is None else d.kill()
        _close(lab, health)


def _diff(want: List[str], got: List[str]) -> str:
    return "keepalived only: %s\ndirector only: %s" % (
        sorted(set(want) - set(got)), sorted(set(got) - set(want)))


@pytest.fixture(scope="module", autouse=True)
def _tools():
    for tool in ("keepalived", "ipvsadm", "ip"):
        if shutil.which(tool) is None:
            pytest.fail("%s is not installed (apt-get install %s)" % (tool, tool))


@pytest.mark.parametrize("name", FILES)
def test_same_table_as_keepalived(name: str, tmp_path: Path) -> None:
    (tmp_path / "ka").mkdir()
    (tmp_path / "dir").mkdir()
    want = keepalived_table(name, tmp_path / "ka")
    print("%s: keepalived table %s" % (name, want))
    assert want, "keepalived built no table"
    assert any(line.startswith("-a") for line in want) or name == "quorum.conf", want
    extra = [re.sub(r"\{(vip|rs\d|port)\}", lambda m: {
        "vip": "10.200.0.100", "port": "8000", "rs1": "10.200.1.2", "rs2": "10.200.2.2",
        "rs3": "10.200.3.2"}[m.group(1)], line) for line in DIRECTOR_ONLY.get(name, [])]
    for line in extra:
        assert line not in want, (line, want)
    director_table(name, tmp_path / "dir", sorted(want + extra))


def test_corpus_covers_the_lab_files() -> None:
    # every statement family of the issue is in a file the lab runs,
    # except those needing TLS, DNS or SMTP servers
    text = "".join((CORPUS / f).read_text() for f in FILES)
    text += "".join(p.read_text() for p in (CORPUS / "include.d").iterdir())
    for word in ("TCP_CHECK", "HTTP_GET", "UDP_CHECK", "MISC_CHECK", "FILE_CHECK", "digest",
                 "status_code", "fwmark", "persistence_timeout", "quorum", "hysteresis",
                 "sorry_server", "inhibit_on_failure", "notify_up", "notify_down", "alpha",
                 "include", "misc_dynamic", "misc_timeout", "connect_ip", "connect_port",
                 "delay_before_retry", "retry"):
        assert word in text, word

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

import contextlib
import http.server
import re
import shutil
import socket
import ssl
import struct
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import pytest

from ipvs import netns
from ipvs.director.convert import convert_file
from ipvs.lab import Lab
from tests.lab.harness import DirectorProc, KeepalivedProc, ipvsadm

CORPUS = Path(__file__).parent / "keepalived"
HTTPS_PORT = 8443
DNS_PORT = 5353
SMTP_PORT = 2525
PLACEHOLDER = re.compile(r"\{(vip|rs\d|port|http_port|https_port|dns_port|smtp_port|dir)\}")
SETTLE_QUIET = 4.0      # s without a change before a keepalived table counts as settled
SETTLE_MAX = 40.0       # s at most for either side to settle
HOLD = 3.0              # s the director's table must stay equal

# the files whose checks the lab can answer (the others say "lab: no" and
# why in their first line)
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
    values = {"vip": lab.vip, "port": str(lab.port), "http_port": str(lab.http_port),
              "https_port": str(HTTPS_PORT), "dns_port": str(DNS_PORT),
              "smtp_port": str(SMTP_PORT), "dir": str(dest)}
    for i, a in enumerate(lab.server_addresses, 1):
        values["rs%d" % i] = a
    for src in CORPUS.rglob("*"):
        if src.is_file():
            out = dest / src.relative_to(CORPUS)
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(PLACEHOLDER.sub(lambda m: values[m.group(1)], src.read_text()))
    return values


def table(ns: str) -> List[str]:
    """``ipvsadm -Sn`` in namespace ``ns``, its lines sorted (the kernel lists
    destinations in the order they were added, which may differ)."""
    out = ipvsadm(ns, "-Sn")
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


def keepalived(ns: str, conf: Path, work: Path) -> KeepalivedProc:
    """keepalived with its checkers (-C) and without VRRP, on ``conf``."""
    return KeepalivedProc(ns, ["-n", "-l", "-C", "-G", "-f", str(conf),
                               "-p", str(work / "keepalived.pid"),
                               "-c", str(work / "checkers.pid")], work / "keepalived.log")


class _Extras:
    """HTTPS (self-signed), DNS (UDP) and SMTP servers in every real server's
    namespace, for SSL_GET, DNS_CHECK and SMTP_CHECK; each answers with the
    server's name where it can.  Threads that stop on close() (and after
    LIFETIME seconds at the latest)."""

    LIFETIME = 120.0

    def __init__(self, lab, certdir: Path) -> None:
        self.stop = threading.Event()
        self.deadline = time.monotonic() + self.LIFETIME
        self.https: List[http.server.HTTPServer] = []
        self.socks: List[socket.socket] = []
        self.threads: List[threading.Thread] = []
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(*_certificate(certdir))
        try:
            for name, ns in zip(lab.names, lab.servers):
                with netns.enter(ns):
                    srv = http.server.ThreadingHTTPServer(("0.0.0.0", HTTPS_PORT),
                                                          _name_handler(name))
                    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                    tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                self.https.append(srv)
                self.socks += [udp, tcp]
                srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
                srv.daemon_threads = True
                self._thread(srv.serve_forever, 0.1)
                udp.bind(("0.0.0.0", DNS_PORT))
                udp.settimeout(0.2)
                self._thread(self._dns, udp)
                tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                tcp.bind(("0.0.0.0", SMTP_PORT))
                tcp.listen(16)
                tcp.settimeout(0.2)
                self._thread(self._smtp, tcp, name)
        except BaseException:
            self.close()
            raise

    def _thread(self, fn, *args: Any) -> None:
        t = threading.Thread(target=fn, args=args, daemon=True)
        t.start()
        self.threads.append(t)

    def _running(self) -> bool:
        return not self.stop.is_set() and time.monotonic() < self.deadline

    def _dns(self, sock: socket.socket) -> None:
        while self._running():
            try:
                data, peer = sock.recvfrom(512)
            except (socket.timeout, OSError):
                continue
            reply = _dns_answer(data)
            if reply is not None:
                with contextlib.suppress(OSError):
                    sock.sendto(reply, peer)

    def _smtp(self, sock: socket.socket, name: str) -> None:
        while self._running():
            try:
                conn, _ = sock.accept()
            except (socket.timeout, OSError):
                continue
            self._thread(self._smtp_session, conn, name)

    def _smtp_session(self, conn: socket.socket, name: str) -> None:
        conn.settimeout(5)
        with conn, contextlib.suppress(OSError):
            conn.sendall(b"220 %s ESMTP test\r\n" % name.encode())
            f = conn.makefile("rb")
            for _ in range(20):
                line = f.readline(1024)
                if not line:
                    return
                verb = line[:4].upper()
                if verb == b"QUIT":
                    conn.sendall(b"221 bye\r\n")
                    return
                conn.sendall(b"250 %s\r\n" % name.encode())

    def close(self) -> None:
        self.stop.set()
        for srv in self.https:
            srv.shutdown()
            srv.server_close()
        for s in self.socks:
            s.close()
        for t in self.threads:
            t.join(5)


def _name_handler(name: str):
    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = (name + "\n").encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a: Any) -> None:
            pass
    return H


def _certificate(d: Path):
    cert, key = d / "cert.pem", d / "key.pem"
    if not cert.exists():
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                        "-keyout", str(key), "-out", str(cert), "-days", "2",
                        "-subj", "/CN=secure.example.org"],
                       check=True, capture_output=True, timeout=60)
    return str(cert), str(key)


def _dns_answer(query: bytes) -> Optional[bytes]:
    """NOERROR with one A (10.0.0.1) or AAAA (2001:db8::1) record for such
    questions, no records for others."""
    if len(query) < 17:
        return None
    i = 12
    while i < len(query) and query[i]:
        i += 1 + query[i]
    if i + 5 > len(query):
        return None
    question = query[12:i + 5]
    qtype = struct.unpack("!H", query[i + 1:i + 3])[0]
    rdata = {1: socket.inet_aton("10.0.0.1"),
             28: socket.inet_pton(socket.AF_INET6, "2001:db8::1")}.get(qtype)
    head = query[:2] + struct.pack("!HHHHH", 0x8180,   # answer, recursion desired + available
                                   1, 1 if rdata else 0, 0, 0)
    answer = b""
    if rdata:
        answer = struct.pack("!HHHIH", 0xC00C, qtype, 1, 60, len(rdata)) + rdata
    return head + question + answer


def _lab_with_http(certdir: Path):
    """A three-server lab (HTTP from the lab itself) with HTTPS, DNS and
    SMTP servers too: (lab, extras) for _close()."""
    lab = Lab(3).start()
    try:
        extras = _Extras(lab, certdir)
    except BaseException:
        lab.close()
        raise
    return lab, extras


def _close(lab, extras: "_Extras") -> None:
    try:
        extras.close()
    finally:
        lab.close()


def keepalived_table(name: str, work: Path) -> List[str]:
    lab, health = _lab_with_http(work.parent)
    ka: Optional[KeepalivedProc] = None
    try:
        fill(lab, work)
        for fname, text in EXTRA_FILES.get(name, {}).items():
            (work / fname).write_text(text)
        ka = keepalived(lab.director, work / name, work)
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
    lab, health = _lab_with_http(work.parent)
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
    # every statement family of the issue is in a file the lab runs
    text = "".join((CORPUS / f).read_text() for f in FILES)
    text += "".join(p.read_text() for p in (CORPUS / "include.d").iterdir())
    for word in ("TCP_CHECK", "HTTP_GET", "SSL_GET", "DNS_CHECK", "SMTP_CHECK", "UDP_CHECK",
                 "MISC_CHECK", "FILE_CHECK", "digest", "enable_sni", "helo_name",
                 "status_code", "fwmark", "persistence_timeout", "quorum", "hysteresis",
                 "sorry_server", "inhibit_on_failure", "notify_up", "notify_down", "alpha",
                 "include", "misc_dynamic", "misc_timeout", "connect_ip", "connect_port",
                 "delay_before_retry", "retry"):
        assert word in text, word

"""``ipvs-director convert``: keepalived.conf read and turned into the
director's TOML (no kernel).  The corpus (tests/lab/keepalived) is filled
with fixed addresses here; tests/lab/test_director_convert.py runs it
against keepalived itself."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any, Dict, List, Tuple

import pytest

from ipvs.director import cli
from ipvs.director.config import parse
from ipvs.director.convert import ConvertError, convert_file, read

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

CORPUS = Path(__file__).resolve().parent.parent / "lab" / "keepalived"
VALUES = {"vip": "10.200.0.100", "rs1": "10.200.1.2", "rs2": "10.200.2.2",
          "rs3": "10.200.3.2", "port": "8000", "http_port": "8080", "https_port": "8443",
          "dns_port": "5353", "smtp_port": "2525"}


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    values = dict(VALUES, dir=str(tmp_path))
    for src in CORPUS.rglob("*"):
        if src.is_file():
            out = tmp_path / src.relative_to(CORPUS)
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(re.sub(r"\{(vip|rs\d|port|\w+_port|dir)\}",
                                  lambda m: values[m.group(1)], src.read_text()))
    return tmp_path


def run(path: Path, capsys) -> Tuple[int, str, List[str]]:
    rc = cli.main(["convert", str(path)])
    cap = capsys.readouterr()
    return rc, cap.out, [line for line in cap.err.splitlines() if line]


def conv(path: Path, capsys) -> Tuple[Dict[str, Any], List[str]]:
    rc, out, err = run(path, capsys)
    assert rc == 0, err
    parse(out, str(path))          # the director's own validation
    return tomllib.loads(out), err


def services(data: Dict[str, Any]) -> Dict[str, Dict[str, Any]]:
    out = {}
    for s in data["service"]:
        out["FWM %d" % s["fwmark"] if "fwmark" in s
            else "%s %s:%d" % (s["protocol"], s["address"], s["port"])] = s
    return out


def rs(svc: Dict[str, Any], address: str) -> Dict[str, Any]:
    (r,) = [r for r in svc["real_server"] if r["address"] == address]
    return r


def checks(r: Dict[str, Any]) -> List[Dict[str, Any]]:
    return r["checks"] if "checks" in r else [r["check"]]


CORPUS_FILES = sorted(p.name for p in CORPUS.glob("*.conf"))


def test_corpus_is_there() -> None:
    assert len(CORPUS_FILES) >= 9, CORPUS_FILES


@pytest.mark.parametrize("name", CORPUS_FILES)
def test_every_corpus_file_converts_and_validates(name: str, corpus: Path, capsys) -> None:
    data, err = conv(corpus / name, capsys)
    assert data["service"], name
    for line in err:   # every warning names the file and the line
        assert re.match(r"ipvs-director convert: /\S+:\d+: ", line), line


def test_check_validates_the_converted_file(corpus: Path, capsys, tmp_path: Path) -> None:
    rc, out, _ = run(corpus / "multi.conf", capsys)
    assert rc == 0
    toml = tmp_path / "out.toml"
    toml.write_text(out)
    assert cli.main(["-c", str(toml), "--check"]) == 0
    assert "OK (1 services, 3 real servers)" in capsys.readouterr().out


def test_tcp(corpus: Path, capsys) -> None:
    data, err = conv(corpus / "tcp.conf", capsys)
    svc = services(data)["tcp 10.200.0.100:80"]
    assert svc["scheduler"] == "wrr"
    assert svc["flags"] == ["persistent"] and svc["timeout"] == 120
    assert svc["netmask"] == "255.255.255.0"
    r1, r2, r3 = (rs(svc, VALUES[n]) for n in ("rs1", "rs2", "rs3"))
    assert (r1["weight"], r1["forward"], r1["on_failure"]) == (3, "masq", "remove")
    assert r1["check"] == {"type": "tcp", "interval": 1, "timeout": 1, "fall": 3, "rise": 1,
                           "retry_interval": 1, "initial": "up"}
    assert r2["check"]["port"] == 9999 and r2["check"]["fall"] == 2
    assert r3["on_failure"] == "quiesce"
    assert r3["check"]["address"] == VALUES["rs3"] and r3["check"]["port"] == 9999
    text = "\n".join(err)
    assert "tcp.conf:3: global_defs: not carried over" in text
    assert "tcp.conf:41: nb_get_retry 1:" in text


def test_http_digest_status_urls_alpha_dr(corpus: Path, capsys) -> None:
    data, err = conv(corpus / "http.conf", capsys)
    svc = services(data)["tcp 10.200.0.100:80"]
    assert svc["scheduler"] == "rr"
    r1, r2, r3 = (rs(svc, VALUES[n]) for n in ("rs1", "rs2", "rs3"))
    # DR: keepalived gives the real servers the service's port
    assert (r1["forward"], r1["port"]) == ("route", 80)
    c = r1["check"]
    assert c["type"] == "http" and c["port"] == 8080 and c["path"] == "/health"
    assert c["expect_status"] == "200"
    assert c["expect_digest"] == "7a6c0d2ef5a9e6e1776090916c66ba3a"
    assert c["host"] == "www.example.org"          # the service's virtualhost
    assert c["initial"] == "down"                  # alpha
    assert c["retry_interval"] == 1 and c["timeout"] == 1
    assert "expect_status" not in r2["check"]     # keepalived's default 200-299 is ours
    two = checks(r3)                               # one check per url block
    assert [x["path"] for x in two] == ["/health", "/other"]
    assert two[0]["expect_status"] == "200-299,302"
    assert two[1]["host"] == "other.example.org"
    assert any(re.search(r"http\.conf:41: http_protocol 1\.1: not carried over", w) for w in err)
    assert any("http.conf:13: real_server" in w and "port 80" in w for w in err)


def test_several_checkers_misc_notify(corpus: Path, capsys) -> None:
    data, err = conv(corpus / "multi.conf", capsys)
    svc = services(data)["tcp 10.200.0.100:8000"]
    r1, r2, r3 = (rs(svc, VALUES[n]) for n in ("rs1", "rs2", "rs3"))
    assert [c["type"] for c in checks(r1)] == ["tcp", "http", "exec"]
    assert checks(r1)[2]["command"] == ["/bin/true"] and checks(r1)[2]["timeout"] == 2
    assert checks(r1)[2]["fall"] == 1             # MISC_CHECK's retry default is 0
    assert r1["notify_up"][:2] == ["/bin/sh", "-c"]   # a shell line keeps its shell
    assert r1["notify_up"][2].endswith("rs1.notify'")
    assert [c["type"] for c in checks(r2)] == ["tcp", "exec"]
    assert checks(r2)[1]["command"] == ["/bin/false"]
    assert r3["check"]["command"] == ["/bin/sh", "-c", "exit 7"]   # misc_path split
    assert r3["check"]["dynamic_weight"] is True
    assert any("multi.conf:49: user nobody: not carried over" in w for w in err)


def test_udp(corpus: Path, capsys) -> None:
    data, err = conv(corpus / "udp.conf", capsys)
    svc = services(data)["udp 10.200.0.100:53"]
    assert svc["flags"] == ["onepacket"]
    r1, r2, r3 = (rs(svc, VALUES[n]) for n in ("rs1", "rs2", "rs3"))
    assert r1["check"]["send"] == "ping" and r1["check"]["expect"] == "^rs"
    assert r2["check"]["expect"] == "^rs2" and r2["weight"] == 2
    assert r3["check"]["expect"] == "^xx"
    assert any("udp.conf:31: min_reply_length 2: not carried over" in w for w in err)


def test_fwmark_persistence_default(corpus: Path, capsys) -> None:
    data, _ = conv(corpus / "fwmark.conf", capsys)
    svc = services(data)["FWM 7"]
    assert svc["family"] == "ipv4" and "protocol" not in svc
    assert svc["flags"] == ["persistent"] and svc["timeout"] == 360
    r1 = rs(svc, VALUES["rs1"])
    assert r1["port"] == 0 and r1["check"]["port"] == 8000   # port cleared, check keeps it
    assert (r1["upper_threshold"], r1["lower_threshold"]) == (100, 10)
    assert r1["forward"] == "route"


def test_quorum_sorry(corpus: Path, capsys) -> None:
    data, err = conv(corpus / "quorum.conf", capsys)
    svc = services(data)["tcp 10.200.0.100:80"]
    assert (svc["quorum"], svc["hysteresis"]) == (3, 1)
    assert svc["sorry_server"] == "10.200.3.2:8000"
    assert all(r["on_failure"] == "quiesce" for r in svc["real_server"])
    assert not any("sorry_server" in w for w in err)
    data, err = conv(corpus / "quorum-remove.conf", capsys)
    assert any(re.search(r"quorum-remove\.conf:\d+: sorry_server .*removes the real servers", w)
               for w in err)


def test_file_check(corpus: Path, capsys) -> None:
    data, err = conv(corpus / "file.conf", capsys)
    r1 = rs(services(data)["tcp 10.200.0.100:80"], VALUES["rs1"])
    assert r1["weight"] == 0
    assert r1["check"]["type"] == "file" and r1["check"]["path"] == str(corpus / "weight")
    assert not err                                 # weight 0, multiplier 1: exact


def test_include_glob_relative_and_nested(corpus: Path, capsys) -> None:
    data, err = conv(corpus / "include.conf", capsys)
    svcs = services(data)
    assert set(svcs) == {"tcp 10.200.0.100:80", "udp 10.200.0.100:8000"}
    web = svcs["tcp 10.200.0.100:80"]
    assert [r["address"] for r in web["real_server"]] == [VALUES["rs1"], VALUES["rs2"]]
    assert svcs["udp 10.200.0.100:8000"]["flags"] == ["sh_port", "sh_fallback"]
    assert any("include.conf:4: include include.d/none-*.conf: no file matches" in w
               for w in err)


def test_ssl_get(corpus: Path, capsys) -> None:
    data, err = conv(corpus / "ssl.conf", capsys)
    svc = services(data)["tcp 10.200.0.100:443"]
    r1, r2, r3 = (rs(svc, VALUES[n]) for n in ("rs1", "rs2", "rs3"))
    c = r1["check"]
    assert c["type"] == "https" and c["port"] == 8443
    assert c["sni"] == "secure.example.org" and c["host"] == "secure.example.org"
    assert c["path"] == "/status" and c["expect_status"] == "200"
    assert c["expect_digest"] == "7a6c0d2ef5a9e6e1776090916c66ba3a"   # lower-cased
    assert (c["fall"], c["retry_interval"], c["timeout"], c["interval"]) == (2, 1, 1, 1)
    assert "sni" not in r2["check"] and r2["on_failure"] == "quiesce"
    assert r3["check"]["retry_interval"] == 3     # SSL_GET's default delay_before_retry
    assert any(re.search(r"ssl\.conf:\d+: warmup 1: not carried over", w) for w in err)


def test_dns_check(corpus: Path, capsys) -> None:
    data, err = conv(corpus / "dns.conf", capsys)
    svc = services(data)["udp 10.200.0.100:53"]
    r1, r2, r3 = (rs(svc, VALUES[n]) for n in ("rs1", "rs2", "rs3"))
    assert r1["check"] == {"type": "dns", "port": 5353, "qtype": "A", "name": "example.org",
                           "interval": 1, "timeout": 1, "fall": 2, "rise": 1,
                           "retry_interval": 1, "initial": "up"}
    assert r2["check"]["qtype"] == "AAAA" and r2["check"]["fall"] == 1
    assert r2["check"]["retry_interval"] == 1     # DNS_CHECK's default: delay_loop
    assert any(re.search(r"dns\.conf:18: PING_CHECK: not carried over", w) for w in err), err


def test_smtp_check(corpus: Path, capsys) -> None:
    data, _ = conv(corpus / "smtp.conf", capsys)
    svc = services(data)["tcp 10.200.0.100:25"]
    r1, r2, r3 = (rs(svc, VALUES[n]) for n in ("rs1", "rs2", "rs3"))
    assert r1["check"]["type"] == "smtp" and r1["check"]["helo"] == "mail.example.org"
    assert "helo" not in r2["check"] and r3["on_failure"] == "quiesce"


def test_statements_the_lab_does_not_run(corpus: Path, capsys) -> None:
    data, err = conv(corpus / "syntax-no-lab.conf", capsys)
    svc = services(data)["udp 10.200.0.100:5060"]
    r = svc["real_server"][0]
    assert (r["forward"], r["tunnel_type"], r["tunnel_port"], r["tunnel_flags"]) == (
        "tunnel", "gue", 6080, "csum")
    assert svc["pe_name"] == "sip" and svc["timeout"] == 60
    assert r["check"]["port"] == 5061 and r["check"]["interval"] == 3
    text = "\n".join(err)
    for stmt in ("quorum_up", "warmup 2", "bindto 10.0.0.9", "smtp_alert yes"):
        assert re.search(r"syntax-no-lab\.conf:\d+: %s" % re.escape(stmt), text), stmt


# ------------------------------------------------------------ syntax

def write(tmp_path: Path, text: str, name: str = "k.conf") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_comments_braces_and_quotes(tmp_path: Path, capsys) -> None:
    p = write(tmp_path, """\
virtual_server 10.0.0.1 80{   # a comment
  lb_algo rr ! another
  real_server 10.0.1.1 80
  {
    notify_up "/usr/bin/logger -t lb up"
    TCP_CHECK { connect_timeout 2 }
  }
}
""")
    data, err = conv(p, capsys)
    (svc,) = data["service"]
    assert svc["scheduler"] == "rr" and svc["real_server"][0]["forward"] == "masq"
    r = svc["real_server"][0]
    assert r["notify_up"] == ["/usr/bin/logger", "-t", "lb", "up"]
    assert r["check"]["type"] == "tcp" and r["check"]["timeout"] == 2
    assert r["check"]["interval"] == 60            # keepalived's default delay_loop
    assert not err


def test_no_checker_is_always_up(tmp_path: Path, capsys) -> None:
    p = write(tmp_path, "virtual_server 10.0.0.1 80 {\n real_server 10.0.1.1 80 {\n"
                        "  weight 2\n }\n}\n")
    data, _ = conv(p, capsys)
    assert data["service"][0]["real_server"][0]["check"] == {"type": "none", "initial": "up"}


def test_unknown_statements_are_named_with_their_line(tmp_path: Path, capsys) -> None:
    p = write(tmp_path, "vrrp_instance VI_1 {\n state MASTER\n}\n"
                        "virtual_server 10.0.0.1 80 {\n frobnicate 3\n"
                        " real_server 10.0.1.1 80 {\n  TCP_CHECK {\n   bogus\n  }\n }\n}\n")
    rc, out, err = run(p, capsys)
    assert rc == 0
    parse(out)
    assert len(err) == 3, err
    assert "k.conf:1: vrrp_instance VI_1: not carried over" in err[0]
    assert "k.conf:5: frobnicate 3: not carried over" in err[1]
    assert "k.conf:8: bogus: not carried over" in err[2]


def test_include_error_lines_point_into_the_included_file(tmp_path: Path, capsys) -> None:
    (tmp_path / "sub").mkdir()
    write(tmp_path / "sub", "virtual_server 10.0.0.1 80 {\n  lb_algo rr\n  nope\n}\n", "a.conf")
    p = write(tmp_path, "! main\ninclude sub/a.conf\n")
    rc, _, err = run(p, capsys)
    assert rc == 0
    assert any(str(tmp_path / "sub" / "a.conf") + ":3: nope" in w for w in err), err


@pytest.mark.parametrize("text, where", [
    ("virtual_server 10.0.0.1 80 {\n lb_algo rr\n", ":1: block opened here is never closed"),
    ("virtual_server 10.0.0.1 80 {\n}\n}\n", ":3: } without a block"),
    ('virtual_server 10.0.0.1 80 {\n notify_up "/bin/x\n}\n', ":2: unterminated quoted"),
    ("virtual_server 10.0.0.300 80 {\n}\n", ":1: virtual_server: not an IP address"),
    ("virtual_server 10.0.0.1 80 {\n real_server 10.0.1.1 80 {\n  weight many\n }\n}\n",
     ":3: weight: not an integer"),
    ("virtual_server 10.0.0.1 80 {\n lb_kind BOGUS\n}\n", ":2: lb_kind: unknown method"),
    ("include k.conf\n", "include loop"),
    ("{\n}\n", ":1: { without a statement"),
])
def test_unparsable_input_exits_1(tmp_path: Path, capsys, text: str, where: str) -> None:
    p = write(tmp_path, text)
    rc, out, err = run(p, capsys)
    assert rc == 1 and out == ""
    assert len(err) == 1 and where in err[0], err
    assert err[0].startswith("ipvs-director convert: " + str(p))
    with pytest.raises(ConvertError):
        convert_file(str(p))


def test_missing_file_exits_1(tmp_path: Path, capsys) -> None:
    rc, out, err = run(tmp_path / "nope.conf", capsys)
    assert rc == 1 and out == "" and "cannot read" in err[0]


def test_read_keeps_lines(tmp_path: Path) -> None:
    p = write(tmp_path, "\n\nvirtual_server fwmark 3 {\n\n  lb_algo sh\n}\n")
    (st,) = read(str(p))
    assert (st.keyword, st.args, st.line) == ("virtual_server", ["fwmark", "3"], 3)
    assert st.block is not None and st.block[0].line == 5


def test_file_check_arithmetic_warned(tmp_path: Path, capsys) -> None:
    p = write(tmp_path, 'track_file t {\n file "/tmp/w"\n}\nvirtual_server 10.0.0.1 80 {\n'
                        ' real_server 10.0.1.1 80 {\n  weight 2\n  FILE_CHECK {\n'
                        '   track_file t\n   weight 0\n  }\n }\n}\n')
    data, err = conv(p, capsys)
    assert data["service"][0]["real_server"][0]["check"]["path"] == "/tmp/w"
    assert len(err) == 1 and "k.conf:9: weight 0: cannot be carried over" in err[0]


def test_command_lines(tmp_path: Path, capsys) -> None:
    p = write(tmp_path, 'virtual_server 10.0.0.1 80 {\n real_server 10.0.1.1 80 {\n'
                        '  notify_up /usr/local/bin/up root root\n'
                        '  notify_down "/usr/bin/logger down; /bin/true"\n'
                        '  MISC_CHECK {\n   misc_path /usr/local/bin/check --port 80\n  }\n'
                        ' }\n}\n')
    data, err = conv(p, capsys)
    r = data["service"][0]["real_server"][0]
    assert r["notify_up"] == ["/usr/local/bin/up"]
    assert r["notify_down"] == ["/bin/sh", "-c", "/usr/bin/logger down; /bin/true"]
    assert r["check"]["command"] == ["/usr/local/bin/check", "--port", "80"]
    assert len(err) == 1 and "k.conf:3: notify_up root root: not carried over" in err[0]


def test_help_and_entry_point(capsys) -> None:
    with pytest.raises(SystemExit) as e:
        cli.main(["convert", "--help"])
    assert e.value.code == 0
    assert "KEEPALIVED_CONF" in capsys.readouterr().out

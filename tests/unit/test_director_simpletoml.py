"""The director's fast reader of plain TOML service blocks
(ipvs.director.simpletoml): whatever it reads equals tomllib's result,
whatever it does not know it leaves to tomllib (None), and a file with an
error still gets tomllib's and the validator's exact line and key."""

from __future__ import annotations

import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ipvs.director.config import ConfigError, parse
from ipvs.director.simpletoml import loads_block

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

PLAIN = '''[[service]]
address = "10.0.0.1"   # the VIP
port = 80
scheduler = "wlc"

[service.check]
type = "tcp"
interval = 2.5
rise = 2
initial = "up"
# a comment line
[[service.real_server]]
address = "10.0.1.1"
weight = 0
[service.real_server.check]
type = "http"
verify = false
[[ service . real_server ]]
address = "10.0.1.2"
port = -0
[[service.real_server.checks]]
type = "tcp"
\t
'''

OTHER = [
    'address = "a\\tb"',                 # an escape
    "address = 'literal'",               # a literal string
    'flags = ["a", "b"]',                # an array
    'check = { type = "tcp" }',          # an inline table
    'a.b = 1',                           # a dotted key
    'port = 1_000',                      # underscores
    'port = 0x10',                       # hex
    'port = 010',                        # a leading zero (invalid TOML)
    'interval = 1e3',                    # an exponent
    'interval = inf',
    'when = 1979-05-27',
    'name = """x"""',
    '"quoted" = 1',
    'port = 80\nport = 81',              # a key twice (invalid TOML)
    '[service.check]\ntype = "tcp"\n[service.check]\nrise = 1',    # a table twice
    'check = 1\n[service.check]\nrise = 1',
    '[service.check.x]\na = 1',          # under a plain table
    '[[service]]\naddress = "10.0.0.2"',  # a second service
    '[director]\na = 1',
    'address = "10.0.0.1"\r',            # CRLF
    'address = "x" # bell \x07',         # a control character in a comment
    'address = "x"  junk',
]


def test_plain_block_equals_tomllib():
    assert loads_block(PLAIN) == tomllib.loads(PLAIN)
    got = loads_block(PLAIN)
    assert got is not None
    assert type(got["service"][0]["check"]["interval"]) is float
    assert got["service"][0]["real_server"][1]["checks"] == [{"type": "tcp"}]


@pytest.mark.parametrize("line", OTHER)
def test_anything_else_is_left_to_tomllib(line):
    assert loads_block("[[service]]\n" + line + "\n") is None


KEY = st.from_regex(r"[A-Za-z0-9_-]{1,8}", fullmatch=True)
VALUE = st.one_of(
    st.integers(-10 ** 12, 10 ** 12).map(str),
    st.booleans().map(lambda b: "true" if b else "false"),
    st.floats(-1e6, 1e6, allow_nan=False).map(lambda f: "%.3f" % f),
    st.text(st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters='"\\'),
            max_size=12).map(lambda s: '"%s"' % s),
    # forms it must refuse, tomllib decides
    st.sampled_from(["'x'", "[1, 2]", "{a = 1}", "1_0", "0x1f", "1e5", '"\\n"', "nan"]),
)
LINE = st.one_of(
    st.tuples(KEY, VALUE, st.sampled_from(["", "  # c", "#"])).map(
        lambda t: "%s = %s%s" % t),
    st.sampled_from(["", "# note", "[service.check]", "[[service.real_server]]",
                     "[service.real_server.check]", "[[service.real_server.checks]]",
                     "[service.x.y]", "[[service]]"]),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(LINE, max_size=12))
def test_same_as_tomllib_or_none(lines):
    text = "[[service]]\n" + "\n".join(lines) + "\n"
    got = loads_block(text)
    try:
        want = tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        assert got is None, text        # invalid TOML is never read as valid
        return
    if got is not None:
        assert got == want, text
        assert [type(v) for v in got["service"][0].values()] == \
            [type(v) for v in want["service"][0].values()]


def test_errors_keep_their_line_and_key_with_the_block_cache():
    text = ('[[service]]\naddress = "10.0.0.1"\nport = 80\n'
            '[[service.real_server]]\naddress = "10.0.1.1"\n'
            '[[service]]\naddress = "10.0.0.2"\nport = 80\n'
            '[[service.real_server]]\naddress = "10.0.1.1"\nforward = "sideways"\n')
    with pytest.raises(ConfigError) as e:
        parse(text, "f.toml", {})
    assert e.value.line == 11 and e.value.key == "service[1].real_server[0].forward", e.value
    with pytest.raises(ConfigError) as e:
        parse(text.replace('forward = "sideways"', 'port = 80\nport = 81'), "f.toml", {})
    assert e.value.line == 12, e.value


def test_a_services_check_validated_once_still_judges_each_real_server():
    # the service's check is validated once and reused for each real
    # server; a real server without a port (fwmark service) still gets the
    # error its check's type needs a port for, on its own line
    text = ('[[service]]\nfwmark = 5\n[service.check]\ntype = "tcp"\n'
            '[[service.real_server]]\naddress = "10.0.1.1"\nport = 80\n'
            '[[service.real_server]]\naddress = "10.0.1.2"\nport = 81\n'
            '[[service.real_server]]\naddress = "10.0.1.3"\n')
    for cache in (None, {}):
        with pytest.raises(ConfigError) as e:
            parse(text, "f.toml", cache)
        assert e.value.key is not None and e.value.key.startswith("service[0]"), e.value
        assert "port" in str(e.value), e.value
    cfg = parse(text.replace('address = "10.0.1.3"\n', 'address = "10.0.1.3"\nport = 82\n'))
    checks = [rs.checks[0] for rs in cfg.services[0].real_servers]
    assert [(c.type, c.address, c.port) for c in checks] == [
        ("tcp", "10.0.1.1", 80), ("tcp", "10.0.1.2", 81), ("tcp", "10.0.1.3", 82)]
    assert len({c.interval for c in checks}) == 1

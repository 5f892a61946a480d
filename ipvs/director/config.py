"""The director's configuration file: TOML parsed, validated, turned into
``ipvs`` model objects.

Every error is a :class:`ConfigError` whose message names the file, the line
and the key (``director.toml:12: service[0].real_server[1].weight: ...``).
TOML syntax errors carry the parser's line; for values that parse but do not
validate the line of the key is found in the text.

This module reads the file (whole, or block by block against the last
load's services) and collects every error; the parts are its neighbours:

* config_records.py   the records (Config, DirectorConfig, ServiceConfig,
                      RealServerConfig, CheckConfig, AnnounceConfig)
* config_errors.py    ConfigError, ConfigErrors, the lines of key paths
* config_values.py    the value checks every part uses
* config_director.py  [director]: sysctl, [director.sync], [director.announce]
* config_services.py  [[service]] and its real servers
* config_checks.py    the checks: common keys here, each type's own keys by
                      its module in checks/ (``checks.TYPES``)

Every name of them that other modules use is importable from here.
"""

from __future__ import annotations

import os
import re
import sys
from typing import Any, Dict, List, Optional, Set

# tomli, the project tomllib came from, ships compiled (mypyc) wheels that
# read a 36,800-server file three times faster than the stdlib's pure-Python
# tomllib (0.23 s against 0.66 s on the host): ipvs[director] installs it,
# and the stdlib's reader is the fallback where it is missing.
try:
    import tomli as tomllib
except ImportError:  # pragma: no cover - depends on the installed extras
    if sys.version_info < (3, 11):
        raise
    import tomllib  # type: ignore[no-redef]

from ipvs.director.checks.dns import DNS_QTYPES, DNS_RCODES
from ipvs.director.config_checks import (CHECK_TYPES, COMMON_CHECK_KEYS, NEEDS_PORT,
                                         TYPE_KEYS)
from ipvs.director.config_director import (ANNOUNCE_KEYS, DIRECTOR_KEYS, SYNC_KEYS,
                                           SYSCTL_NAMES, _director, _sync_families)
from ipvs.director.config_errors import (_KEYLINE, ConfigError, ConfigErrors, Path, _collect,
                                         _Ctx)
from ipvs.director.config_records import (AnnounceConfig, CheckConfig, Config, DirectorConfig,
                                          RealServerConfig, ServiceConfig,
                                          canonical_service_name, service_name)
from ipvs.director.config_services import (REAL_SERVER_KEYS, SCHEDULER_NAMES, SERVICE_KEYS,
                                           _service)
from ipvs.director.config_values import _unknown

__all__ = ["AnnounceConfig", "ConfigError", "ConfigErrors", "Config", "DirectorConfig", "ServiceConfig", "RealServerConfig",
           "CheckConfig", "load", "parse", "service_name", "canonical_service_name",
           "CHECK_TYPES"]

# the names of the parts, importable from here as before the split
_REEXPORTED = (DNS_QTYPES, DNS_RCODES, COMMON_CHECK_KEYS, NEEDS_PORT, TYPE_KEYS,
               ANNOUNCE_KEYS, DIRECTOR_KEYS, SYNC_KEYS, SYSCTL_NAMES, Path,
               REAL_SERVER_KEYS, SCHEDULER_NAMES, SERVICE_KEYS)


_SERVICE_HEADER = re.compile(r"^[ \t]*\[\[[ \t]*service[ \t]*\]\][ \t]*(?:#[^\n]*)?$", re.M)
_CACHES: Dict[str, Dict[str, ServiceConfig]] = {}


def _parse_blocks(text: str, filename: str, cache: Dict[str, ServiceConfig]) -> Optional[Config]:
    """The file cut at its ``[[service]]`` headers, each block's
    ServiceConfig taken from ``cache`` when its text did not change (a
    reload of 36,800 real servers re-reads only what changed).  None when
    the file does not cut cleanly or anything is wrong: the caller then
    parses it whole, which gives the exact error and line."""
    starts = [m.start() for m in _SERVICE_HEADER.finditer(text)]
    if not starts:
        return None
    head = text[:starts[0]]
    data = tomllib.loads(head)
    if "service" in data:
        return None
    ctx = _Ctx(head, filename)
    _unknown(ctx, (), data, ("director", "service"))
    director = _director(ctx, data.get("director", {}))
    fresh: Dict[str, ServiceConfig] = {}
    services: List[ServiceConfig] = []
    seen: Set[Any] = set()
    for a, b in zip(starts, starts[1:] + [len(text)]):
        block = text[a:b]
        sc = cache.get(block) or fresh.get(block)
        if sc is None:
            d = tomllib.loads(block)
            if list(d) != ["service"] or not isinstance(d["service"], list) \
                    or len(d["service"]) != 1 or not isinstance(d["service"][0], dict):
                return None
            sc = _service(_Ctx(block, filename), ("service", 0), d["service"][0])
        if sc.service.key in seen:
            return None
        _sync_families(ctx, ("service",), director, sc)
        seen.add(sc.service.key)
        fresh[block] = sc
        services.append(sc)
    cache.clear()
    cache.update(fresh)
    return Config(director, tuple(services), filename)


def parse(text: str, filename: str = "<config>",
          cache: Optional[Dict[str, ServiceConfig]] = None) -> Config:
    """Parse and validate the text of a configuration file.

    ``cache`` (a dict kept between calls): the services of blocks whose
    text is unchanged since the last call are reused, not parsed again."""
    if cache is not None:
        try:
            cfg = _parse_blocks(text, filename, cache)
        except (ValueError, TypeError, KeyError):   # ConfigError, TOMLDecodeError...
            cfg = None
        if cfg is not None:
            return cfg
        cache.clear()
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        m = re.search(r"\(at line (\d+), column (\d+)\)", str(e))
        line = int(m.group(1)) if m else None
        msg = re.sub(r"\s*\(at line \d+, column \d+\)", "", str(e))
        key = None
        if line:
            km = _KEYLINE.match(text.splitlines()[line - 1] if line <= len(text.splitlines()) else "")
            key = km.group(1) if km else None
        raise ConfigError("TOML syntax: " + msg, filename=filename, line=line, key=key) from None
    ctx = _Ctx(text, filename)
    errors: List[ConfigError] = []       # every error of the file, each with its line
    director = DirectorConfig()
    try:
        _unknown(ctx, (), data, ("director", "service"))
        director = _director(ctx, data.get("director", {}))
    except ConfigError as e:
        errors.append(e)
    svcs = data.get("service", [])
    if not isinstance(svcs, list):
        raise ctx.error(("service",), "must be an array of tables [[service]]")
    services: List[ServiceConfig] = []
    seen: Dict[Any, int] = {}
    for i, t in enumerate(svcs):
        try:
            if not isinstance(t, dict):
                raise ctx.error(("service", i), "must be a table")
            sc = _service(ctx, ("service", i), t)
            if sc.service.key in seen:
                raise ctx.error(("service", i), "%s given twice (also service[%d])"
                                % (sc.name, seen[sc.service.key]))
            _sync_families(ctx, ("service", i), director, sc)
        except ConfigError as e:
            errors.append(e)
            continue
        seen[sc.service.key] = i
        services.append(sc)
    _collect(errors)
    return Config(director, tuple(services), filename)


def load(filename: str, cache: Optional[Dict[str, ServiceConfig]] = None) -> Config:
    """Read and validate a configuration file (:class:`ConfigError` on any
    problem, OSError's message included for an unreadable file).  The
    services of unchanged ``[[service]]`` blocks are reused from the last
    load of the same file (``cache``: by default one per file name)."""
    if cache is None:
        key = os.path.abspath(filename)
        if key not in _CACHES and len(_CACHES) >= 4:
            _CACHES.clear()
        cache = _CACHES.setdefault(key, {})
    try:
        with open(filename, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise ConfigError("cannot read: %s" % (e.strerror or e), filename=filename) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError("not UTF-8: %s" % e, filename=filename) from None
    return parse(text, filename, cache)

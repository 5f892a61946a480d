"""The errors of a configuration file and where they are: :class:`ConfigError`
(one, with file, line and key), :class:`ConfigErrors` (several, in file
order), and the context of a parse (``_Ctx``) that finds the line of a key
path in the text only when an error needs it.
"""

from __future__ import annotations

import re
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

from ipvs.director.config_records import CheckConfig

__all__ = ["ConfigError", "ConfigErrors", "Path"]

Path = Tuple[Union[str, int], ...]


class ConfigError(ValueError):
    """A configuration file that does not parse or validate.

    ``line`` (1-based, or None) and ``key`` (a dotted path such as
    ``service[0].check.timeout``, or None) say where; ``str()`` is the full
    message with file, line and key.
    """

    def __init__(self, message: str, *, filename: str = "<config>",
                 line: Optional[int] = None, key: Optional[str] = None) -> None:
        self.message = message
        self.filename = filename
        self.line = line
        self.key = key
        where = filename + (":%d" % line if line else "")
        super().__init__("%s: %s%s" % (where, (key + ": ") if key else "", message))


class ConfigErrors(ConfigError):
    """Several errors of one file (``errors``: each a :class:`ConfigError`
    with its line); ``str()`` is one line per error, in file order, and
    ``line``/``key`` are the first one's."""

    errors: List[ConfigError]

    def __init__(self, errors: Sequence[ConfigError]) -> None:
        flat: List[ConfigError] = []
        for e in errors:
            flat += e.errors if isinstance(e, ConfigErrors) else [e]
        flat.sort(key=lambda e: e.line or 0)
        self.errors = flat
        first = flat[0]
        ValueError.__init__(self, "\n".join(str(e) for e in flat))
        self.message, self.filename = first.message, first.filename
        self.line, self.key = first.line, first.key


def _collect(errors: List[ConfigError]) -> None:
    if errors:
        raise errors[0] if len(errors) == 1 else ConfigErrors(errors)


_HEADER = re.compile(r"^\s*(\[\[?)\s*([A-Za-z0-9_.\-\" ]+?)\s*\]\]?\s*(#.*)?$")
_KEYLINE = re.compile(r"^\s*([A-Za-z0-9_\-]+|\"[^\"]*\")\s*=")


def _key_lines(text: str) -> Dict[Path, int]:
    """{path: line} of every table header and key line of the text (plain
    TOML as this file uses it: headers, arrays of tables, key = value)."""
    out: Dict[Path, int] = {}
    counts: Dict[Path, int] = {}
    current: Path = ()
    for no, line in enumerate(text.splitlines(), 1):
        m = _HEADER.match(line)
        if m and not _KEYLINE.match(line):
            names = [p.strip().strip('"') for p in m.group(2).split(".")]
            # resolve each prefix to its latest array element
            path: List[Union[str, int]] = []
            for i, name in enumerate(names):
                path.append(name)
                last = i == len(names) - 1
                if m.group(1) == "[[" and last:
                    base = tuple(path)
                    counts[base] = counts.get(base, -1) + 1
                    path.append(counts[base])
                    # a new element resets the counts below it
                    for k in [k for k in counts if k[:len(base)] == base and len(k) > len(base)]:
                        del counts[k]
                elif tuple(path) in counts:
                    path.append(counts[tuple(path)])
            current = tuple(path)
            out.setdefault(current, no)
            continue
        km = _KEYLINE.match(line)
        if km:
            key = km.group(1).strip('"')
            out.setdefault(current + (key,), no)
            # keys of an inline table on the same line
            rest = line[km.end():]
            for sub in re.findall(r"([A-Za-z0-9_\-]+)\s*=", rest):
                out.setdefault(current + (key, sub), no)
    return out


def _dotted(path: Path) -> str:
    s = ""
    for p in path:
        s += "[%d]" % p if isinstance(p, int) else ("." if s else "") + p
    return s


class _Ctx:
    def __init__(self, text: str, filename: str) -> None:
        self.filename = filename
        self.text = text
        self._lines: Optional[Dict[Path, int]] = None
        # validated checks by their spec, for real servers sharing one
        # (the address and port, validated with the real server, differ)
        self.checks: Dict[Any, CheckConfig] = {}
        # the same for a service's own [service.check] table, by the table's id
        self.base_checks: Dict[int, Tuple[Any, CheckConfig]] = {}

    @property
    def lines(self) -> Dict[Path, int]:
        # found only for an error message: a valid file never pays for it
        if self._lines is None:
            self._lines = _key_lines(self.text)
        return self._lines

    def error(self, path: Path, message: str) -> ConfigError:
        line = None
        for n in range(len(path), 0, -1):
            if path[:n] in self.lines:
                line = self.lines[path[:n]]
                break
        return ConfigError(message, filename=self.filename, line=line,
                           key=_dotted(path) or None)

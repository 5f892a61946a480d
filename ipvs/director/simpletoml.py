"""A fast reader for the plain part of TOML that a big director file is made
of, with ``tomllib`` as the authority for everything else.

A file of 36,800 real servers is 150,000 lines of ``key = "value"`` under
``[[service]]``, ``[service.check]`` and ``[[service.real_server]]``
headers; ``tomllib`` spends 30-40 us on each of them (1.3 s on this host,
four times that in the sandbox).  :func:`loads_block` reads one
``[[service]]`` block when every line of it is one of

* blank, or a comment;
* a header ``[service.K]``, ``[[service.K]]``, ``[service.K.L]`` or
  ``[[service.K.L]]`` (``K`` an array of tables already made in the block),
  bare keys only;
* ``key = value``, a bare key, the value a basic string without escapes, a
  decimal integer, a decimal float (``1.5``, no exponent) or a boolean,
  optionally followed by a comment;

and returns exactly what ``tomllib.loads`` returns for it.  Anything else
(escapes, arrays, inline tables, dotted keys, a key or table given twice,
``\\r\\n`` line ends...) returns None, and the caller uses ``tomllib``,
which also gives the exact error and line.
"""

from __future__ import annotations

import re
from typing import Any, Dict, Optional, Set

__all__ = ["loads_block"]

_KV = re.compile(
    r'[ \t]*([A-Za-z0-9_-]+)[ \t]*=[ \t]*'
    r'(?:"([^"\\\x00-\x08\x0a-\x1f\x7f]*)"|(true|false)|([+-]?(?:0|[1-9][0-9]*))'
    r'|([+-]?(?:0|[1-9][0-9]*)\.[0-9]+))'
    r'[ \t]*(?:#[^\x00-\x08\x0a-\x1f\x7f]*)?\Z')
_HEAD = re.compile(r'[ \t]*(\[\[?)[ \t]*service[ \t]*((?:\.[ \t]*[A-Za-z0-9_-]+[ \t]*){0,2})'
                   r'(\]\]?)[ \t]*(?:#[^\x00-\x08\x0a-\x1f\x7f]*)?\Z')
_SKIP = re.compile(r'[ \t]*(?:#[^\x00-\x08\x0a-\x1f\x7f]*)?\Z')


def loads_block(text: str) -> Optional[Dict[str, Any]]:
    """``tomllib.loads(text)`` for a block that starts with ``[[service]]``
    and holds only the plain forms above; None when it holds anything else."""
    lines = text.split("\n")
    first = 0
    while first < len(lines) and _SKIP.match(lines[first]):
        first += 1
    if first == len(lines):
        return None
    m = _HEAD.match(lines[first])
    if m is None or m.group(1) != "[[" or m.group(3) != "]]" or m.group(2):
        return None
    service: Dict[str, Any] = {}
    table = service
    # arrays of tables made by a header, by their id (a key's list is not one)
    arrays: Set[int] = set()
    kv = _KV.match
    for line in lines[first + 1:]:
        m = kv(line)
        if m is not None:
            key, string, boolean, integer, number = m.groups()
            if key in table:
                return None
            if string is not None:
                table[key] = string
            elif integer is not None:
                table[key] = int(integer)
            elif boolean is not None:
                table[key] = boolean == "true"
            else:
                table[key] = float(number)
            continue
        if _SKIP.match(line):
            continue
        h = _HEAD.match(line)
        if h is None:
            return None
        opening, closing = h.group(1), h.group(3)
        if len(opening) != len(closing):
            return None
        keys = [k.strip() for k in h.group(2).split(".")[1:]]
        if not keys:
            return None               # a second [[service]]: not one block
        parent: Dict[str, Any] = service
        for k in keys[:-1]:
            # an intermediate key: must be an array of tables (its last
            # element) made in this block; a plain table -> let tomllib judge
            v = parent.get(k)
            if not isinstance(v, list) or id(v) not in arrays:
                return None
            parent = v[-1]
        last = keys[-1]
        v = parent.get(last)
        if opening == "[[":
            if v is None:
                v = []
                arrays.add(id(v))
                parent[last] = v
            elif not isinstance(v, list) or id(v) not in arrays:
                return None
            table = {}
            v.append(table)
        else:
            if v is not None:
                return None
            table = {}
            parent[last] = table
    return {"service": [service]}


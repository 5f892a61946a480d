"""keepalived.conf read into statements (``ipvs-director convert``'s reader).

The reader follows keepalived's documented syntax: statements are lines of
words, a ``{`` opens a block of statements that a ``}`` closes, ``#`` and
``!`` start a comment anywhere on a line, double quotes group words, and
``include PATTERN`` (and its variants) reads the files the glob pattern
names, relative to the directory of the file that holds the statement.
"""

from __future__ import annotations

import dataclasses
import glob
import os
from typing import List, Optional, Tuple

__all__ = ["ConvertError", "Statement", "read"]

INCLUDES = ("include", "includer", "includem", "includew", "includeb", "includea")
MAX_INCLUDE_DEPTH = 16


class ConvertError(ValueError):
    """Input that cannot be read or parsed; ``str()`` names file and line."""

    def __init__(self, message: str, filename: str = "<input>",
                 line: Optional[int] = None) -> None:
        self.message, self.filename, self.line = message, filename, line
        super().__init__("%s%s: %s" % (filename, ":%d" % line if line else "", message))


@dataclasses.dataclass
class Statement:
    """One statement: its keyword, the words after it, its block (None when
    it has none) and where it was read."""
    keyword: str
    args: List[str]
    block: Optional[List["Statement"]]
    filename: str
    line: int

    @property
    def where(self) -> str:
        return "%s:%d" % (self.filename, self.line)


# ------------------------------------------------------------ reading

_Token = Tuple[str, str, str, int]   # kind ("word", "{", "}", "eol"), text, file, line


def _tokens(path: str, depth: int, out: List[_Token], stack: Tuple[str, ...],
            warnings: List[str]) -> None:
    real = os.path.realpath(path)
    if real in stack:
        raise ConvertError("include loop: %s includes itself" % path, path)
    if depth > MAX_INCLUDE_DEPTH:
        raise ConvertError("includes nested deeper than %d" % MAX_INCLUDE_DEPTH, path)
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise ConvertError("cannot read: %s" % (e.strerror or e), path) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConvertError("not UTF-8: %s" % e, path) from None
    for no, line in enumerate(text.splitlines(), 1):
        words: List[Tuple[str, str]] = []   # (kind, text)
        i, n = 0, len(line)
        while i < n:
            c = line[i]
            if c in " \t\r\f\v":
                i += 1
            elif c in "#!":
                break
            elif c in "{}":
                words.append((c, c))
                i += 1
            elif c == '"':
                j = line.find('"', i + 1)
                if j < 0:
                    raise ConvertError("unterminated quoted string", path, no)
                words.append(("word", line[i + 1:j]))
                i = j + 1
            else:
                j = i
                while j < n and line[j] not in ' \t\r\f\v{}"#!':
                    j += 1
                words.append(("word", line[i:j]))
                i = j
        if not words:
            continue
        first = words[0][1] if words[0][0] == "word" else ""
        if first.startswith("@") or first.startswith("$"):
            warnings.append("%s:%d: %s: conditional lines and parameters are not supported; "
                            "line skipped" % (path, no, first))
            continue
        if first in INCLUDES:
            if len(words) != 2 or words[1][0] != "word":
                raise ConvertError("%s takes one file name pattern" % first, path, no)
            pattern = words[1][1]
            if not os.path.isabs(pattern):
                pattern = os.path.join(os.path.dirname(os.path.abspath(path)), pattern)
            found = sorted(glob.glob(pattern))
            if not found:
                warnings.append("%s:%d: %s %s: no file matches; nothing included"
                                % (path, no, first, words[1][1]))
            for name in found:
                if os.path.isdir(name):
                    continue
                out.append(("eol", "", path, no))
                _tokens(name, depth + 1, out, stack + (real,), warnings)
            continue
        for kind, word in words:
            out.append((kind, word, path, no))
        out.append(("eol", "", path, no))


def _parse(tokens: List[_Token], pos: int, nested: bool,
           opener: Optional[_Token]) -> Tuple[List[Statement], int]:
    stmts: List[Statement] = []
    n = len(tokens)
    while True:
        while pos < n and tokens[pos][0] == "eol":
            pos += 1
        if pos >= n:
            if nested:
                assert opener is not None
                raise ConvertError("block opened here is never closed (missing })",
                                   opener[2], opener[3])
            return stmts, pos
        kind, text, fname, line = tokens[pos]
        if kind == "}":
            if not nested:
                raise ConvertError("} without a block to close", fname, line)
            return stmts, pos + 1
        if kind == "{":
            # a { on a line of its own opens the block of the statement before
            if stmts and stmts[-1].block is None:
                stmts[-1].block, pos = _parse(tokens, pos + 1, True, tokens[pos])
                continue
            raise ConvertError("{ without a statement to open", fname, line)
        args: List[str] = []
        pos += 1
        while pos < n and tokens[pos][0] == "word":
            args.append(tokens[pos][1])
            pos += 1
        st = Statement(text, args, None, fname, line)
        if pos < n and tokens[pos][0] == "{":
            st.block, pos = _parse(tokens, pos + 1, True, tokens[pos])
        stmts.append(st)


def read(path: str, warnings: Optional[List[str]] = None) -> List[Statement]:
    """The statements of a keepalived.conf, includes followed
    (:class:`ConvertError` when it cannot be read or parsed)."""
    tokens: List[_Token] = []
    _tokens(path, 0, tokens, (), warnings if warnings is not None else [])
    stmts, _ = _parse(tokens, 0, False, None)
    return stmts

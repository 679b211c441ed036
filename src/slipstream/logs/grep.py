"""Pure helpers for ``--grep``: the words a block is indexed by, and the index query for a pattern.

The store indexes each block of lines (not each line) in an FTS5 table with the trigram tokenizer
(case-insensitive, ``detail=none``), and the indexed text is the block's *distinct words*, not the
block itself: tokenising every character of every line cost ~150 ns per character (7,000 lines/s);
the distinct words are about a fifth of the text.

A word is a maximal run of ``[A-Za-z0-9_]`` and non-ASCII bytes. The query for a literal is built
from the literal's own runs: if a line contains the literal, each run of the literal (at least 3
characters long) lies inside one word of the line, so every trigram of the run is in the index
entry that holds that word. The index therefore returns a superset of the blocks that match
(never misses one), and the store checks each candidate line with the real pattern. A regex is
prefiltered by the literals every match must contain (``required_literals``); one without such a
literal of three characters scans every block in the time window.

``detail=none`` keeps no positions, so a run matches a doc holding its trigrams anywhere: in a
block full of random ids (hex request ids) almost every trigram is present and a 16-character id
matched a quarter of all blocks. So a block's words are split into ``PARTS`` docs by their last
byte (rowid ``first * PARTS + part``): a word and all its trigrams are in one doc, each doc holds
an eighth of the trigrams, and the same id matches the one block that holds it (index 6.6 -> 15.6
bytes per line, no measurable cost at ingest; ``detail=full`` was exact too but 53 bytes per line).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from slipstream.logs.model import Grep

_WORD_BYTES = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")
# every byte that cannot be part of a word becomes a space; bytes >= 0x80 (UTF-8) stay
WORD_TABLE = bytes(b if b in _WORD_BYTES or b >= 0x80 else 0x20 for b in range(256))
MIN_RUN = 3  # the trigram tokenizer indexes nothing shorter


PARTS = 8  # index docs per block (a power of two)
PART_BITS = 3


def words_of(text: str) -> str:
    """The distinct words of ``text``, space-separated (order not significant)."""
    return b" ".join(set(text.encode().translate(WORD_TABLE).split())).decode()


def word_docs(text: str) -> list[str]:
    """The index docs of a block's text: its distinct words, split by each word's last byte."""
    parts: list[list[bytes]] = [[] for _ in range(PARTS)]
    for word in set(text.encode().translate(WORD_TABLE).split()):
        parts[word[-1] & (PARTS - 1)].append(word)
    return [b" ".join(p).decode() for p in parts]


def runs_of(literal: str) -> list[str]:
    """The word runs of a literal that the index can look up (at least three characters each)."""
    runs = literal.encode().translate(WORD_TABLE).split()
    return [r for r in (run.decode() for run in runs) if len(r) >= MIN_RUN]


def run_query(run: str) -> str:
    """The FTS5 MATCH expression for one run: all of its trigrams (in one doc)."""
    return " AND ".join(f'"{g}"' for g in sorted({run[i : i + 3] for i in range(len(run) - 2)}))


MAX_RUNS = 4  # the longest runs of an alternative are enough to narrow it down


def index_terms(alternatives: Sequence[Sequence[str]]) -> list[list[str]] | None:
    """For "any alternative, all its literals": per alternative, the MATCH expressions of its
    (longest) runs; None if an alternative has no run to look up (no block can be ruled out)."""
    out: list[list[str]] = []
    for literals in alternatives:
        runs = sorted({r for lit in literals for r in runs_of(lit)}, key=lambda r: (-len(r), r))[:MAX_RUNS]
        if not runs:
            return None
        out.append([run_query(r) for r in runs])
    return out or None


def terms_for(grep: Grep) -> list[list[str]] | None:
    """The index terms that narrow ``grep`` to candidate blocks, or None to scan them all."""
    if not grep.regex:
        return index_terms([[grep.pattern]])
    alternatives = required_literals(grep.pattern)
    return index_terms(alternatives) if alternatives is not None else None


def matcher(grep: Grep) -> Callable[[str], bool]:
    """A test for one line."""
    if not grep.regex:
        needle = grep.pattern.casefold()
        if needle.isascii():
            lowered = grep.pattern.lower()
            return lambda line: lowered in line.lower()
        return lambda line: needle in line.casefold()
    rx = re.compile(grep.pattern, re.IGNORECASE if grep.ignore_case else 0)
    return lambda line: rx.search(line) is not None


_BLOCK_UNSAFE = re.compile(r"\\[AZ]|\(\?<?[=!]")  # \A, \Z and lookarounds see across line ends
# what could match a newline: \s \D \W \n, escapes by code, negated classes, the s flag
_CROSSES_LINES = re.compile(r"\\[sDWnxuUN0-7]|\[\^|\(\?[a-zA-Z]*s")


def lines_to_check(grep: Grep, text: str) -> list[int] | None:
    """The lines of a block (``text``: its lines joined by newlines) that can match, in order;
    None when every line must be checked with the pattern.

    The pattern is searched in the whole block at C speed (a regex with ``^``/``$`` per line).
    A text pattern, or a regex that cannot match a newline, gives exactly the matching lines
    (no match can span two lines, so each matching line holds a match the scan finds). Another
    regex only tells whether any line can match: a line's own match is found in the block too.
    A regex with ``\\A``, ``\\Z`` or lookarounds is checked line by line.
    """
    if not grep.regex:
        if not grep.pattern.isascii():
            return None
        return _hit_lines(text.lower(), re.escape(grep.pattern.lower()))
    if _BLOCK_UNSAFE.search(grep.pattern):
        return None
    flags = re.MULTILINE | (re.IGNORECASE if grep.ignore_case else 0)
    if not _CROSSES_LINES.search(grep.pattern):
        return _hit_lines(text, grep.pattern, flags)
    return None if re.compile(grep.pattern, flags).search(text) else []


def _hit_lines(text: str, pattern: str, flags: int = 0) -> list[int]:
    """The numbers of the lines of ``text`` where ``pattern`` matches (matches stay in a line)."""
    hits: list[int] = []
    line = last = 0
    for m in re.finditer(pattern, text, flags):
        pos = m.start()
        if pos < last:
            continue  # another match on a line already counted
        line += text.count("\n", last, pos)
        hits.append(line)
        last = text.find("\n", pos)
        if last < 0:
            break
    return hits


_ESCAPE_CLASSES = set("dDwWsSbBAZ0123456789")
_ESCAPE_CHARS = set("ntrfvax")  # \n, \t..., \xhh: not worth decoding, end the run
_OPTIONAL_NEXT = ("*", "?", "{0", "{,")


def required_literals(pattern: str) -> list[list[str]] | None:
    """The literal strings every match of ``pattern`` contains, as alternatives (top-level ``|``)
    of literal lists; None when some alternative requires none (or the pattern is too clever).

    Conservative by construction: groups, classes, escapes like ``\\d`` and optional atoms end a
    literal run and contribute nothing, so a returned literal is always in every match.
    """
    if pattern.startswith("(?") and "x" in pattern[2 : pattern.find(")")]:
        return None  # verbose mode: whitespace and comments are not literals
    alternatives: list[list[str]] = []
    for branch in _split_top(pattern):
        if branch is None:
            return None
        literals = _branch_literals(branch)
        if not literals:
            return None
        alternatives.append(literals)
    return alternatives


def _split_top(pattern: str) -> list[str | None]:
    """``pattern`` split at top-level ``|`` (None for a branch that cannot be read)."""
    out: list[str | None] = []
    depth, i, start = 0, 0, 0
    while i < len(pattern):
        c = pattern[i]
        if c == "\\":
            i += 2
            continue
        if c == "[":
            i = _class_end(pattern, i)
            if i < 0:
                return [None]
            continue
        if c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
        elif c == "|" and depth == 0:
            out.append(pattern[start:i])
            start = i + 1
        i += 1
    out.append(pattern[start:])
    return out


def _class_end(pattern: str, i: int) -> int:
    """The index just after the character class that opens at ``pattern[i]`` ('['), or -1."""
    j = i + 1
    if j < len(pattern) and pattern[j] == "^":
        j += 1
    if j < len(pattern) and pattern[j] == "]":
        j += 1
    while j < len(pattern):
        if pattern[j] == "\\":
            j += 2
            continue
        if pattern[j] == "]":
            return j + 1
        j += 1
    return -1


def _group_end(pattern: str, i: int) -> int:
    """The index just after the group that opens at ``pattern[i]`` ('('), or -1."""
    depth, j = 0, i
    while j < len(pattern):
        c = pattern[j]
        if c == "\\":
            j += 2
            continue
        if c == "[":
            j = _class_end(pattern, j)
            if j < 0:
                return -1
            continue
        if c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth == 0:
                return j + 1
        j += 1
    return -1


def _branch_literals(branch: str) -> list[str]:
    """The literal runs one alternative (no top-level ``|``) requires."""
    literals: list[str] = []
    run: list[str] = []

    def end_run() -> None:
        if run:
            literals.append("".join(run))
            run.clear()

    i = 0
    while i < len(branch):
        c = branch[i]
        atom: str | None = None  # a literal character, if this atom is one
        if c == "\\":
            nxt = branch[i + 1 : i + 2]
            if not nxt or nxt in _ESCAPE_CLASSES or nxt in _ESCAPE_CHARS or nxt.isalpha():
                end_run()
            else:
                atom = nxt
            i += 2
        elif c == "[":
            end_run()
            i = _class_end(branch, i)
            if i < 0:
                return []
        elif c == "(":
            end_run()
            i = _group_end(branch, i)
            if i < 0:
                return []
        elif c in ".^$":
            end_run()
            i += 1
        elif c in "*+?{":
            end_run()  # a quantifier without an atom we kept (after a group, class...)
            i = _skip_quantifier(branch, i)
            continue
        else:
            atom = c
            i += 1
        if atom is None:
            continue
        rest = branch[i:]
        if rest.startswith(_OPTIONAL_NEXT):
            end_run()  # the atom may be absent
        elif rest[:1] in ("+", "{"):
            run.append(atom)  # required at least once, but may repeat: the run ends here
            end_run()
        else:
            run.append(atom)
            continue
        i = _skip_quantifier(branch, i)
    end_run()
    return literals


def _skip_quantifier(branch: str, i: int) -> int:
    """The index after the quantifier at ``branch[i]`` (and its lazy/possessive suffix)."""
    if i < len(branch) and branch[i] == "{":
        close = branch.find("}", i)
        i = close + 1 if close > 0 else i + 1
    elif i < len(branch) and branch[i] in "*+?":
        i += 1
    if i < len(branch) and branch[i] in "?+":
        i += 1
    return i

from __future__ import annotations

import sqlite3

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from slipstream.logs.grep import (
    index_terms,
    lines_to_check,
    matcher,
    required_literals,
    run_query,
    runs_of,
    terms_for,
    word_docs,
    words_of,
)
from slipstream.logs.index import WordIndex, condition
from slipstream.logs.model import Grep


@pytest.mark.parametrize(
    "pattern, literals",
    [
        ("timeout", [["timeout"]]),
        ("time(out|d)", [["time"]]),
        ("conn.*refused", [["conn", "refused"]]),
        ("colou?r", [["colo", "r"]]),
        ("ab*c", [["a", "c"]]),
        ("ab+c", [["ab", "c"]]),
        ("x{0,3}yz", [["yz"]]),
        ("x{2}yz", [["x", "yz"]]),
        ("foo\\.bar", [["foo.bar"]]),
        ("[abc]def", [["def"]]),
        ("[]x]def", [["def"]]),
        ("\\d+ms", [["ms"]]),
        ("^ERROR: (.*)$", [["ERROR: "]]),
        ("(?i)timeout", [["timeout"]]),
        ("status=5\\d\\d", [["status=5"]]),
        ("error|warning", [["error"], ["warning"]]),
        ("a|bcd", [["a"], ["bcd"]]),
        ("(a|b)|cde", None),
        ("\\w+", None),
        (".*", None),
        ("(?x) t i m e", None),
        ("ab*?cd", [["a", "cd"]]),
        ("ab{1,}cd", [["ab", "cd"]]),
    ],
)
def test_required_literals(pattern: str, literals: list[list[str]] | None) -> None:
    assert required_literals(pattern) == literals


@pytest.mark.parametrize(
    "grep, terms",
    [
        (Grep("timeout"), [['"eou" AND "ime" AND "meo" AND "out" AND "tim"']]),
        (Grep("refused conn"), [['"efu" AND "fus" AND "ref" AND "sed" AND "use"', '"con" AND "onn"']]),
        (Grep("ab"), None),
        (Grep("a b c"), None),
        (Grep("error|warn", regex=True), [['"err" AND "ror" AND "rro"'], ['"arn" AND "war"']]),
        (Grep("\\d+", regex=True), None),
        (Grep("a1 b22 c333 d4444 e55555 f666666"), [[run_query(r) for r in ("f666666", "e55555", "d4444", "c333")]]),
    ],
)
def test_terms_for(grep: Grep, terms: list[list[str]] | None) -> None:
    assert terms_for(grep) == terms


def test_runs_words_and_docs() -> None:
    assert runs_of("GET /api/v1/users?id=42") == ["GET", "api", "users"]
    assert sorted(words_of("a-b c_d c_d Ünïcode 'x'").split()) == ["a", "b", "c_d", "x", "Ünïcode"]
    docs = word_docs("alpha beta gamma alpha 0x1f")
    assert len(docs) == 8 and sorted(" ".join(docs).split()) == ["0x1f", "alpha", "beta", "gamma"]
    assert set(docs[ord("a") % 8].split()) == {"alpha", "beta", "gamma"}  # split by the last byte
    assert index_terms([["ab"]]) is None


@pytest.mark.parametrize(
    "grep, line, hit",
    [
        (Grep("Timeout"), "read TIMEOUT after 3s", True),
        (Grep("timeout"), "no time out", False),
        (Grep("Überweisung"), "neue ÜBERWEISUNG", True),
        (Grep("time(out|d)", regex=True, ignore_case=False), "timed", True),
        (Grep("time(out|d)", regex=True, ignore_case=False), "TIMED", False),
        (Grep("time(out|d)", regex=True, ignore_case=True), "TIMED", True),
    ],
)
def test_matcher(grep: Grep, line: str, hit: bool) -> None:
    assert matcher(grep)(line) is hit


CORPUS = [
    "2026-12-02 13:00:00,123 ERROR [db] connection refused (retry 3)",
    '{"level":50,"msg":"ReadTimeoutError: upstream timed out","reqId":"a1b2c3"}',
    "GET /api/users?id=42 200 571B 12ms",
    "colour and color and colr",
    "status=503 upstream=web-d12-1",
    "Überweisung fehlgeschlagen: Zeitüberschreitung",
    "token=abc.def/ghi+jkl==",
]
PATTERNS = [
    Grep("timeout"),
    Grep("TimeoutError"),
    Grep("connection refused"),
    Grep("d12-1"),
    Grep("/api/users?id"),
    Grep("zeitüber"),
    Grep("def/ghi"),
    Grep("time(out|d) out", regex=True),
    Grep("colou?r", regex=True),
    Grep("status=5\\d\\d", regex=True),
    Grep("(?i)überweisung", regex=True),
    Grep("refused|timed", regex=True),
]


def _candidates(lines: list[str], grep: Grep) -> set[int]:
    """The lines (one block each, in two index epochs) that the index condition keeps."""
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE blocks(first INTEGER PRIMARY KEY, data BLOB)")
    index = WordIndex(db, epoch_bytes=max(len(lines) // 2, 1), epoch_age_s=1e9)
    for i, x in enumerate(lines):
        db.execute("INSERT INTO blocks VALUES (?, NULL)", (i + 1,))
        index.add([(i + 1, word_docs(x))], 1, 0.0)
    terms = terms_for(grep)
    if terms is None:
        return set(range(len(lines)))
    sql, args = condition(db, terms)
    return {r - 1 for (r,) in db.execute(f"SELECT first FROM blocks WHERE {sql}", args)}


@pytest.mark.parametrize("grep", PATTERNS, ids=lambda g: g.pattern)
def test_the_index_never_misses_a_matching_line(grep: Grep) -> None:
    test = matcher(grep)
    matching = {i for i, x in enumerate(CORPUS) if test(x)}
    assert matching, "each pattern matches some line of the corpus"
    assert matching <= _candidates(CORPUS, grep)


@settings(max_examples=150, deadline=None)
@given(
    lines=st.lists(st.text(alphabet="abcAB_-. /=é1", min_size=0, max_size=30), min_size=1, max_size=8),
    needle=st.text(alphabet="abcAB_-. /=é1", min_size=1, max_size=8),
)
def test_the_index_never_misses_random_text(lines: list[str], needle: str) -> None:
    grep = Grep(needle)
    test = matcher(grep)
    assert {i for i, x in enumerate(lines) if test(x)} <= _candidates(lines, grep)


BLOCK = ["INFO up", "ERROR timeout talking to db", "  at conn.py:3", "TIMEOUT again", "done"]


@pytest.mark.parametrize(
    "grep, lines",
    [
        (Grep("timeout"), [1, 3]),
        (Grep("zzz"), []),
        (Grep("o"), [0, 1, 2, 3, 4]),
        (Grep("Überweisung"), None),  # not ASCII: each line is checked
        (Grep("^done$", regex=True), [4]),  # ^ and $ per line
        (Grep("^timeout", regex=True, ignore_case=False), []),  # no line starts with it
        (Grep("^timeout", regex=True), [3]),  # ... ignoring case, one does
        (Grep("TIMEOUT", regex=True), [1, 3]),
        (Grep("up\\sERROR", regex=True), None),  # \s could cross a line end in the block: check lines
        (Grep("[^x]ERROR", regex=True), None),
        (Grep("up\\sERRORS", regex=True), []),
        (Grep("nothing", regex=True), []),
        (Grep("(?<!\\s)at", regex=True), None),  # a lookbehind: not decided on the block
        (Grep("\\Adone", regex=True), None),
    ],
)
def test_lines_to_check(grep: Grep, lines: list[int] | None) -> None:
    assert lines_to_check(grep, "\n".join(BLOCK)) == lines


@settings(max_examples=200, deadline=None)
@given(
    lines=st.lists(st.text(alphabet="abAB \t-.^$", min_size=0, max_size=12), min_size=1, max_size=8),
    pattern=st.sampled_from(["ab", "a b", "^ab", "b$", "^$", "a.b", "[^a]b", "\\bab", "ab\\B", "(a|b)$", "\\s"]),
    regex=st.booleans(),
)
def test_block_level_checks_never_lose_a_line(lines: list[str], pattern: str, regex: bool) -> None:
    grep = Grep(pattern, regex=regex)
    test = matcher(grep)
    matching = [i for i, x in enumerate(lines) if test(x)]
    got = lines_to_check(grep, "\n".join(lines))
    if got is not None:
        assert set(matching) <= set(got)
        if not regex or not any(x in pattern for x in ("\\s", "[^")):
            assert got == matching

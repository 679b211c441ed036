from __future__ import annotations

import sqlite3

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from slipstream.logs.grep import matcher, query_for, required_literals, runs_of, trigram_query, words_of
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
    "grep, query",
    [
        (Grep("timeout"), '("eou" AND "ime" AND "meo" AND "out" AND "tim")'),
        (
            Grep("connection refused"),
            '("con" AND "cti" AND "ect" AND "efu" AND "fus" AND "ion" AND "nec" AND "nne" AND "onn" AND "ref" AND "sed" AND "tio" AND "use")',
        ),
        (Grep("ab"), None),
        (Grep("a b c"), None),
        (Grep("error|warn", regex=True), '("err" AND "ror" AND "rro") OR ("arn" AND "war")'),
        (Grep("\\d+", regex=True), None),
    ],
)
def test_query_for(grep: Grep, query: str | None) -> None:
    assert query_for(grep) == query


def test_runs_and_words() -> None:
    assert runs_of("GET /api/v1/users?id=42") == ["GET", "api", "users"]
    assert sorted(words_of("a-b c_d c_d Ünïcode 'x'").split()) == ["a", "b", "c_d", "x", "Ünïcode"]
    assert trigram_query([["ab"]]) is None


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
    db = sqlite3.connect(":memory:")
    db.execute("CREATE VIRTUAL TABLE w USING fts5(words, tokenize='trigram', detail=none)")
    db.executemany("INSERT INTO w(rowid, words) VALUES (?, ?)", [(i, words_of(x)) for i, x in enumerate(lines)])
    q = query_for(grep)
    if q is None:
        return set(range(len(lines)))
    return {r for (r,) in db.execute("SELECT rowid FROM w WHERE w MATCH ?", (q,))}


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

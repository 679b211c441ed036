from __future__ import annotations

import datetime as dt

import pytest

from slipstream.logs.model import Grep, Level, LogQuery, LogsError
from slipstream.logs.parse import continued_level, detect_level, level_of_fields, parse_duration, parse_json, parse_when

E, W, INF, D, F, T = Level.ERROR, Level.WARN, Level.INFO, Level.DEBUG, Level.FATAL, Level.TRACE


@pytest.mark.parametrize(
    "line, level",
    [
        # JSON: pino numbers, strings under the usual keys; the key wins over words in the message
        ('{"level":30,"time":1,"msg":"listening"}', INF),
        ('{"level":50,"msg":"boom"}', E),
        ('{"level":60,"msg":"dead"}', F),
        ('{"level":10}', T),
        ('{"msg":"ERROR in the text","level":"info"}', INF),
        ('{"severity":"WARNING","message":"slow"}', W),
        ('{"lvl":"debug"}', D),
        ('{"levelname": "CRITICAL", "message": "x"}', F),
        ('{"msg":"no level here"}', None),
        # logfmt
        ('time=2026-12-02T13:00:00Z level=info msg="started"', INF),
        ('ts=1 lvl="warn" msg=x', W),
        ("severity=error code=3", E),
        # bracketed, any case
        ("[warn] disk almost full", W),
        ("2026-12-02 13:00:00 [ERROR] db down", E),
        ("[2026-12-02 13:00:00 +0000] [12] [INFO] Starting gunicorn 22.0.0", INF),
        ("<debug> cache miss", D),
        # an upper-case word: Python logging, uvicorn, Rails, npm
        ("2026-12-02 13:00:00,123 INFO [app.db] connected", INF),
        ("WARNING:root:deprecated call", W),
        ('INFO:     127.0.0.1:5000 - "GET / HTTP/1.1" 200 OK', INF),
        ("E, [2026-12-02T13:00:00.123 #1] ERROR -- : failed", E),
        ("npm ERR! code ELIFECYCLE", E),
        ("FATAL: password authentication failed", F),
        ("CRITICAL something", F),
        # a level word opening the line (the seeds' emoji lines), exceptions and tracebacks
        ("⚠️ Warning: Could not create tables (they may already exist)", W),
        ("❌ Error: SSL connection has been closed unexpectedly", E),
        ("error: could not compile", E),
        ("Traceback (most recent call last):", E),
        ("ValueError: invalid literal for int()", E),
        ("java.lang.IllegalStateException: closed", E),
        ("TypeError: Cannot read properties of undefined", E),
        # glog and zap console
        ("E1202 13:00:00.123456   12 main.go:42] failed", E),
        ("W1202 13:00:00.123456   12 main.go:42] slow", W),
        ("2026-12-02T13:00:00.000Z\tinfo\tserver started", INF),
        # nothing stated
        ("✅ Database tables initialized successfully!", None),
        ("GET /errors/INFO 200", None),
        ("no error today", None),
        ("listening on :8080", None),
        ("", None),
    ],
)
def test_detect_level(line: str, level: Level | None) -> None:
    assert detect_level(line) == level


def test_only_the_head_of_a_line_is_read() -> None:
    assert detect_level("x" * 200 + " ERROR") is None


@pytest.mark.parametrize(
    "line, previous, level",
    [
        ('  File "app.py", line 3, in <module>', E, E),
        ("    at Object.<anonymous> (/app/index.js:1:7)", E, E),
        ("\tat com.example.Main.main(Main.java:5)", W, W),
        ("not indented", E, None),
        ("  indented but nothing before", None, None),
    ],
)
def test_continued_level(line: str, previous: Level | None, level: Level | None) -> None:
    assert continued_level(line, previous) == level


@pytest.mark.parametrize(
    "line, fields",
    [
        ('{"a": 1, "b": "x"}', {"a": 1, "b": "x"}),
        ("[1, 2]", None),
        ('{"broken": ', None),
        ("plain", None),
        ('{"nested": {"k": [1]}}', {"nested": {"k": [1]}}),
    ],
)
def test_parse_json(line: str, fields: dict[str, object] | None) -> None:
    assert parse_json(line) == fields


@pytest.mark.parametrize(
    "fields, level",
    [
        ({"level": "warning"}, W),
        ({"severity": 50}, E),
        ({"level": True}, None),
        ({"lvl": "nonsense"}, None),
        ({}, None),
    ],
)
def test_level_of_fields(fields: dict[str, object], level: Level | None) -> None:
    assert level_of_fields(fields) == level


@pytest.mark.parametrize(
    "text, seconds",
    [
        ("15m", 900),
        ("2h", 7200),
        ("1d", 86400),
        ("1h30m", 5400),
        ("90s", 90),
        ("1w", 604800),
        ("1.5h", 5400),
        ("250ms", 0.25),
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "15", "m", "15 m", "15x", "-5m", "1h 30m"])
def test_parse_duration_refuses(text: str) -> None:
    with pytest.raises(LogsError, match="not a duration"):
        parse_duration(text)


NOW = dt.datetime(2026, 12, 2, 15, 0, tzinfo=dt.UTC).timestamp()
UTC = dt.UTC


@pytest.mark.parametrize(
    "text, expected",
    [
        ("15m", NOW - 900),
        ("2h", NOW - 7200),
        ("1d", NOW - 86400),
        ("now", NOW),
        ("2026-12-02T13:00:00Z", dt.datetime(2026, 12, 2, 13, 0, tzinfo=UTC).timestamp()),
        ("2026-12-02T13:00:00+01:00", dt.datetime(2026, 12, 2, 12, 0, tzinfo=UTC).timestamp()),
        ("2026-12-02 13:00", dt.datetime(2026, 12, 2, 13, 0, tzinfo=UTC).timestamp()),
        ("2026-12-02 13:00:30.5", dt.datetime(2026, 12, 2, 13, 0, 30, 500000, tzinfo=UTC).timestamp()),
        ("2026-12-02", dt.datetime(2026, 12, 2, tzinfo=UTC).timestamp()),
        ("13:00", dt.datetime(2026, 12, 2, 13, 0, tzinfo=UTC).timestamp()),
    ],
)
def test_parse_when(text: str, expected: float) -> None:
    assert parse_when(text, NOW, tz=UTC) == pytest.approx(expected)


def test_parse_when_reads_a_naive_time_in_the_given_zone() -> None:
    plus2 = dt.timezone(dt.timedelta(hours=2))
    assert parse_when("2026-12-02 13:00", NOW, tz=plus2) == dt.datetime(2026, 12, 2, 11, 0, tzinfo=UTC).timestamp()


@pytest.mark.parametrize("text", ["yesterday", "2026-13-01", "15", "12/02/2026"])
def test_parse_when_refuses_with_the_option_name(text: str) -> None:
    with pytest.raises(LogsError, match=r"--until: .* is neither a duration nor a timestamp"):
        parse_when(text, NOW, option="--until")


@pytest.mark.parametrize(
    "text, grep",
    [
        ("timeout", Grep("timeout")),
        ("/time(out|d)/", Grep("time(out|d)", regex=True, ignore_case=False)),
        ("/x+y/i", Grep("x+y", regex=True, ignore_case=True)),
        ("/", Grep("/")),
        ("/usr/bin", Grep("/usr/bin")),
    ],
)
def test_grep_parse(text: str, grep: Grep) -> None:
    assert Grep.parse(text) == grep


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: Grep.parse("/(unclosed/"), "--grep: bad regular expression '\\(unclosed'"),
        (lambda: Grep(""), "--grep: the pattern is empty"),
        (lambda: Level.parse("loud"), "--level: unknown level 'loud'"),
        (lambda: LogQuery(limit=0), "limit: must be between 1 and 10000, got 0"),
        (lambda: LogQuery(since=10, until=5), "--since: must be before --until"),
        (lambda: LogQuery(after=5, before=5), "after: must be smaller than before"),
        (lambda: LogQuery(streams=frozenset()), "streams: name at least one stream"),
    ],
)
def test_bad_input_names_the_option(make: object, message: str) -> None:
    with pytest.raises(LogsError) as err:
        make()  # type: ignore[operator]
    assert str(err.value).startswith(message.replace("\\(", "("))


@pytest.mark.parametrize("name, level", [("warn", W), ("WARNING", W), ("err", E), ("critical", F), ("notice", INF)])
def test_level_names(name: str, level: Level) -> None:
    assert Level.parse(name) == level

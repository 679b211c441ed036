"""Pure parsing for the log pipeline: a line's level, a JSON line's fields, ``--since/--until``.

Level detection looks at the start of a line (the first 160 characters) and takes the leftmost
of these forms:

    {"level": "warn"} / {"severity": "ERROR"} / {"lvl": 50}      JSON keys (pino's numbers too)
    level=info  lvl="warn"  severity=error                       logfmt
    [warn]  <error>  (INFO)                                      bracketed, any case
    ERROR  WARNING:root:...  npm ERR!                            an upper-case word
    ⚠️ Warning: ...   error: ...                                  a level word opening the line
    ValueError: boom   java.io.IOException: ...                  an exception's last line
    Traceback (most recent call last):                           a Python traceback
    E1202 13:00:00.123                                           glog's one-letter prefix
    <tab>info<tab>                                               zap's console encoder

Indented lines after a line with a level (stack traces) take that level: see ``continued_level``.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Mapping
from typing import Any

from slipstream.logs.model import LEVEL_NAMES, Level, LogsError

HEAD = 160  # characters of a line that level detection reads

_WORD_LEVELS = "trace|debug|info|notice|warn|warning|error|err|fatal|critical|crit|panic|severe|alert|emerg"
_UPPER_LEVELS = "TRACE|DEBUG|INFO|NOTICE|WARN|WARNING|ERROR|ERR|FATAL|CRITICAL|CRIT|PANIC|SEVERE"
# Two expressions, because a regex is tried at every position of a line: forms that can only open
# a line are tried once, with ``match``; in the scan every branch starts with one literal
# character, so the engine skips to the positions holding one of them without trying any branch
# (4x faster than one expression with ``^``, look-behinds and character classes leading branches).
_OPENING_RE = re.compile(
    rf"""
      [^\w\s]*\s*(?P<opening>(?i:{_WORD_LEVELS}))\s*:
    | [\w.$]*(?:Error|Exception)(?P<exc>:)
    | (?P<traceback>Traceback)\ \(most\ recent\ call\ last\)
    | (?P<glog>[IWEF])\d{{4}}\ \d\d:
    | (?:level|lvl|severity)=(?P<q0>"?)(?P<logfmt0>[A-Za-z]{{1,12}})(?P=q0)
    """,
    re.VERBOSE,
)
_UPPER = "(?![\\w/-])"
_SCAN_RE = re.compile(
    rf"""
      "(?:level|severity|lvl|levelname|loglevel|log_level|@l)"\s*:\s*(?:"(?P<json>[A-Za-z]{{1,12}})"|(?P<num>\d{{1,3}})\b)
    | \ (?:level|lvl|severity)=(?P<q1>"?)(?P<logfmt1>[A-Za-z]{{1,12}})(?P=q1)
    | ,(?:level|lvl|severity)=(?P<q2>"?)(?P<logfmt2>[A-Za-z]{{1,12}})(?P=q2)
    | \[(?P<bracket1>(?i:{_WORD_LEVELS}))[\]>)]
    | <(?P<bracket2>(?i:{_WORD_LEVELS}))[\]>)]
    | \((?P<bracket3>(?i:{_WORD_LEVELS}))[\]>)]
    | \t(?P<tab>{_WORD_LEVELS})\t
    | TRACE{_UPPER} | DEBUG{_UPPER} | INFO{_UPPER} | NOTICE{_UPPER} | WARN(?:ING)?{_UPPER} | ERR(?:OR)?{_UPPER}
    | FATAL{_UPPER} | CRIT(?:ICAL)?{_UPPER} | PANIC{_UPPER} | SEVERE{_UPPER}
    """,
    re.VERBOSE,
)
_NOT_BEFORE_UPPER = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_/.-")
_JSON_LEVEL_RE = re.compile(
    r'"(?:level|severity|lvl|levelname|loglevel|log_level|@l)"\s*:\s*(?:"([A-Za-z]{1,12})"|(\d{1,3})\b)'
)
_GLOG = {"I": Level.INFO, "W": Level.WARN, "E": Level.ERROR, "F": Level.FATAL}
_JSON_KEYS = ("level", "severity", "lvl", "levelname", "loglevel", "log_level", "@l")


# by n // 10; calling Level(n) costs a microsecond, and this runs for every JSON line
_BY_TENS: tuple[Level | None, ...] = (None, *Level)


def level_from_number(n: int) -> Level | None:
    """pino/bunyan numeric levels: 10 trace, 20 debug, 30 info, 40 warn, 50 error, 60 fatal."""
    return _BY_TENS[min(n // 10, 6)]


def detect_level(message: str) -> Level | None:
    """The level a line states, or None (see the module docstring for the forms)."""
    if message.startswith("{"):
        j = _JSON_LEVEL_RE.search(message)
        if j is not None:
            return LEVEL_NAMES.get(j.group(1).lower()) if j.group(1) else level_from_number(int(j.group(2)))
    first = message[:1]
    m = None if first.isdigit() or not first else _OPENING_RE.match(message, 0, HEAD)  # timestamps open most
    if m is None:
        pos = 0
        while True:
            m = _SCAN_RE.search(message, pos, HEAD)
            if m is None:
                return None
            start = m.start()
            if m.lastgroup is not None or start == 0 or message[start - 1] not in _NOT_BEFORE_UPPER:
                break
            pos = start + 1  # an upper-case level inside a word or a path: look further
    return _level_of_match(m)


def _level_of_match(m: re.Match[str]) -> Level | None:
    kind = m.lastgroup
    if kind is None:  # an upper-case word
        return LEVEL_NAMES.get(m.group().lower())
    if kind == "num":
        return level_from_number(int(m.group("num")))
    if kind in ("exc", "traceback"):
        return Level.ERROR
    if kind == "glog":
        return _GLOG[m.group("glog")]
    word = m.group(kind or "")
    return LEVEL_NAMES.get(word.lower()) if word else None


def continued_level(message: str, previous: Level | None) -> Level | None:
    """The level of a line that states none: an indented line (a stack frame, a traceback's body)
    continues the previous line's level; any other line has none."""
    if previous is not None and message[:1] in (" ", "\t"):
        return previous
    return None


def parse_json(message: str) -> dict[str, Any] | None:
    """A JSON object line's fields, or None for anything else."""
    if not message.startswith("{"):
        return None
    try:
        value = json.loads(message)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def level_of_fields(fields: Mapping[str, Any]) -> Level | None:
    """The level a parsed JSON object states under one of the usual keys."""
    for key in _JSON_KEYS:
        value = fields.get(key)
        if isinstance(value, str):
            return LEVEL_NAMES.get(value.lower())
        if isinstance(value, int) and not isinstance(value, bool):
            return level_from_number(value)
    return None


_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_DURATIONS_RE = re.compile(r"(?:\d+(?:\.\d+)?(?:ms|s|m|h|d|w))+")
_CLOCK_RE = re.compile(r"\d{1,2}:\d{2}(:\d{2})?")


def parse_duration(text: str) -> float:
    """``15m``, ``2h``, ``1d``, ``1h30m``, ``90s``, ``1w`` -> seconds; LogsError otherwise."""
    t = text.strip()
    pos, total = 0, 0.0
    for m in _DURATION_RE.finditer(t):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if pos == 0 or pos != len(t):
        raise LogsError(f"not a duration: {text!r}", "write it like 15m, 2h, 1d or 1h30m")
    return total


def parse_when(text: str, now: float, tz: dt.tzinfo | None = None, option: str = "--since") -> float:
    """A ``--since``/``--until`` value -> epoch seconds.

    A duration means that long before ``now``; ``now`` is now; ISO 8601 (``2026-12-02T13:00:00Z``,
    ``2026-12-02 13:00``, ``2026-12-02``) is a moment, in ``tz`` (default: this machine's zone)
    when it names none; ``13:00`` is that time today.
    """
    t = text.strip()
    if t == "now":
        return now
    if _DURATIONS_RE.fullmatch(t):
        return now - parse_duration(t)
    if _CLOCK_RE.fullmatch(t):
        today = dt.datetime.fromtimestamp(now, tz).date().isoformat()
        t = f"{today}T{t}"
    try:
        moment = dt.datetime.fromisoformat(t)
    except ValueError:
        raise LogsError(
            f"{option}: {text!r} is neither a duration nor a timestamp",
            "use 15m, 2h, 1d, 2026-12-02 13:00 or 2026-12-02T13:00:00Z",
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=tz) if tz is not None else moment.astimezone()
    return moment.timestamp()

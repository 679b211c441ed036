"""The data of the log pipeline: a line, where it came from, and a question asked of the store.

LogsError(InvalidInput)        a --since/--until/--grep/--level value, a query or a drain spec
                               is not understood (the message names the option and the value)
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import IntEnum, StrEnum
from typing import Any

from slipstream.errors import InvalidInput

MAX_LIMIT = 10_000


class LogsError(InvalidInput):
    """Raised when a query, a time, a pattern, a level or a drain spec is not understood."""


class Stream(StrEnum):
    """What produced a line."""

    APP = "app"  # an instance's stdout/stderr
    BUILD = "build"
    PRE_DEPLOY = "pre_deploy"
    CRON = "cron"
    EVENT = "platform"  # the daemon's own events (deploy steps, restarts, backups)
    ACCESS = "http"  # HAProxy's access lines


class Level(IntEnum):
    """Severity, ordered; ``--level warn`` keeps WARN and above. Stored as the int (0: none)."""

    TRACE = 1
    DEBUG = 2
    INFO = 3
    WARN = 4
    ERROR = 5
    FATAL = 6

    @classmethod
    def parse(cls, text: str) -> Level:
        """``warn``, ``WARNING``, ``err``, ``critical``... -> Level; LogsError names the choices."""
        level = LEVEL_NAMES.get(text.strip().lower())
        if level is None:
            raise LogsError(f"--level: unknown level {text!r}", "use one of trace, debug, info, warn, error, fatal")
        return level


LEVEL_NAMES: dict[str, Level] = {
    "trace": Level.TRACE,
    "debug": Level.DEBUG,
    "verbose": Level.DEBUG,
    "fine": Level.DEBUG,
    "info": Level.INFO,
    "information": Level.INFO,
    "notice": Level.INFO,
    "warn": Level.WARN,
    "warning": Level.WARN,
    "error": Level.ERROR,
    "err": Level.ERROR,
    "severe": Level.ERROR,
    "fatal": Level.FATAL,
    "critical": Level.FATAL,
    "crit": Level.FATAL,
    "alert": Level.FATAL,
    "emerg": Level.FATAL,
    "emergency": Level.FATAL,
    "panic": Level.FATAL,
}


@dataclass(frozen=True, slots=True)
class Source:
    """The tags a whole file (or block of lines) shares: who wrote it, for which deploy."""

    service: str
    stream: Stream
    deploy_id: int | None = None
    instance: str | None = None
    build_id: int | None = None

    def to_json(self) -> str:
        return json.dumps(
            {
                "service": self.service,
                "stream": self.stream.value,
                "deploy_id": self.deploy_id,
                "instance": self.instance,
                "build_id": self.build_id,
            }
        )

    @classmethod
    def from_json(cls, text: str) -> Source:
        d = json.loads(text)
        return cls(d["service"], Stream(d["stream"]), d["deploy_id"], d["instance"], d["build_id"])


@dataclass(frozen=True, slots=True)
class LogLine:
    """One line, tagged. ``seq`` is its place in the store (a cursor), None before it is stored.

    ``service`` is "" for the platform's own lines that belong to no service.
    """

    ts: float
    service: str
    stream: Stream
    message: str
    deploy_id: int | None = None
    instance: str | None = None
    level: Level | None = None
    build_id: int | None = None
    fields: Mapping[str, Any] | None = None
    seq: int | None = None

    @property
    def source(self) -> Source:
        return Source(self.service, self.stream, self.deploy_id, self.instance, self.build_id)

    def to_dict(self) -> dict[str, Any]:
        """The line as ``--json``, the API and the HTTP drain show it."""
        return {
            "seq": self.seq,
            "time": iso_time(self.ts),
            "service": self.service,
            "stream": self.stream.value,
            "deploy": self.deploy_id,
            "instance": self.instance,
            "build": self.build_id,
            "level": self.level.name.lower() if self.level is not None else None,
            "message": self.message,
            "fields": dict(self.fields) if self.fields is not None else None,
        }


def iso_time(ts: float) -> str:
    """RFC 3339 UTC with microseconds: ``2026-12-02T13:00:00.123456Z``."""
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class Grep:
    """A ``--grep`` pattern: plain text (case-insensitive) or a Python regex (``/.../``, ``/.../i``)."""

    pattern: str
    regex: bool = False
    ignore_case: bool = True

    def __post_init__(self) -> None:
        if not self.pattern:
            raise LogsError("--grep: the pattern is empty")
        if "\n" in self.pattern:
            raise LogsError("--grep: a pattern matches within one line; it cannot contain a newline")
        if self.regex:
            try:
                re.compile(self.pattern)
            except re.error as exc:
                raise LogsError(f"--grep: bad regular expression {self.pattern!r}: {exc}") from None

    @classmethod
    def parse(cls, text: str) -> Grep:
        """``timeout`` is text; ``/time(out|d)/`` is a regex, ``/.../i`` one that ignores case."""
        if len(text) >= 2 and text.startswith("/"):
            if text.endswith("/"):
                return cls(text[1:-1], regex=True, ignore_case=False)
            if text.endswith("/i"):
                return cls(text[1:-2], regex=True, ignore_case=True)
        return cls(text)


@dataclass(frozen=True)
class LogQuery:
    """What ``slipstream logs`` asks: filters, a page size and a cursor window (seq bounds, exclusive).

    Without ``after`` the answer is the newest ``limit`` lines before ``before`` (or the end);
    with ``after`` it is the oldest ``limit`` lines after it (paging forward, following). Either
    way lines come oldest first.
    """

    service: str | None = None
    since: float | None = None
    until: float | None = None
    grep: Grep | None = None
    level: Level | None = None
    deploy_id: int | None = None
    instance: str | None = None
    build_id: int | None = None
    streams: frozenset[Stream] | None = None
    limit: int = 100
    before: int | None = None
    after: int | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.limit <= MAX_LIMIT:
            raise LogsError(f"limit: must be between 1 and {MAX_LIMIT}, got {self.limit}")
        if self.since is not None and self.until is not None and self.since > self.until:
            raise LogsError("--since: must be before --until")
        if self.before is not None and self.after is not None and self.after >= self.before:
            raise LogsError("after: must be smaller than before")
        if self.streams is not None and not self.streams:
            raise LogsError("streams: name at least one stream, or none for all")

"""HAProxy access lines: the log format slipstream configures, its parser, and the stored line.

HAProxy runs daemonised (``-D``, stdio closed), so it logs to a unix datagram socket that the
daemon reads (:mod:`slipstream.logs.receiver`). ``format raw`` sends the line without a syslog
header; datagrams never block HAProxy: while the daemon is down they are dropped (HAProxy keeps
serving). One line per request, ``key=value`` separated by spaces; ``p`` and ``q`` are quoted by
HAProxy and have ``"`` and control characters escaped as ``#XX``, so no value contains a space:

    slipstream-access v=1 t=1796217808.111 svc=web be=be_01 srv=s01 sp=41001 st=200 b=571 tw=0
    tc=0 tr=1 ta=2 tt=2 fl=---- ci=127.0.0.1 m=GET p="/" q=""

``t`` accept time (epoch.ms), ``svc`` the service (txn.service, set from services.map), ``be``/
``srv`` backend and server slot, ``sp`` the server's port (which instance: slots are reused, ports
are not), ``st`` status, ``b`` bytes sent to the client, ``tw``/``tc``/``tr`` queue, connect and
server response times, ``ta`` the request's active time (total, without keep-alive idle time),
``tt`` the session's total time, all ms (-1: the step did not happen), ``fl`` termination state,
``ci`` client address, ``m`` method, ``p`` path, ``q`` query string (with its ``?``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slipstream.logs.model import Level, LogLine, Stream

ACCESS_LOG_FORMAT = (
    "slipstream-access v=1 t=%Ts.%ms svc=%[var(txn.service)] be=%b srv=%s sp=%sp st=%ST b=%B"
    " tw=%Tw tc=%Tc tr=%Tr ta=%Ta tt=%Tt fl=%tsc ci=%ci m=%HM p=%{+Q}HP q=%{+Q}HQ"
)
PREFIX = "slipstream-access "

_PAIR = re.compile(r'(\w+)=("[^"]*"|\S*)')
_ESCAPED = re.compile(r"#([0-9A-Fa-f]{2})")
_INSTANCE = re.compile(r"-d(\d+)-\d+$")


def render_access_log_config(socket_path: Path) -> dict[str, list[str]]:
    """The haproxy.cfg lines for access logs: ``global`` gets the target, the HTTP frontend the
    format (the TCP listeners of private services log nothing)."""
    return {
        "global": [f"    log {socket_path} len 8192 format raw local0 info"],
        "frontend http": ["    log global", f'    log-format "{ACCESS_LOG_FORMAT}"'],
    }


@dataclass(frozen=True)
class AccessRecord:
    """One parsed access line; times in ms, None where HAProxy wrote -1 or nothing."""

    ts: float
    service: str | None
    backend: str
    server: str | None
    server_port: int | None
    status: int | None
    bytes: int | None
    tw: int | None
    tc: int | None
    tr: int | None
    ta: int | None
    tt: int | None
    flags: str
    client: str
    method: str
    path: str
    query: str

    @property
    def level(self) -> Level:
        """5xx (and no status) an error, 4xx a warning, anything else info."""
        if self.status is None or self.status >= 500:
            return Level.ERROR
        return Level.WARN if self.status >= 400 else Level.INFO

    def message(self) -> str:
        """The line shown to users: ``GET /api?x=1 200 571B 2ms``."""
        size = f"{self.bytes}B" if self.bytes is not None else "-"
        took = f"{self.ta}ms" if self.ta is not None else "-"
        return f"{self.method} {self.path}{self.query} {self.status or '-'} {size} {took}"

    def fields(self) -> dict[str, Any]:
        """Every attribute but ``ts`` (a plain copy: ``dataclasses.asdict`` deep-copies, and took
        two thirds of the receiver's ~90 us per line)."""
        d = dict(vars(self))
        del d["ts"]
        return d


def _int(value: str | None) -> int | None:
    if value is None or not value.lstrip("-").isdigit():
        return None
    n = int(value)
    return n if n >= 0 else None


def _text(value: str | None) -> str:
    if value is None:
        return ""
    if len(value) >= 2 and value[0] == value[-1] == '"':
        value = value[1:-1]
    return _ESCAPED.sub(lambda m: chr(int(m.group(1), 16)), value) if "#" in value else value


def parse_access(line: str) -> AccessRecord | None:
    """An access line in slipstream's format (v=1), or None for anything else."""
    line = line.rstrip("\n")
    if not line.startswith(PREFIX):
        return None
    kv = dict(_PAIR.findall(line, len(PREFIX)))
    if kv.get("v") != "1":
        return None
    try:
        ts = float(kv.get("t", ""))
    except ValueError:
        return None
    svc = kv.get("svc")
    srv = kv.get("srv")
    return AccessRecord(
        ts=ts,
        service=svc if svc and svc != "-" else None,
        backend=kv.get("be", ""),
        server=srv if srv and not srv.startswith("<") else None,
        server_port=_int(kv.get("sp")),
        status=_int(kv.get("st")),
        bytes=_int(kv.get("b")),
        tw=_int(kv.get("tw")),
        tc=_int(kv.get("tc")),
        tr=_int(kv.get("tr")),
        ta=_int(kv.get("ta")),
        tt=_int(kv.get("tt")),
        flags=kv.get("fl", ""),
        client=kv.get("ci", ""),
        method=_text(kv.get("m")),
        path=_text(kv.get("p")),
        query=_text(kv.get("q")),
    )


def deploy_of(instance: str | None) -> int | None:
    """The deploy number in an instance id (``web-d12-1`` -> 12)."""
    m = _INSTANCE.search(instance or "")
    return int(m.group(1)) if m else None


def access_line(record: AccessRecord, instance: str | None = None) -> LogLine:
    """The stored line for a request; ``instance`` as the daemon resolved it from the slot/port."""
    return LogLine(
        ts=record.ts,
        service=record.service or "",
        stream=Stream.ACCESS,
        message=record.message(),
        deploy_id=deploy_of(instance),
        instance=instance,
        level=record.level,
        fields=record.fields(),
    )

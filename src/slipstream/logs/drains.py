"""Log drains (Render's "log streams"): stored lines also go to syslog or an HTTP endpoint.

    syslog://host:port        RFC 5424 over TCP, octet-counted frames (RFC 6587)
    syslog+tls://host:port    the same over TLS (system trust, or ``ca_file``)
    http(s)://host/path       POST of a JSON array of lines (``LogLine.to_dict``), ``headers`` added

Lifecycle of a drain: the pipeline calls ``offer(lines)`` after each stored block; lines of the
services the drain is for (all when ``services`` is None) go into a bounded queue and ``offer``
returns at once. When the queue is full the *oldest* queued lines are dropped and counted: during
an outage the newest lines say most about it, and the queue's memory stays bounded. One thread per
drain takes up to ``batch`` lines, sends them, and on failure waits (``backoff_s`` doubling up to
``max_backoff_s``) and sends the same batch again; an HTTP 4xx other than 408/429 means the endpoint
refuses the batch: it is dropped (``rejected``) rather than retried forever. ``close()`` sends what
is queued for up to ``grace_s`` and stops the thread.
"""

from __future__ import annotations

import json
import socket
import ssl
import threading
import time
import urllib.parse
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from slipstream.logs.model import Level, LogLine, LogsError, iso_time

SD_ID = "slipstream@32473"  # 32473: the example enterprise number of RFC 5612
FACILITY_USER = 1
_SEVERITY = {
    None: 6,
    Level.TRACE: 7,
    Level.DEBUG: 7,
    Level.INFO: 6,
    Level.WARN: 4,
    Level.ERROR: 3,
    Level.FATAL: 2,
}


@dataclass(frozen=True)
class DrainSpec:
    """Where a drain sends lines and how much it may hold back."""

    name: str
    url: str
    services: frozenset[str] | None = None  # None: every service (a global drain)
    headers: Mapping[str, str] = field(default_factory=dict)
    ca_file: Path | None = None
    max_queue: int = 10_000
    batch: int = 500
    timeout_s: float = 5.0
    backoff_s: float = 0.5
    max_backoff_s: float = 30.0
    hostname: str = field(default_factory=socket.gethostname)

    def __post_init__(self) -> None:
        where = f"log drain {self.name!r}"
        u = urllib.parse.urlsplit(self.url)
        if u.scheme not in ("syslog", "syslog+tls", "http", "https"):
            raise LogsError(
                f"{where}: url must start with syslog://, syslog+tls://, http:// or https://, got {self.url!r}"
            )
        if not u.hostname:
            raise LogsError(f"{where}: url {self.url!r} names no host")
        if u.scheme.startswith("syslog") and not u.port:
            raise LogsError(f"{where}: a syslog url needs a port, e.g. syslog+tls://logs.example.com:6514")
        if self.headers and u.scheme.startswith("syslog"):
            raise LogsError(f"{where}: headers apply to http(s) drains only")
        if not 1 <= self.batch <= self.max_queue:
            raise LogsError(f"{where}: batch must be between 1 and max_queue ({self.max_queue}), got {self.batch}")

    @property
    def kind(self) -> str:
        return "syslog" if self.url.startswith("syslog") else "http"

    def wants(self, service: str) -> bool:
        return self.services is None or service in self.services


@dataclass(frozen=True)
class DrainStats:
    name: str
    queued: int
    sent: int
    dropped: int  # queue full: oldest lines dropped
    rejected: int  # refused by the endpoint (HTTP 4xx): not retried
    failures: int  # attempts that failed (then retried)
    last_error: str | None


def render_syslog(line: LogLine, hostname: str) -> bytes:
    """One RFC 5424 message: ``<PRI>1 TIME HOST APP PROCID MSGID [SD] MSG``; APP-NAME is the
    service, PROCID the instance, MSGID the stream; deploy, build and seq are structured data."""
    pri = FACILITY_USER * 8 + _SEVERITY[line.level]
    params = [("seq", line.seq), ("deploy", line.deploy_id), ("build", line.build_id)]
    sd = " ".join(f'{k}="{_sd_escape(str(v))}"' for k, v in params if v is not None)
    head = " ".join(
        (
            f"<{pri}>1",
            iso_time(line.ts),
            _header(hostname, 255),
            _header(line.service or "slipstream", 48),
            _header(line.instance or "-", 128),
            _header(line.stream.value, 32),
            f"[{SD_ID} {sd}]" if sd else "-",
        )
    )
    return f"{head} {line.message}".encode()


def frame(message: bytes) -> bytes:
    """Octet counting (RFC 6587 3.4.1): ``LEN SP MSG``."""
    return b"%d %s" % (len(message), message)


def _header(value: str, limit: int) -> str:
    """A header field: printable ASCII without spaces, at most ``limit`` characters, or ``-``."""
    clean = "".join(c for c in value if 33 <= ord(c) <= 126)[:limit]
    return clean or "-"


def _sd_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


class Drain:
    """A bounded queue and the thread that empties it; subclasses say how a batch is sent."""

    def __init__(self, spec: DrainSpec) -> None:
        self.spec = spec
        self._queue: deque[LogLine] = deque()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._idle = threading.Event()
        self._idle.set()
        self.sent = self.dropped = self.rejected = self.failures = 0
        self.last_error: str | None = None
        self._thread = threading.Thread(target=self._run, name=f"drain-{spec.name}", daemon=True)
        self._thread.start()

    def offer(self, lines: Iterable[LogLine]) -> None:
        """Queue the lines this drain is for; never blocks (a full queue drops its oldest)."""
        wanted = [line for line in lines if self.spec.wants(line.service)]
        if not wanted:
            return
        with self._lock:
            self._idle.clear()
            self._queue.extend(wanted)
            over = len(self._queue) - self.spec.max_queue
            for _ in range(max(over, 0)):
                self._queue.popleft()
            if over > 0:
                self.dropped += over
        self._wake.set()

    def stats(self) -> DrainStats:
        with self._lock:
            queued = len(self._queue)
        return DrainStats(
            self.spec.name, queued, self.sent, self.dropped, self.rejected, self.failures, self.last_error
        )

    def flush(self, timeout: float) -> bool:
        """Wait until the queue is empty and the last batch went out; False on timeout."""
        return self._idle.wait(timeout)

    def close(self, grace_s: float = 2.0) -> None:
        """Send what is queued for up to ``grace_s``, then stop."""
        self.flush(grace_s)
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=self.spec.timeout_s + 1)
        self._disconnect()

    def _take(self) -> list[LogLine]:
        with self._lock:
            n = min(self.spec.batch, len(self._queue))
            return [self._queue.popleft() for _ in range(n)]

    def _run(self) -> None:
        batch: list[LogLine] = []
        delay = self.spec.backoff_s
        while not self._stop.is_set():
            if not batch:
                batch = self._take()
            if not batch:
                with self._lock:
                    if not self._queue:
                        self._idle.set()
                self._wake.wait(0.5)
                self._wake.clear()
                continue
            try:
                accepted = self._send(batch)
            except Exception as exc:  # any failure of the endpoint: retry after a pause
                self.failures += 1
                self.last_error = f"{type(exc).__name__}: {exc}"
                self._disconnect()
                self._stop.wait(delay)
                delay = min(delay * 2, self.spec.max_backoff_s)
                continue
            if accepted:
                self.sent += len(batch)
            else:
                self.rejected += len(batch)
            batch, delay = [], self.spec.backoff_s

    def _send(self, batch: list[LogLine]) -> bool:
        """Send one batch; False if the endpoint refused it for good; raise to retry."""
        raise NotImplementedError

    def _disconnect(self) -> None:
        """Drop the connection (after a failure, or at close)."""


class SyslogDrain(Drain):
    """RFC 5424 over TCP (or TLS), one connection kept open."""

    def __init__(self, spec: DrainSpec) -> None:
        self._sock: socket.socket | None = None
        super().__init__(spec)

    def _connect(self) -> socket.socket:
        u = urllib.parse.urlsplit(self.spec.url)
        assert u.hostname is not None and u.port is not None
        sock = socket.create_connection((u.hostname, u.port), timeout=self.spec.timeout_s)
        if u.scheme == "syslog+tls":
            ctx = ssl.create_default_context(cafile=str(self.spec.ca_file) if self.spec.ca_file else None)
            sock = ctx.wrap_socket(sock, server_hostname=u.hostname)
        return sock

    def _send(self, batch: list[LogLine]) -> bool:
        if self._sock is None:
            self._sock = self._connect()
        self._sock.sendall(b"".join(frame(render_syslog(line, self.spec.hostname)) for line in batch))
        return True

    def _disconnect(self) -> None:
        if self._sock is not None:
            try:
                self._sock.close()
            except OSError:
                pass
            self._sock = None


class HttpDrain(Drain):
    """POSTs JSON arrays of lines."""

    def __init__(self, spec: DrainSpec) -> None:
        verify: ssl.SSLContext | bool = (
            ssl.create_default_context(cafile=str(spec.ca_file)) if spec.ca_file is not None else True
        )
        import httpx  # here, not at the top: with click and rich installed it loads its CLI too (~10 MB)

        self._client = httpx.Client(timeout=spec.timeout_s, headers=dict(spec.headers), verify=verify)
        super().__init__(spec)

    def _send(self, batch: list[LogLine]) -> bool:
        body = json.dumps([line.to_dict() for line in batch], ensure_ascii=False).encode()
        r = self._client.post(self.spec.url, content=body, headers={"content-type": "application/json"})
        if r.status_code < 300:
            return True
        if 400 <= r.status_code < 500 and r.status_code not in (408, 429):
            self.last_error = f"HTTP {r.status_code}"
            return False
        import httpx  # loaded by __init__ already

        raise httpx.HTTPStatusError(f"HTTP {r.status_code}", request=r.request, response=r)

    def close(self, grace_s: float = 2.0) -> None:
        super().close(grace_s)
        self._client.close()


class MemoryDrain(Drain):
    """A drain that keeps what it is sent, for tests of the daemon and API."""

    def __init__(self, spec: DrainSpec | None = None) -> None:
        self.received: list[LogLine] = []
        super().__init__(spec or DrainSpec("memory", "http://127.0.0.1/"))

    def _send(self, batch: list[LogLine]) -> bool:
        self.received.extend(batch)
        return True


def open_drain(spec: DrainSpec) -> Drain:
    """The drain for a spec's kind, its thread started."""
    return SyslogDrain(spec) if spec.kind == "syslog" else HttpDrain(spec)


class Drains:
    """The drains in force; the pipeline offers every stored line to each."""

    def __init__(self, drains: Iterable[Drain] = ()) -> None:
        self._lock = threading.Lock()
        self._drains: dict[str, Drain] = {d.spec.name: d for d in drains}

    def __bool__(self) -> bool:
        return bool(self._drains)

    def set(self, specs: Iterable[DrainSpec]) -> None:
        """Make the drains match ``specs``: close removed or changed ones, open new ones."""
        wanted = {s.name: s for s in specs}
        with self._lock:
            old = self._drains
            keep = {n: d for n, d in old.items() if wanted.get(n) == d.spec}
            gone = [d for n, d in old.items() if n not in keep]
            fresh = {n: open_drain(s) for n, s in wanted.items() if n not in keep}
            self._drains = {**keep, **fresh}
        for d in gone:
            d.close(grace_s=0.5)

    def offer(self, lines: list[LogLine]) -> None:
        for d in list(self._drains.values()):
            d.offer(lines)

    def stats(self) -> list[DrainStats]:
        return [d.stats() for d in list(self._drains.values())]

    def close(self, grace_s: float = 2.0) -> None:
        with self._lock:
            drains, self._drains = list(self._drains.values()), {}
        deadline = time.monotonic() + grace_s
        for d in drains:
            d.close(max(deadline - time.monotonic(), 0.0))

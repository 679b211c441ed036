"""Alert notifications: a signed JSON webhook (Slack-compatible) and email, retried with back-off.

The webhook body is what a Slack incoming webhook takes (``text`` plus one coloured
``attachments`` entry) with an ``alert`` object beside it for programs. Each attempt carries

    X-Slipstream-Timestamp: <unix seconds of the attempt>
    X-Slipstream-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>
    X-Slipstream-Delivery:  <alert id>-<firing|resolved>   (the same on every retry: deduplicate on it)

so a receiver checks the signature with :func:`verify` (and rejects old timestamps: replays).

Lifecycle of the :class:`Dispatcher` (the daemon owns one):

1. ``start()`` runs one worker thread. ``notify(alert_id, transition)`` only queues one job per
   configured channel and returns at once; the queue is bounded (``max_pending``): when full, the
   new notification is dropped and logged, never the daemon blocked.
2. The worker runs due jobs in time order. A failed attempt that may succeed later (connection
   error, timeout, HTTP 408/429/5xx, SMTP temporary error) is queued again after ``backoff_s``
   doubling per attempt up to ``max_backoff_s``, at most ``attempts`` times; other failures are
   final. Retries wait in the queue, so one dead receiver does not hold back the other channel.
3. ``on_result(alert_id, channel, outcome)`` is told the end of each job ("ok" or "failed: ...").
4. ``stop()`` ends the worker; jobs still queued are dropped (logged).
"""

from __future__ import annotations

import hashlib
import heapq
import hmac
import itertools
import json
import logging
import smtplib
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any, Protocol

from slipstream.alerts.engine import Transition

log = logging.getLogger("slipstream.alerts")

TIMESTAMP_HEADER = "X-Slipstream-Timestamp"
SIGNATURE_HEADER = "X-Slipstream-Signature"
DELIVERY_HEADER = "X-Slipstream-Delivery"
COLORS = {"firing": "#d32f2f", "resolved": "#2e7d32"}


@dataclass(frozen=True)
class WebhookConfig:
    """Where to post alerts and the shared secret that signs them."""

    url: str
    secret: str = field(repr=False)
    timeout_s: float = 5.0


@dataclass(frozen=True)
class SmtpConfig:
    """An SMTP server to send alert mail through."""

    host: str
    port: int
    sender: str
    recipients: tuple[str, ...]
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    starttls: bool = False
    timeout_s: float = 10.0


@dataclass(frozen=True)
class Attempt:
    """How one delivery attempt went."""

    ok: bool
    retry: bool  # worth trying again later
    detail: str


class Notifier(Protocol):
    """What the alert monitor tells about transitions; the dispatcher and the fake implement it."""

    def notify(self, alert_id: int, transition: Transition) -> None: ...


@dataclass
class RecordingNotifier:
    """The fake: keeps every notification in ``sent``."""

    sent: list[tuple[int, Transition]] = field(default_factory=list)

    def notify(self, alert_id: int, transition: Transition) -> None:
        self.sent.append((alert_id, transition))


# Pure builders ---------------------------------------------------------------------------------
def build_payload(alert_id: int, t: Transition) -> dict[str, Any]:
    """The webhook body: Slack's ``text`` and ``attachments``, and the alert itself."""
    title = f"[{t.state.upper()}] {t.rule} on {t.service}"
    return {
        "text": f"{title}: {t.message}",
        "attachments": [
            {
                "color": COLORS[t.state],
                "title": title,
                "text": t.message,
                "fields": [
                    {"title": "rule", "value": t.rule, "short": True},
                    {"title": "service", "value": t.service, "short": True},
                    {"title": "value", "value": "no data" if t.value is None else f"{t.value:g}", "short": True},
                    {"title": "threshold", "value": f"{t.threshold:g}", "short": True},
                ],
                "ts": int(t.at),
            }
        ],
        "alert": {
            "id": alert_id,
            "rule": t.rule,
            "service": t.service,
            "entity": t.entity,
            "state": t.state,
            "value": t.value,
            "threshold": t.threshold,
            "started_at": t.started_at,
            "at": t.at,
            "message": t.message,
        },
    }


def encode_body(payload: Mapping[str, Any]) -> bytes:
    """The exact bytes that are signed and sent."""
    return json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """``sha256=<hex>``: HMAC-SHA256 with ``secret`` over ``<timestamp>.<body>``."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def build_headers(secret: str, body: bytes, now: float, delivery: str) -> dict[str, str]:
    """The headers of one attempt, signed at ``now``."""
    timestamp = str(int(now))
    return {
        "Content-Type": "application/json",
        "User-Agent": "slipstream-alerts",
        TIMESTAMP_HEADER: timestamp,
        SIGNATURE_HEADER: sign(secret, timestamp, body),
        DELIVERY_HEADER: delivery,
    }


def verify(secret: str, headers: Mapping[str, str], body: bytes, now: float, tolerance_s: float = 300) -> bool:
    """True when ``body`` was signed with ``secret`` at a timestamp within ``tolerance_s`` of ``now``."""
    lowered = {k.lower(): v for k, v in headers.items()}
    timestamp = lowered.get(TIMESTAMP_HEADER.lower(), "")
    signature = lowered.get(SIGNATURE_HEADER.lower(), "")
    if not timestamp.isdigit() or abs(now - int(timestamp)) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, timestamp, body), signature)


def build_email(alert_id: int, t: Transition, config: SmtpConfig) -> EmailMessage:
    """The alert mail: the state and rule in the subject, the message and figures in the body."""
    msg = EmailMessage()
    msg["Subject"] = f"[slipstream {t.state.upper()}] {t.rule} on {t.service}"
    msg["From"] = config.sender
    msg["To"] = ", ".join(config.recipients)
    msg["X-Slipstream-Delivery"] = f"{alert_id}-{t.state}"
    started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(t.started_at))
    lines = [
        t.message,
        "",
        f"rule:      {t.rule}",
        f"service:   {t.service}",
        f"entity:    {t.entity}",
        f"state:     {t.state}",
        f"value:     {'no data' if t.value is None else f'{t.value:g}'}",
        f"threshold: {t.threshold:g}",
        f"fired at:  {started}",
        "",
        "Run 'slipstream alerts' to see every active alert.",
    ]
    msg.set_content("\n".join(lines) + "\n")
    return msg


def backoff_delay(attempt: int, base_s: float, max_s: float) -> float:
    """The wait before retry number ``attempt`` (1, 2, ...): ``base_s`` doubling, capped at ``max_s``."""
    return float(min(max_s, base_s * 2 ** (attempt - 1)))


# Effectful transports --------------------------------------------------------------------------
def post_webhook(config: WebhookConfig, body: bytes, headers: Mapping[str, str]) -> Attempt:
    """POST one signed body; retry-worthy on network errors, 408, 429 and 5xx."""
    import httpx  # only once a webhook is sent: the daemon's RSS without it is ~10 MB less (see drains.py)

    try:
        response = httpx.post(config.url, content=body, headers=dict(headers), timeout=config.timeout_s)
    except httpx.HTTPError as exc:
        return Attempt(False, True, f"{type(exc).__name__}: {exc}")
    if 200 <= response.status_code < 300:
        return Attempt(True, False, f"HTTP {response.status_code}")
    retry = response.status_code in (408, 429) or response.status_code >= 500
    return Attempt(False, retry, f"HTTP {response.status_code}")


def send_email(config: SmtpConfig, message: EmailMessage) -> Attempt:
    """Send one mail; retry-worthy on connection errors and 4xx SMTP answers."""
    try:
        with smtplib.SMTP(config.host, config.port, timeout=config.timeout_s) as smtp:
            if config.starttls:
                smtp.starttls()
            if config.username:
                smtp.login(config.username, config.password or "")
            smtp.send_message(message)
    except smtplib.SMTPResponseException as exc:
        return Attempt(False, 400 <= exc.smtp_code < 500, f"SMTP {exc.smtp_code}")
    except (smtplib.SMTPException, OSError) as exc:
        return Attempt(False, True, f"{type(exc).__name__}: {exc}")
    return Attempt(True, False, "sent")


# The dispatcher --------------------------------------------------------------------------------
@dataclass(order=True)
class _Job:
    due: float
    seq: int
    channel: str = field(compare=False)
    alert_id: int = field(compare=False)
    transition: Transition = field(compare=False)
    attempt: int = field(compare=False, default=1)


class Dispatcher:
    """Delivers notifications on the configured channels in a worker thread (see the docstring)."""

    def __init__(
        self,
        webhook: WebhookConfig | None = None,
        smtp: SmtpConfig | None = None,
        *,
        attempts: int = 6,
        backoff_s: float = 1.0,
        max_backoff_s: float = 60.0,
        max_pending: int = 500,
        on_result: Callable[[int, str, str], None] | None = None,
        post: Callable[[WebhookConfig, bytes, Mapping[str, str]], Attempt] = post_webhook,
        mail: Callable[[SmtpConfig, EmailMessage], Attempt] = send_email,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.webhook = webhook
        self.smtp = smtp
        self.attempts = attempts
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.max_pending = max_pending
        self.on_result = on_result
        self._post = post
        self._mail = mail
        self._clock = clock
        self._jobs: list[_Job] = []
        self._seq = itertools.count()
        self._busy = 0
        self._cond = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self.dropped = 0

    @property
    def channels(self) -> list[str]:
        return [name for name, config in (("webhook", self.webhook), ("email", self.smtp)) if config is not None]

    def notify(self, alert_id: int, transition: Transition) -> None:
        """Queue ``transition`` on every channel (dropped, and logged, when the queue is full)."""
        with self._cond:
            for channel in self.channels:
                if len(self._jobs) >= self.max_pending:
                    self.dropped += 1
                    log.warning("alert queue full: %s notification of alert %s dropped", channel, alert_id)
                    continue
                heapq.heappush(self._jobs, _Job(self._clock(), next(self._seq), channel, alert_id, transition))
            self._cond.notify()

    def start(self) -> None:
        if self._thread is None:
            self._stopping = False
            self._thread = threading.Thread(target=self._run, daemon=True, name="alerts-notify")
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        if self._jobs:
            log.warning("%d alert notifications were still queued at stop and are dropped", len(self._jobs))

    def wait_idle(self, timeout: float) -> bool:
        """Wait until nothing is queued or being sent; False on timeout (tests)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._jobs or self._busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.05))
        return True

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stopping and (not self._jobs or self._jobs[0].due > self._clock()):
                    wait = self._jobs[0].due - self._clock() if self._jobs else None
                    self._cond.wait(None if wait is None else max(0.0, min(wait, 1.0)))
                if self._stopping:
                    return
                job = heapq.heappop(self._jobs)
                self._busy += 1
            try:
                self._attempt(job)
            except Exception:
                log.exception("alert notification failed unexpectedly")
            finally:
                with self._cond:
                    self._busy -= 1
                    self._cond.notify_all()

    def _attempt(self, job: _Job) -> None:
        if job.channel == "webhook" and self.webhook is not None:
            body = encode_body(build_payload(job.alert_id, job.transition))
            delivery = f"{job.alert_id}-{job.transition.state}"
            result = self._post(self.webhook, body, build_headers(self.webhook.secret, body, self._clock(), delivery))
        elif job.channel == "email" and self.smtp is not None:
            result = self._mail(self.smtp, build_email(job.alert_id, job.transition, self.smtp))
        else:
            return
        if result.ok:
            self._done(job, "ok")
        elif result.retry and job.attempt < self.attempts:
            delay = backoff_delay(job.attempt, self.backoff_s, self.max_backoff_s)
            log.info("alert %s via %s failed (%s); retry in %.0f s", job.alert_id, job.channel, result.detail, delay)
            with self._cond:
                job.due, job.attempt, job.seq = self._clock() + delay, job.attempt + 1, next(self._seq)
                heapq.heappush(self._jobs, job)
        else:
            log.warning("alert %s via %s failed for good: %s", job.alert_id, job.channel, result.detail)
            self._done(job, f"failed: {result.detail} (attempt {job.attempt})")

    def _done(self, job: _Job, outcome: str) -> None:
        if self.on_result is not None:
            try:
                self.on_result(job.alert_id, job.channel, outcome)
            except Exception:
                log.exception("recording the outcome of alert %s failed", job.alert_id)

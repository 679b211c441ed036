"""Notifications against real loopback receivers: signed webhooks with retries, and SMTP mail."""

from __future__ import annotations

import email
import json
import time
from collections.abc import Iterator

import pytest

from slipstream.alerts.engine import Transition
from slipstream.alerts.notify import (
    DELIVERY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    Attempt,
    Dispatcher,
    SmtpConfig,
    WebhookConfig,
    backoff_delay,
    build_headers,
    build_payload,
    encode_body,
    sign,
    verify,
)

from .sinks import smtp_sink, webhook_receiver

SECRET = "s3cret-for-tests"
FIRING = Transition(
    "http5xxRate",
    "web",
    "web",
    "firing",
    1000.0,
    1000.0,
    0.213,
    0.05,
    "web: 5xx share of responses 21.3% over 5m (threshold 5.0%)",
)
RESOLVED = Transition("http5xxRate", "web", "web", "resolved", 1600.0, 1000.0, 0.01, 0.05, "web: back to 1.0%")


@pytest.fixture
def results() -> list[tuple[int, str, str]]:
    return []


def dispatcher(results: list[tuple[int, str, str]], **kwargs: object) -> Iterator[Dispatcher]:
    d = Dispatcher(backoff_s=0.02, max_backoff_s=0.1, on_result=lambda *r: results.append(r), **kwargs)  # type: ignore[arg-type]
    d.start()
    try:
        yield d
    finally:
        d.stop()


def test_webhook_delivered_signed_and_slack_shaped(results: list[tuple[int, str, str]]) -> None:
    with webhook_receiver() as receiver:
        for d in dispatcher(results, webhook=WebhookConfig(receiver.url, SECRET)):
            d.notify(7, FIRING)
            d.notify(7, RESOLVED)
            assert d.wait_idle(10)
    assert results == [(7, "webhook", "ok"), (7, "webhook", "ok")]
    first, second = receiver.received
    assert verify(SECRET, first.headers, first.body, time.time())  # what a receiver does
    assert not verify("another secret", first.headers, first.body, time.time())
    assert not verify(SECRET, first.headers, first.body + b" ", time.time())  # tampered body
    payload = json.loads(first.body)
    assert payload["text"].startswith("[FIRING] http5xxRate on web: web: 5xx share")
    assert payload["attachments"][0]["color"] == "#d32f2f"
    assert payload["alert"] == {
        "id": 7,
        "rule": "http5xxRate",
        "service": "web",
        "entity": "web",
        "state": "firing",
        "value": 0.213,
        "threshold": 0.05,
        "started_at": 1000.0,
        "at": 1000.0,
        "message": FIRING.message,
    }
    assert first.headers[DELIVERY_HEADER] == "7-firing" and second.headers[DELIVERY_HEADER] == "7-resolved"
    assert json.loads(second.body)["attachments"][0]["color"] == "#2e7d32"


def test_webhook_retried_with_back_off_until_it_answers(results: list[tuple[int, str, str]]) -> None:
    with webhook_receiver(statuses=[503, 429, 500]) as receiver:
        for d in dispatcher(results, webhook=WebhookConfig(receiver.url, SECRET)):
            d.notify(3, FIRING)
            assert d.wait_idle(10)
    assert results == [(3, "webhook", "ok")]
    assert len(receiver.received) == 4
    assert len({r.headers[DELIVERY_HEADER] for r in receiver.received}) == 1  # one delivery id to dedupe on
    assert all(verify(SECRET, r.headers, r.body, time.time()) for r in receiver.received)


@pytest.mark.parametrize(
    ("statuses", "attempts", "outcome", "tries"),
    [
        ([400], 6, "failed: HTTP 400 (attempt 1)", 1),  # a refusal is final
        ([503] * 10, 3, "failed: HTTP 503 (attempt 3)", 3),  # retries run out
    ],
)
def test_webhook_gives_up(
    statuses: list[int], attempts: int, outcome: str, tries: int, results: list[tuple[int, str, str]]
) -> None:
    with webhook_receiver(statuses=statuses) as receiver:
        for d in dispatcher(results, webhook=WebhookConfig(receiver.url, SECRET), attempts=attempts):
            d.notify(1, FIRING)
            assert d.wait_idle(10)
    assert results == [(1, "webhook", outcome)] and len(receiver.received) == tries


def test_webhook_to_nobody_is_retried_then_fails(results: list[tuple[int, str, str]]) -> None:
    with webhook_receiver() as receiver:
        url = receiver.url  # the port is closed once the receiver is gone
    for d in dispatcher(results, webhook=WebhookConfig(url, SECRET, timeout_s=1), attempts=2):
        d.notify(1, FIRING)
        assert d.wait_idle(10)
    assert results[0][2].startswith("failed: ConnectError")


def test_email_through_an_smtp_server(results: list[tuple[int, str, str]]) -> None:
    with smtp_sink(refuse_first=1) as sink:
        config = SmtpConfig("127.0.0.1", sink.port, "slipstream@host.test", ("ops@example.test", "dev@example.test"))
        for d in dispatcher(results, smtp=config):
            d.notify(9, FIRING)
            assert d.wait_idle(10)
    assert results == [(9, "email", "ok")]  # after one "451 try again later"
    (mail,) = sink.mails
    assert mail.recipients == ["ops@example.test", "dev@example.test"]
    msg = email.message_from_string(mail.data)
    assert msg["Subject"] == "[slipstream FIRING] http5xxRate on web"
    assert msg["X-Slipstream-Delivery"] == "9-firing"
    assert "21.3% over 5m" in msg.get_payload()


def test_both_channels_and_a_dead_one_does_not_hold_back_the_other(results: list[tuple[int, str, str]]) -> None:
    def never(*_: object) -> Attempt:
        return Attempt(False, True, "connection refused")

    with smtp_sink() as sink:
        config = SmtpConfig("127.0.0.1", sink.port, "a@host.test", ("b@host.test",))
        for d in dispatcher(
            results, webhook=WebhookConfig("http://127.0.0.1:9/", SECRET), smtp=config, post=never, attempts=4
        ):
            d.notify(2, FIRING)
            deadline = time.monotonic() + 5
            while not sink.mails and time.monotonic() < deadline:
                time.sleep(0.01)
            assert sink.mails  # mailed while the webhook still waits for its retries
            assert d.wait_idle(10)
    assert sorted(results) == [(2, "email", "ok"), (2, "webhook", "failed: connection refused (attempt 4)")]


def test_the_queue_is_bounded() -> None:
    d = Dispatcher(webhook=WebhookConfig("http://127.0.0.1:9/", SECRET), max_pending=3)  # not started
    for i in range(5):
        d.notify(i, FIRING)
    assert d.dropped == 2


def test_signature_is_hmac_of_timestamp_dot_body() -> None:
    body = encode_body(build_payload(1, FIRING))
    headers = build_headers(SECRET, body, 1_700_000_000.4, "1-firing")
    assert headers[TIMESTAMP_HEADER] == "1700000000"
    # computed independently: hmac.new(b"s3cret-for-tests", b"1700000000." + body, sha256)
    import hashlib
    import hmac

    expected = hmac.new(SECRET.encode(), b"1700000000." + body, hashlib.sha256).hexdigest()
    assert headers[SIGNATURE_HEADER] == f"sha256={expected}" == sign(SECRET, "1700000000", body)
    assert verify(SECRET, headers, body, 1_700_000_100)
    assert not verify(SECRET, headers, body, 1_700_000_400)  # older than 5 minutes: a replay
    assert not verify(SECRET, {}, body, 1_700_000_000)


@pytest.mark.parametrize(("attempt", "delay"), [(1, 1.0), (2, 2.0), (3, 4.0), (7, 60.0)])
def test_backoff(attempt: int, delay: float) -> None:
    assert backoff_delay(attempt, 1.0, 60.0) == delay

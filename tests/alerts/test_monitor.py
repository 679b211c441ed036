"""The monitor end to end in process: a service answering 500 on 20 % of requests raises the 5xx
alert, it resolves when fixed, and the signed webhook reaches a loopback receiver."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from slipstream.alerts.monitor import AlertMonitor
from slipstream.alerts.notify import Dispatcher, RecordingNotifier, WebhookConfig, verify
from slipstream.alerts.rules import parse_overrides
from slipstream.alerts.store import AlertStore
from slipstream.metrics.collect import Collector, Sources
from slipstream.metrics.fake import FakeBackend, render_show_stat
from slipstream.metrics.model import ProxyReading
from slipstream.metrics.store import MetricsStore

from .sinks import webhook_receiver

T0 = 1_700_000_040.0
SECRET = "hook-secret"


class Web:
    """A fake service behind a fake HAProxy: ``error_share`` of each round's requests answer 500."""

    def __init__(self) -> None:
        self.backend = FakeBackend({"2xx": 0, "5xx": 0})
        self.error_share = 0.0

    def proxy(self) -> ProxyReading:
        return ProxyReading(render_show_stat({"be_00": self.backend}), {"be_00": "web"})

    def serve(self, requests: int) -> None:
        bad = round(requests * self.error_share)
        self.backend.hrsp["5xx"] += bad
        self.backend.hrsp["2xx"] += requests - bad


@pytest.fixture
def stores(tmp_path: Path) -> Iterator[tuple[MetricsStore, AlertStore]]:
    metrics, alerts = MetricsStore(tmp_path / "metrics.db"), AlertStore(tmp_path / "alerts.db")
    yield metrics, alerts
    metrics.close()
    alerts.close()


def rounds(collector: Collector, web: Web, n: int, start: float) -> float:
    at = start
    for _ in range(n):
        web.serve(40)
        at += 10
        collector.collect(at)
    return at


def test_5xx_alert_fires_resolves_and_reaches_the_webhook(stores: tuple[MetricsStore, AlertStore]) -> None:
    metrics, alerts = stores
    web = Web()
    collector = Collector(metrics, Sources(proxy=web.proxy))
    with webhook_receiver() as receiver:
        dispatcher = Dispatcher(WebhookConfig(receiver.url, SECRET), backoff_s=0.05)
        monitor = AlertMonitor(alerts, dispatcher)
        dispatcher.on_result = monitor.record_delivery
        collector.add_listener(monitor.check)
        dispatcher.start()
        try:
            at = rounds(collector, web, 3, T0)
            web.error_share = 0.2
            at = rounds(collector, web, 12, at)  # 2 minutes of 20 % errors
            (firing,) = monitor.listing(at)
            assert (firing["rule"], firing["service"], firing["state"]) == ("http5xxRate", "web", "firing")
            assert firing["since"] <= T0 + 30 + 10 + 60 + 10  # breached in the first round, fired after the 1 min hold
            assert firing["value"] >= 0.05
            web.error_share = 0.0
            at = rounds(collector, web, 60, at)
            assert dispatcher.wait_idle(10)
        finally:
            dispatcher.stop()
    (resolved,) = monitor.listing(at)
    assert resolved["state"] == "resolved" and resolved["value"] < 0.05
    assert resolved["deliveries"] == {"webhook": "ok"}
    assert [json.loads(r.body)["alert"]["state"] for r in receiver.received] == ["firing", "resolved"]
    assert all(verify(SECRET, r.headers, r.body, time.time()) for r in receiver.received)


def test_overrides_from_the_blueprint_key(stores: tuple[MetricsStore, AlertStore]) -> None:
    metrics, alerts = stores
    web = Web()
    web.error_share = 0.025
    collector = Collector(metrics, Sources(proxy=web.proxy))
    notifier = RecordingNotifier()
    monitor = AlertMonitor(alerts, notifier)
    collector.add_listener(monitor.check)
    rounds(collector, web, 20, T0)
    assert notifier.sent == []  # 2.5 % is under the default 5 %
    monitor.set_overrides("web", parse_overrides({"http5xxRate": {"threshold": "2%", "window": "1m", "hold": "10s"}}))
    rounds(collector, web, 3, T0 + 200)
    assert [t.state for _, t in notifier.sent] == ["firing"]
    assert notifier.sent[0][1].threshold == 0.02


def test_a_restarted_daemon_neither_refires_nor_forgets(stores: tuple[MetricsStore, AlertStore]) -> None:
    metrics, alerts = stores
    web = Web()
    web.error_share = 0.5
    first = RecordingNotifier()
    collector = Collector(metrics, Sources(proxy=web.proxy))
    collector.add_listener(AlertMonitor(alerts, first).check)
    at = rounds(collector, web, 10, T0)
    assert [t.state for _, t in first.sent] == ["firing"]
    # the daemon restarts: new collector and monitor over the same files
    second = RecordingNotifier()
    again = Collector(metrics, Sources(proxy=web.proxy))
    monitor = AlertMonitor(alerts, second)
    again.add_listener(monitor.check)
    at = rounds(again, web, 10, at)
    assert second.sent == [] and monitor.firing() == [("http5xxRate", "web")]
    web.error_share = 0.0
    rounds(again, web, 60, at)
    assert [t.state for _, t in second.sent] == ["resolved"]
    assert [a["state"] for a in monitor.listing(at + 600)] == ["resolved"]


def test_listing_shape_and_pruning(stores: tuple[MetricsStore, AlertStore]) -> None:
    _, alerts = stores
    from slipstream.alerts.engine import Transition

    t = Transition(
        "diskAlmostFull", "/srv", "machine", "firing", 100.0, 100.0, 0.95, 0.9, "machine (/srv): disk used 95.0%"
    )
    alert_id = alerts.open(t)
    alerts.set_delivery(alert_id, "email", "failed: SMTP 550 (attempt 1)")
    (row,) = alerts.listing(200.0)
    assert set(row.public()) >= {"rule", "service", "state", "since", "value"}
    assert row.public()["deliveries"] == {"email": "failed: SMTP 550 (attempt 1)"}
    alerts.resolve(Transition("diskAlmostFull", "/srv", "machine", "resolved", 300.0, 100.0, 0.5, 0.9, "ok"))
    assert alerts.listing(300.0 + 86400 * 2) == []  # older than the recent window
    assert alerts.prune(300.0 + 86400 * 31) == 1

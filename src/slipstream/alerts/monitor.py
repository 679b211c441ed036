"""The alert monitor: the collector's listener that evaluates rules each round, records alerts and
sends their notifications.

Lifecycle, as the daemon drives it:

1. ``AlertMonitor(store, notifier)``; ``set_overrides(name, overrides)`` for each service, database
   or key value whose blueprint has an ``alerts`` key (again at every apply).
2. ``collector.add_listener(monitor.check)``: each round, ``check(figures)`` evaluates (pure,
   ``engine.evaluate``), writes each transition to the store, then notifies (after the write, so
   the notification carries the alert's id). Alerts firing when the daemon stopped are read back
   at construction: they are neither fired nor notified twice, and resolve normally.
3. ``listing(now)`` is what ``slipstream alerts --json`` prints; ``firing()`` feeds Prometheus.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from typing import Any

from slipstream.alerts.engine import Key, Track, Transition, evaluate, measure
from slipstream.alerts.notify import Notifier
from slipstream.alerts.rules import DEFAULT_RULES, Override, Rule, rules_for
from slipstream.alerts.store import AlertStore
from slipstream.metrics.model import Figures

log = logging.getLogger("slipstream.alerts")
PRUNE_EVERY_S = 3600.0


class AlertMonitor:
    """Holds the tracks between rounds; thread-safe for ``check`` vs. the API's reads."""

    def __init__(
        self, store: AlertStore, notifier: Notifier | None = None, *, defaults: Mapping[str, Rule] = DEFAULT_RULES
    ) -> None:
        self.store = store
        self.notifier = notifier
        self.defaults = dict(defaults)
        self._overrides: dict[str, dict[str, Override]] = {}
        self._rules: dict[str, dict[str, Rule]] = {}
        self._lock = threading.Lock()
        self._tracks: dict[Key, Track] = {}
        self._last_prune = 0.0
        for alert in store.firing():  # resume: what was firing stays firing, without a new notification
            self._tracks[(alert.rule, alert.entity)] = Track(
                alert.rule, alert.entity, alert.service, "firing", alert.started_at, alert.started_at, alert.value
            )

    def set_overrides(self, name: str, overrides: Mapping[str, Override]) -> None:
        """Use ``overrides`` (from ``rules.parse_overrides``) for the alerts of ``name`` from now on."""
        with self._lock:
            self._overrides[name] = dict(overrides)
            self._rules.pop(name, None)

    def rules_of(self, name: str) -> dict[str, Rule]:
        """The effective rules of a service, database or key value."""
        rules = self._rules.get(name)
        if rules is None:
            rules = self._rules[name] = rules_for(self._overrides.get(name), self.defaults)
        return rules

    def check(self, figures: Figures) -> list[Transition]:
        """One round: evaluate, record and notify; the transitions."""
        with self._lock:
            self._tracks, transitions = evaluate(
                self.rules_of, self._tracks, measure(figures), figures.at, failed_sources=figures.errors
            )
        for t in transitions:
            try:
                alert_id = self.store.open(t) if t.state == "firing" else self.store.resolve(t)
            except Exception:
                log.exception("alert %s on %s could not be recorded", t.rule, t.service)
                continue
            log.warning("alert %s: %s", t.state, t.message)
            if alert_id is not None and self.notifier is not None:
                self.notifier.notify(alert_id, t)
        if figures.at - self._last_prune >= PRUNE_EVERY_S:
            self._last_prune = figures.at
            try:
                self.store.prune(figures.at)
            except Exception:
                log.exception("old alerts could not be pruned")
        return transitions

    def firing(self) -> list[tuple[str, str]]:
        """``(rule, service)`` of every firing alert (for Prometheus)."""
        with self._lock:
            return sorted((t.rule, t.service) for t in self._tracks.values() if t.status in ("firing", "resolving"))

    def listing(self, now: float | None = None, recent_s: float = 86400) -> list[dict[str, Any]]:
        """Active, then recently resolved alerts, as ``slipstream alerts --json`` prints them."""
        return [a.public() for a in self.store.listing(time.time() if now is None else now, recent_s)]

    def record_delivery(self, alert_id: int, channel: str, outcome: str) -> None:
        """The dispatcher's ``on_result``: keep the outcome beside the alert."""
        self.store.set_delivery(alert_id, channel, outcome)

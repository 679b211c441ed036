"""Alert evaluation, pure: a round's figures and the previous tracks in, new tracks and the
transitions (firing / resolved) out.

1. ``measure(figures)`` turns one round into :class:`Measurement` s: per rule and entity, a
   numerator and a denominator (a ratio rule sums both over its window; other rules read the
   numerator).
2. ``evaluate(...)`` appends each measurement to its :class:`Track`'s window, computes the value
   and steps the track's state machine::

       ok --breach--> pending --breach for hold--> FIRING --clear--> resolving --clear for hold--> ok
                        |clear -> ok (never fired)          ^--breach--'  (no second notification)

   With a hold of 0 the middle states are skipped. A rule whose source failed this round leaves
   its tracks untouched (a dead PostgreSQL connection does not resolve a WAL alert); an entity no
   longer measured counts as clear, so its alert resolves after the hold and the track goes away.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from slipstream.alerts.rules import Rule, show_seconds
from slipstream.metrics.model import Figures

Status = Literal["ok", "pending", "firing", "resolving"]
MACHINE = "machine"  # the service named by machine-wide alerts (disks)
CLUSTER = "postgres"  # the service named by the database cluster's alerts (WAL archiving)


@dataclass(frozen=True)
class Measurement:
    """One rule's reading of one entity in one round."""

    rule: str
    entity: str  # what is measured: "web", "web-d3-1", "main", "/var/lib/slipstream"
    service: str  # whose alert it is (a service, database or key value name; MACHINE; CLUSTER)
    num: float
    den: float = 1.0


@dataclass(frozen=True)
class Track:
    """A rule's state for one entity: its window of samples and where it is in the state machine."""

    rule: str
    entity: str
    service: str
    status: Status = "ok"
    since: float = 0.0  # when the current status began
    fired_at: float | None = None
    value: float | None = None
    samples: tuple[tuple[float, float, float], ...] = ()  # (at, num, den) within the window


@dataclass(frozen=True)
class Transition:
    """A change to tell people about."""

    rule: str
    entity: str
    service: str
    state: Literal["firing", "resolved"]
    at: float
    started_at: float  # when it fired
    value: float | None
    threshold: float
    message: str


Key = tuple[str, str]  # (rule, entity)


def measure(figures: Figures) -> list[Measurement]:
    """Every rule's measurements in one round of figures."""
    out: list[Measurement] = []
    at = figures.at
    for s, h in figures.http.items():
        out.append(Measurement("http5xxRate", s, s, float(h.status.get("5xx", 0)), float(h.requests)))
    for s, lat in figures.latency.items():
        out.append(Measurement("latencyP95", s, s, lat.p95_ms * lat.count, float(lat.count)))
    for i in figures.instances.values():
        if i.memory_limit_mb and i.rss_mb is not None:
            out.append(Measurement("memoryNearCap", i.instance_id, i.service, i.rss_mb / i.memory_limit_mb))
        out.append(Measurement("restartLoop", i.instance_id, i.service, float(i.restarts)))
    for d in figures.deploys.values():
        out.append(Measurement("deployFailed", d.service, d.service, float(d.failed)))
    for c in figures.crons.values():
        run = c.last
        if run is None:
            continue
        if run.finished_at is not None:
            out.append(Measurement("cronFailed", c.service, c.service, float(run.status != "succeeded")))
        if c.interval_s:
            took = (run.finished_at if run.finished_at is not None else at) - run.started_at
            out.append(Measurement("cronOverran", c.service, c.service, max(0.0, took) / c.interval_s))
    for b in figures.backups.values():
        failed = b.last_failed_at is not None and (b.last_ok_at is None or b.last_failed_at > b.last_ok_at)
        out.append(Measurement("backupFailed", b.database, b.database, float(failed)))
        if b.interval_s > 0:
            age = at - (b.last_ok_at if b.last_ok_at is not None else b.created_at)
            out.append(Measurement("backupStale", b.database, b.database, max(0.0, age) / b.interval_s))
    if figures.databases:
        first = next(iter(figures.databases.values()))  # archiving is the cluster's, the same in every row
        out.append(Measurement("walArchivingStuck", CLUSTER, CLUSTER, first.wal_failing_for_s or 0.0))
    for disk in figures.disks.values():
        if disk.total_bytes:
            out.append(Measurement("diskAlmostFull", disk.path, MACHINE, disk.used_bytes / disk.total_bytes))
    return out


def window_value(rule: Rule, samples: Iterable[tuple[float, float, float]]) -> float | None:
    """The rule's value over its window's samples (None: not enough data)."""
    samples = list(samples)
    if not samples:
        return None
    if rule.aggregate == "ratio":
        den = math.fsum(d for _, _, d in samples)
        if den <= 0 or den < rule.min_count:
            return None
        return math.fsum(n for _, n, _ in samples) / den
    if rule.aggregate == "mean":
        return math.fsum(n for _, n, _ in samples) / len(samples)
    if rule.aggregate == "increase":  # a counter that may reset: add up the rises
        return math.fsum(max(0.0, b[1] - a[1]) for a, b in zip(samples, samples[1:], strict=False))
    return samples[-1][1]


def describe(rule: Rule, track: Track, value: float | None, state: str) -> str:
    """The one-line text of a transition."""
    window = f" over {show_seconds(rule.window_s)}" if rule.window_s and rule.aggregate != "last" else ""
    subject = track.service if track.entity == track.service else f"{track.service} ({track.entity})"
    if state == "firing":
        return f"{subject}: {rule.what} {rule.show(value)}{window} (threshold {rule.show(rule.threshold)})"
    return f"{subject}: {rule.what} back to {rule.show(value)}{window} (threshold {rule.show(rule.threshold)})"


def step(
    rule: Rule, track: Track, sample: tuple[float, float, float] | None, now: float
) -> tuple[Track, Transition | None]:
    """Add ``sample`` (None: not measured this round) and advance ``track`` by one round."""
    keep_from = now - rule.window_s
    samples = [s for s in track.samples if s[0] > keep_from] if rule.window_s > 0 else []
    if sample is not None:
        samples.append(sample)
    value = window_value(rule, samples) if sample is not None or rule.window_s > 0 else None
    breach = rule.enabled and value is not None and value >= rule.threshold
    status, since, fired_at = track.status, track.since, track.fired_at
    transition: Transition | None = None

    def fire() -> Transition:
        return Transition(
            rule.name,
            track.entity,
            track.service,
            "firing",
            now,
            now,
            value,
            rule.threshold,
            describe(rule, track, value, "firing"),
        )

    def resolve() -> Transition:
        return Transition(
            rule.name,
            track.entity,
            track.service,
            "resolved",
            now,
            fired_at if fired_at is not None else now,
            value,
            rule.threshold,
            describe(rule, track, value, "resolved"),
        )

    if status == "ok":
        if breach:
            if rule.hold_s <= 0:
                status, since, fired_at, transition = "firing", now, now, fire()
            else:
                status, since = "pending", now
    elif status == "pending":
        if not breach:
            status, since = "ok", now
        elif now - since >= rule.hold_s:
            status, since, fired_at, transition = "firing", now, now, fire()
    elif status == "firing":
        if not breach:
            if rule.hold_s <= 0 or not rule.enabled:
                transition = resolve()
                status, since, fired_at = "ok", now, None
            else:
                status, since = "resolving", now
    elif status == "resolving":
        if breach:
            status = "firing"
        elif now - since >= rule.hold_s:
            transition = resolve()
            status, since, fired_at = "ok", now, None
    # Track(...) rather than dataclasses.replace: 600 tracks a round with 200 services, and replace
    # was a tenth of the metrics round's CPU.
    new = Track(track.rule, track.entity, track.service, status, since, fired_at, value, tuple(samples))
    return new, transition


def evaluate(
    rules_of: Callable[[str], Mapping[str, Rule]],
    tracks: Mapping[Key, Track],
    measurements: Iterable[Measurement],
    now: float,
    failed_sources: Iterable[str] = (),
) -> tuple[dict[Key, Track], list[Transition]]:
    """One round: the new tracks (ok tracks without samples dropped) and the transitions.

    ``rules_of(service)`` gives the effective rules of a service (defaults with its overrides).
    """
    failed = set(failed_sources)
    by_key: dict[Key, Measurement] = {(m.rule, m.entity): m for m in measurements}
    out: dict[Key, Track] = {}
    transitions: list[Transition] = []
    for key in sorted(set(tracks) | set(by_key)):
        m = by_key.get(key)
        track = tracks.get(key) or Track(key[0], key[1], m.service if m else "")
        rule = rules_of(track.service).get(key[0])
        if rule is None:
            continue
        if rule.source in failed:
            out[key] = track
            continue
        if not rule.enabled and track.status in ("ok", "pending"):
            continue
        sample = None if m is None else (now, m.num, m.den)
        new, transition = step(rule, track, sample, now)
        if transition is not None:
            transitions.append(transition)
        if new.status != "ok" or (new.samples and rule.enabled):
            out[key] = new
    return out, transitions

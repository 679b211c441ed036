"""Alert evaluation: windows, hold times, flapping, resolution, failing sources, measurements."""

from __future__ import annotations

from dataclasses import replace

import pytest

from slipstream.alerts.engine import (
    CLUSTER,
    MACHINE,
    Key,
    Measurement,
    Track,
    Transition,
    evaluate,
    measure,
    window_value,
)
from slipstream.alerts.rules import DEFAULT_RULES, Rule
from slipstream.metrics.model import (
    BackupReading,
    CronReading,
    CronRun,
    DatabaseReading,
    DeployReading,
    DiskReading,
    Figures,
    HttpFigures,
    InstanceFigures,
    LatencyFigures,
)

R5XX = DEFAULT_RULES["http5xxRate"]  # 5 % over 5 min, hold 1 min, at least 20 requests


def run(
    rule: Rule, series: list[tuple[float, float] | None], start: float = 0.0, step_s: float = 10.0
) -> list[tuple[float, str]]:
    """Feed one entity's (num, den) per round (None: not measured) and return (time, state) transitions."""
    tracks: dict[Key, Track] = {}
    out: list[tuple[float, str]] = []
    for i, point in enumerate(series):
        now = start + i * step_s
        ms = [] if point is None else [Measurement(rule.name, "web", "web", point[0], point[1])]
        tracks, transitions = evaluate(lambda _: {rule.name: rule}, tracks, ms, now)
        out += [(t.at, t.state) for t in transitions]
    return out


def test_20_percent_5xx_fires_after_the_hold_and_resolves_after_the_fix() -> None:
    broken = [(2.0, 10.0)] * 30  # 20 % of 10 requests per 10 s, for 5 min
    fixed = [(0.0, 10.0)] * 60
    transitions = run(R5XX, broken + fixed)
    # breaching from the 2nd round (20 requests in the window); fires 60 s later
    assert transitions[0] == (70.0, "firing")
    # after the fix the 5-min window's share drops under 5 % once 3/4 of it is clean, then 60 s hold
    assert transitions[1][1] == "resolved"
    assert 300 + 225 + 60 - 10 <= transitions[1][0] <= 300 + 225 + 60 + 10
    assert len(transitions) == 2


def test_too_few_requests_never_fire() -> None:
    assert run(R5XX, [(1.0, 1.0)] * 40, step_s=60) == []  # every request fails, but 5 per window < 20
    assert run(R5XX, [(1.0, 1.0)] * 40)[0][1] == "firing"  # 30 per window: enough


@pytest.mark.parametrize(
    ("case", "pattern", "fires"),
    [
        ("flapping every round never holds a minute", [True, False] * 30, False),
        ("flapping every 30 s never holds a minute", ([True] * 3 + [False] * 3) * 10, False),
        ("two minutes straight", [True] * 13, True),
        ("59 s is not a minute", [True] * 6 + [False] * 20, False),
    ],
)
def test_hold_time_prevents_flapping(case: str, pattern: list[bool], fires: bool) -> None:
    rule = replace(R5XX, window_s=0, aggregate="last", min_count=0)  # the raw value, so only the hold decides
    transitions = run(rule, [(0.5 if bad else 0.0, 1.0) for bad in pattern])
    assert any(state == "firing" for _, state in transitions) == fires, case


def test_a_brief_dip_while_firing_neither_resolves_nor_notifies_again() -> None:
    rule = replace(R5XX, window_s=0, aggregate="last", min_count=0)
    values = [0.5] * 8 + [0.0] * 3 + [0.5] * 8 + [0.0] * 8
    assert [s for _, s in run(rule, [(v, 1.0) for v in values])] == ["firing", "resolved"]


def test_hold_zero_fires_and_resolves_at_once() -> None:
    rule = DEFAULT_RULES["deployFailed"]
    assert run(rule, [(0, 1), (1, 1), (1, 1), (0, 1)]) == [(10.0, "firing"), (30.0, "resolved")]  # type: ignore[list-item]


def test_an_entity_that_goes_away_resolves_and_is_forgotten() -> None:
    rule = replace(R5XX, window_s=30, hold_s=20, min_count=0)
    tracks: dict[Key, Track] = {}
    bad = [Measurement(rule.name, "web", "web", 5.0, 10.0)]
    seen: list[Transition] = []
    for i in range(5):
        tracks, ts = evaluate(lambda _: {rule.name: rule}, tracks, bad, i * 10.0)
        seen += ts
    for i in range(5, 15):
        tracks, ts = evaluate(lambda _: {rule.name: rule}, tracks, [], i * 10.0)
        seen += ts
    assert [t.state for t in seen] == ["firing", "resolved"]
    assert tracks == {}


def test_a_failing_source_freezes_its_rules() -> None:
    rule = DEFAULT_RULES["walArchivingStuck"]
    tracks, fired = evaluate(lambda _: {rule.name: rule}, {}, [Measurement(rule.name, CLUSTER, CLUSTER, 900.0)], 0.0)
    assert [t.state for t in fired] == ["firing"]
    tracks, none = evaluate(lambda _: {rule.name: rule}, tracks, [], 10.0, failed_sources={"databases": "down"})
    assert none == [] and tracks[(rule.name, CLUSTER)].status == "firing"
    tracks, resolved = evaluate(
        lambda _: {rule.name: rule}, tracks, [Measurement(rule.name, CLUSTER, CLUSTER, 0.0)], 20.0
    )
    assert [t.state for t in resolved] == ["resolved"]


def test_disabling_a_firing_rule_resolves_it() -> None:
    rule = DEFAULT_RULES["cronFailed"]
    tracks, _ = evaluate(lambda _: {rule.name: rule}, {}, [Measurement(rule.name, "job", "job", 1.0)], 0.0)
    off = replace(rule, enabled=False)
    tracks, ts = evaluate(lambda _: {rule.name: off}, tracks, [Measurement(rule.name, "job", "job", 1.0)], 10.0)
    assert [t.state for t in ts] == ["resolved"] and tracks == {}


def test_overrides_are_per_service() -> None:
    strict = replace(R5XX, threshold=0.01, hold_s=0, min_count=0)
    rules = {"api": {R5XX.name: strict}, "web": {R5XX.name: R5XX}}
    ms = [Measurement(R5XX.name, s, s, 2.0, 100.0) for s in ("api", "web")]  # 2 %
    _, ts = evaluate(lambda s: rules[s], {}, ms, 0.0)
    assert [(t.service, t.state) for t in ts] == [("api", "firing")]


@pytest.mark.parametrize(
    ("rule", "samples", "value"),
    [
        (R5XX, [(0, 1, 10), (10, 3, 10)], 0.2),
        (R5XX, [(0, 1, 10)], None),  # under 20 requests
        (
            DEFAULT_RULES["restartLoop"],
            [(0, 5, 1), (10, 6, 1), (20, 0, 1), (30, 2, 1)],
            3.0,
        ),  # reset counted as rises only
        (DEFAULT_RULES["memoryNearCap"], [(0, 0.8, 1), (10, 1.0, 1)], 0.9),
        (DEFAULT_RULES["cronOverran"], [(0, 0.5, 1), (10, 1.5, 1)], 1.5),
        (R5XX, [], None),
    ],
)
def test_window_values(rule: Rule, samples: list[tuple[float, float, float]], value: float | None) -> None:
    assert window_value(rule, samples) == (pytest.approx(value) if value is not None else None)


def test_restart_loop_fires_on_three_restarts_in_ten_minutes() -> None:
    rule = DEFAULT_RULES["restartLoop"]
    counts = [0, 0, 1, 1, 2, 2, 3, 3, 3]
    assert [s for _, s in run(rule, [(float(c), 1.0) for c in counts], step_s=60)] == ["firing"]
    slow = [float(i // 5) for i in range(40)]  # one restart every 5 minutes: never 3 in 10
    assert run(rule, [(c, 1.0) for c in slow], step_s=60) == []


def test_measurements_of_a_round() -> None:
    at = 100_000.0
    figures = Figures(
        at=at,
        http={"web": HttpFigures("web", 10, 100, {"2xx": 80, "5xx": 20}, 0, None, None)},
        latency={"web": LatencyFigures("web", 99_980, 50, 1, 10.0, 900.0, 1200.0, 1500.0)},
        instances={
            "web-d1-1": InstanceFigures("web-d1-1", "web", "running", 5.0, 460.0, 512.0, 2),
            "work-d2-1": InstanceFigures("work-d2-1", "work", "running", 5.0, 460.0, None, 0),
        },
        deploys={"web": DeployReading("web", 3, "build_failed", True, at)},
        crons={
            "job": CronReading("job", CronRun(1, "running", None, at - 7200, None), 3600),
            "old": CronReading("old", CronRun(2, "timed_out", 124, at - 100, at - 50), None),
        },
        backups={"main": BackupReading("main", at - 2 * 86400, at - 10, 86400, at - 10 * 86400)},
        databases={"main": DatabaseReading("main", 1, 1, 0, 700.0, 650.0)},
        disks={"/srv": DiskReading("/srv", 100, 95)},
    )
    got = {(m.rule, m.entity): (m.service, m.num, m.den) for m in measure(figures)}
    assert got == {
        ("http5xxRate", "web"): ("web", 20.0, 100.0),
        ("latencyP95", "web"): ("web", 900.0 * 50, 50.0),
        ("memoryNearCap", "web-d1-1"): ("web", 460 / 512, 1.0),
        ("restartLoop", "web-d1-1"): ("web", 2.0, 1.0),
        ("restartLoop", "work-d2-1"): ("work", 0.0, 1.0),
        ("deployFailed", "web"): ("web", 1.0, 1.0),
        ("cronOverran", "job"): ("job", 2.0, 1.0),
        ("cronFailed", "old"): ("old", 1.0, 1.0),
        ("backupFailed", "main"): ("main", 1.0, 1.0),
        ("backupStale", "main"): ("main", 2.0, 1.0),
        ("walArchivingStuck", CLUSTER): (CLUSTER, 650.0, 1.0),
        ("diskAlmostFull", "/srv"): (MACHINE, 0.95, 1.0),
    }


def test_transition_messages_read_well() -> None:
    rule = replace(R5XX, hold_s=0, min_count=0)
    _, ts = evaluate(lambda _: {rule.name: rule}, {}, [Measurement(rule.name, "web", "web", 21.0, 100.0)], 0.0)
    assert ts[0].message == "web: 5xx share of responses 21.0% over 5m (threshold 5.0%)"
    mem = replace(DEFAULT_RULES["memoryNearCap"], hold_s=0)
    _, ts = evaluate(lambda _: {mem.name: mem}, {}, [Measurement(mem.name, "web-d1-1", "web", 0.95)], 0.0)
    assert ts[0].message == "web (web-d1-1): memory of its cap 95.0% over 1m (threshold 90.0%)"

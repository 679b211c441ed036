"""The ``alerts`` blueprint extension: accepted shapes and every refusal, as tables."""

from __future__ import annotations

import pytest

from slipstream.alerts.rules import DEFAULT_RULES, Override, parse_overrides, parse_threshold, rules_for, show_seconds
from slipstream.errors import InvalidInput


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ({"http5xxRate": {"threshold": 0.02}}, {"http5xxRate": Override(threshold=0.02)}),
        (
            {"http5xxRate": {"threshold": "2%", "window": "10m", "hold": "30s"}},
            {"http5xxRate": Override(0.02, 600, 30)},
        ),
        ({"latencyP95": {"threshold": 800}}, {"latencyP95": Override(threshold=800)}),
        ({"latencyP95": {"threshold": "1.5s"}}, {"latencyP95": Override(threshold=1500)}),
        ({"latencyP95": {"threshold": "250ms"}}, {"latencyP95": Override(threshold=250)}),
        ({"restartLoop": {"enabled": False}}, {"restartLoop": Override(enabled=False)}),
        ({"restartLoop": False}, {"restartLoop": Override(enabled=False)}),
        ({"deployFailed": {"enabled": False}}, {"deployFailed": Override(enabled=False)}),
        ({"walArchivingStuck": {"threshold": "10m"}}, {"walArchivingStuck": Override(threshold=600)}),
        ({"backupStale": {"threshold": 2}}, {"backupStale": Override(threshold=2)}),
        ({"diskAlmostFull": {"threshold": "95%", "hold": 60}}, {"diskAlmostFull": Override(threshold=0.95, hold_s=60)}),
        ({}, {}),
    ],
)
def test_accepted(given: dict[str, object], expected: dict[str, Override]) -> None:
    assert parse_overrides(given) == expected


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"http5xxrate": {}}, "alerts: unknown rule 'http5xxrate' (did you mean 'http5xxRate'?)"),
        ({"nope": {}}, "alerts: unknown rule 'nope' (known rules: http5xxRate,"),
        ({"http5xxRate": {"threshold": 5}}, "alerts.http5xxRate.threshold: must be above 0 and at most 1 (or 100%)"),
        ({"http5xxRate": {"threshold": "lots"}}, "alerts.http5xxRate.threshold: is not a share: write 0.05 or 5%"),
        (
            {"http5xxRate": {"treshold": 0.1}},
            "alerts.http5xxRate.treshold: is not a setting (did you mean 'threshold'?)",
        ),
        ({"http5xxRate": {"window": "5 minutes"}}, "alerts.http5xxRate.window: window '5 minutes' is not a duration"),
        ({"http5xxRate": {"window": "2d"}}, "alerts.http5xxRate.window: must be at most 24h"),
        ({"http5xxRate": {"enabled": "yes"}}, "alerts.http5xxRate.enabled: must be true or false"),
        (
            {"http5xxRate": 0.05},
            "alerts.http5xxRate: must be a mapping (threshold, window, hold, enabled) or true/false",
        ),
        ({"latencyP95": {"threshold": -5}}, "alerts.latencyP95.threshold: must be above 0"),
        (
            {"deployFailed": {"threshold": 1}},
            "alerts.deployFailed.threshold: cannot be set: deployFailed fires on a fact",
        ),
        ({"diskAlmostFull": {"window": "5m"}}, "alerts.diskAlmostFull.window: does not apply"),
        ({"restartLoop": {"threshold": True}}, "alerts.restartLoop.threshold: is not a number"),
    ],
)
def test_refused_with_path_and_reason(given: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidInput) as err:
        parse_overrides(given)
    assert message in err.value.message


def test_every_problem_is_listed_at_once() -> None:
    with pytest.raises(InvalidInput) as err:
        parse_overrides({"nope": {}, "http5xxRate": {"threshold": 7, "hold": "x"}}, where="services[0] (api).alerts")
    assert err.value.message.count(";") == 2
    assert "services[0] (api).alerts.http5xxRate.hold" in err.value.message


def test_not_a_mapping() -> None:
    with pytest.raises(InvalidInput, match="must be a mapping"):
        parse_overrides(["http5xxRate"])


def test_overrides_apply_to_one_resource_only() -> None:
    mine = rules_for({"http5xxRate": Override(threshold=0.01, hold_s=0)})
    assert (mine["http5xxRate"].threshold, mine["http5xxRate"].hold_s, mine["http5xxRate"].window_s) == (0.01, 0, 300)
    assert rules_for(None)["http5xxRate"] == DEFAULT_RULES["http5xxRate"]


@pytest.mark.parametrize(
    ("kind", "value", "expected"),
    [
        ("share", "5%", 0.05),
        ("share", 1, 1.0),
        ("ms", "2s", 2000),
        ("ms", "900", 900),
        ("seconds", "5m", 300),
        ("count", 3, 3),
    ],
)
def test_thresholds(kind: str, value: object, expected: float) -> None:
    assert parse_threshold(kind, value) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(("seconds", "text"), [(5, "5s"), (90, "1m30s"), (3600, "1h"), (93784, "1d2h")])
def test_show_seconds(seconds: float, text: str) -> None:
    assert show_seconds(seconds) == text


def test_defaults_cover_the_issue() -> None:
    assert set(DEFAULT_RULES) == {
        "http5xxRate",
        "latencyP95",
        "memoryNearCap",
        "restartLoop",
        "deployFailed",
        "cronFailed",
        "cronOverran",
        "backupFailed",
        "backupStale",
        "diskAlmostFull",
        "walArchivingStuck",
    }

"""Cron schedules: five fields, standard syntax, one precise reason when invalid."""

from __future__ import annotations

import pytest

from slipstream.blueprint.cron import parse_cron


@pytest.mark.parametrize(
    "expr",
    [
        "*/15 * * * *",
        "0 12 * * *",
        "0 0 1 1 *",
        "5,35 9-17 * * MON-FRI",
        "0 3 ? * sun",
        "0 0 1-31/2 * *",
        "@daily",
        "@HOURLY",
        "59 23 31 DEC 7",
        "0-59/5 * * * *",
    ],
)
def test_valid(expr: str) -> None:
    assert parse_cron(expr) is None


@pytest.mark.parametrize(
    ("expr", "reason"),
    [
        ("* * * *", "has 4 fields"),
        ("0 0 * * * *", "has 6 fields"),
        ("", "has 0 fields"),
        ("60 * * * *", "minute 60 is out of range 0-59"),
        ("0 0 0 * *", "day of month 0 is out of range 1-31"),
        ("0 0 * 13 *", "month 13 is out of range 1-12"),
        ("0 0 * * 8", "day of week 8 is out of range 0-7"),
        ("*/0 * * * *", "minute step '/0' must be a number from 1 to 60"),
        ("5-1 * * * *", "minute range '5-1' runs backwards"),
        ("? * * * *", "'?' is only allowed in the day fields"),
        ("0 0 * FOO *", "'FOO' is not a valid month"),
        ("1,,2 * * * *", "empty list item"),
        ("@every 5m", "not a known shorthand"),
        ("a b c d e", "'a' is not a valid minute"),
    ],
)
def test_invalid(expr: str, reason: str) -> None:
    got = parse_cron(expr)
    assert got is not None and reason in got, got

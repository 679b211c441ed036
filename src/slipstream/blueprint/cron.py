"""Check a cron ``schedule`` the way Render reads it: five fields, UTC, standard syntax.

``parse_cron`` returns None for a valid expression and a one-line reason otherwise, so the caller
can attach it to the right line. Names (``MON``, ``JAN``), lists, ranges, steps, ``?`` in the
day fields and the ``@daily``-style shorthands are accepted.
"""

from __future__ import annotations

import re

_FIELDS: tuple[tuple[str, int, int, dict[str, int]], ...] = (
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day of month", 1, 31, {}),
    (
        "month",
        1,
        12,
        {
            n: i + 1
            for i, n in enumerate(["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"])
        },
    ),
    ("day of week", 0, 7, {n: i for i, n in enumerate(["sun", "mon", "tue", "wed", "thu", "fri", "sat"])}),
)
SHORTHANDS = {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}
_ATOM = re.compile(r"[0-9]{1,2}|[A-Za-z]{3}")


def parse_cron(expr: str) -> str | None:
    """Return None when ``expr`` is a valid 5-field cron schedule, else why it is not."""
    text = expr.strip()
    if text.startswith("@"):
        if text.lower() in SHORTHANDS:
            return None
        return f"'{text[:40]}' is not a known shorthand (use one of {', '.join(sorted(SHORTHANDS))})"
    parts = text.split()
    if len(parts) != 5:
        return (
            f"has {len(parts)} field{'s' if len(parts) != 1 else ''}; a schedule has 5: "
            "minute hour day-of-month month day-of-week"
        )
    for part, (name, low, high, names) in zip(parts, _FIELDS, strict=True):
        for item in part.split(","):
            problem = _check_item(item, name, low, high, names)
            if problem:
                return problem
    return None


def _check_item(item: str, name: str, low: int, high: int, names: dict[str, int]) -> str | None:
    if item == "":
        return f"{name} field has an empty list item"
    base, _, step = item.partition("/")
    if (step != "" or "/" in item) and (not step.isdigit() or not 1 <= int(step) <= high - low + 1):
        return f"{name} step '/{step[:10]}' must be a number from 1 to {high - low + 1}"
    if base in ("*", "?"):
        if base == "?" and name not in ("day of month", "day of week"):
            return f"'?' is only allowed in the day fields, not in {name}"
        return None
    first, dash, last = base.partition("-")
    start = _value(first, name, low, high, names)
    if isinstance(start, str):
        return start
    if dash:
        end = _value(last, name, low, high, names)
        if isinstance(end, str):
            return end
        if end < start:
            return f"{name} range '{base}' runs backwards"
    return None


def _value(atom: str, name: str, low: int, high: int, names: dict[str, int]) -> int | str:
    if not _ATOM.fullmatch(atom):
        return f"'{atom[:20]}' is not a valid {name}"
    if atom.isdigit():
        value = int(atom)
    elif atom.lower() in names:
        value = names[atom.lower()]
    else:
        return f"'{atom}' is not a valid {name}"
    if not low <= value <= high:
        return f"{name} {value} is out of range {low}-{high}"
    return value

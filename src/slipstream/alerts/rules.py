"""The alert rules: defaults with thresholds, windows and hold times, and per-resource overrides.

A rule *breaches* when its value over the window is at or above its threshold. It fires once it has
breached continuously for ``hold`` and resolves once it has been clear for ``hold`` (see
``engine.py``), so a value hovering around the threshold neither fires nor flaps.

Overrides come from the blueprint extension key ``alerts`` on a service, database or key value::

    services:
      - type: web
        name: api
        alerts:
          http5xxRate: {threshold: 2%, window: 10m, hold: 2m}
          latencyP95: {threshold: 800ms}
          restartLoop: {enabled: false}
    databases:
      - name: main
        alerts:
          backupStale: {threshold: 2}     # 2 x the backup interval

``parse_overrides`` checks such a mapping and raises one :class:`InvalidInput` listing every
problem with its path (``alerts.http5xxRate.threshold: ...``).
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

from slipstream.errors import InvalidInput
from slipstream.metrics.parse import parse_duration

Aggregate = Literal["ratio", "mean", "increase", "last"]
# how a threshold is written and shown: a share (0.05 or "5%"), milliseconds, a count, seconds, a factor
ThresholdKind = Literal["share", "ms", "count", "seconds", "factor"]


@dataclass(frozen=True)
class Rule:
    """One rule: what it measures, over which window, and when it fires."""

    name: str
    source: str  # the collector source it needs ("proxy", "instances", ...): skipped while that one fails
    what: str  # e.g. "5xx share of responses"
    aggregate: Aggregate  # how the window's samples combine into the value
    threshold_kind: ThresholdKind
    threshold: float
    window_s: float
    hold_s: float
    min_count: float = 0.0  # ratio rules: fewer requests than this in the window -> no value
    enabled: bool = True

    def show(self, value: float | None) -> str:
        """A value of this rule as a person reads it (``21.3%``, ``812 ms``, ``3``, ``2.1x``)."""
        if value is None:
            return "no data"
        if self.threshold_kind == "share":
            return f"{value * 100:.1f}%"
        if self.threshold_kind == "ms":
            return f"{value:.0f} ms"
        if self.threshold_kind == "seconds":
            return show_seconds(value)
        if self.threshold_kind == "factor":
            return f"{value:.2g}x"
        return f"{value:g}"


def show_seconds(seconds: float) -> str:
    """``90`` -> ``1m30s``; ``7200`` -> ``2h``."""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return "".join(parts[:2])


DEFAULT_RULES: dict[str, Rule] = {
    r.name: r
    for r in (
        Rule("http5xxRate", "proxy", "5xx share of responses", "ratio", "share", 0.05, 300, 60, min_count=20),
        Rule("latencyP95", "latency", "p95 latency", "ratio", "ms", 1000, 300, 120, min_count=20),
        Rule("memoryNearCap", "instances", "memory of its cap", "mean", "share", 0.9, 60, 120),
        Rule("restartLoop", "instances", "restarts", "increase", "count", 3, 600, 0),
        Rule("deployFailed", "deploys", "latest deploy failed", "last", "count", 1, 0, 0),
        Rule("cronFailed", "crons", "latest run failed", "last", "count", 1, 0, 0),
        Rule("cronOverran", "crons", "run time of its schedule interval", "last", "factor", 1.0, 0, 0),
        Rule("backupFailed", "backups", "latest backup failed", "last", "count", 1, 0, 0),
        Rule("backupStale", "backups", "age of the last good backup, in backup intervals", "last", "factor", 1.5, 0, 0),
        Rule("diskAlmostFull", "disks", "disk used", "last", "share", 0.9, 0, 300),
        Rule("walArchivingStuck", "databases", "time WAL archiving has been failing", "last", "seconds", 300, 0, 0),
    )
}
# These measure a fact, not a level: only "enabled" may be overridden.
FACT_RULES = frozenset({"deployFailed", "cronFailed", "backupFailed"})


@dataclass(frozen=True)
class Override:
    """What a resource changes of one rule (None: keep the default)."""

    threshold: float | None = None
    window_s: float | None = None
    hold_s: float | None = None
    enabled: bool | None = None


def apply(rule: Rule, override: Override | None) -> Rule:
    """``rule`` with ``override``'s fields in place."""
    if override is None:
        return rule
    return replace(
        rule,
        threshold=rule.threshold if override.threshold is None else override.threshold,
        window_s=rule.window_s if override.window_s is None else override.window_s,
        hold_s=rule.hold_s if override.hold_s is None else override.hold_s,
        enabled=rule.enabled if override.enabled is None else override.enabled,
    )


def rules_for(
    owner_overrides: Mapping[str, Override] | None, defaults: Mapping[str, Rule] = DEFAULT_RULES
) -> dict[str, Rule]:
    """The effective rules of one resource."""
    overrides = owner_overrides or {}
    return {name: apply(rule, overrides.get(name)) for name, rule in defaults.items()}


_NUMBER = re.compile(r"-?\d+(\.\d+)?")
_PERCENT = re.compile(r"^(\d+(?:\.\d+)?)\s*%$")


def parse_threshold(kind: ThresholdKind, value: object) -> float:
    """A threshold written for ``kind``; ValueError with what to write instead."""
    if isinstance(value, bool):
        raise ValueError("is not a number")
    if kind == "share":
        if isinstance(value, str) and (m := _PERCENT.fullmatch(value.strip())):
            share = float(m.group(1)) / 100
        elif isinstance(value, (int, float)):
            share = float(value)
        else:
            raise ValueError("is not a share: write 0.05 or 5%")
        if not 0 < share <= 1:
            raise ValueError("must be above 0 and at most 1 (or 100%)")
        return share
    if kind in ("ms", "seconds"):
        # a bare number is in the rule's unit (ms for a latency, seconds otherwise); "2s", "500ms" convert
        if isinstance(value, str) and not value.strip().replace(".", "", 1).isdigit():
            result = parse_duration(value, "threshold") * (1000 if kind == "ms" else 1)
        else:
            result = _number(float(value) if isinstance(value, str) else value)
        if result <= 0:
            raise ValueError("must be above 0")
        return result
    number = _number(value)
    if number <= 0:
        raise ValueError("must be above 0")
    return number


def _number(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError("is not a number")
    return float(value)


def parse_overrides(
    data: object, where: str = "alerts", defaults: Mapping[str, Rule] = DEFAULT_RULES
) -> dict[str, Override]:
    """Check the ``alerts`` mapping of one resource; every problem is listed in one InvalidInput."""
    problems: list[str] = []
    out: dict[str, Override] = {}
    if not isinstance(data, Mapping):
        raise InvalidInput(
            f"{where}: must be a mapping of rule names to settings", f"e.g. {where}: {{http5xxRate: {{threshold: 2%}}}}"
        )
    for name, settings in data.items():
        path = f"{where}.{name}"
        rule = defaults.get(str(name))
        if rule is None:
            close = difflib.get_close_matches(str(name), list(defaults), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else f" (known rules: {', '.join(defaults)})"
            problems.append(f"{where}: unknown rule '{name}'{hint}")
            continue
        if isinstance(settings, bool):
            out[rule.name] = Override(enabled=settings)
            continue
        if not isinstance(settings, Mapping):
            problems.append(f"{path}: must be a mapping (threshold, window, hold, enabled) or true/false")
            continue
        fields: dict[str, object] = {}
        for key, value in settings.items():
            try:
                if key == "enabled":
                    if not isinstance(value, bool):
                        raise ValueError("must be true or false")
                    fields["enabled"] = value
                elif name in FACT_RULES:
                    raise ValueError(f"cannot be set: {name} fires on a fact; only 'enabled' applies")
                elif key == "threshold":
                    fields["threshold"] = parse_threshold(rule.threshold_kind, value)
                elif key in ("window", "hold"):
                    if rule.aggregate == "last" and key == "window":
                        raise ValueError(f"does not apply: {name} looks at the latest value only")
                    seconds = parse_duration(value if isinstance(value, str) else _number(value), key)
                    if seconds > 24 * 3600:
                        raise ValueError("must be at most 24h")
                    fields[f"{key}_s"] = seconds
                else:
                    close = difflib.get_close_matches(str(key), ["threshold", "window", "hold", "enabled"], n=1)
                    raise ValueError("is not a setting" + (f" (did you mean '{close[0]}'?)" if close else ""))
            except (ValueError, InvalidInput) as exc:
                reason = exc.message if isinstance(exc, InvalidInput) else str(exc)
                problems.append(f"{path}.{key}: {reason}")
        out[rule.name] = Override(**fields)  # type: ignore[arg-type]
    if problems:
        raise InvalidInput("; ".join(problems), "see the alerts section of docs/blueprint.md")
    return out


def service_overrides(service: str, settings: Mapping[str, Any]) -> dict[str, Override]:
    """A service's alert settings checked against the rules (InvalidInput lists every problem)."""
    return parse_overrides(_numbers(settings), f"services ({service}).alerts")


def _numbers(data: Mapping[str, Any]) -> dict[str, Any]:
    """The blueprint's ``alerts`` settings with numbers back as numbers (YAML text is kept as text
    by the blueprint reader; ``0.05`` must reach the rules as 0.05, ``5%`` as the text)."""
    out: dict[str, Any] = {}
    for rule, settings in data.items():
        if isinstance(settings, Mapping):
            out[rule] = {
                k: (float(v) if isinstance(v, str) and _NUMBER.fullmatch(v) else v)
                for k, v in settings.items()
                if v is not None
            }
        else:
            out[rule] = settings
    return out

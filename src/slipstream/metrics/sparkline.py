"""Sparklines: a series of numbers as one line of block characters (pure)."""

from __future__ import annotations

import math
from collections.abc import Sequence

BARS = "▁▂▃▄▅▆▇█"
GAP = " "


def downsample(values: Sequence[float | None], width: int) -> list[float | None]:
    """At most ``width`` values: the mean of each of ``width`` equal slices (None where a slice has none)."""
    if width < 1:
        raise ValueError("a sparkline needs a width of at least 1")
    if len(values) <= width:
        return list(values)
    out: list[float | None] = []
    for i in range(width):
        lo, hi = i * len(values) // width, (i + 1) * len(values) // width
        present = [v for v in values[lo:hi] if v is not None]
        out.append(math.fsum(present) / len(present) if present else None)
    return out


def render_sparkline(values: Sequence[float | None], width: int = 40) -> str:
    """``values`` scaled between their minimum and maximum onto ``BARS``; None shows as a gap.

    A flat series shows its lowest bar when it is all zeros and its middle bar otherwise, so a
    steady non-zero level does not read as nothing.
    """
    points = downsample(values, width)
    present = [v for v in points if v is not None and math.isfinite(v)]
    if not present:
        return GAP * len(points)
    lo, hi = min(present), max(present)
    out = []
    for v in points:
        if v is None or not math.isfinite(v):
            out.append(GAP)
        elif hi == lo:
            out.append(BARS[0] if hi == 0 else BARS[len(BARS) // 2 - 1])
        else:
            out.append(BARS[min(len(BARS) - 1, int((v - lo) / (hi - lo) * len(BARS)))])
    return "".join(out)

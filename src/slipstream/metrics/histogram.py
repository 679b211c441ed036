"""A latency histogram with logarithmic buckets: bounded memory, exact merges, 2 % relative error.

Why this and not a t-digest: per-request timings arrive per service at any rate, and percentiles
are wanted per 10 s bucket, per minute, and over any window (``--since 1h``). Log-spaced buckets
(bucket *i* holds ``MIN_MS * GAMMA**(i-1) < x <= MIN_MS * GAMMA**i``) give every quantile within
``ALPHA`` relative error of the true sample, whatever the distribution; two histograms merge by
adding counts, so minutes merge into a window exactly (a t-digest's merge is itself approximate
and order dependent). Memory is bounded by the bucket count: ~400 buckets cover 0.1 ms to 1000 s,
and a real service touches a few dozen. Values at or below ``MIN_MS`` (HAProxy's timers are whole
milliseconds, so 0 is common) share bucket 0 and read back as 0.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

ALPHA = 0.02  # relative accuracy of every quantile
GAMMA = (1 + ALPHA) / (1 - ALPHA)
MIN_MS = 0.1
MAX_MS = 1_000_000.0
_LOG_GAMMA = math.log(GAMMA)
MAX_INDEX = math.ceil(math.log(MAX_MS / MIN_MS) / _LOG_GAMMA)


def bucket_of(ms: float) -> int:
    """The bucket index holding a value of ``ms`` milliseconds (0 for <= MIN_MS, capped at MAX_MS)."""
    if not ms > MIN_MS:  # also NaN
        return 0
    return min(MAX_INDEX, max(1, math.ceil(math.log(ms / MIN_MS) / _LOG_GAMMA)))


def bucket_value(index: int) -> float:
    """The value a bucket stands for: the point within ALPHA of both of its bounds (0 for bucket 0)."""
    if index <= 0:
        return 0.0
    upper = MIN_MS * GAMMA**index
    return 2 * upper / (GAMMA + 1)


class Histogram:
    """Counts per log bucket; not thread-safe (the collector guards it)."""

    __slots__ = ("count", "counts", "max_ms", "total_ms")

    def __init__(self, counts: Mapping[int, int] | None = None, *, total_ms: float = 0.0, max_ms: float = 0.0) -> None:
        self.counts: dict[int, int] = dict(counts or {})
        self.count = sum(self.counts.values())
        self.total_ms = total_ms
        self.max_ms = max_ms

    def add(self, ms: float, n: int = 1) -> None:
        """Count ``n`` requests that took ``ms`` milliseconds."""
        index = bucket_of(ms)
        self.counts[index] = self.counts.get(index, 0) + n
        self.count += n
        self.total_ms += ms * n
        self.max_ms = max(self.max_ms, ms)

    def merge(self, other: Histogram) -> None:
        """Add ``other``'s counts to this histogram."""
        for index, n in other.counts.items():
            self.counts[index] = self.counts.get(index, 0) + n
        self.count += other.count
        self.total_ms += other.total_ms
        self.max_ms = max(self.max_ms, other.max_ms)

    def quantile(self, q: float) -> float | None:
        """The value at quantile ``q`` (0..1, nearest rank), or None when empty."""
        return self.quantiles((q,))[0]

    def quantiles(self, qs: tuple[float, ...]) -> tuple[float | None, ...]:
        """The values at each of ``qs`` (nearest rank) in one pass over the buckets."""
        if self.count == 0:
            return tuple(None for _ in qs)
        ranks = sorted((math.floor(min(max(q, 0.0), 1.0) * (self.count - 1)), i) for i, q in enumerate(qs))
        out: list[float | None] = [None] * len(qs)
        seen, k = 0, 0
        for index in sorted(self.counts):
            seen += self.counts[index]
            while k < len(ranks) and seen > ranks[k][0]:
                out[ranks[k][1]] = min(bucket_value(index), self.max_ms) if index else 0.0
                k += 1
            if k == len(ranks):
                break
        return tuple(out)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Histogram) and self.counts == other.counts

    def __repr__(self) -> str:
        return f"Histogram(count={self.count}, buckets={len(self.counts)})"


def merged(histograms: Iterable[Histogram]) -> Histogram:
    """One histogram holding the counts of all of ``histograms``."""
    out = Histogram()
    for h in histograms:
        out.merge(h)
    return out


# Storage: sorted (index delta, count) pairs as unsigned varints, after total and max as text.
def encode(h: Histogram) -> bytes:
    """``h`` as compact bytes (a few bytes per used bucket)."""
    out = bytearray(f"{h.total_ms:.3f} {h.max_ms:.3f};".encode())
    previous = 0
    for index in sorted(h.counts):
        _varint(out, index - previous)
        _varint(out, h.counts[index])
        previous = index
    return bytes(out)


def decode(data: bytes) -> Histogram:
    """The histogram :func:`encode` wrote; ValueError when ``data`` is not one."""
    head, sep, body = data.partition(b";")
    if not sep:
        raise ValueError("not an encoded histogram")
    total_text, _, max_text = head.decode().partition(" ")
    counts: dict[int, int] = {}
    pos, index = 0, 0
    while pos < len(body):
        delta, pos = _read_varint(body, pos)
        n, pos = _read_varint(body, pos)
        index += delta
        counts[index] = n
    return Histogram(counts, total_ms=float(total_text), max_ms=float(max_text))


def _varint(out: bytearray, value: int) -> None:
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        if pos >= len(data):
            raise ValueError("truncated histogram")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7

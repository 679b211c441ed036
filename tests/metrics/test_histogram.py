"""Latency percentiles: accuracy against exact percentiles, merges, storage round trip."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from slipstream.metrics.histogram import ALPHA, MAX_MS, Histogram, bucket_of, bucket_value, decode, encode, merged


def exact(values: list[float], q: float) -> float:
    """The nearest-rank quantile the histogram approximates."""
    ordered = sorted(values)
    return ordered[math.floor(q * (len(ordered) - 1))]


def _draw(kind: str, n: int, rng: random.Random) -> list[float]:
    if kind == "uniform":
        return [rng.uniform(1, 500) for _ in range(n)]
    if kind == "lognormal":  # a typical web latency: most fast, a long tail
        return [rng.lognormvariate(3, 1) for _ in range(n)]
    if kind == "bimodal":  # cache hits and misses
        return [rng.gauss(5, 1) if rng.random() < 0.9 else rng.gauss(800, 50) for _ in range(n)]
    if kind == "integer ms":  # HAProxy's Tt is whole milliseconds, zeros included
        return [float(int(rng.expovariate(1 / 20))) for _ in range(n)]
    return [42.0] * n


@pytest.mark.parametrize("kind", ["uniform", "lognormal", "bimodal", "integer ms", "constant"])
@pytest.mark.parametrize("q", [0.5, 0.95, 0.99])
def test_quantiles_within_relative_error(kind: str, q: float) -> None:
    rng = random.Random(f"{kind}-{q}")
    values = [max(0.0, v) for v in _draw(kind, 20_000, rng)]
    h = Histogram()
    for v in values:
        h.add(v)
    want = exact(values, q)
    got = h.quantile(q)
    assert got is not None
    assert abs(got - want) <= ALPHA * want + 1e-9 or (want <= 0.1 and got == 0.0), (kind, q, want, got)


@given(
    st.lists(st.floats(min_value=0.0, max_value=600_000, allow_nan=False), min_size=1, max_size=300),
    st.sampled_from([0.5, 0.95, 0.99]),
)
def test_any_sample_stays_within_the_error_bound(values: list[float], q: float) -> None:
    h = Histogram()
    for v in values:
        h.add(v)
    want, got = exact(values, q), h.quantile(q)
    assert got is not None
    assert want <= 0.1 and got == 0.0 or abs(got - want) <= ALPHA * want * 1.0001


def test_merge_equals_one_histogram_of_everything() -> None:
    rng = random.Random(1)
    parts = [[rng.lognormvariate(2, 1) for _ in range(500)] for _ in range(6)]  # six 10 s buckets
    minute = merged(_of(p) for p in parts)
    assert minute == _of([v for p in parts for v in p])
    assert minute.count == 3000


def _of(values: list[float]) -> Histogram:
    h = Histogram()
    for v in values:
        h.add(v)
    return h


def test_empty_and_edges() -> None:
    assert Histogram().quantile(0.5) is None
    assert bucket_of(0) == 0 and bucket_of(-3) == 0 and bucket_of(float("nan")) == 0
    assert bucket_of(MAX_MS * 10) == bucket_of(MAX_MS)  # capped: memory stays bounded
    assert bucket_value(0) == 0.0
    h = _of([5.0])
    assert h.quantile(0.0) == h.quantile(1.0) == pytest.approx(5.0, rel=ALPHA)


def test_buckets_stay_few_for_a_real_service() -> None:
    h = _of([random.Random(2).lognormvariate(3, 1) for _ in range(20_000)])
    assert len(h.counts) < 250


def test_encode_round_trip() -> None:
    h = _of([0.0, 1.0, 1.0, 12.5, 900.0, 40_000.0])
    back = decode(encode(h))
    assert back == h and back.count == 6 and back.max_ms == 40_000.0
    assert len(encode(h)) < 40
    with pytest.raises(ValueError):
        decode(b"garbage")

"""What TLS costs a PostgreSQL connect (issue #10), on the daemon's own cluster.

The approach of ``tests/databases/measure_tls_connect.py``: psycopg logins (SCRAM) in turns,
``disable``, ``require``, ``verify-full``, ``disable``, ... so machine load hits the modes alike,
after one untimed warm-up each. Each sample is connect + ``SELECT 1`` + close, as a pool-less app
pays it per request. Only ``verify-full`` is given the cluster's CA (``<home>/postgres/tls/ca.crt``):
libpq treats ``require`` with a root certificate file as ``verify-ca``, and ``require`` here stands
for the URL an app gets (encrypted, no certificate check).

``run_tls_connects`` deploys ``bench-pg`` (its blueprint declares ``benchdb``, so the deploy
starts the cluster and creates the database), reads the connection with the password from the
API and measures.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import psycopg

from bench.daemon_bench import DaemonStand
from bench.extras_repo import PG_DATABASE, PG_SERVICE, ExtrasRepo

MODES = ("disable", "require", "verify-full")
REPORT_KEYS = {"disable": "connect_ms_plain", "require": "connect_ms_tls", "verify-full": "connect_ms_verify_full"}
FIRST_DEPLOY_TIMEOUT_S = 300  # initdb, the cluster's certificates, the database


def connect_kwargs(mode: str, ca_file: Path) -> dict[str, str]:
    """psycopg keyword arguments for ``mode``: the CA only where the mode verifies it."""
    if mode not in MODES:
        raise ValueError(f"unknown sslmode {mode!r} (one of {', '.join(MODES)})")
    return {"sslmode": mode, **({"sslrootcert": str(ca_file)} if mode == "verify-full" else {})}


def measure(url: str, ca_file: Path, n: int, modes: Sequence[str] = MODES) -> dict[str, list[float]]:
    """Milliseconds per connect for each mode, ``n`` samples each, interleaved."""
    samples: dict[str, list[float]] = {mode: [] for mode in modes}
    for mode in modes:  # warm-up (page cache, the first backend of each kind), and a check of the mode
        with psycopg.connect(url, **connect_kwargs(mode, ca_file)) as conn:
            if conn.pgconn.ssl_in_use != (mode != "disable"):
                raise RuntimeError(f"sslmode={mode} connected with TLS {'on' if conn.pgconn.ssl_in_use else 'off'}")
    for _ in range(n):
        for mode in modes:
            started = time.perf_counter()
            with psycopg.connect(url, **connect_kwargs(mode, ca_file)) as conn:
                conn.execute("SELECT 1").fetchone()
            samples[mode].append((time.perf_counter() - started) * 1000)
    return samples


def quantile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0..1) by linear interpolation; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    pos = q * (len(ordered) - 1)
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def summarize(samples: Mapping[str, Sequence[float]]) -> list[dict[str, float | str | int]]:
    """Per mode: samples, median, p90 and the median's difference from ``disable``."""
    base = quantile(samples.get("disable", []), 0.5)
    return [
        {
            "mode": mode,
            "n": len(values),
            "median_ms": quantile(values, 0.5),
            "p90_ms": quantile(values, 0.9),
            "vs_disable_ms": quantile(values, 0.5) - base,
        }
        for mode, values in samples.items()
    ]


def run_tls_connects(stand: DaemonStand, repo: ExtrasRepo, n: int) -> dict[str, list[float]]:
    """Deploy ``bench-pg`` with its database, then measure ``n`` connects per mode."""
    deploy_id = stand.deploy_commit(PG_SERVICE, repo.postgres_yaml, repo.head())
    stand.wait_finished(deploy_id, timeout=FIRST_DEPLOY_TIMEOUT_S)
    conn = stand.api("GET", f"/v1/databases/{PG_DATABASE}/connection?reveal=true")
    if not conn.get("ca_file"):
        raise RuntimeError(f"the daemon's PostgreSQL has no CA file (connection answer: {sorted(conn)})")
    return measure(str(conn["url"]), Path(conn["ca_file"]), n)

"""What TLS costs a connect: N psycopg logins (SCRAM) per sslmode against a throwaway embedded cluster.

Run from the repository root (not collected by pytest; it asserts nothing about timings)::

    PYTHONPATH=src python -m tests.databases.measure_tls_connect [N]

The modes take turns (disable, require, verify-full, disable, ...) so machine load hits them alike.
Each sample is connect + ``SELECT 1`` + close, as a pool-less app pays it per request.
"""

from __future__ import annotations

import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psycopg

from slipstream.databases import Cluster, DatabaseInfo

MODES = ("disable", "require", "verify-full")


def measure(info: DatabaseInfo, ca_file: Path, n: int) -> dict[str, list[float]]:
    """Milliseconds per connect for each mode, ``n`` samples each, interleaved."""
    samples: dict[str, list[float]] = {mode: [] for mode in MODES}
    url = info.connection_string()
    for mode in MODES:  # warm-up: page cache, first fork of each kind
        psycopg.connect(url, sslmode=mode, sslrootcert=str(ca_file)).close()
    for _ in range(n):
        for mode in MODES:
            start = time.perf_counter()
            with psycopg.connect(url, sslmode=mode, sslrootcert=str(ca_file)) as conn:
                conn.execute("SELECT 1").fetchone()
            samples[mode].append((time.perf_counter() - start) * 1000)
    return samples


def report(samples: dict[str, list[float]]) -> str:
    """One line per mode: median, p90 and the median's difference from ``disable``."""
    base = statistics.median(samples["disable"])
    lines = [f"{'sslmode':<12} {'n':>4} {'median ms':>10} {'p90 ms':>8} {'vs disable':>11}"]
    for mode, values in samples.items():
        median = statistics.median(values)
        p90 = statistics.quantiles(values, n=10)[-1]
        lines.append(f"{mode:<12} {len(values):>4} {median:>10.2f} {p90:>8.2f} {median - base:>+10.2f}")
    return "\n".join(lines)


def main(n: int = 50) -> None:
    """Start a cluster in a temp dir, measure, print, stop and clean up."""
    base = Path(tempfile.mkdtemp(prefix="slipstream-tls-measure-"))
    cluster = Cluster(base / "postgres", base / "backups", traverse_root=base)
    try:
        cluster.start()
        info = cluster.ensure_database("measure", password="measure-password")
        assert cluster.ca_file is not None
        print(report(measure(info, cluster.ca_file, n)))
    finally:
        cluster.stop()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 50)

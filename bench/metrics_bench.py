"""Metrics bench: what one collection round costs with 200 services, how big 24 h of 10 s rows get,
and how long ``slipstream metrics SERVICE --since 1h`` takes to query and build.

Standalone (fake sources, virtual clock, a temp SQLite file):

    python -m bench.metrics_bench [--services 200] [--hours 24] [--samples 5] [--json out.json]

Each simulated round moves every fake backend's counters (5 % of responses 5xx), moves every
instance's CPU, and observes ``--samples`` access-log requests per service (lognormal latencies);
databases, key values and cron jobs are read too. Time is virtual: 24 h of rounds run as fast as
the code allows, so the size is the real size of a day, and the round cost is measured on rounds
of the full day (the store's rollups and pruning included).

``make bench`` runs 2 simulated hours (a day takes some 13 minutes on 2 cores) and projects the
day's size from the second hour's growth (:func:`project_store_bytes`): by then every hour grows
the store alike (the previous hour's 10 s rows sealed into chunks, an hour of open 1 min rows and
histograms), and nothing is deleted before 24 h.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from slipstream.metrics.collect import Collector, Sources
from slipstream.metrics.fake import FakeBackend, render_show_stat
from slipstream.metrics.model import (
    CronReading,
    CronRun,
    DatabaseReading,
    DiskReading,
    InstanceReading,
    KeyValueReading,
    ProxyReading,
)
from slipstream.metrics.parse import MB
from slipstream.metrics.report import build_report
from slipstream.metrics.store import MetricsStore

T0 = 1_700_000_040.0


class FakeMachine:
    """``services`` web services with one instance each, plus databases, key values and cron jobs."""

    def __init__(self, services: int, seed: int = 7) -> None:
        self.rng = random.Random(seed)
        self.names = [f"svc{i:03d}" for i in range(services)]
        self.backends = {f"be_{i:03d}": FakeBackend({"2xx": 0, "5xx": 0}, rtime=5, ttime=9) for i in range(services)}
        self.owner = {f"be_{i:03d}": name for i, name in enumerate(self.names)}
        self.cpu = dict.fromkeys(self.names, 0.0)
        self.crons = {f"job{i:02d}": CronReading(f"job{i:02d}", None, 3600) for i in range(max(1, services // 10))}
        self.now = T0

    def advance(self, at: float) -> None:
        self.now = at
        for backend in self.backends.values():
            n = self.rng.randint(0, 100)
            backend.hrsp["5xx"] += n // 20
            backend.hrsp["2xx"] += n - n // 20
        for name in self.names:
            self.cpu[name] += self.rng.uniform(0, 5)
        if int(at) % 3600 == 0:  # every job runs on the hour, for 30 s
            for name in self.crons:
                self.crons[name] = CronReading(name, CronRun(int(at), "succeeded", 0, at - 30, at), 3600)

    def sources(self) -> Sources:
        return Sources(
            proxy=lambda: ProxyReading(render_show_stat(self.backends, servers_per_backend=0), self.owner),
            instances=lambda: [
                InstanceReading(f"{n}-d1-1", n, "running", 1000 + i, 1.0, 0, 512, self.cpu[n], (100 + i % 50) * MB)
                for i, n in enumerate(self.names)
            ],
            databases=lambda: [
                DatabaseReading(f"db{i}", 5, 50 * MB, 0.1, 30.0, None) for i in range(max(1, len(self.names) // 20))
            ],
            keyvalues=lambda: [
                KeyValueReading(f"kv{i}", 2 * MB, 64 * MB, 3) for i in range(max(1, len(self.names) // 20))
            ],
            crons=lambda: list(self.crons.values()),
            disks=lambda: [DiskReading("/srv", 100_000 * MB, 40_000 * MB)],
        )


def timed_sources(sources: Sources, spent: list[float]) -> Sources:
    """``sources`` with each call's time added to ``spent[0]`` (the fakes' own cost, not slipstream's)."""

    def wrap(fn: Any) -> Any:
        if fn is None:
            return None

        def call() -> Any:
            t = time.perf_counter()
            try:
                return fn()
            finally:
                spent[0] += time.perf_counter() - t

        return call

    return Sources(**{name: wrap(getattr(sources, name)) for name in Sources.__dataclass_fields__})


def project_store_bytes(by_hour: list[int], hours: int = 24) -> float | None:
    """The store's bytes after ``hours``, from its size after each simulated hour: the last size
    plus the last hour's growth for every hour still to come (None before two hours, when no hour
    has been sealed yet); the measured size itself once ``hours`` were simulated."""
    if len(by_hour) >= hours:
        return float(by_hour[hours - 1])
    if len(by_hour) < 2:
        return None
    return by_hour[-1] + (hours - len(by_hour)) * (by_hour[-1] - by_hour[-2])


def _mb(x: float | None) -> float | None:
    return None if x is None else round(x / MB, 1)


def run(services: int, hours: float, samples: int, workdir: Path) -> dict[str, Any]:
    machine = FakeMachine(services)
    store = MetricsStore(workdir / "metrics.db")
    spent = [0.0]
    collector = Collector(store, timed_sources(machine.sources(), spent))
    rng = random.Random(3)
    rounds = int(hours * 360)
    round_ms: list[float] = []
    own_ms: list[float] = []
    observe_s = 0.0
    observed = 0
    started = time.perf_counter()
    at = T0
    by_hour: list[int] = []  # store bytes after each simulated hour
    for i in range(rounds):
        at += 10
        machine.advance(at)
        t = time.perf_counter()
        for name in machine.names:
            for _ in range(samples):
                collector.observe_request(name, 200, rng.lognormvariate(3, 0.8), at - rng.uniform(0, 10))
        observe_s += time.perf_counter() - t
        observed += samples * len(machine.names)
        spent[0] = 0.0
        t = time.perf_counter()
        collector.collect(at)
        round_ms.append((time.perf_counter() - t) * 1000)
        own_ms.append(round_ms[-1] - spent[0] * 1000)
        if (i + 1) % 360 == 0:
            by_hour.append(store.size_bytes())
    simulate_s = time.perf_counter() - started

    def timed(since: float) -> tuple[float, int]:
        times = []
        points = 0
        for _ in range(5):
            t = time.perf_counter()
            report = build_report(store.query("svc007", at - since, at))
            times.append((time.perf_counter() - t) * 1000)
            points = sum(len(s["points"]) for s in report["series"])
        return statistics.median(times), points

    q1h, p1h = timed(3600)
    q24h, p24h = timed(min(hours, 24) * 3600 - 60)
    size = store.size_bytes()
    data = store.data_bytes()
    # 14 days of 1 min samples at the sealed chunks' density (a day's minutes stay open rows until it ends)
    minute_samples_per_day = store.count_rows(60) / max(hours, 1 / 60) * 24
    density = store.chunk_density(60)
    overhead = size / max(1, sum(data.values()))  # SQLite pages per byte of data
    projected = (
        overhead * (data["10s"] + data["histograms"] + 14 * minute_samples_per_day * density) if density else None
    )
    result = {
        "services": services,
        "hours": hours,
        "rounds": rounds,
        "samples_per_service_per_round": samples,
        "round_ms_median": round(statistics.median(round_ms), 2),
        "round_ms_p95": round(sorted(round_ms)[int(0.95 * (len(round_ms) - 1))], 2),
        "round_ms_without_fake_sources_median": round(statistics.median(own_ms), 2),
        "round_ms_without_fake_sources_p95": round(sorted(own_ms)[int(0.95 * (len(own_ms) - 1))], 2),
        "round_ms_max": round(max(round_ms), 2),
        "observe_us_per_request": round(observe_s / max(1, observed) * 1e6, 2),
        "store_mb": round(size / MB, 1),
        "store_mb_by_hour": [round(b / MB, 2) for b in by_hour],
        "store_mb_24h_projected": _mb(project_store_bytes(by_hour, 24)),
        "data_mb": {k: round(v / MB, 1) for k, v in data.items()},
        "projected_14d_store_mb": round(projected / MB) if projected and hours >= 24 else None,
        "sealed_bytes_per_sample": {r: round(d, 1) for r, d in ((10, store.chunk_density(10)), (60, density)) if d},
        "rows_10s": store.count_rows(10),
        "rows_1m": store.count_rows(60),
        "query_1h_ms": round(q1h, 1),
        "query_1h_points": p1h,
        "query_24h_ms": round(q24h, 1),
        "query_24h_points": p24h,
        "simulated_in_s": round(simulate_s, 1),
    }
    store.close()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=200)
    parser.add_argument("--hours", type=float, default=24.0)
    parser.add_argument("--samples", type=int, default=5, help="access-log requests per service per round")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="metrics-bench-") as tmp:
        result = run(args.services, args.hours, args.samples, Path(tmp))
    for key, value in result.items():
        print(f"{key:32} {value}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()

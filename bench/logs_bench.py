"""The log pipeline's benchmarks (issue 13): ingest rate and CPU, --grep over 1,000,000 lines, RSS.

Run from the repo root as ``.venv/bin/python -m bench.logs_bench`` (``--quick``: 200,000 lines and
shorter runs, ``--json PATH``: also write the numbers). Each measurement runs in a child process
of its own (``--child NAME``) so that its CPU time and RSS are the pipeline's alone:

1. ``ingest``: a fresh store, a masker holding 20 secrets, one pre-written file of realistic
   lines (pino JSON, Python logging, uvicorn access lines, tracebacks, lines with secrets);
   ``LogPipeline.cycle()`` until the file is stored. Lines/s and the process's CPU seconds.
2. ``paced``: the pipeline's thread running while a writer process appends 50,000 lines/s for a
   few seconds: the daemon's CPU share at the target rate and how far it lags behind.
3. ``grep``: queries (limit 100, as ``slipstream logs``) over the store of step 1; "cold" is the
   first query of a fresh process after the file's pages were dropped from the page cache
   (``posix_fadvise(DONTNEED)`` on this file only), "warm" the median of 5 more.
4. ``prune``: on a copy of that store, delete 20% by size with ``prune`` (incremental vacuum)
   and compare with a full ``VACUUM``.
5. ``rss``: the daemon's imports loaded and the pipeline's thread running, a writer process
   appends 100 MB as fast as it can; the daemon's RSS is sampled every 10 ms.

Everything is under a temporary directory that is removed at the end.

``make bench`` runs 1, 2, 3 and 5 through :func:`measure` (a :class:`LogsPlan`: the sizes, and
fewer, representative queries, each timed cold in several fresh processes), beside the other
benchmarks; see bench/run.py.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.procs import ROOT, bench_child_env
from bench.tools import cpu_model

SERVICE = "web"
NEEDLE = "ORDER-7f3a9c"  # in one line of every NEEDLE_EVERY
NEEDLE_EVERY = 200_000
SECRETS = [base64.b64encode(random.Random(i).randbytes(32)).decode() for i in range(18)] + [
    "postgres://app:s3cr3t-Pa55w0rd@127.0.0.1:5432/app",
    "sk_live_51Habcdefghijklmnop",
]
WORDS = [
    "user",
    "order",
    "payment",
    "request",
    "handler",
    "cache",
    "session",
    "queue",
    "worker",
    "job",
    "retry",
    "upstream",
    "database",
    "query",
    "index",
    "render",
    "deploy",
    "health",
    "check",
    "pool",
    "migration",
    "invoice",
    "email",
    "webhook",
    "token",
    "refresh",
]


# -- data ----------------------------------------------------------------------------------------
def make_lines(n: int, seed: int = 1, start: int = 0) -> list[str]:
    """``n`` realistic log lines (about 90 bytes on average), deterministic; line ``k`` (counted
    from ``start``) holds the needle when ``k % NEEDLE_EVERY`` is half of it."""
    rnd = random.Random(seed)
    out: list[str] = []
    i = start
    while len(out) < n:
        if (start + len(out)) % NEEDLE_EVERY == NEEDLE_EVERY // 2:
            out.append(f"2026-12-02 13:00:00,000 ERROR [shop.orders] payment failed for {NEEDLE}")
        i += 1
        r = rnd.random()
        rid = f"{rnd.getrandbits(64):016x}"
        words = " ".join(rnd.choices(WORDS, k=5))
        if r < 0.35:
            level = rnd.choice([30, 30, 30, 30, 40, 50, 20])
            out.append(json.dumps({"level": level, "time": 1796000000000 + i, "pid": 7, "reqId": rid, "msg": words}))
        elif r < 0.70:
            level = rnd.choice(["INFO", "INFO", "INFO", "DEBUG", "WARNING", "ERROR"])
            tail = f"upstream timed out after {rnd.randint(1, 99999)}ms" if rnd.random() < 0.03 else words
            out.append(
                f"2026-12-02 13:{i % 60:02d}:{i % 60:02d},{i % 1000:03d} {level} [app.{rnd.choice(WORDS)}] {tail} id={rid}"
            )
        elif r < 0.90:
            code = rnd.choice([200, 200, 200, 201, 304, 404, 500])
            out.append(
                f'INFO:     127.0.0.1:{rnd.randint(1024, 65535)} - "GET /api/{rnd.choice(WORDS)}/{rnd.randint(1, 99999)} HTTP/1.1" {code}'
            )
        elif r < 0.95:
            out += [
                "Traceback (most recent call last):",
                f'  File "/app/{rnd.choice(WORDS)}.py", line {rnd.randint(1, 500)}, in handle',
                "    conn = pool.get(timeout=5)",
                "psycopg.OperationalError: connection refused",
            ]
        else:
            secret = rnd.choice(SECRETS)
            form = rnd.choice(
                [
                    secret,
                    urllib.parse.quote(secret, safe=""),
                    base64.b64encode(f"app:{secret}".encode()).decode(),
                ]
            )
            out.append(f"DEBUG connecting with credentials {form} to the database")
    return out[:n]


def write_file(path: Path, n: int) -> int:
    """Write ``n`` lines to ``path`` in pieces; returns the bytes written."""
    with open(path, "w") as f:
        for start in range(0, n, 100_000):
            f.write("\n".join(make_lines(min(100_000, n - start), seed=start, start=start)) + "\n")
    return path.stat().st_size


def drop_cache(path: Path) -> None:
    """Evict ``path`` (and its WAL) from the page cache; other files are left alone."""
    for p in (path, Path(str(path) + "-wal")):
        if p.exists():
            fd = os.open(p, os.O_RDONLY)
            try:
                os.fsync(fd)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


# -- children -------------------------------------------------------------------------------------
def open_store(db: Path, retention: Any = None) -> Any:
    """A ``LogStore`` at ``db`` whose masker holds the bench's 20 secrets."""
    from slipstream.logs import LogMasker, LogStore

    masker = LogMasker()
    masker.add(SECRETS)
    return LogStore(db, masker, retention)


def child_ingest(work: Path) -> dict[str, Any]:
    from slipstream.logs import LogPipeline, Source, Stream

    store = open_store(work / "logs.db")
    p = LogPipeline(store)
    p.watch(work / "app.log", Source(SERVICE, Stream.APP, 1, f"{SERVICE}-d1-1"))
    t0, c0 = time.perf_counter(), os.times()
    while p.cycle():
        pass
    p.cycle()
    wall, c1 = time.perf_counter() - t0, os.times()
    lines = store.stats()["lines"]
    stats = store.stats()
    store.close()
    cpu = (c1.user - c0.user) + (c1.system - c0.system)
    return {
        "lines": lines,
        "wall_s": wall,
        "cpu_s": cpu,
        "lines_per_s": lines / wall,
        "lines_per_cpu_s": lines / cpu,
        "bytes_per_line": stats["used_bytes"] / lines,
    }


def child_paced(work: Path, seconds: float, rate: int) -> dict[str, Any]:
    """The pipeline's thread follows a file a writer process appends ``rate`` lines/s to."""
    import psutil

    from slipstream.logs import LogPipeline, Source, Stream

    log = work / "paced.log"
    log.write_text("")
    store = open_store(work / "paced.db")
    p = LogPipeline(store)
    p.watch(log, Source(SERVICE, Stream.APP, 1, f"{SERVICE}-d1-1"))
    p.start()
    me = psutil.Process()
    writer = subprocess.Popen(
        [sys.executable, "-m", "bench.logs_bench", "--child", "writer", str(log), str(seconds), str(rate)],
        cwd=Path(__file__).resolve().parent.parent,
    )
    c0, t0 = me.cpu_times(), time.perf_counter()
    writer.wait(timeout=seconds + 60)
    c1, t1 = me.cpu_times(), time.perf_counter()
    expected = int(seconds * rate)
    behind = expected - p.stored_lines
    while p.stored_lines < expected and time.perf_counter() - t1 < 60:
        time.sleep(0.01)
    catch_up = time.perf_counter() - t1
    p.stop()
    store.close()
    cpu = (c1.user - c0.user) + (c1.system - c0.system)
    return {
        "rate": rate,
        "seconds": t1 - t0,
        "cpu_percent_of_one_core": 100 * cpu / (t1 - t0),
        "lines_behind_when_writer_stopped": behind,
        "catch_up_s": catch_up,
    }


def child_writer(path: Path, seconds: float, rate: int) -> None:
    """An app: appends ``rate`` lines/s to ``path`` for ``seconds``, in 10 ms steps."""
    lines = make_lines(20_000, seed=99)
    total, step = int(seconds * rate), rate // 100
    start, written = time.perf_counter(), 0
    with open(path, "a", buffering=1 << 16) as f:
        while written < total:
            n = min(step, total - written)
            f.write("\n".join(lines[(written + k) % len(lines)] for k in range(n)) + "\n")
            f.flush()
            written += n
            ahead = start + written / rate - time.perf_counter()
            if ahead > 0:
                time.sleep(ahead)


def queries(request_id: str) -> list[tuple[str, dict[str, Any]]]:
    """What the bench asks of the store: (label, options of ``slipstream logs``)."""
    return [
        (f"--grep {request_id} (one request id)", {"grep": request_id}),
        ('--grep "payment failed" (rare)', {"grep": "payment failed"}),
        (f"--grep {NEEDLE} (rare, short hex)", {"grep": NEEDLE}),
        ("--grep no-such-words-here (absent)", {"grep": "no-such-words-here"}),
        ("--grep timeout (common)", {"grep": "timeout"}),
        ('--grep "connection refused"', {"grep": "connection refused"}),
        ("--grep '/timed out after \\d{5}ms/' (regex)", {"grep": "/timed out after \\d{5}ms/"}),
        ("--grep '/\\d{5}ms/' (regex, no literal)", {"grep": "/\\d{5}ms/"}),
        ("--level error", {"level": "error"}),
        ("--grep payment --level error", {"grep": "payment", "level": "error"}),
        ("--grep timeout --since 0s (nothing that new)", {"grep": "timeout", "since_s": 0}),
    ]


@dataclass(frozen=True)
class Query:
    """A ``--grep`` that ``make bench`` times, what kind of query it is, and whether it counts for
    the target (issue 13's kinds: a rare literal, a common word, a regex with a literal)."""

    grep: str
    kind: str
    targeted: bool = True
    once: bool = False  # one process, one warm run: a full scan takes seconds

    @property
    def label(self) -> str:
        """The option as typed: ``--grep timeout``, ``--grep '/x \\d/'``."""
        return f"--grep {self.grep}" if self.grep.replace("-", "").isalnum() else f"--grep '{self.grep}'"

    @property
    def spec(self) -> dict[str, Any]:
        return {"grep": self.grep}


def representative_queries() -> list[Query]:
    """Issue 13's kinds, the regex both with its matches plentiful (the newest 100 come early) and
    absent (every block holding its literal is read), and, beyond the target, the worst case a user
    can type: a regex with no literal that matches nothing (every line is read)."""
    return [
        Query(NEEDLE, "rare literal"),
        Query("timeout", "common word"),
        Query("/timed out after \\d{5}ms/", "regex with a literal"),
        Query("/timed out after \\d{6}ms/", "regex with a literal, no match"),
        Query("/\\d{7}zz/", "regex, no literal, no match: a full scan", targeted=False, once=True),
    ]


def a_request_id(log: Path) -> str:
    """The reqId of a JSON line near the middle of ``log``."""
    with open(log, "rb") as f:
        f.seek(log.stat().st_size // 2)
        for raw in f:
            if b'"reqId": "' in raw:
                return str(json.loads(raw)["reqId"])
    raise RuntimeError(f"no JSON line with a reqId in the second half of {log}")


def child_grep(db: Path, name: str, spec: dict[str, Any], runs: int) -> dict[str, Any]:
    from slipstream.logs import Grep, Level, LogQuery

    drop_cache(db)
    store = open_store(db)
    q = LogQuery(
        service=SERVICE,
        grep=Grep.parse(spec["grep"]) if "grep" in spec else None,
        level=Level.parse(spec["level"]) if "level" in spec else None,
        since=time.time() - spec["since_s"] if "since_s" in spec else None,
        limit=100,
    )
    t = time.perf_counter()
    found = store.search(q)
    cold = (time.perf_counter() - t) * 1000
    warm = []
    for _ in range(runs):
        t = time.perf_counter()
        store.search(q)
        warm.append((time.perf_counter() - t) * 1000)
    store.close()
    blocks, candidates = candidate_blocks(db, q.grep)
    return {
        "query": name,
        "found": len(found),
        "cold_ms": cold,
        "warm_ms": statistics.median(warm),
        "warm_all": warm,
        "blocks": blocks,
        "candidate_blocks": candidates,
    }


def candidate_blocks(db: Path, grep: Any) -> tuple[int, int]:
    """The service's blocks, and how many of them the word index leaves to read for ``grep``
    (all of them when it has no literal to look up); counted after the timing."""
    import sqlite3

    from slipstream.logs.grep import terms_for
    from slipstream.logs.index import condition

    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        total = int(conn.execute("SELECT count(*) FROM blocks WHERE service = ?", (SERVICE,)).fetchone()[0])
        terms = terms_for(grep) if grep is not None else None
        if terms is None:
            return total, total
        sql, args = condition(conn, terms)
        found = conn.execute(f"SELECT count(*) FROM blocks WHERE service = ? AND {sql}", [SERVICE, *args]).fetchone()
        return total, int(found[0])


def child_prune(work: Path) -> dict[str, Any]:
    import sqlite3

    from slipstream.logs import Retention

    src, db = work / "logs.db", work / "prune.db"
    with sqlite3.connect(src) as a, sqlite3.connect(db) as b:
        a.backup(b)
    store = open_store(db)
    before = store.stats()
    store.close()
    limit = max(int(before["used_bytes"] * 0.8 / 0.9), 1 << 20)  # prune keeps 90% of the limit: 20% goes
    store = open_store(db, Retention(max_bytes=limit))
    t = time.perf_counter()
    result = store.prune()
    prune_s = time.perf_counter() - t
    after = store.stats()
    store.close()
    t = time.perf_counter()
    with sqlite3.connect(db) as c:
        c.execute("VACUUM")
    vacuum_s = time.perf_counter() - t
    return {
        "lines_before": before["lines"],
        "lines_deleted": result.lines,
        "prune_s": prune_s,
        "file_mb_before": before["file_bytes"] / 2**20,
        "file_mb_after_prune": after["file_bytes"] / 2**20,
        "full_vacuum_s": vacuum_s,
        "file_mb_after_vacuum": db.stat().st_size / 2**20,
    }


def child_rss(work: Path, megabytes: int) -> dict[str, Any]:
    """The daemon's imports and the pipeline's thread; a writer appends ``megabytes`` MB."""
    import psutil

    import slipstream.daemon as daemon
    from slipstream.logs import LogPipeline, Source, Stream

    daemon.limit_malloc_arenas()
    log = work / "big.log"
    log.write_text("")
    store = open_store(work / "rss.db")
    p = LogPipeline(store)
    p.watch(log, Source(SERVICE, Stream.APP, 1, f"{SERVICE}-d1-1"))
    p.start()
    me = psutil.Process()
    time.sleep(0.5)
    baseline = me.memory_info().rss
    peak = baseline
    stop = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not stop.is_set():
            peak = max(peak, me.memory_info().rss)
            time.sleep(0.01)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    t0 = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "bench.logs_bench", "--child", "bigwriter", str(log), str(megabytes)],
        cwd=Path(__file__).resolve().parent.parent,
        check=True,
        timeout=600,
    )
    written = log.stat().st_size
    with open(log, "rb") as f:
        expected = sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))
    while p.stored_lines < expected and time.perf_counter() - t0 < 600:
        time.sleep(0.05)
    wall = time.perf_counter() - t0
    stop.set()
    sampler.join()
    p.stop()
    store.close()
    return {
        "written_mb": written / 2**20,
        "lines": expected,
        "stored": p.stored_lines,
        "seconds": wall,
        "baseline_rss_mb": baseline / 2**20,
        "peak_rss_mb": peak / 2**20,
        "growth_mb": (peak - baseline) / 2**20,
    }


def child_bigwriter(path: Path, megabytes: int) -> None:
    """An app writing ``megabytes`` MB of log lines as fast as it can."""
    block = ("\n".join(make_lines(10_000, seed=5)) + "\n").encode()
    with open(path, "ab") as f:
        for _ in range(-(-(megabytes << 20) // len(block))):
            f.write(block)


# -- the parent -----------------------------------------------------------------------------------
def run_child(*args: str) -> dict[str, Any]:
    r = subprocess.run(
        [sys.executable, "-m", "bench.logs_bench", "--child", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1200,
        env=bench_child_env(),
    )
    if r.returncode != 0:
        raise RuntimeError(f"bench child {args[0]} failed:\n{r.stderr}")
    return dict(json.loads(r.stdout.strip().splitlines()[-1]))


def step(title: str) -> None:
    print(f"-----> {title}", flush=True)


@dataclass(frozen=True)
class LogsPlan:
    """The sizes of the logs section of ``make bench`` (issue 13's own, unless a run is short)."""

    lines: int = 1_000_000  # written, ingested, then searched
    paced_s: float = 8.0  # seconds of an app writing ``rate`` lines/s
    rate: int = 50_000
    cold_runs: int = 3  # fresh processes per query (each: one cold query, then ``warm_runs``)
    warm_runs: int = 5
    rss_mb: int = 100  # what the app writes while the RSS is sampled


def summarize_grep(query: Query, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One query's runs (one per fresh process) -> found, cold median (over processes), warm median
    (over every warm sample)."""
    return {
        "query": query.label,
        "kind": query.kind,
        "targeted": query.targeted,
        "found": runs[0]["found"],
        "runs": len(runs),
        "cold_ms": [r["cold_ms"] for r in runs],
        "cold_ms_median": statistics.median(r["cold_ms"] for r in runs),
        "warm_ms_median": statistics.median(ms for r in runs for ms in r["warm_all"]),
        "blocks": runs[0]["blocks"],
        "candidate_blocks": runs[0]["candidate_blocks"],
    }


def measure(plan: LogsPlan, work: Path, say: Callable[[str], None] = step) -> dict[str, Any]:
    """Ingest, paced ingest, the representative queries and the RSS under ``work`` (the
    ``make bench`` section); every measurement in a child process of its own."""
    out: dict[str, Any] = {"lines": plan.lines}
    say(f"Logs: writing {plan.lines:,} lines of realistic app output; ingest (one thread, as the daemon runs it)")
    out["file_mb"] = write_file(work / "app.log", plan.lines) / 2**20
    out["ingest"] = run_child("ingest", str(work))
    say(f"Logs: an app writing {plan.rate:,} lines/s for {plan.paced_s:g} s while the pipeline's thread follows")
    out["paced"] = run_child("paced", str(work), str(plan.paced_s), str(plan.rate))
    queries_ = representative_queries()
    say(
        f"Logs: --grep over the {plan.lines:,} stored lines, {len(queries_)} queries, each in {plan.cold_runs} "
        f"fresh processes (file evicted: cold) then {plan.warm_runs} warm (a full scan: 1 and 1)"
    )
    db = str(work / "logs.db")
    runs: list[list[dict[str, Any]]] = [[] for _ in queries_]
    for i in range(plan.cold_runs):  # one process per query in turn: a query's processes are spread out
        for q, done in zip(queries_, runs, strict=True):
            if not (q.once and i):
                done.append(run_child("grep", db, q.label, json.dumps(q.spec), "1" if q.once else str(plan.warm_runs)))
    out["grep"] = [summarize_grep(q, done) for q, done in zip(queries_, runs, strict=True)]
    say(f"Logs: the daemon's RSS while an app writes {plan.rss_mb} MB as fast as it can")
    out["rss"] = run_child("rss", str(work), str(plan.rss_mb))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="200,000 lines and shorter runs")
    parser.add_argument("--json", type=Path, help="also write the numbers to this file")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        name, rest = args.child[0], args.child[1:]
        if name == "writer":
            child_writer(Path(rest[0]), float(rest[1]), int(rest[2]))
            return
        if name == "bigwriter":
            child_bigwriter(Path(rest[0]), int(rest[1]))
            return
        result = {
            "ingest": lambda: child_ingest(Path(rest[0])),
            "paced": lambda: child_paced(Path(rest[0]), float(rest[1]), int(rest[2])),
            "grep": lambda: child_grep(Path(rest[0]), rest[1], json.loads(rest[2]), int(rest[3])),
            "prune": lambda: child_prune(Path(rest[0])),
            "rss": lambda: child_rss(Path(rest[0]), int(rest[1])),
        }[name]()
        print(json.dumps(result))
        return

    n = 200_000 if args.quick else 1_000_000
    report: dict[str, Any] = {
        "machine": {"cores": os.cpu_count(), "cpu_model": cpu_model(), "load": os.getloadavg()[0]},
        "lines": n,
    }
    work = Path(tempfile.mkdtemp(prefix="slipstream-logs-bench-"))
    try:
        step(f"Writing {n:,} lines of realistic app output")
        size = write_file(work / "app.log", n)
        report["file_mb"] = size / 2**20
        step("Ingest: file -> masked, indexed, stored (one thread, as the daemon runs it)")
        report["ingest"] = run_child("ingest", str(work))
        step("Paced: an app writing 50,000 lines/s while the pipeline's thread follows")
        report["paced"] = run_child("paced", str(work), "3" if args.quick else "8", "50000")
        step(f"--grep over the {n:,} stored lines: cold (fresh process, file evicted) and warm")
        qs = queries(a_request_id(work / "app.log"))
        report["grep"] = [run_child("grep", str(work / "logs.db"), name, json.dumps(spec), "5") for name, spec in qs]
        step("Retention: prune 20% by size, then a full VACUUM for comparison")
        report["prune"] = run_child("prune", str(work))
        mb = 20 if args.quick else 100
        step(f"RSS: the daemon follows an app writing {mb} MB as fast as it can")
        report["rss"] = run_child("rss", str(work), str(mb))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(render(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


def render(r: dict[str, Any]) -> str:
    i, p, pr, rss = r["ingest"], r["paced"], r["prune"], r["rss"]
    m = r["machine"]
    out = [
        "",
        f"Logs bench: {r['lines']:,} lines ({r['file_mb']:.0f} MB) on {m['cores']} cores ({m['cpu_model']}), load {m['load']:.2f}",
        "",
        f"ingest          {i['lines_per_s']:>10,.0f} lines/s   {i['cpu_s']:.1f} CPU-s for {i['lines']:,} lines"
        f" ({i['lines_per_cpu_s']:,.0f} lines per CPU-second), {i['bytes_per_line']:.0f} bytes/line stored",
        f"at 50k lines/s  {p['cpu_percent_of_one_core']:>9.0f} %   of one core for the daemon;"
        f" {p['lines_behind_when_writer_stopped']:,} lines behind when the app stopped, caught up {p['catch_up_s']:.2f} s later",
        "",
        f"{'query (service web, limit 100)':<52} {'found':>6} {'cold ms':>9} {'warm ms':>9}",
    ]
    out += [f"{g['query']:<52} {g['found']:>6} {g['cold_ms']:>9.1f} {g['warm_ms']:>9.1f}" for g in r["grep"]]
    out += [
        "",
        f"prune 20%       {pr['lines_deleted']:,} of {pr['lines_before']:,} lines in {pr['prune_s']:.2f} s;"
        f" file {pr['file_mb_before']:.1f} -> {pr['file_mb_after_prune']:.1f} MB (full VACUUM: {pr['full_vacuum_s']:.2f} s,"
        f" {pr['file_mb_after_vacuum']:.1f} MB)",
        f"rss             {rss['written_mb']:.0f} MB ({rss['lines']:,} lines) stored in {rss['seconds']:.1f} s;"
        f" daemon RSS {rss['baseline_rss_mb']:.1f} -> peak {rss['peak_rss_mb']:.1f} MB (+{rss['growth_mb']:.1f} MB)",
    ]
    return "\n".join(out)


if __name__ == "__main__":
    main()

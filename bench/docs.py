"""Renders docs/benchmarks.md from one bench run: numbers, method, machine, and the analysis.

The page is generated; edit this file (the fixed text lives here), not the page.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bench import cli_bench
from bench.docker_bench import median_phases
from bench.proxy_bench import ACCESS_LOG
from bench.report import (
    Results,
    Target,
    median,
    overheads_ms,
    start_to_first_200_ms,
    step_medians,
    step_ms,
    step_overheads_ms,
)
from bench.tls_bench import summarize

STEP_ORDER = ("build", "pre_deploy", "start", "health", "min_healthy", "flip", "settle", "total_to_live", "drain")

METHOD = """\
## Method

Everything runs on this one machine over loopback, in one `make bench` run, so every comparison is
side by side under the same background noise. Each wrk run is bounded (`-d` plus an outer timeout);
everything the bench starts is stopped in `finally` blocks, and a watchdog ends the run before 24
minutes (the logs and metrics sections run near the end, with about 4 minutes of their own; issue
15's build and 200-service sections last, with 10 minutes of their own).

* **Upstream app** (`bench/upstream.py`): a dependency-free HTTP/1.1 keep-alive server on raw
  asyncio answering `ok <id>`. The same file is the upstream of the direct, HAProxy and nginx runs
  and the app slipstream deploys (as `app.py`, `runtime: python`, `buildCommand: echo build`).
* **1. proxy**: `wrk -t2 -c50 -d10s --latency` (same `Host` header everywhere), 3 rounds, each
  round runs direct -> slipstream -> nginx with the starting target rotating per round. *Direct* is
  upstream A; *slipstream* is slipstream's own `Proxy` (the HAProxy data plane the daemon uses,
  started on a temp dir and a free port, one service routed to A); *nginx* is nginx with upstream
  keep-alive (`keepalive 64`, HTTP/1.1, `worker_processes auto`, access log off). Reported: medians
  over rounds; the ratio is the median of same-round ratios.
* **2. flips**: wrk `-t2 -c50` with a Lua script counting 2xx/non-2xx and which upstream answered
  runs through the proxy while a thread flips A <-> B 40 times, one every 0.5 s:
  `Proxy.switch(service, ready=[new], drain=[old])` (slipstream's flip), then the same with
  nginx (rewrite the included upstream file, `nginx -s reload`). Failed = non-2xx + wrk socket
  errors (connect, read, write, timeout).
* **3. deploy**: a daemon (`slipstream up --detach`, temp `SLIPSTREAM_HOME`, default settle
  window) deploys service `s01`; after one untimed first deploy (it creates the service's
  virtualenv), 10 deploys alternate two commits. *Total* = from `POST /v1/deploys` (the API on the
  unix socket; the CLI's Python start-up is measured apart) until a GET through HAProxy (every
  5 ms, new connection) returns the new version. *Overhead* = total - buildCommand time (`sh -c
  "echo build"`, median of 5) - app boot (the build's virtualenv python running `app.py`, spawn ->
  first 200 polled every 2 ms, median of 5).
* **4. rollback**: `POST /v1/services/s01/rollback` until the earlier build's version is served
  through HAProxy; 5 runs, each after the previous one finished.
* **5. restart**: after `apply` of a 20-service blueprint, `kill -9` of the app process (the
  `python app.py` under the instance's `sh -c`) in 5 different services (each its first restart),
  until the service answers 200 through HAProxy again.
* **6. daemon**: with the 20 services live and idle, the daemon's and HAProxy's RSS (median of 1 s
  samples) and CPU% (psutil, over a 10 s window; 100 % = one core).
* **7. docker** (right after 3-4, same daemon; `bench/docker_bench.py`): `bench-docker`,
  `runtime: docker`, a Dockerfile `FROM localhost/slipstream-base:busybox` (`RUN`, two `COPY`,
  `CMD`; busybox httpd as PID 1 answers `ok <version>`). One untimed first deploy (it makes the base
  image if the machine has none), then 3 *cold* deploys (a new stamp in the first `RUN`: no layer of
  the Dockerfile is cached, the base image is), then 10 timed deploys, each of a new commit
  changing the served file (every layer before the last `COPY` cached), timed like the native
  ones (POST -> the new body through HAProxy). *Start -> first 200* is the recorded `start` step
  (`podman run`) plus the `health` step (until the daemon's first passing probe on the published
  port): a fresh deploy's container, not a restart. *Overhead* is the docker twin of the native
  one: time to traffic - build step - start -> first 200. After each docker deploy the bench waits
  until its events stop (at least 1 s): the daemon prunes the service's old images after it has
  recorded the deploy finished, and the next deploy of the service would queue behind that. After
  each of the last 3 deploys, `kill -9` of the container's main process (PID 1 inside) until
  HAProxy serves it again, as in 5. The docker and crash services are deleted before 5 and 6.
* **8. fail-fast** (`bench/failfast_bench.py`): `bench-crash` goes live with the bench app, then
  `slipstream deploy` (the CLI, wall time) of a release whose start command prints a line and exits
  7, 5 times; the fail time is the deploy record's `created_at` -> `finished_at` (the daemon's clock;
  no CLI start-up in it). Every run must end `update_failed` with the CLI exiting 1.
* **9. TLS** (last, `bench/tls_bench.py`): a deploy of `bench-pg` whose blueprint declares database
  `benchdb` starts the daemon's PostgreSQL; then 50 psycopg connects (+ `SELECT 1`, close) per
  sslmode, taking turns disable -> require -> verify-full after one warm-up each. Only verify-full is
  given the cluster's CA (`<home>/postgres/tls/ca.crt`; libpq makes `require` with a CA file a
  `verify-ca`).
* **10. access log** (in 1's rounds): a second `Proxy`, identical but for
  `Proxy(..., access_log=<unix datagram socket>)`, routes the same service to upstream A and is a
  fourth target of every round (order rotating with the others). Its lines go to the daemon's side,
  run as a child process of its own (`bench/access_bench.py`) wired as `daemon.py` wires it: an
  `AccessReceiver` handing each batch to `LogPipeline.emit` and to the metrics collector's
  per-request samples, the pipeline's thread masking (20 secrets), indexing and storing them in a
  `LogStore`. After the run the bench waits until every received line is stored (socket quiet for
  0.5 s), and the daemon side's CPU (psutil, whole process; per thread from
  `pthread_getcpuclockid`) is counted from the run's start until then, divided by the lines it
  received. *Off* is the `slipstream` target of the same round.
* **11. logs** (after the daemon stand, `bench/logs_bench.py`, each step in a child process of its
  own): 1,000,000 realistic lines (pino JSON, Python logging, uvicorn access lines, tracebacks,
  lines with secrets in plain, URL-quoted and base64 forms) written to a file, then
  `LogPipeline.cycle()` on one thread until it is stored (wall and process CPU); an app appending
  50,000 lines/s for 8 s while the pipeline's thread follows (its CPU over the window); the queries
  over the 1,000,000 stored lines, each in 3 fresh processes taken in turn after evicting the store
  from the page cache (`posix_fadvise(DONTNEED)` on that file only): *cold* is the first query of a
  process, *warm* the next 5 (the full scan: one process, one warm). The target counts issue 13's
  kinds of query; the slowest cold median is the figure. RSS: the daemon's imports loaded
  (`slipstream.daemon`, malloc arenas capped as the daemon does) and the pipeline's thread following
  a file an app fills with 100 MB as fast as it can; RSS sampled every 10 ms until all is stored.
* **12. metrics** (last, `bench/metrics_bench.py`): 200 web services with one instance each, plus
  databases, key values and cron jobs from fakes; every virtual 10 s the fake counters move and 5
  access-log requests per service are observed, then `Collector.collect` runs (timed; "without the
  fake sources" subtracts the fakes' own time). 2 simulated hours (a day takes some 13 minutes on
  this machine): the day's size is projected from the second hour's growth, when the first hour's
  10 s rows have been sealed into chunks and nothing is deleted yet. A full 24 h simulation
  (`python -m bench.metrics_bench`) on this machine measured 109.0 MB against the 104 MB its own
  first two hours project. `--since 1h` is `store.query` plus `build_report` for one service, median
  of 5.
"""


def _ms(x: float) -> str:
    return f"{x:.0f} ms" if x == x else "n/a"


def _targets(targets: Sequence[Target]) -> list[str]:
    out = ["| target | wanted | measured | |", "|---|---|---|---|"]
    out += [f"| {t.name} | {t.wanted} | {t.measured} | {'met' if t.met else '**missed**'} |" for t in targets]
    return out


def _proxy(r: Results) -> list[str]:
    out = [
        "| round | target | req/s | p50 | p99 | failed | ratio vs direct | TCP accepts per request | "
        "CPU us per request: upstream / proxy / wrk | machine idle |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for i, row in enumerate(r.rounds, 1):
        for name in ("direct", "slipstream", ACCESS_LOG, "nginx"):
            if name not in row:
                continue
            run = row[name]
            w = run.result
            proxy = {"slipstream": "haproxy", ACCESS_LOG: "haproxy_access_log", "nginx": "nginx"}.get(name)
            proxy_us = f"{run.cpu_us_per_request(proxy):.0f}" if proxy else "-"
            out.append(
                f"| {i} | {name} | {w.rps:,.0f} | {w.p50_ms:.2f} ms | {w.p99_ms:.2f} ms | {w.failed} | "
                f"{w.rps / row['direct'].result.rps:.3f} | {run.upstream_connects / max(1, w.requests):.3f} | "
                f"{run.cpu_us_per_request('upstream_A'):.0f} / {proxy_us} / {run.cpu_us_per_request('wrk'):.0f} | "
                f"{run.machine_idle:.0f} % |"
            )
    return out


def _realistic(r: Results) -> list[str]:
    """Issue 15: direct vs slipstream against upstream R (~100 us of CPU per request)."""
    if not r.realistic:
        return ["Not measured."]
    out = [
        "Upstream R spends ~100 us of CPU on every request (a small JSON rendered), as an app would.",
        "",
        "| round | target | req/s | p50 | p99 | failed | ratio vs direct | CPU us per request: upstream / proxy |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for i, row in enumerate(r.realistic, 1):
        for name in ("direct", "slipstream"):
            run, w = row[name], row[name].result
            proxy_us = f"{run.cpu_us_per_request('haproxy'):.0f}" if name == "slipstream" else "-"
            out.append(
                f"| {i} | {name} | {w.rps:,.0f} | {w.p50_ms:.2f} ms | {w.p99_ms:.2f} ms | {w.failed} | "
                f"{w.rps / row['direct'].result.rps:.3f} | {run.cpu_us_per_request('upstream_R'):.0f} / {proxy_us} |"
            )
    return out


def _crash_after_check(r: Results) -> list[str]:
    """Issue 15: deploys of a release that dies 0.3 s after its first good check, under load."""
    if not r.crash_after_check:
        return [f"Not measured: {r.skipped.get('crash_after_check', 'not run')}."]
    out = [
        "wrk `-t2 -c50` keep-alive through the daemon's HAProxy while `slipstream deploy` ships a release "
        "that passes its first health check, takes traffic at once (no stability wait) and exits 0.3 s "
        "later; the old release is its backup in HAProxy during the settle window.",
        "",
        "| deploy | status | requests | failed (non-2xx + socket errors) |",
        "|---|---|---|---|",
    ]
    out += [f"| {x['deploy_id']} | {x['status']} | {x['requests']:,} | {x['failed']} |" for x in r.crash_after_check]
    return out


def _flips(r: Results) -> list[str]:
    assert r.flips is not None
    out = [
        "| mechanism | flips | requests | req/s | p99 | non-2xx | socket errors | bodies A / B | "
        "flip call median / max |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for f in r.flips:
        errs = ", ".join(f"{k} {v}" for k, v in f.load.socket_errors.items() if v) or "0"
        out.append(
            f"| {f.mechanism} | {f.flips} | {f.load.requests:,} | {f.load.rps:,.0f} | "
            f"{f.load.p99_ms:.2f} ms | {f.load.non2xx} | {errs} | {f.load.lua.get('bodyA', 0):,} / "
            f"{f.load.lua.get('bodyB', 0):,} | {median(f.apply_ms):.1f} / {max(f.apply_ms or [0]):.1f} ms |"
        )
    return out


def _steps(r: Results) -> list[str]:
    rows = {"deploy": step_medians(r.deploys), "rollback": step_medians(r.rollbacks)}
    names = [s for s in STEP_ORDER if any(s in v for v in rows.values())]
    out = [
        "| kind | client: to traffic | API request | " + " | ".join(names) + " |",
        "|---|---|---|" + "---|" * len(names),
    ]
    runs = {"deploy": r.deploys, "rollback": r.rollbacks}
    for kind, steps in rows.items():
        cells = [_ms(steps[s] * 1000) if s in steps else "-" for s in names]
        out.append(
            f"| {kind} | {_ms(median(t.ms for t in runs[kind]))} | "
            f"{_ms(median(t.request_ms for t in runs[kind]))} | " + " | ".join(cells) + " |"
        )
    return out


def _restarts(r: Results) -> list[str]:
    out = ["| service run | kill -> app answers on its port | kill -> served via HAProxy |", "|---|---|---|"]
    out += [f"| {i} | {_ms(x['process_back_ms'])} | {_ms(x['ms'])} |" for i, x in enumerate(r.restarts, 1)]
    if r.restarts:
        out += ["", "Daemon events of the first restart (ms after the kill):", ""]
        out += [f"* +{ms} ms: {msg}" for ms, msg in r.restarts[0]["timeline"]]
    return out


def _idle(r: Results) -> list[str]:
    out = ["| process | RSS median | RSS max | CPU % (10 s) | threads |", "|---|---|---|---|---|"]
    for name in ("daemon", "haproxy"):
        x = r.idle.get(name)
        if x:
            out.append(
                f"| {name} | {x['rss_mb']:.1f} MB | {x['rss_mb_max']:.1f} MB | {x['cpu_percent']:.2f} | "
                f"{x['threads']} |"
            )
    return out


def _spy(r: Results) -> list[str]:
    if r.daemon_py_spy is None:
        return ["No CPU profile of the idle daemon: py-spy is not installed (`.venv/bin/pip install py-spy`)."]
    listed = ", ".join(f"`{frame}` {n}" for frame, n in r.daemon_py_spy) or "no active samples"
    return [
        f"py-spy on the idle daemon (5 s, 100 Hz, active threads only; innermost slipstream frame, samples): {listed}."
    ]


def _docker(r: Results) -> list[str]:
    d = r.docker
    if d is None or not d.deploys:
        return [f"No docker row in this run: {r.skipped.get('docker', 'not measured')}."]

    rows = [
        ("client: POST -> new version via HAProxy", median(t.ms for t in r.deploys), median(t.ms for t in d.deploys)),
        ("API request", median(t.request_ms for t in r.deploys), median(t.request_ms for t in d.deploys)),
        ("build step (a code change)", step_ms(r.deploys, "build"), step_ms(d.deploys, "build")),
        ("build step, cold (no cached layer)", None, step_ms(d.cold, "build")),
        ("start", step_ms(r.deploys, "start"), step_ms(d.deploys, "start")),
        ("health", step_ms(r.deploys, "health"), step_ms(d.deploys, "health")),
        ("start -> first 200 (start + health)", start_to_first_200_ms(r.deploys), start_to_first_200_ms(d.deploys)),
        ("min_healthy", step_ms(r.deploys, "min_healthy"), step_ms(d.deploys, "min_healthy")),
        ("flip", step_ms(r.deploys, "flip"), step_ms(d.deploys, "flip")),
        ("settle", step_ms(r.deploys, "settle"), step_ms(d.deploys, "settle")),
        ("total_to_live", step_ms(r.deploys, "total_to_live"), step_ms(d.deploys, "total_to_live")),
        ("drain", step_ms(r.deploys, "drain"), step_ms(d.deploys, "drain")),
        (
            "to traffic - build - start - health",
            median(step_overheads_ms(r.deploys)),
            median(step_overheads_ms(d.deploys)),
        ),
        (
            "kill -9 -> served via HAProxy",
            median(x["ms"] for x in r.restarts),
            median(x["ms"] for x in d.restarts),
        ),
    ]
    out = [
        f"| median over {len(r.deploys)} / {len(d.deploys)} deploys | native (`runtime: python`) | "
        "docker (`runtime: docker`) |",
        "|---|---|---|",
    ]
    out += [f"| {name} | {'-' if native is None else _ms(native)} | {_ms(docker)} |" for name, native, docker in rows]
    cold = ", ".join(f"{t.deploy['steps'].get('build', 0) * 1000:.0f}" for t in d.cold) or "-"
    out += [
        "",
        f"Docker to traffic per run: {', '.join(f'{t.ms:.0f}' for t in d.deploys)} ms; cold build steps: {cold} ms.",
    ]
    if d.first is not None:
        out.append(
            f"First docker deploy (not in the medians; it makes the base image when missing): {d.first.ms:.0f} ms "
            f"to traffic, build step {d.first.deploy['steps'].get('build', 0) * 1000:.0f} ms."
        )
    phases = median_phases(d.build_phases)
    if phases:
        out += [
            "",
            f"Where a docker build step's time goes (medians over {len(d.build_phases)} code-change builds, from "
            "the timestamps of the build's own lines):",
            "",
            "| phase | ms |",
            "|---|---|",
            *[f"| {label.replace('|', '/')} | {ms:.0f} |" for label, ms in phases],
        ]
    if d.restarts:
        out += ["", "Daemon events of the first docker restart (ms after the kill):", ""]
        out += [f"* +{ms} ms: {msg}" for ms, msg in d.restarts[0]["timeline"]]
    return out


def _failfast(r: Results) -> list[str]:
    if not r.crash_runs:
        return [f"Not measured in this run: {r.skipped.get('crash_loop', 'not measured')}."]
    out = ["| run | deploy | created -> update_failed | `slipstream deploy` wall time |", "|---|---|---|---|"]
    out += [
        f"| {i} | {x['deploy_id']} | {x['fail_s']:.2f} s | {x['cli_s']:.2f} s |" for i, x in enumerate(r.crash_runs, 1)
    ]
    first = r.crash_runs[0]
    timeline = first.get("timeline", [])
    out += ["", f'The deploy\'s message: "{first["message"]}"', "", "Daemon events of the first run:", ""]
    out += [f"* +{ms} ms: {msg}" for ms, msg in timeline]
    printed = [ms for ms, msg in timeline if msg.startswith("[")]  # the instance's own lines
    failed = next((ms for ms, msg in timeline if msg.startswith("update_failed")), None)
    if len(printed) >= 2 and failed is not None:
        out += [
            "",
            f"The instance printed its line at +{printed[0]} ms and, restarted, again at +{printed[1]} ms: "
            f"{printed[1] - printed[0]} ms between the two runs (the runtime restarts a first crash at once and "
            f"backs off from the second in a row, `runtime/backoff.py`); the deploy ended {failed - printed[1]} ms "
            "after the second run's line (the supervisor waits on a pidfd per process, so an exit is seen at once).",
        ]
    return out


def _tls(r: Results) -> list[str]:
    if not r.tls_connect_ms:
        return [f"Not measured in this run: {r.skipped.get('postgres', 'not measured')}."]
    out = ["| sslmode | connects | median | p90 | median vs disable |", "|---|---|---|---|---|"]
    out += [
        f"| {x['mode']} | {x['n']} | {x['median_ms']:.2f} ms | {x['p90_ms']:.2f} ms | {x['vs_disable_ms']:+.2f} ms |"
        for x in summarize(r.tls_connect_ms)
    ]
    return out


def _access_log(r: Results, report: dict[str, Any]) -> list[str]:
    """Issue 13: the same HAProxy with its access log off and on, each round side by side."""
    rows = [row for row in r.rounds if ACCESS_LOG in row and row[ACCESS_LOG].access is not None]
    if not rows:
        return ["Not measured in this run."]
    out = [
        "| round | off: req/s | on: req/s | on / off | p99 off / on | HAProxy CPU us per request off / on | "
        "lines received per request | stored / dropped by the pipeline | daemon side CPU us per line: "
        "receiver / pipeline / process | datagrams per batch | lines per store transaction | settled after |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for i, row in enumerate(rows, 1):
        off, on = row["slipstream"], row[ACCESS_LOG]
        a = on.access
        assert a is not None
        out.append(
            f"| {i} | {off.result.rps:,.0f} | {on.result.rps:,.0f} | {on.result.rps / off.result.rps:.3f} | "
            f"{off.result.p99_ms:.2f} / {on.result.p99_ms:.2f} ms | {off.cpu_us_per_request('haproxy'):.0f} / "
            f"{on.cpu_us_per_request('haproxy_access_log'):.0f} | {a.received:,} / {on.result.requests:,} = "
            f"{a.received / max(1, on.result.requests):.2f} | {a.stored:,} / {a.dropped:,} | "
            f"{a.us_per_line(a.receiver_cpu_s):.0f} / {a.us_per_line(a.pipeline_cpu_s):.0f} / {a.us_per_line():.0f} | "
            f"{a.received / max(1, a.batches):.1f} | {a.stored / max(1, a.commits):.1f} | {a.settle_s:.1f} s |"
        )
    p = report["proxy"]
    qlen = r.machine.get("unix_max_dgram_qlen")
    out += [
        "",
        f"Medians: {p['rps_access_log_on']:,} req/s with the access log on, {p['rps_access_log_off']:,} off: "
        f"{p['access_log_cost_ratio']:.2f}x; the daemon's side spent "
        f"{p['access_log_daemon_cpu_us_per_request']:.0f} us of CPU per line it received and received "
        f"{p['access_log_lines_received_per_request']:.0%} of the requests' lines (HAProxy drops a line when "
        f"the socket's queue is full; this machine's `net.unix.max_dgram_qlen` is {qlen})." + _per_request_note(p),
    ]
    return out


def _per_request_note(p: dict[str, Any]) -> str:
    """What every line would cost at the measured per-line CPU, when lines were lost."""
    share = p["access_log_lines_received_per_request"]
    if share >= 0.99:
        return ""
    cores = p["rps_access_log_on"] * p["access_log_daemon_cpu_us_per_request"] / 1e6
    return (
        f" Storing every line at that cost and rate would take {cores:.1f} cores of the daemon's; "
        "what was received took "
        f"{cores * share:.1f}."
    )


def _logs(r: Results, report: dict[str, Any]) -> list[str]:
    """Issue 13: ingest, paced ingest, the queries, the RSS under a burst of app logs."""
    if not r.logs:
        return [f"Not measured in this run: {r.skipped.get('logs', 'not measured')}."]
    x, i, p, rss = report["logs"], r.logs["ingest"], r.logs["paced"], r.logs["rss"]
    out = [
        f"Ingest: {i['lines']:,} lines ({r.logs['file_mb']:.0f} MB of app output) stored in {i['wall_s']:.1f} s on one "
        f"thread: **{i['lines_per_s']:,.0f} lines/s**, {i['cpu_s']:.1f} CPU seconds ({i['lines_per_cpu_s']:,.0f} lines "
        f"per CPU-second), {i['bytes_per_line']:.0f} bytes per line stored. An app writing {p['rate']:,} lines/s for "
        f"{p['seconds']:.0f} s: the daemon's pipeline used **{p['cpu_percent_of_one_core']:.0f} % of one core**, was "
        f"{p['lines_behind_when_writer_stopped']:,} lines behind when the app stopped and caught up "
        f"{p['catch_up_s']:.2f} s later.",
        "",
        "| query (service web, limit 100, as `slipstream logs`) | kind | counts for the target | found | blocks "
        "the index leaves to read | cold: median (each fresh process) | warm: median |",
        "|---|---|---|---|---|---|---|",
    ]
    for g in r.logs["grep"]:
        cold = ", ".join(f"{ms:.0f}" for ms in g["cold_ms"])
        out.append(
            f"| `{g['query']}` | {g['kind']} | {'yes' if g['targeted'] else 'no'} | {g['found']} | "
            f"{g['candidate_blocks']:,} of {g['blocks']:,} | {g['cold_ms_median']:.1f} ms ({cold}) | "
            f"{g['warm_ms_median']:.1f} ms |"
        )
    out += [
        "",
        f"RSS: with the daemon's imports loaded and the pipeline's thread following the file, an app wrote "
        f"{rss['written_mb']:.0f} MB ({rss['lines']:,} lines) as fast as it could; all were stored "
        f"{rss['seconds']:.1f} s after it started. The process's RSS went from {rss['baseline_rss_mb']:.1f} MB to a "
        f"peak of {rss['peak_rss_mb']:.1f} MB (**+{x['rss_growth_mb']:.1f} MB**, sampled every 10 ms).",
    ]
    return out


def _metrics(r: Results) -> list[str]:
    """Issue 13: what a collection round costs, the store's size, a --since 1h query."""
    m = r.metrics
    if not m:
        return [f"Not measured in this run: {r.skipped.get('metrics', 'not measured')}."]
    projected = m["store_mb_24h_projected"]
    day = (
        f"{projected:.0f} MB projected for 24 h (the last hour's growth for every hour to come)"
        if projected is not None and m["hours"] < 24
        else (f"{projected:.1f} MB after 24 h" if projected is not None else "no 24 h figure (under 2 h simulated)")
    )
    by_hour = ", ".join(f"{mb:.1f}" for mb in m["store_mb_by_hour"])
    return [
        "| services | rounds | round: median / p95 / max | without the fake sources: median / p95 | "
        "per access-log request | store | --since 1h |",
        "|---|---|---|---|---|---|---|",
        f"| {m['services']} | {m['rounds']:,} ({m['hours']:g} h) | {m['round_ms_median']:.1f} / {m['round_ms_p95']:.1f} / "
        f"{m['round_ms_max']:.1f} ms | {m['round_ms_without_fake_sources_median']:.1f} / "
        f"{m['round_ms_without_fake_sources_p95']:.1f} ms | {m['observe_us_per_request']:.1f} us | "
        f"{m['store_mb']:.1f} MB after {m['hours']:g} h; {day} | {m['query_1h_ms']:.1f} ms "
        f"({m['query_1h_points']:,} points) |",
        "",
        f"Store after each simulated hour: {by_hour} MB. Data by resolution: "
        + ", ".join(f"{k} {v:.1f} MB" for k, v in m["data_mb"].items())
        + f"; {m['rows_10s']:,} 10 s and {m['rows_1m']:,} 1 min samples; simulated in {m['simulated_in_s']:.0f} s.",
    ]


def _scale(report: dict[str, Any]) -> list[str]:
    """Issue 15, target 5: one daemon with 200 web services."""
    x = report["scale"]
    if "skipped" in x:
        return [f"Not measured in this run: {x['skipped']}."]
    return [
        "| services | apply (builds cached) | first apply | daemon RSS | daemon CPU idle | HAProxy RSS | flip | "
        "`slipstream status` |",
        "|---|---|---|---|---|---|---|---|",
        f"| {x['services']} ({x['instances']} instances) | {x['apply_s']:g} s | {x['apply_cold_s']:g} s | "
        f"{x['daemon_rss_mb']:g} MB ({x['daemon_threads']} threads) | {x['daemon_cpu_percent_idle']:g} % | "
        f"{x['haproxy_rss_mb']:g} MB | {x['flip_ms_median']:g} ms | {x['status_ms_median']:.0f} ms |",
        "",
        f"Each service is the bench upstream (`python app.py`, {x['app_rss_mb_median']} MB RSS each) with "
        "`buildCommand: echo build`; the timed apply builds every service anew from the same commit with "
        "its cached virtualenv. The first apply also creates 200 virtualenvs. HAProxy's pool is "
        "`SLIPSTREAM_PROXY_SERVICES=256`. Flip: the step the daemon records, median of deploys of one "
        "service after the apply; status: wall time of the CLI process, median of its runs.",
    ]


def _build(report: dict[str, Any]) -> list[str]:
    """Issue 15, target 6: a Python build's install with pip and with uv."""
    b = report["build"]
    if "skipped" in b:
        return [f"Not measured in this run: {b['skipped']}."]
    uv = (
        f"{b['python_cold_s_uv']:g} s | {b['python_warm_s_uv']:g} s"
        if "python_cold_s_uv" in b
        else f"not measured: {b.get('uv_skipped')} | -"
    )
    return [
        "| installer | cold | warm |",
        "|---|---|---|",
        f"| pip | {b['python_cold_s_pip']:g} s | {b['python_warm_s_pip']:g} s |",
        f"| uv (`pip install` through the shim) | {uv} |",
        "",
        "Whole builds of `examples/python-web` (`pip install -r requirements.txt`: psycopg[binary]) through "
        "slipstream's Builder, medians. Cold: empty download cache, new virtualenv; warm: the cache filled, "
        f"new virtualenv (as after a change of requirements). Default here: {b['default']}.",
    ]


def render_markdown(r: Results, report: dict[str, Any], targets: Sequence[Target], analysis: str = "") -> str:
    """The whole docs/benchmarks.md page."""
    m = report["machine"]
    first = r.first_deploy
    lines = [
        "# Benchmarks",
        "",
        "Generated by `make bench` (`bench/run.py`; fixed text in `bench/docs.py`) -- rerun it rather "
        f"than editing this page. Latest run: {m.get('date')}, {r.elapsed_s:.0f} s. Raw numbers: "
        "`bench/report.json`.",
        "",
        "## Targets (issues #6, #10, #12, 13, 15)",
        "",
        *_targets(targets),
        "",
        "## Machine",
        "",
        f"{m.get('cores')} cores ({m.get('cpu_model')}), Python {m.get('python')}, HAProxy {m.get('haproxy')}, "
        f"nginx {m.get('nginx')}, wrk {m.get('wrk')}; load average at the start {m.get('load_average_at_start')}. "
        "The machine is shared with other engineers' test runs, so absolute numbers drift between runs; "
        "compare within one run.",
        "",
        "## 1. Proxy overhead",
        "",
        *_proxy(r),
        "",
        "### Against a realistic upstream",
        "",
        *_realistic(r),
        "",
        "## 2. Flips under load",
        "",
        *_flips(r),
        "",
        "### A release crashing right after its first good check",
        "",
        *_crash_after_check(r),
        "",
        "## 3-4. Deploys and rollbacks (medians; steps as the daemon recorded them)",
        "",
        *_steps(r),
        "",
        f"Deploy overhead per run: {', '.join(f'{x:.0f}' for x in overheads_ms(r))} ms. Fixed parts "
        f"subtracted: buildCommand {median(r.build_command_ms):.1f} ms, app boot {median(r.boot_ms):.0f} ms "
        f"(runs: {', '.join(f'{x:.0f}' for x in r.boot_ms)}). The settle window ({r.settle_s:g} s) runs after "
        "the flip with traffic already on the new build, so it is in `total_to_live` but not in the time to "
        "traffic.",
        "",
        (
            f"First deploy of the service (not in the medians): {first.ms:.0f} ms to traffic, build step "
            f"{first.deploy['steps'].get('build', 0) * 1000:.0f} ms."
            if first
            else ""
        ),
        f"The CLI's own start-up (`slipstream status --json`): {median(r.cli_ms):.0f} ms median, on top of "
        "every API timing above when a person types the command.",
        "",
        "## 5. Restarts after kill -9",
        "",
        *_restarts(r),
        "",
        f"## 6. Idle daemon with {r.idle.get('services', 0)} services ({r.idle.get('instances', 0)} instances)",
        "",
        *_idle(r),
        "",
        f"`apply` of the 20-service blueprint (19 first deploys and one redeploy, run in parallel) took "
        f"{r.apply_s:.1f} s. The daemon alone, just started with no service: {r.empty_rss_mb:.1f} MB RSS.",
        "",
        *_spy(r),
        "",
        "## 7. Docker beside native (medians; steps as the daemon recorded them)",
        "",
        *_docker(r),
        "",
        "## 8. A crash-looping release fails fast",
        "",
        *_failfast(r),
        "",
        "## 9. PostgreSQL connect cost with TLS (the daemon's own cluster)",
        "",
        *_tls(r),
        "",
        "## 10. HAProxy's access log: off vs on (same config otherwise, same upstream, same rounds)",
        "",
        *_access_log(r, report),
        "",
        "## 11. Logs: ingest, --grep over the stored lines, RSS while an app writes",
        "",
        *_logs(r, report),
        "",
        "## 12. Metrics: collection rounds with 200 services",
        "",
        *_metrics(r),
        "",
        "## 13. CLI start-up",
        "",
        *cli_bench.markdown(report),
        "",
        "## 14. 200 web services on one daemon",
        "",
        *_scale(report),
        "",
        "## 15. Python builds: pip and uv",
        "",
        *_build(report),
        "",
        METHOD,
    ]
    if analysis:
        lines += [analysis]
    return "\n".join(lines).rstrip() + "\n"

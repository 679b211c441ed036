"""Renders docs/benchmarks.md from one bench run: numbers, method, machine, and the analysis.

The page is generated; edit this file (the fixed text lives here), not the page.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from bench.report import Results, Target, median, overheads_ms, step_medians

STEP_ORDER = ("build", "pre_deploy", "start", "health", "min_healthy", "flip", "settle", "total_to_live", "drain")

METHOD = """\
## Method

Everything runs on this one machine over loopback, in one `make bench` run, so every comparison is
side by side under the same background noise. Each wrk run is bounded (`-d` plus an outer timeout);
everything the bench starts is stopped in `finally` blocks, and a watchdog ends the run before 10
minutes.

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
        for name in ("direct", "slipstream", "nginx"):
            run = row[name]
            w = run.result
            proxy = {"slipstream": "haproxy", "nginx": "nginx"}.get(name)
            proxy_us = f"{run.cpu_us_per_request(proxy):.0f}" if proxy else "-"
            out.append(
                f"| {i} | {name} | {w.rps:,.0f} | {w.p50_ms:.2f} ms | {w.p99_ms:.2f} ms | {w.failed} | "
                f"{w.rps / row['direct'].result.rps:.3f} | {run.upstream_connects / max(1, w.requests):.3f} | "
                f"{run.cpu_us_per_request('upstream_A'):.0f} / {proxy_us} / {run.cpu_us_per_request('wrk'):.0f} | "
                f"{run.machine_idle:.0f} % |"
            )
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
        "## Targets (issue #6)",
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
        "## 2. Flips under load",
        "",
        *_flips(r),
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
        METHOD,
    ]
    if analysis:
        lines += [analysis]
    return "\n".join(lines).rstrip() + "\n"

"""What dominates where a target is missed: one paragraph per missed target, from this run's data.

Each paragraph states measured evidence (TCP accepts per request, CPU per process, the daemon's
event timeline, the import RSS profile, step durations, py-spy samples), so the text stays true
when the numbers change.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

from bench.docker_bench import median_phases
from bench.proxy_bench import LoadRun
from bench.report import Results, Target, median, start_to_first_200_ms, step_medians, step_ms, step_overheads_ms

CRASH_TARGET = "crash-looping release fails within 10 s"
INGEST, GREP, LOG_RSS = "log ingest", "grep over 1M stored lines", "100 MB of app logs: daemon RSS growth"


def _proxy(r: Results) -> str:
    def us(name: str, key: str) -> float:
        return median(row[name].cpu_us_per_request(key) for row in r.rounds)

    accepts = {
        name: median(row[name].upstream_connects / max(1, row[name].result.requests) for row in r.rounds)
        for name in ("direct", "slipstream", "nginx")
    }
    text = [
        f"**Proxy.** The machine accepted {accepts['slipstream']:.3f} TCP connections per request through "
        f"slipstream's HAProxy (direct {accepts['direct']:.3f}, nginx {accepts['nginx']:.3f}; `nstat` "
        "TcpPassiveOpens over each run)."
    ]
    if accepts["slipstream"] >= 0.5:
        text.append(
            "So HAProxy opened a new upstream connection for nearly every request (no server-side "
            "keep-alive): each request pays a connect plus the upstream's accept and set-up, which "
            "dominates the gap."
        )
    else:
        text.append("So upstream connections are kept alive; the gap is CPU.")
    u, w, h = us("direct", "upstream_A"), us("direct", "wrk"), us("slipstream", "haproxy")
    idle = median(row["slipstream"].machine_idle for row in r.rounds)
    need = h * 0.85 / 0.15 - w
    p99_extra = median(row["slipstream"].result.p99_ms - row["direct"].result.p99_ms for row in r.rounds)
    text.append(
        f"CPU per request (medians): direct: upstream {u:.0f} us + wrk {w:.0f} us; slipstream: upstream "
        f"{us('slipstream', 'upstream_A'):.0f} + HAProxy {h:.0f} + wrk {us('slipstream', 'wrk'):.0f} us; nginx: "
        f"upstream {us('nginx', 'upstream_A'):.0f} + nginx {us('nginx', 'nginx'):.0f} + wrk {us('nginx', 'wrk'):.0f} us. "
        f"The machine was {idle:.0f} % idle during the proxied runs: the load is CPU-bound on 2 shared cores, so "
        "requests/s is about cores / (CPU per request), and the proxy's own CPU per request, comparable to what "
        "this tiny app and wrk spend together, is what divides throughput (nginx pays the same kind of price). "
        f"By that arithmetic 0.85x direct needs an app spending about {need:.0f} us of CPU or more per request; "
        f"the bench's app spends {u:.0f} us on purpose (it measures the proxy, not the app). p99 through "
        "slipstream was "
        + (
            f"{p99_extra:.2f} ms above direct (median of same-round differences), part of the same CPU contention."
            if p99_extra > 0
            else f"{-p99_extra:.2f} ms below direct (median of same-round differences): with "
            "fewer requests in flight at once, the tail is shorter even though each request costs more."
        )
    )
    text.append(_proxy_split(r, us))
    text.append(_proxy_p99(r))
    return " ".join(text)


def _proxy_split(r: Results, us: Callable[[str, str], float]) -> str:
    """HAProxy's and nginx's CPU per request split into user space and kernel."""
    hu, nu = us("slipstream", "haproxy_user"), us("nginx", "nginx_user")
    if hu != hu or nu != nu or (hu == 0 and nu == 0):  # NaN or not recorded (an older report)
        return ""
    hk, nk = us("slipstream", "haproxy") - hu, us("nginx", "nginx") - nu
    return (
        f"Split: HAProxy {hu:.1f} us user space + {hk:.1f} us kernel per request, nginx {nu:.1f} + {nk:.1f} us. "
        "Both make the same system calls per request (2 reads, 2 writes, a fraction of an epoll_wait; "
        "`python -m bench.proxy_ab --syscalls`), so the kernel parts match and the gap is HAProxy's own code. "
        "Its largest known part is the L7 retry buffer: with `retry-on ... empty-response` HAProxy 2.6 copies "
        "the whole request buffer (tune.bufsize, 16 KB) before sending each GET/HEAD/OPTIONS it may retry. "
        "slipstream keeps it: it turns an instance that dies with a request in flight, or closes a keep-alive "
        "connection as a request arrives, into a retry on another server instead of a 502 (nginx retries such "
        "requests too, from buffers it keeps anyway). docs/architecture.md lists the measured variants."
    )


def _proxy_p99(r: Results) -> str:
    """Whether the p99 follows throughput (CPU per request) or a proxy's own tail."""
    conns = 50  # wrk -c50: a closed loop, so the mean latency is connections / throughput (Little's law)
    cores = os.cpu_count() or 1  # the bench runs where it is analysed

    def shape(name: str) -> float:  # p99 over the mean latency
        return median(row[name].result.p99_ms / (1000 * conns / max(1.0, row[name].result.rps)) for row in r.rounds)

    def med(name: str, what: Callable[[LoadRun], float]) -> float:
        return median(what(row[name]) for row in r.rounds)

    direct_p99, direct_rps = med("direct", lambda x: x.result.p99_ms), med("direct", lambda x: x.result.rps)
    need = shape("direct") * 1000 * conns / (direct_p99 + 2)
    return (
        f"p99 over the mean latency (mean = {conns} connections / throughput): direct {shape('direct'):.1f}x, "
        f"slipstream {shape('slipstream'):.1f}x, nginx {shape('nginx'):.1f}x. "
        + (
            "slipstream's tail has about the shape of direct's, so its p99 is the mean latency of a loaded "
            "closed loop scaled up: it follows throughput, i.e. the CPU each request costs on the shared cores. "
            if shape("slipstream") <= 1.3 * shape("direct")
            else "slipstream's tail is wider than direct's beyond what throughput explains: scheduling of its "
            "threads next to wrk and the app on 2 cores adds to it. "
        )
        + f"With direct's shape, p99 <= direct + 2 ms needs about {need:,.0f} req/s "
        f"({need / max(1.0, direct_rps):.2f}x direct) at this concurrency: on {cores} busy cores a proxy would have "
        f"to add under {max(0.0, cores * (1e6 / need - 1e6 / max(1.0, direct_rps))):.0f} us of CPU per request, "
        f"while HAProxy spends {us_of(r, 'slipstream', 'haproxy'):.0f} us and nginx {us_of(r, 'nginx', 'nginx'):.0f} us."
    )


def us_of(r: Results, name: str, key: str) -> float:
    """Median CPU microseconds per request of process ``key`` in the ``name`` runs."""
    return median(row[name].cpu_us_per_request(key) for row in r.rounds)


def _restart(r: Results) -> str:
    back = median(x["process_back_ms"] for x in r.restarts)
    total = median(x["ms"] for x in r.restarts)
    timeline = "; ".join(f"+{ms} ms {msg}" for ms, msg in (r.restarts[0]["timeline"] if r.restarts else []))
    return (
        f"**Restart.** Median {back:.0f} ms from `kill -9` until the new process answers on its own port, "
        f"then {total - back:.0f} ms more until HAProxy sends it traffic. Daemon events of the first "
        f"restart: {timeline or 'none recorded'}. The runtime restarts a first crash at once and backs off "
        "from the second in a row (1 s doubling, `runtime/backoff.py`); the supervisor sees an exit at once (a "
        "pidfd per process); after the restart the engine polls the app's health every 0.1 s before setting its "
        "server ready, so the app's boot time and that poll bound the time back in rotation."
    )


def _daemon_rss(r: Results) -> str:
    if not r.import_rss:
        return "**Daemon RSS.** (no import profile recorded)"
    interp = r.import_rss[0][1]
    parts = sorted(r.import_rss[1:], key=lambda x: -x[1])
    floor = interp + sum(mb for _, mb in r.import_rss[1:])
    listed = ", ".join(f"{name} {mb:.1f} MB" for name, mb in parts[:6])
    full = r.idle.get("daemon", {}).get("rss_mb", float("nan"))
    services = max(1, r.idle.get("services", 1))
    loaded = {name for name, _ in r.import_rss}
    lazy = [m for m in ("psycopg", "croniter", "httpx", "prometheus_client") if m in loaded]
    hint = (
        f" Of these, {', '.join(lazy)} serve features an idle daemon may not use; "
        "importing them on first use would save their share."
        if lazy
        else ""
    )
    return (
        f"**Daemon RSS.** Importing what the daemon imports, in a fresh interpreter, already takes "
        f"{floor:.0f} MB before any work (interpreter {interp:.0f} MB; largest parts: {listed}). Just started "
        f"with no service the daemon held {r.empty_rss_mb:.1f} MB; with {services} services {full:.1f} MB, "
        f"so about {(full - r.empty_rss_mb) / services:.2f} MB per service. The import floor dominates.{hint}"
    )


def plan_health_probes(first: float = 0.01, factor: float = 1.5, cap: float = 0.05, count: int = 7) -> list[float]:
    """Milliseconds after the health step starts at which engine/deployer.py probes (its schedule)."""
    times, t, interval = [0.0], 0.0, first
    for _ in range(count - 1):
        t += interval
        times.append(t * 1000)
        interval = min(interval * factor, cap)
    return times


def _steps(r: Results, kind: str) -> str:
    runs = r.deploys if kind == "deploy" else r.rollbacks
    steps = {k: v * 1000 for k, v in step_medians(runs).items()}
    boot, build_cmd = median(r.boot_ms), median(r.build_command_ms)
    recorded = sum(steps.get(k, 0.0) for k in ("build", "pre_deploy", "start", "health", "min_healthy", "flip"))
    request = median(t.request_ms for t in runs)
    parts = {
        "waiting for the next health probe after the boot (health step - app boot)": steps.get("health", 0) - boot,
        "the build step without the buildCommand (export of the commit, toolchain check)": steps.get("build", build_cmd)
        - build_cmd,
        "the start step": steps.get("start", 0.0),
        "the flip": steps.get("flip", 0.0),
        "the deliberate stability wait before the flip (SLIPSTREAM_MIN_HEALTHY_SECONDS: new instances "
        "must stay healthy this long, so a release that crashes right after its first good check never "
        "gets a request)": steps.get("min_healthy", 0.0),
        "the API request itself (blueprint parse, git look-ups, records; until it answers)": request,
        "the rest outside the recorded steps (hand-off to the worker, state writes, the bench's 5 ms poll)": median(
            t.ms for t in runs
        )
        - recorded
        - request,
    }
    listed = "; ".join(f"{name} {ms:.0f} ms" for name, ms in sorted(parts.items(), key=lambda x: -x[1]) if ms >= 0.5)
    probes = ", ".join(f"{t:.0f}" for t in plan_health_probes())
    wait = (
        "Without the stability wait the platform's own share is the remainder; the wait is a design choice "
        "traded for zero failed requests (see docs/architecture.md). "
        if steps.get("min_healthy")
        else ""
    )
    return (
        f"**{kind.capitalize()}.** Where the time beyond buildCommand ({build_cmd:.1f} ms) and app boot "
        f"({boot:.0f} ms) goes, medians: {listed}. The deployer probes health at {probes} ms after the "
        "start (interval from 10 ms growing x1.5 to 50 ms), so the wait after the boot is at most ~50 ms. "
        f"{wait}Boot and steps stretch when other work shares the two cores."
    )


def _daemon_cpu(r: Results) -> str:
    if not r.daemon_py_spy:
        return (
            "**Daemon CPU.** Above target; py-spy was not installed, so no profile was taken "
            "(`.venv/bin/pip install py-spy` and rerun)."
        )
    listed = ", ".join(f"{fn} ({n})" for fn, n in r.daemon_py_spy)
    return (
        f"**Daemon CPU.** py-spy, 5 s of active samples while idle; innermost slipstream frames seen most "
        f"often (samples): {listed}. Idle work grows with the number of instances: the runtime's supervisor "
        "polls every instance each 0.2 s and the live monitor health-checks every live instance."
    )


def _docker(r: Results) -> str:
    d = r.docker
    assert d is not None
    build, start = step_ms(d.deploys, "build"), start_to_first_200_ms(d.deploys)
    total = median(t.ms for t in d.deploys)
    request = median(t.request_ms for t in d.deploys)
    min_healthy, flip = step_ms(d.deploys, "min_healthy"), step_ms(d.deploys, "flip")
    overhead, native = median(step_overheads_ms(d.deploys)), median(step_overheads_ms(r.deploys))
    parts = {
        "the stability wait before the flip (min_healthy)": min_healthy,
        "the API request": request,
        "the flip": flip,
        "the rest outside the recorded steps (hand-off, state writes, the 5 ms poll)": overhead
        - min_healthy
        - request
        - flip,
    }
    listed = "; ".join(f"{name} {ms:.0f} ms" for name, ms in sorted(parts.items(), key=lambda x: -x[1]) if ms >= 0.5)
    if abs(overhead - native) <= max(100.0, 0.1 * native):
        compare = f"about what a native deploy carries by the same count ({native:.0f} ms)"
    else:
        compare = f"{overhead - native:+.0f} ms against a native deploy by the same count ({native:.0f} ms)"
    phases = median_phases(d.build_phases)
    top = ", ".join(f"{label} {ms:.0f} ms" for label, ms in sorted(phases, key=lambda x: -x[1])[:4])
    labels = sum(ms for label, ms in phases if label.startswith("LABEL "))
    label_note = (
        f" slipstream's image labels run as Dockerfile steps of their own ({labels:.0f} ms together)." if labels else ""
    )
    return (
        f"**Docker deploy.** Median {total:.0f} ms to traffic (native {median(t.ms for t in r.deploys):.0f} ms). "
        f"The container's own parts are the image build ({build:.0f} ms) and its start -> first 200 ({start:.0f} ms; "
        f"native {start_to_first_200_ms(r.deploys):.0f} ms); the {overhead:.0f} ms beyond them, {compare}, are: "
        f"{listed}. Inside the build step the largest phases (medians) were: {top or 'none recorded'}.{label_note} "
        f"The start step ({step_ms(d.deploys, 'start'):.0f} ms) is `podman run --detach` (conmon, runc, the "
        "published port) until the container's main process is known; the health step after it took "
        f"{step_ms(d.deploys, 'health'):.0f} ms."
    )


def _crash(r: Results) -> str:
    fail = median(x["fail_s"] for x in r.crash_runs)
    timeline = "; ".join(f"+{ms} ms {msg}" for ms, msg in r.crash_runs[0].get("timeline", []))
    return (
        f"**Crash-looping release.** Median {fail:.2f} s from the deploy's creation to update_failed. Daemon "
        f"events of the first run: {timeline or 'none recorded'}."
    )


def _ingest(r: Results) -> str:
    assert r.logs is not None
    i, p = r.logs["ingest"], r.logs["paced"]
    share = 100 * i["cpu_s"] / i["wall_s"]
    if i["lines_per_cpu_s"] >= 50_000:
        cause = (
            f"Per CPU-second the pipeline stored {i['lines_per_cpu_s']:,.0f} lines, above the target: its one thread "
            f"got {share:.0f} % of a core during the run, so the machine's other load, not the pipeline's work, "
            "held the rate down."
        )
    else:
        cause = (
            f"The pipeline is CPU-bound: its thread had {share:.0f} % of a core and stored {i['lines_per_cpu_s']:,.0f} "
            f"lines per CPU-second, {1e6 / i['lines_per_cpu_s']:.0f} us per line (read, split, level, mask, "
            "block, index words, compress, insert, all on one thread)."
        )
    return (
        f"**Log ingest.** {i['lines']:,} lines in {i['wall_s']:.1f} s: {i['lines_per_s']:,.0f} lines/s. {cause} An app "
        f"writing {p['rate']:,} lines/s cost the daemon {p['cpu_percent_of_one_core']:.0f} % of one core, "
        f"{p['lines_behind_when_writer_stopped']:,} lines behind when it stopped."
    )


def _grep(r: Results) -> str:
    assert r.logs is not None
    targeted = [g for g in r.logs["grep"] if g["targeted"]]
    worst = max(targeted, key=lambda g: g["cold_ms_median"])
    others = "; ".join(
        f"{g['kind']} `{g['query']}` {g['cold_ms_median']:.0f} ms (index: {g['candidate_blocks']} blocks, found "
        f"{g['found']})"
        for g in targeted
        if g is not worst
    )
    narrowed = worst["candidate_blocks"] / max(1, worst["blocks"])
    why = (
        "the word index rules out no block, as its literal is in nearly every one"
        if narrowed > 0.9
        else f"the word index left {narrowed:.0%} of them"
    )
    stop = (
        "With fewer than 100 matches the search never stops early, so every candidate block is read, decompressed "
        "and searched with the pattern"
        if worst["found"] < 100
        else "The newest 100 matches lie far back, so most candidate blocks are read"
    )
    return (
        f"**--grep.** The slowest query, `{worst['query']}` ({worst['kind']}), took {worst['cold_ms_median']:.0f} ms cold and "
        f"{worst['warm_ms_median']:.0f} ms warm over {r.logs['lines']:,} lines. It had "
        f"{worst['candidate_blocks']} of the service's {worst['blocks']} blocks to read: {why}. {stop}: about "
        f"{worst['warm_ms_median'] / max(1, worst['candidate_blocks']):.2f} ms per block warm; cold adds reading the "
        f"file ({worst['cold_ms_median'] - worst['warm_ms_median']:.0f} ms). The other queries: {others}. A rare "
        "match behind a common literal needs positions in the index, or a smaller unit than the block, to be found "
        "without reading every block."
    )


def _log_rss(r: Results) -> str:
    assert r.logs is not None
    x = r.logs["rss"]
    return (
        f"**Daemon RSS under a burst of logs.** RSS went from {x['baseline_rss_mb']:.1f} to {x['peak_rss_mb']:.1f} MB "
        f"(+{x['growth_mb']:.1f} MB) while an app wrote {x['written_mb']:.0f} MB ({x['lines']:,} lines, stored in "
        f"{x['seconds']:.1f} s). The pipeline reads files in bounded chunks and stores one batch per transaction, so "
        "the growth is its working set (read buffers, a batch, SQLite's page cache, the malloc arenas' high-water "
        "mark), not the volume."
    )


def render_analysis(r: Results, targets: Sequence[Target]) -> str:
    """The "where targets are missed" section (empty when every target is met)."""
    missed = {t.name for t in targets if not t.met}
    if not missed:
        return ""
    parts = ["## Where targets are missed: what dominates", ""]
    if missed & {"proxy throughput", "proxy p99", "proxy CPU per request"}:
        parts += [_proxy(r), ""]
    if "deploy overhead" in missed:
        parts += [_steps(r, "deploy"), ""]
    if "rollback" in missed:
        parts += [_steps(r, "rollback"), ""]
    if "restart" in missed:
        parts += [_restart(r), ""]
    if "daemon RSS" in missed:
        parts += [_daemon_rss(r), ""]
    if "daemon CPU idle" in missed:
        parts += [_daemon_cpu(r), ""]
    if "docker deploy" in missed and r.docker is not None and r.docker.deploys:
        parts += [_docker(r), ""]
    if CRASH_TARGET in missed and r.crash_runs:
        parts += [_crash(r), ""]
    if r.logs:
        for name, explain in ((INGEST, _ingest), (GREP, _grep), (LOG_RSS, _log_rss)):
            if name in missed:
                parts += [explain(r), ""]
    if "flips" in missed and r.flips:
        f = r.flips[0]
        parts += [
            f"**Flips.** {f.load.failed} failed requests over {f.flips} flips (non-2xx {f.load.non2xx}, "
            f"socket errors {f.load.socket_errors}).",
            "",
        ]
    return "\n".join(parts)

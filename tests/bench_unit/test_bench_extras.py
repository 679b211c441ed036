"""The pure helpers of the docker row, the fail-fast runs and the TLS connects (issues #10, #12)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from bench.docker_bench import median_phases, parse_build_phases
from bench.extras_repo import (
    CRASH_COMMAND,
    CRASH_SERVICE,
    DOCKER_SERVICE,
    PG_DATABASE,
    PG_SERVICE,
    render_crash_blueprint,
    render_docker_blueprint,
    render_dockerfile,
    render_postgres_blueprint,
)
from bench.failfast_bench import fail_seconds, render_timeline
from bench.tls_bench import connect_kwargs, quantile, summarize
from slipstream.blueprint import load_blueprint


def _load(tmp_path: Path, text: str):  # type: ignore[no-untyped-def]
    path = tmp_path / "render.yaml"
    path.write_text(text)
    return load_blueprint(path)


def test_blueprints_are_valid_for_slipstream(tmp_path: Path) -> None:
    docker = _load(tmp_path, render_docker_blueprint()).service(DOCKER_SERVICE)
    assert (docker.runtime, docker.root_dir, docker.health_check_path) == ("docker", "docker", "/health")
    crash = _load(tmp_path, render_crash_blueprint(CRASH_COMMAND)).service(CRASH_SERVICE)
    assert crash.start_command == 'echo "bench: exiting with 7 on purpose"; exit 7'
    pg = _load(tmp_path, render_postgres_blueprint())
    assert [d.name for d in pg.databases] == [PG_DATABASE] and pg.service(PG_SERVICE).runtime == "python"


def test_dockerfile_stamp_changes_only_the_first_run_step() -> None:
    cached, cold = render_dockerfile("cached"), render_dockerfile("0123abcd")
    assert cached.splitlines()[0] == "FROM localhost/slipstream-base:busybox"
    assert [a == b for a, b in zip(cached.splitlines(), cold.splitlines(), strict=True)] == [
        True,
        False,
        True,
        True,
        True,
    ]
    with pytest.raises(ValueError, match="letters and digits"):
        render_dockerfile("x; rm -rf /")


def _event(ts: float, message: str, kind: str = "build") -> dict[str, object]:
    return {"ts": ts, "message": message, "kind": kind}


BUILD_EVENTS = [
    _event(100.000, "-----> Deploy 2 of bench-docker (commit 4955b9a3827a)", "step"),
    _event(100.018, "-----> Building (docker, build 2)", "step"),
    _event(100.040, "==> Checking out commit 4955b9a3827acb219994836d45538eace996965a"),
    _event(100.151, "==> Building image localhost/slipstream/bench-docker:b2"),
    _event(100.228, "STEP 1/7: FROM localhost/slipstream-base:busybox"),
    _event(100.280, "STEP 2/7: RUN echo cached > /etc/bench-stamp && mkdir -p /www"),
    _event(100.290, "--> Using cache f5c46d2aeb244bbbf7c9893685a24277d6b0cf5d10da583c121130aa497f5079"),
    _event(100.292, "--> f5c46d2aeb2"),
    _event(100.370, "STEP 3/7: COPY www/ /www/"),
    _event(101.508, "--> 012a10f5aff"),
    _event(101.663, 'STEP 4/7: LABEL "io.slipstream.build"="2"'),
    _event(101.808, 'STEP 5/7: LABEL "io.slipstream.service"="bench-docker"'),
    _event(101.813, "COMMIT localhost/slipstream/bench-docker:b2"),
    _event(101.951, "Successfully tagged localhost/slipstream/bench-docker:b2"),
    _event(102.408, "==> Image localhost/slipstream/bench-docker:b2 (sha256:de261e8ae160) built in 2.3 s"),
    _event(102.452, "-----> Starting 1 instance: localhost/slipstream/bench-docker:b2 (its CMD)", "step"),
]


def test_parse_build_phases_splits_a_build_at_its_own_lines() -> None:
    phases = [(label, round(ms)) for label, ms in parse_build_phases(BUILD_EVENTS)]
    assert phases == [
        ("export the source, check the base image", 133),
        ("podman build start-up", 77),
        ("FROM localhost/slipstream-base:busybox", 52),
        ("RUN echo cached > /etc/bench-stamp && mkdir -p /www (cached)", 90),
        ("COPY www/ /www/", 1293),
        ('LABEL "io.slipstream.build"', 145),
        ('LABEL "io.slipstream.service"', 5),
        ("commit, tag and inspect the image", 595),
    ]
    assert sum(ms for _, ms in parse_build_phases(BUILD_EVENTS)) == pytest.approx(2390, abs=1)
    assert parse_build_phases(BUILD_EVENTS[:5]) == []  # no finished image build in these events


def test_median_phases_keeps_the_order_of_first_appearance() -> None:
    runs = [[("a", 1.0), ("b", 10.0)], [("a", 3.0), ("c", 5.0), ("b", 30.0)], [("a", 2.0)]]
    assert median_phases(runs) == [("a", 2.0), ("b", 20.0), ("c", 5.0)]


def test_fail_seconds_and_timeline_come_from_the_record() -> None:
    assert fail_seconds({"id": 3, "created_at": 100.25, "finished_at": 101.5}) == pytest.approx(1.25)
    with pytest.raises(ValueError, match="deploy 3 has not finished"):
        fail_seconds({"id": 3, "created_at": 100.25, "finished_at": None})
    events = [
        _event(100.25, "deploy 3 queued", "step"),
        _event(101.1, "[bench-crash-d3-1] bench: exiting with 7 on purpose", "app"),
        _event(101.5, "update_failed: instance bench-crash-d3-1 exited\n  its last lines", "error"),
    ]
    assert render_timeline(events, 100.25) == [
        (0, "deploy 3 queued"),
        (850, "[bench-crash-d3-1] bench: exiting with 7 on purpose"),
        (1250, "update_failed: instance bench-crash-d3-1 exited"),
    ]


def test_only_verify_full_is_given_the_ca(tmp_path: Path) -> None:
    ca = tmp_path / "ca.crt"
    assert connect_kwargs("disable", ca) == {"sslmode": "disable"}
    assert connect_kwargs("require", ca) == {"sslmode": "require"}
    assert connect_kwargs("verify-full", ca) == {"sslmode": "verify-full", "sslrootcert": str(ca)}
    with pytest.raises(ValueError, match="unknown sslmode 'prefer'"):
        connect_kwargs("prefer", ca)


def test_quantile_and_summary() -> None:
    assert quantile([3.0, 1.0, 2.0], 0.5) == 2.0 and quantile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.5
    assert quantile(list(map(float, range(11))), 0.9) == pytest.approx(9.0) and math.isnan(quantile([], 0.5))
    rows = summarize({"disable": [4.0, 5.0, 6.0], "require": [8.0, 9.0, 10.0]})
    assert rows == [
        {"mode": "disable", "n": 3, "median_ms": 5.0, "p90_ms": pytest.approx(5.8), "vs_disable_ms": 0.0},
        {"mode": "require", "n": 3, "median_ms": 9.0, "p90_ms": pytest.approx(9.8), "vs_disable_ms": 4.0},
    ]


def test_an_added_section_records_its_failure_and_steps_aside_in_time() -> None:
    import time

    from bench.report import Results
    from bench.run import Clock, WatchdogExpired, section

    r, ample = Results(), Clock(time.monotonic() + 600)

    def boom() -> None:
        raise RuntimeError("deploy 3 of bench-docker ended build_failed")

    section(r, "docker", boom, ample, 60)
    assert r.skipped == {"docker": "failed: RuntimeError: deploy 3 of bench-docker ended build_failed"}
    ran: list[str] = []
    section(r, "postgres", lambda: ran.append("postgres"), Clock(time.monotonic() + 30), 60)
    assert ran == [] and r.skipped["postgres"].startswith("only 30 s were left before the watchdog")

    def expired() -> None:
        raise WatchdogExpired("the bench ran past 570 s")

    with pytest.raises(WatchdogExpired):
        section(r, "crash_loop", expired, ample, 60)

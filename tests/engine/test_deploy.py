"""The deploy state machine (engine.deployer.DeployRun), every state and failure branch, in process."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from slipstream.proxy.fake import FakeProxy
from slipstream.states import DeployStatus, InstancePhase
from tests.polling import wait_for

from .conftest import RigFactory
from .harness import FAIL, Rig, cron, render_yaml, web, worker

LIVE, DEACTIVATED = DeployStatus.LIVE, DeployStatus.DEACTIVATED


def test_a_first_deploy_goes_live_through_every_step(rigs: RigFactory) -> None:
    rig = rigs(min_healthy_s=0.05, settle_s=0.05)
    d = rig.deploy("web", render_yaml(web(buildCommand="make")))
    rec = rig.finish(d)
    assert (rec.status, rec.message, rig.live("web")) == (LIVE, None, d)
    assert set(rec.steps) == {"build", "start", "health", "min_healthy", "flip", "settle", "total_to_live"}
    assert rig.proxy.calls == [
        ("start", ()),
        ("add_server", "web", "d1-1", 20001),  # in maint: no traffic before the flip
        ("set_route", "web", ("web.localhost",)),
        ("switch", "web", ("d1-1",), ()),
    ]
    assert rig.driver.calls == [("start", "web-d1-1")]
    assert rig.instances("web") == [("web-d1-1", InstancePhase.LIVE)]
    steps = [m.split(" in ")[0] for m in rig.messages(d, ["step"])]
    assert steps == [
        "deploy 1 queued",
        "-----> Deploy 1 of web (directory " + str(rig.tmp / "app0") + ")",
        "-----> Building (python, build 1)",
        "-----> Starting 1 instance: serve",
        "-----> Waiting for health check (GET /healthz)",
        "       healthy after 0.00 s",
        "-----> Traffic switched to deploy 1",
        "-----> Deploy 1 is live",
    ]


def test_a_new_deploy_replaces_the_live_one_and_drains_it(rig: Rig) -> None:
    text = render_yaml(web(numInstances=2))
    first = rig.finish(rig.deploy("web", text)).id
    rig.proxy.calls.clear()
    second = rig.finish(rig.deploy("web", text))
    assert (second.status, rig.live("web")) == (LIVE, second.id)
    assert "drain" in second.steps
    old = rig.record(first)
    assert (old.status, old.message) == (DEACTIVATED, f"replaced by deploy {second.id}")
    assert rig.proxy.calls == [
        ("add_server", "web", "d2-1", 20003),
        ("add_server", "web", "d2-2", 20004),
        ("set_route", "web", ("web.localhost",)),
        ("switch", "web", ("d2-1", "d2-2"), ("d1-1", "d1-2")),  # one change: new ready, old drain
        *sorted(  # the old ones leave, in parallel
            [
                ("set_state", "web", "d1-1", "maint"),
                ("remove_server", "web", "d1-1"),
                ("set_state", "web", "d1-2", "maint"),
                ("remove_server", "web", "d1-2"),
            ],
            key=lambda c: rig.proxy.calls.index(c),
        ),
    ]
    assert rig.proxy.ready("web") == ["d2-1", "d2-2"]
    assert rig.instances("web") == [("web-d2-1", "live"), ("web-d2-2", "live")]
    assert rig.running() == ["web-d2-1", "web-d2-2"]


def test_draining_waits_for_requests_in_flight(rig: Rig) -> None:
    text = render_yaml(web(maxShutdownDelaySeconds=5))
    rig.finish(rig.deploy("web", text))
    rig.proxy.sessions[("web", "d1-1")] = 1  # a request is still running on the old instance
    second = rig.deploy("web", text)
    rig.wait_said(second, "Draining 1 old instance")
    time.sleep(0.1)
    assert rig.running() == ["web-d1-1", "web-d2-1"] and rig.status(second) == LIVE
    rig.proxy.sessions.clear()
    assert rig.finish(second).finished_at and rig.running() == ["web-d2-1"]


# -- failures: the live release keeps serving ------------------------------------------------------
def crash_loop(rig: Rig, d: int) -> None:
    rig.wait_said(d, "Waiting for health check")
    rig.driver.crash("web-d2-1")
    rig.driver.restart("web-d2-1")
    rig.driver.crash("web-d2-1")


def crash_after(step: str) -> Callable[[Rig, int], None]:
    def act(rig: Rig, d: int) -> None:
        rig.wait_step(d, step)
        if step == "flip":  # traffic is on the new release now
            assert rig.proxy.ready("web") == ["d2-1"]
        rig.driver.crash("web-d2-1", exit_code=3)

    return act


@dataclass(frozen=True)
class Failure:
    """Deploy 1 goes live, then ``arrange`` runs, deploy 2 is queued with ``timings`` and ``act``
    runs while it does; deploy 2 must end ``status`` with every ``message`` fragment."""

    status: DeployStatus
    message: list[str]
    arrange: Callable[[Rig], None] = lambda rig: None
    act: Callable[[Rig, int], None] = lambda rig, d: None
    timings: dict[str, float] = field(default_factory=dict)
    keys: dict[str, Any] = field(default_factory=dict)  # blueprint keys of both deploys
    transcript: list[str] = field(default_factory=list)  # lines the transcript must hold
    within_s: float = 5.0


def output(rig: Rig, *lines: str) -> None:
    rig.app_prints("web-d2-1", *lines)


FAILURES = {
    "build_failed": Failure(
        DeployStatus.BUILD_FAILED,
        ["build failed: `make` exited with 2; the live release keeps serving"],
        arrange=lambda rig: (
            setattr(rig.builder, "output", ["compiling", "error: no module named flask"]),
            rig.builder.failures.update(web=2),
        ),
        keys={"buildCommand": "make"},
        transcript=["error: no module named flask"],
    ),
    "pre_deploy_failed": Failure(
        DeployStatus.PRE_DEPLOY_FAILED,
        ["preDeployCommand exited with 3; the live release keeps serving"],
        arrange=lambda rig: (
            rig.driver.run_once_results.update(migrate=3),
            rig.driver.run_once_output.update(migrate=["applying 0042", "error: relation exists"]),
        ),
        keys={"preDeployCommand": "migrate"},
        transcript=["-----> Running preDeployCommand: migrate", "error: relation exists"],
    ),
    "health never passes": Failure(
        DeployStatus.UPDATE_FAILED,
        [
            "instance web-d2-1 did not become healthy within 0.15 s: /healthz answered status 503",
            "; the live release keeps serving. Its last 2 lines of output:\n  booting\n  listening on $PORT",
        ],
        arrange=lambda rig: (
            rig.probes.answers.update({"web-d2-1": FAIL}),
            output(rig, "booting", "listening on $PORT"),
        ),
        timings={"health_deadline_s": 0.15},
        transcript=["[web-d2-1] booting", "[web-d2-1] listening on $PORT"],  # streamed while it waited
    ),
    "start fails": Failure(
        DeployStatus.UPDATE_FAILED,
        ["cannot start instance web-d2-1: 'serve' failed"],  # its wording: see the xfail below
        arrange=lambda rig: rig.driver.fail_start.add("serve"),
    ),
    "crash loop fails fast": Failure(
        DeployStatus.UPDATE_FAILED,
        [
            "instance web-d2-1 exited before it was ever healthy, and again after a restart (exit code 1",
            "; the live release keeps serving. Its last 1 lines of output:\n  ImportError: flask",
        ],
        arrange=lambda rig: (rig.probes.answers.update({"web-d2-1": FAIL}), output(rig, "ImportError: flask")),
        act=crash_loop,
        timings={"health_deadline_s": 60},
        within_s=3,  # not the deadline
    ),
    "crash while staying healthy": Failure(
        DeployStatus.UPDATE_FAILED,
        [
            "instance web-d2-1 failed within 30 s of passing its health check: the process exited (exit code 3",
            "; the live release keeps serving.",
        ],
        act=crash_after("health"),
        timings={"min_healthy_s": 30},
    ),
    "crash in the settle window flips back": Failure(
        DeployStatus.UPDATE_FAILED,
        [
            "instance web-d2-1 failed right after the flip: the process exited (exit code 3",
            "; traffic moved back to deploy 1.",
        ],
        act=crash_after("flip"),
        timings={"settle_s": 30},
    ),
}


@pytest.mark.parametrize("case", FAILURES.values(), ids=FAILURES.keys())
def test_a_failed_deploy_keeps_the_live_release(rig: Rig, case: Failure) -> None:
    text = render_yaml(web(**case.keys))
    first = rig.finish(rig.deploy("web", text)).id
    case.arrange(rig)
    rig.retime(**case.timings)
    started = time.monotonic()
    d = rig.deploy("web", text)
    case.act(rig, d)
    rec = rig.finish(d, timeout=case.within_s)
    assert time.monotonic() - started < case.within_s
    assert rec.status == case.status
    for fragment in case.message:
        assert fragment in (rec.message or ""), rec.message
    said = rig.messages(d)
    for line in case.transcript:
        assert line in said
    assert said[-1].endswith(f"{rec.message}")  # the transcript ends with why
    # nothing of deploy 2 is left; deploy 1 serves as before
    assert (rig.live("web"), rig.status(first)) == (first, LIVE)
    assert [s.name for s in rig.proxy.servers("web")] == ["d1-1"] and rig.proxy.ready("web") == ["d1-1"]
    assert rig.instances("web") == [("web-d1-1", "live")] and rig.running() == ["web-d1-1"]


def test_the_settle_window_moves_traffic_back_in_one_switch(rig: Rig) -> None:
    text = render_yaml(web())
    rig.finish(rig.deploy("web", text))
    rig.retime(settle_s=30)
    rig.proxy.calls.clear()
    d = rig.deploy("web", text)
    crash_after("flip")(rig, d)
    rig.finish(d)
    switches = [c for c in rig.proxy.calls if c[0] in ("switch", "fallback", "release_fallback")]
    assert switches == [
        ("switch", "web", ("d2-1",), ("d1-1",)),
        ("fallback", "web", ("d1-1",)),  # the old release backs the new one while it settles
        ("switch", "web", ("d1-1",), ("d2-1",)),
        ("release_fallback", "web"),
    ]
    assert rig.proxy.fallback == {}


def test_the_old_release_backs_the_new_one_until_the_settle_window_ends(rig: Rig) -> None:
    text = render_yaml(web())
    rig.finish(rig.deploy("web", text))
    rig.retime(settle_s=0.05)
    rig.proxy.calls.clear()
    rec = rig.finish(rig.deploy("web", text))
    assert rec.status == LIVE and "min_healthy" not in rec.steps  # no stability wait by default
    calls = [c for c in rig.proxy.calls if c[0] in ("switch", "fallback", "release_fallback", "remove_server")]
    assert calls == [
        ("switch", "web", ("d2-1",), ("d1-1",)),
        ("fallback", "web", ("d1-1",)),
        ("release_fallback", "web"),  # before the old instance is drained and stopped
        ("remove_server", "web", "d1-1"),
    ]


def test_without_a_settle_window_nothing_is_held_back(rig: Rig) -> None:
    text = render_yaml(web())
    rig.finish(rig.deploy("web", text))
    rig.proxy.calls.clear()
    assert rig.finish(rig.deploy("web", text)).status == LIVE
    assert not [c for c in rig.proxy.calls if c[0] in ("fallback", "release_fallback")]


def test_the_settle_window_probes_a_few_times_a_second_and_catches_a_silent_instance(rig: Rig) -> None:
    text = render_yaml(web())
    rig.finish(rig.deploy("web", text))
    rig.retime(settle_s=1.0)
    calls: list[float] = []
    probe = rig.engine.instances.probe
    rig.engine.instances.probe = lambda release, port: (calls.append(time.monotonic()), probe(release, port))[1]  # type: ignore[method-assign]
    rec = rig.finish(rig.deploy("web", text))
    assert rec.status == LIVE
    # the health gate's probes, then the settle window's: one every WATCH_PROBE_S (0.25 s), not every tick
    assert 4 <= len(calls) <= 8, calls

    rig.retime(settle_s=30)
    d = rig.deploy("web", text)
    rig.wait_step(d, "flip")
    silent = time.monotonic()
    rig.probes.answers["web-d3-1"] = FAIL  # running, but no longer answering its check
    rec = rig.finish(d)
    assert time.monotonic() - silent < 1.0
    assert rec.status == DeployStatus.UPDATE_FAILED
    assert "failed right after the flip: /healthz answered status 503" in (rec.message or "")
    assert rig.proxy.ready("web") == ["d2-1"]


def test_a_failure_with_no_earlier_release_says_so(rig: Rig) -> None:
    rig.retime(settle_s=30)
    d = rig.deploy("web", render_yaml(web()))
    rig.wait_step(d, "flip")
    rig.driver.crash("web-d1-1")
    rec = rig.finish(d)
    assert rec.status == DeployStatus.UPDATE_FAILED and "; no earlier release to move back to." in (rec.message or "")
    assert (rig.live("web"), rig.proxy.ready("web"), rig.instances("web")) == (None, [], [])


def test_an_instance_that_cannot_start_fails_the_deploy_plainly(rig: Rig) -> None:
    text = render_yaml(web())
    rig.finish(rig.deploy("web", text))
    rig.driver.fail_start.add("serve")
    message = rig.finish(rig.deploy("web", text)).message or ""
    assert "cannot start instance web-d2-1: 'serve' failed" in message
    assert "the live release keeps serving" in message and "internal error" not in message


def test_a_hung_instance_is_not_said_to_have_exited(rig: Rig) -> None:
    rig.retime(health_deadline_s=0.1)
    rig.probes.default = FAIL
    rec = rig.finish(rig.deploy("web", render_yaml(web())))
    assert rec.status == DeployStatus.UPDATE_FAILED
    assert "exited" not in (rec.message or ""), rec.message


def test_a_failed_build_shows_each_output_line_once(rig: Rig) -> None:
    rig.builder.output = ["compiling", "error: no module named flask"]
    rig.builder.failures["web"] = 2
    d = rig.deploy("web", render_yaml(web(buildCommand="make")))
    assert rig.finish(d).status == DeployStatus.BUILD_FAILED
    streamed = ["compiling", "error: no module named flask", "==> build failed: `make` exited with 2"]
    assert rig.messages(d, ["build"]) == streamed


# -- workers and cron jobs ---------------------------------------------------------------------------
def test_a_worker_overlaps_its_old_release_then_replaces_it(rig: Rig) -> None:
    text = render_yaml(worker())
    first = rig.finish(rig.deploy("jobs", text)).id
    second = rig.finish(rig.deploy("jobs", text))
    assert (second.status, rig.live("jobs"), rig.status(first)) == (LIVE, second.id, DEACTIVATED)
    assert "Waiting 0.05 s: a worker is healthy when it is still running" in " ".join(rig.messages(second.id))
    assert rig.driver.calls == [("start", "jobs-d1-1"), ("start", "jobs-d2-1"), ("stop", "jobs-d1-1", 1.0)]
    assert rig.proxy.calls == [("start", ())]  # a worker takes no traffic
    assert rig.instances("jobs") == [("jobs-d2-1", "live")] and rig.running() == ["jobs-d2-1"]


def test_a_worker_that_exits_in_its_grace_fails(rig: Rig) -> None:
    text = render_yaml(worker())
    rig.finish(rig.deploy("jobs", text))
    rig.retime(worker_grace_s=30)
    d = rig.deploy("jobs", text)
    rig.wait_said(d, "a worker is healthy when it is still running")
    rig.driver.crash("jobs-d2-1", exit_code=2)
    rec = rig.finish(d)
    assert rec.status == DeployStatus.UPDATE_FAILED
    assert rec.message is not None and rec.message.startswith(
        "instance jobs-d2-1 exited within 30 s of its start (exit code 2"
    )
    assert (rig.live("jobs"), rig.instances("jobs"), rig.running()) == (1, [("jobs-d1-1", "live")], ["jobs-d1-1"])


def test_a_cron_job_goes_live_with_no_instance_and_runs_on_demand(rig: Rig) -> None:
    d = rig.deploy("nightly", render_yaml(cron(startCommand="python nightly.py")))
    rec = rig.finish(d)
    assert (rec.status, rig.live("nightly")) == (LIVE, d)
    assert (rig.driver.calls, rig.proxy.calls, rig.instances("nightly")) == ([], [("start", ())], [])
    assert rig.engine.cron.trigger("nightly") == "started"
    rig.engine.cron.wait_idle("nightly", timeout=5)
    assert rig.driver.calls == [("run_once", "python nightly.py")]
    assert [(r["deploy_id"], r["trigger"], r["status"], r["exit_code"]) for r in rig.engine.cron.runs("nightly")] == [
        (d, "manual", "succeeded", 0)
    ]


# -- stop first: a persistent disk, a singleton worker ------------------------------------------------
@dataclass(frozen=True)
class StopFirst:
    service: str
    blueprint: Callable[[Rig], str]
    why: str
    break_new: Callable[[Rig, int], None]  # make deploy 2's instance fail


def disk_web(rig: Rig) -> str:
    return render_yaml(web(disk={"name": "data", "mountPath": str(rig.tmp / "mnt" / "data")}))


def unhealthy(rig: Rig, d: int) -> None:
    rig.retime(health_deadline_s=0.1)
    rig.probes.answers["web-d2-1"] = FAIL


def exits_in_grace(rig: Rig, d: int) -> None:
    rig.wait_said(d, "a worker is healthy when it is still running")
    rig.driver.crash("jobs-d2-1")


STOP_FIRST = {
    "disk": StopFirst("web", disk_web, "it has a persistent disk", unhealthy),
    "singleton": StopFirst(
        "jobs", lambda rig: render_yaml(worker(singleton=True)), "it is a singleton worker", exits_in_grace
    ),
}


@pytest.mark.parametrize("case", STOP_FIRST.values(), ids=STOP_FIRST.keys())
def test_stop_first_never_overlaps_two_releases(rig: Rig, case: StopFirst) -> None:
    text = case.blueprint(rig)
    rig.finish(rig.deploy(case.service, text))
    d = rig.deploy(case.service, text)
    assert rig.finish(d).status == LIVE
    s = case.service
    assert rig.driver.calls == [("start", f"{s}-d1-1"), ("stop", f"{s}-d1-1", 1.0), ("start", f"{s}-d2-1")]
    assert f"-----> Stopping the old release first: {case.why}, so two releases never overlap" in rig.messages(d)
    assert rig.instances(s) == [(f"{s}-d2-1", "live")]


@pytest.mark.parametrize("case", STOP_FIRST.values(), ids=STOP_FIRST.keys())
def test_a_failed_stop_first_deploy_starts_the_old_release_again(rig: Rig, case: StopFirst) -> None:
    text = case.blueprint(rig)
    rig.finish(rig.deploy(case.service, text))
    rig.retime(worker_grace_s=30)
    s = case.service
    rig.probes.answers[f"{s}-d1-1"] = FAIL  # readmitted when we say: test_restoring_..._no_thread
    d = rig.deploy(case.service, text)
    case.break_new(rig, d)
    rec = rig.finish(d)
    assert rec.status == DeployStatus.UPDATE_FAILED
    assert f"       starting {s}-d1-1 of the previous release again" in rig.messages(d)
    assert [c[:2] for c in rig.driver.calls] == [
        ("start", f"{s}-d1-1"),
        ("stop", f"{s}-d1-1"),
        ("start", f"{s}-d2-1"),
        ("stop", f"{s}-d2-1"),
        ("start", f"{s}-d1-1"),
    ]
    assert (rig.live(s), rig.instances(s), rig.running()) == (1, [(f"{s}-d1-1", "live")], [f"{s}-d1-1"])
    if s == "web":
        assert rig.proxy.ready("web") == []  # back in rotation only once it passes its check
    del rig.probes.answers[f"{s}-d1-1"]
    if s == "web":
        wait_for(lambda: rig.proxy.ready("web") == ["d1-1"], what="the restored instance back in rotation")


class LateServers(FakeProxy):
    """A FakeProxy that adds the servers named in ``late`` only once something tried to set the
    state of that missing server (or after 0.5 s): it widens the window between an instance's
    start and its server."""

    def __init__(self) -> None:
        super().__init__()
        self.late: set[str] = set()
        self.tried: set[str] = set()

    def set_state(self, service: str, name: str, admin: str) -> None:
        if name not in {s.name for s in self.servers(service)}:
            self.tried.add(name)
        super().set_state(service, name, admin)

    def add_server(self, service: str, name: str, port: int) -> None:
        deadline = time.monotonic() + 0.5
        while name in self.late and name not in self.tried and time.monotonic() < deadline:
            time.sleep(0.01)
        super().add_server(service, name, port)


def test_restoring_the_old_release_raises_in_no_thread(rigs: RigFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    errors: list[BaseException | None] = []
    monkeypatch.setattr(threading, "excepthook", lambda args: errors.append(args.exc_value))
    proxy = LateServers()
    rig = rigs(proxy=proxy)
    text = disk_web(rig)
    rig.finish(rig.deploy("web", text))
    proxy.late.add("d1-1")
    d = rig.deploy("web", text)
    unhealthy(rig, d)
    assert rig.finish(d).status == DeployStatus.UPDATE_FAILED
    back = "web-d1-1 is healthy again and back in rotation"
    wait_for(lambda: errors or back in [e["message"] for e in rig.store.events(service="web")], what="readmission")
    assert errors == []


def test_a_disk_is_the_same_directory_for_every_release(rig: Rig) -> None:
    text = disk_web(rig)
    rig.finish(rig.deploy("web", text))
    rig.finish(rig.deploy("web", text))
    envs = [p.spec.env for p in rig.host.processes.values()]
    mount, target = str(rig.tmp / "mnt" / "data"), str(rig.settings.disks_dir / "web" / "data")
    assert [(e["RENDER_DISK_MOUNT_PATH"], e["SLIPSTREAM_DISK_PATH"]) for e in envs] == [(mount, target)] * 2
    assert (rig.tmp / "mnt" / "data").resolve() == (rig.settings.disks_dir / "web" / "data").resolve()


def test_the_restored_old_release_keeps_its_disk(rig: Rig) -> None:
    text = disk_web(rig)
    rig.finish(rig.deploy("web", text))
    rig.probes.answers["web-d1-1"] = FAIL  # no readmission race: test_restoring_..._no_thread
    d = rig.deploy("web", text)
    unhealthy(rig, d)
    assert rig.finish(d).status == DeployStatus.UPDATE_FAILED
    restored = [p for p in rig.host.processes.values() if p.alive]
    assert [p.spec.instance_id for p in restored] == ["web-d1-1"]
    assert restored[0].spec.env.get("RENDER_DISK_MOUNT_PATH") == str(rig.tmp / "mnt" / "data")

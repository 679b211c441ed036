"""Cron jobs: each run uses the newest live build and env, runs never overlap, runs are capped.

Rules (Render's): schedules are 5-field cron expressions in UTC. A run that is due while the
previous one is still running is delayed until it ends; so is a manual run (``slipstream jobs run``)
asked for while one runs: at most one run waits, and runs never overlap. A run longer than the cap
(12 h by default) is stopped and recorded ``timed_out``.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from croniter import croniter

from slipstream.engine.context import DeployContext
from slipstream.engine.release import BuildRef, Release
from slipstream.errors import InvalidInput, NotFound
from slipstream.logs.model import Source, Stream

log = logging.getLogger("slipstream.cron")


def next_fire(schedule: str, after: float) -> float:
    """The first time strictly after ``after`` (epoch seconds) at which ``schedule`` fires, in UTC."""
    base = dt.datetime.fromtimestamp(after, dt.UTC)
    return float(croniter(schedule, base).get_next(float))


class CronScheduler:
    """Fires cron services on schedule or on demand; one run per service at a time."""

    def __init__(
        self,
        ctx: DeployContext,
        *,
        clock: Callable[[], float] = time.time,
        tick_s: float = 1.0,
        max_run_s: float = 12 * 3600,
    ) -> None:
        self.ctx = ctx
        self.clock = clock
        self.tick_s = tick_s
        self.max_run_s = max_run_s
        self._lock = threading.Lock()
        self._next: dict[str, tuple[str, float]] = {}  # service -> (schedule, next fire time)
        self._running: dict[str, threading.Thread] = {}
        self._waiting: dict[str, str] = {}  # service -> trigger of the delayed run
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self.ctx.store.end_running_cron_runs()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="cron")
        self._thread.start()

    def close(self) -> None:
        self._stop.set()

    def _loop(self) -> None:
        while not self._stop.wait(self.tick_s):
            try:
                self.tick()
            except Exception:  # never let one bad service stop the schedule
                log.exception("cron tick failed")

    def tick(self) -> None:
        """Fire every cron service whose time has come."""
        now = self.clock()
        for svc in self.ctx.store.services("cron"):
            if svc.live_deploy_id is None:
                continue
            schedule = self.ctx.store.deploy_release(svc.live_deploy_id).get("schedule")
            if not schedule:
                continue
            known = self._next.get(svc.name)
            if known is None or known[0] != schedule:
                self._next[svc.name] = (schedule, next_fire(schedule, now))
                continue
            if now >= known[1]:
                self._next[svc.name] = (schedule, next_fire(schedule, now))
                self.trigger(svc.name, "schedule")

    def trigger(self, service: str, trigger: str = "manual") -> str:
        """Start a run now, or delay it until the running one ends. Returns "started" or "delayed"."""
        svc = self.ctx.store.service(service)
        if svc.type != "cron":
            raise InvalidInput(f"{service} is a {svc.type} service, not a cron job")
        if svc.live_deploy_id is None:
            raise NotFound(f"{service} has no live deploy yet", f"deploy it with 'slipstream deploy {service}'")
        with self._lock:
            if service in self._running:
                self._waiting[service] = trigger
                self.ctx.store.event(
                    "cron", f"{service}: {trigger} run delayed until the running one ends", service=service
                )
                return "delayed"
            t = threading.Thread(target=self._run_chain, args=(service, trigger), daemon=True, name=f"cron-{service}")
            self._running[service] = t
            t.start()
            return "started"

    def wait_idle(self, service: str, timeout: float = 30) -> None:
        """Block until no run of ``service`` is running or waiting (tests, shutdown)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if service not in self._running:
                    return
            time.sleep(0.05)

    def _run_chain(self, service: str, trigger: str) -> None:
        try:
            while True:
                self._run_once(service, trigger)
                with self._lock:
                    trigger = self._waiting.pop(service, "")
                    if not trigger:
                        self._running.pop(service, None)
                        return
        except Exception:
            log.exception("cron run of %s failed", service)
            with self._lock:
                self._running.pop(service, None)
                self._waiting.pop(service, None)

    def _run_once(self, service: str, trigger: str) -> None:
        svc = self.ctx.store.service(service)
        deploy_id = svc.live_deploy_id
        assert deploy_id is not None
        release = Release.from_dict(self.ctx.store.deploy_release(deploy_id))
        build = BuildRef.of(self.ctx.store.build(self.ctx.store.deploy(deploy_id).build_id or 0))
        log_path = self.ctx.settings.instances_dir / f"{service}-cron.log"
        run_id = self.ctx.store.new_cron_run(service, deploy_id, trigger, str(log_path))
        env = self.ctx.instances.env(release, build, None, f"{service}-run{run_id}")
        if self.ctx.logs is not None:  # one file for every run; tagged with the live deploy
            self.ctx.logs.watch(log_path, Source(service, Stream.CRON, deploy_id))
        self.ctx.store.event("cron", f"{service}: run {run_id} started ({trigger})", service=service)
        command = (release.container or {}).get("docker_command") if build.image else release.start_command
        user = None if build.image else self.ctx.instances.user_name(service)
        code = self.ctx.driver.run_once(
            command or "",
            build.workdir,
            env,
            log_path,
            timeout_s=self.max_run_s,
            image=build.image,
            user=user,
            memory_limit_mb=release.memory_limit_mb,
            cpus=self.ctx.instances.cpus(release),
        )
        status = "succeeded" if code == 0 else ("timed_out" if code == 124 else "failed")
        self.ctx.store.finish_cron_run(run_id, status, code)
        self.ctx.store.event("cron", f"{service}: run {run_id} {status} (exit {code})", service=service)

    def runs(self, service: str) -> list[dict[str, Any]]:
        """A cron job's runs, newest first (their output is in 'slipstream logs', not a path)."""
        self.ctx.store.service(service)
        return [{k: v for k, v in run.items() if k != "log_path"} for run in self.ctx.store.cron_runs(service)]

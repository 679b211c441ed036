"""Health after the flip: live web instances keep being checked (Render's numbers by default:
out of rotation after 15 s of failing checks, restarted after 60 s), and HAProxy itself: killed
(kill -9, the OOM killer), it is started again with the live routes at once (a pidfd shows the
exit; else within ``PROXY_CHECK_S``); the embedded PostgreSQL, killed, is started again at the
next round."""

from __future__ import annotations

import logging
import os
import select
import threading
import time
from collections.abc import Callable, Sequence

from slipstream.engine.context import DeployContext
from slipstream.engine.health import Probe, Target, probe_many
from slipstream.engine.names import server_of
from slipstream.engine.reconcile import live_routes
from slipstream.engine.release import Release, hostname
from slipstream.state.store import InstanceRecord
from slipstream.states import InstancePhase, ServiceType

log = logging.getLogger("slipstream.monitor")

PROXY_CHECK_S = 0.5  # a pidfile read and a /proc look-up: cheap enough to bound an outage this tightly
PROXY_WATCH_S = 5.0  # between looks while a pidfd tells the moment HAProxy exits


class LiveMonitor:
    """Checks every live web and private instance each ``interval_s`` and acts on sustained failure."""

    def __init__(
        self, ctx: DeployContext, *, interval_s: float = 5, unroute_after_s: float = 15, restart_after_s: float = 60
    ) -> None:
        self.ctx = ctx
        self.interval_s = interval_s
        self.unroute_after_s = unroute_after_s
        self.restart_after_s = restart_after_s
        self._failing_since: dict[str, float] = {}
        self._unrouted: set[str] = set()
        self._releases: dict[int, Release] = {}  # a deploy's release never changes: decrypted once
        self._stop = threading.Event()
        self.probe_all: Callable[[Sequence[Target]], list[Probe]] = probe_many  # tests steer the checks here

    def start(self) -> None:
        threading.Thread(target=self._loop, daemon=True, name="live-monitor").start()
        threading.Thread(target=self._proxy_loop, daemon=True, name="proxy-watch").start()

    def close(self) -> None:
        self._stop.set()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                if self.ctx.databases is not None:
                    self.ctx.databases.ensure_running()
            except Exception:
                log.exception("starting PostgreSQL again failed")
            try:
                self.check_all()
            except Exception:
                log.exception("live health check round failed")

    def _proxy_loop(self) -> None:
        while not self._stop.is_set():
            if not self._await_proxy_exit():
                self._stop.wait(PROXY_CHECK_S)
            try:
                self.ensure_proxy()
            except Exception:
                log.exception("starting HAProxy again failed")

    def _await_proxy_exit(self) -> bool:
        """Wait on a pidfd of the running HAProxy until it exits (at most ``PROXY_WATCH_S``, the net
        for anything an exit does not show); False at once where there is no pid or pidfd to
        wait on (a fake proxy, an old kernel), and the loop looks every ``PROXY_CHECK_S`` instead.
        Two looks a second at the pidfile and /proc cost ~0.1 % of a core; a pidfd costs nothing."""
        pid_of: Callable[[], int | None] | None = getattr(self.ctx.proxy, "pid", None)  # the real proxy's
        pid = pid_of() if pid_of is not None else None
        if pid_of is None or not isinstance(pid, int):
            return False
        try:
            fd = os.pidfd_open(pid)
        except (OSError, AttributeError):
            return False
        try:
            if pid_of() == pid:  # the pidfd is of the HAProxy read above, not of a process reusing its pid
                select.select([fd], [], [], PROXY_WATCH_S)
        finally:
            os.close(fd)
        return True

    def ensure_proxy(self) -> bool:
        """Start the proxy again, with the live routes, if its process is gone; True if it was."""
        if self._stop.is_set() or self.ctx.proxy.running():  # stopped on purpose by a shutdown
            return False
        self.ctx.proxy.start(live_routes(self.ctx))
        log.warning("HAProxy was not running; started again with the live routes")
        self.ctx.store.event("instance", "HAProxy was not running; started again with the live routes")
        return True

    def check_all(self) -> None:
        """One round over every live instance of every web service: all checked at once, then judged."""
        seen: dict[int, Release] = {}
        due: list[tuple[InstanceRecord, Release]] = []
        types = self.ctx.store.service_types()
        for inst in self.ctx.store.instances():  # one query for all; no service config decoded
            if not ServiceType(types.get(inst.service, "worker")).routed:
                continue
            if inst.state != InstancePhase.LIVE or not self.ctx.instances.alive(inst.id):
                self._failing_since.pop(inst.id, None)  # crashes are the runtime's business
                continue
            release = self._releases.get(inst.deploy_id) or Release.from_dict(
                self.ctx.store.deploy_release(inst.deploy_id)
            )
            seen[inst.deploy_id] = release
            due.append((inst, release))
        probes = self.probe_all([check_target(release, inst.port or 0) for inst, release in due])
        for (inst, _), probe in zip(due, probes, strict=True):
            self._judge(inst.service, inst, probe.ok, probe.reason)
        self._releases = seen  # only the deploys still live are kept

    def _judge(self, service: str, inst: InstanceRecord, ok: bool, reason: str) -> None:
        iid, name = inst.id, server_of(inst)
        now = time.monotonic()
        if ok:
            self._failing_since.pop(iid, None)
            if iid in self._unrouted:
                self._unrouted.discard(iid)
                self.ctx.proxy.set_state(service, name, "ready")
                self.ctx.store.event(
                    "health", f"{iid} passes its health check again; back in rotation", service=service
                )
            return
        since = self._failing_since.setdefault(iid, now)
        failing = now - since
        if failing >= self.restart_after_s:
            self.ctx.store.event(
                "health",
                f"{iid} failed its health check for {failing:.0f} s ({reason}); restarting it",
                service=service,
            )
            self._failing_since.pop(iid, None)
            self.ctx.instances.restart_live(iid)
        elif failing >= self.unroute_after_s and iid not in self._unrouted:
            self._unrouted.add(iid)
            self.ctx.proxy.set_state(service, name, "maint")
            self.ctx.store.event(
                "health",
                f"{iid} failed its health check for {failing:.0f} s ({reason}); taken out of rotation",
                service=service,
            )


def check_target(release: Release, port: int) -> Target:
    """The live check of an instance of ``release`` on ``port``: its path (or a TCP probe), sent
    with the service's first host name, as the deploy's check does."""
    host = release.hosts[0] if release.hosts else hostname(release.service)
    return Target(port, release.health_check_path or None, host)

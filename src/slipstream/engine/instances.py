"""Instances: the one place an :class:`InstanceSpec` is made, and every start, stop and drain.

Lifecycle of an instance as the engine sees it:
1. ``spec`` builds its spec from a release and a build (the only factory: a deploy's new
   instances and every restart after a daemon restart or a failed check get the same spec,
   memory cap, CPU share and port included); ``start`` records it ``starting`` and launches it.
2. The deploy promotes it ``live`` at the flip; runtime events then keep routing honest: a crash
   takes it out of rotation, and it is readmitted once its health check passes again.
3. ``drain`` waits until HAProxy shows no request in flight (bounded by its shutdown delay), then
   stops it and forgets it.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Collection
from pathlib import Path

from slipstream.engine.context import LogSink
from slipstream.engine.health import Probe, check_http, check_tcp, instance_port
from slipstream.engine.names import server_of
from slipstream.engine.release import BuildRef, Release, hostname, instance_env
from slipstream.errors import NotFound
from slipstream.logs.model import Source, Stream
from slipstream.osusers import ServiceUser, ServiceUsers, user_environment
from slipstream.proxy.base import ProxyControl
from slipstream.runtime.base import Driver, InstanceSpec, InstanceState, InstanceStatus
from slipstream.runtime.ports import describe_pid, foreign_listeners
from slipstream.secrets import Masker
from slipstream.settings import Settings
from slipstream.state.store import InstanceRecord, Store
from slipstream.states import InstancePhase, ServiceType

log = logging.getLogger("slipstream.engine")


class Instances:
    """Starts, watches and stops the instances of every service."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        proxy: ProxyControl,
        driver: Driver,
        masker: Masker,
        base_env: dict[str, str],
        closing: threading.Event,
        logs: LogSink | None = None,
        *,
        users: ServiceUsers | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.proxy = proxy
        self.driver = driver
        self.masker = masker
        self.base_env = base_env
        self._closing = closing
        self.logs = logs
        self._specs: dict[str, InstanceSpec] = {}
        self.foreign_listeners: Callable[[int, int], list[int]] = foreign_listeners  # tests replace it
        self.users = users  # None: every process runs as the daemon's own user
        self._port_lock = threading.Lock()
        self._picked: deque[int] = deque(maxlen=1024)  # ports handed out, recorded or about to be

    def user_of(self, service: str) -> ServiceUser | None:
        """The OS user ``service``'s native processes run as (created on first use), or None."""
        return self.users.prepare(service) if self.users is not None else None

    def pick_port(self, also_taken: Collection[int] = ()) -> int:
        """A port no recorded instance uses and no parallel deploy was just given (one lock for all)."""
        with self._port_lock:
            taken = {r.port for r in self.store.instances() if r.port} | set(self._picked) | set(also_taken)
            port = instance_port(taken, *self.settings.instance_ports)
            self._picked.append(port)
            return port

    # -- the factory ------------------------------------------------------------------------
    def log_path(self, iid: str) -> Path:
        """Where an instance's output goes."""
        return self.settings.instances_dir / f"{iid}.log"

    def env(self, release: Release, build: BuildRef, port: int | None, iid: str) -> dict[str, str]:
        """The complete environment of an instance (or of a one-off command when ``port`` is None).
        A container gets the service's variables only: the host's PATH or HOME would override its
        image's. A service with its own user gets that user's HOME, USER and LOGNAME."""
        base = dict(self.base_env)
        user = None if build.image else self.user_of(release.service)
        if user is not None:
            base.update(user_environment(user))
        return instance_env(
            release,
            base={} if build.image else base,
            path_prefix=build.path_prefix,
            extra=build.extra_env,
            port=port,
            instance_id=iid,
            commit=build.commit,
            http_port=self.settings.http_port,
        )

    def spec(self, iid: str, deploy_id: int, port: int | None, release: Release, build: BuildRef) -> InstanceSpec:
        """The spec of one instance of ``release`` on ``build``: the only place one is made."""
        env = self.env(release, build, port, iid)
        container = release.container or {}
        return InstanceSpec(
            instance_id=iid,
            service=release.service,
            deploy_id=deploy_id,
            command=(container.get("docker_command") or "") if build.image else (release.start_command or ""),
            cwd=build.workdir,
            env=env,
            log_path=self.log_path(iid),
            port=port,
            shutdown_delay_s=release.shutdown_delay_s,
            memory_limit_mb=release.memory_limit_mb,
            cpus=self.cpus(release),
            user=None if build.image else self.user_name(release.service),
            image=build.image,
            container_port=_container_port(release) if build.image else None,
            volumes=self.volumes(release) if build.image else (),
        )

    def cpus(self, release: Release) -> float | None:
        """An instance's CPU cap: its plan's share, at most the machine's cores (None when off or planless)."""
        if self.settings.cpu_limits == "off" or not release.cpus:
            return None
        return min(release.cpus, float(os.cpu_count() or 1))

    def user_name(self, service: str) -> str | None:
        """The name of the OS user ``service``'s native processes run as, or None (the daemon's)."""
        user = self.user_of(service)
        return user.name if user is not None else None

    def volumes(self, release: Release) -> tuple[tuple[str, str], ...]:
        """A container's persistent disk: the service's disk directory at its mountPath."""
        if not release.disk:
            return ()
        host = self.settings.disks_dir / release.service / str(release.disk.get("name") or "disk")
        mount = str(release.disk.get("mount_path") or "/data")
        return ((str(host), mount if mount.startswith("/") else f"/{mount}"),)

    def spec_for(self, inst: InstanceRecord) -> InstanceSpec | None:
        """The spec of a recorded instance, from its deploy's release and build (None if gone)."""
        try:
            release = Release.from_dict(self.store.deploy_release(inst.deploy_id))
            d = self.store.deploy(inst.deploy_id)
            b = self.store.build(d.build_id) if d.build_id else None
        except NotFound:
            return None
        if b is None or not b.workdir:
            return None
        return self.spec(inst.id, inst.deploy_id, inst.port, release, BuildRef.of(b))

    # -- facts --------------------------------------------------------------------------------
    def routed(self, service: str) -> bool:
        """Whether ``service`` takes traffic through the proxy."""
        try:
            return ServiceType(self.store.service(service).type).routed
        except (NotFound, ValueError):
            return True

    def alive(self, iid: str) -> bool:
        try:
            return self.driver.inspect(iid).state == InstanceState.RUNNING
        except NotFound:
            return False

    def status(self, iid: str) -> InstanceStatus | None:
        try:
            return self.driver.inspect(iid)
        except NotFound:
            return None

    def describe_exit(self, iid: str) -> str:
        """``"; the process exited with code 1"`` for an instance that is not running, else ``""``."""
        st = self.status(iid)
        if st is None or st.state == InstanceState.RUNNING:
            return ""
        return f"; the process {st.last_event or 'exited'}"

    def probe(self, release: Release, port: int) -> Probe:
        """One health check of an instance of ``release`` on ``port``."""
        if release.health_check_path:
            host = release.hosts[0] if release.hosts else hostname(release.service)
            return check_http(port, release.health_check_path, host)
        return check_tcp(port)

    # -- actions ------------------------------------------------------------------------------
    def start(self, spec: InstanceSpec, phase: InstancePhase = InstancePhase.STARTING) -> InstanceStatus:
        """Record the instance, launch it, record its pid."""
        rec = InstanceRecord(spec.instance_id, spec.service, spec.deploy_id, spec.port, None, None, phase)
        self.store.put_instance(rec)
        self.follow(spec)
        status = self.driver.start(spec)
        self._specs[spec.instance_id] = spec
        self.store.put_instance(
            InstanceRecord(rec.id, rec.service, rec.deploy_id, rec.port, status.pid, status.create_time, phase)
        )
        return status

    def follow(self, spec: InstanceSpec) -> None:
        """Have the log pipeline read the instance's output into the searchable store."""
        if self.logs is not None:
            self.logs.watch(spec.log_path, Source(spec.service, Stream.APP, spec.deploy_id, spec.instance_id))

    def stop(self, iid: str, timeout: float | None = None) -> None:
        """Stop an instance (SIGTERM, SIGKILL after ``timeout``) and forget its spec."""
        try:
            self.driver.stop(iid, timeout=timeout)
        except NotFound:
            pass
        self._specs.pop(iid, None)
        if self.logs is not None:
            self.logs.retire(self.log_path(iid))

    def spec_of(self, iid: str) -> InstanceSpec | None:
        """The spec an instance was last started (or adopted) with."""
        return self._specs.get(iid)

    def shutdown_delay(self, iid: str) -> float:
        spec = self._specs.get(iid)
        return spec.shutdown_delay_s if spec else 30.0

    def drain(self, inst: InstanceRecord) -> None:
        """Wait until no request is in flight to ``inst`` (bounded), then stop it and drop it."""
        delay = self.shutdown_delay(inst.id)
        deadline = time.monotonic() + delay
        if not self.routed(inst.service):
            self.stop(inst.id, timeout=delay)
            self.store.delete_instance(inst.id)
            return
        name = server_of(inst)
        while time.monotonic() < deadline:
            try:
                states = {s.name: s for s in self.proxy.servers(inst.service)}
            except NotFound:
                break
            s = states.get(name)
            if s is None or s.sessions == 0:
                break
            time.sleep(0.05)
        try:
            self.proxy.set_state(inst.service, name, "maint")
        except Exception:
            log.debug("set maint %s failed", name, exc_info=True)
        self.stop(inst.id, timeout=max(1.0, deadline - time.monotonic()))
        try:
            self.proxy.remove_server(inst.service, name)
        except Exception:
            log.debug("remove_server %s failed", name, exc_info=True)
        self.store.delete_instance(inst.id)

    def restart(self, inst: InstanceRecord) -> None:
        """Start a stopped instance again from its recorded release (undo of a stop-first deploy)."""
        spec = self.spec_for(inst)
        if spec is None:
            return
        if self.routed(inst.service):  # its server first, in maint: the readmission sets it ready once healthy
            self.proxy.add_server(inst.service, server_of(inst), inst.port or 0)
        self.start(spec, InstancePhase.LIVE)

    def restart_live(self, iid: str) -> None:
        """Stop and start a live instance with its own spec; it rejoins rotation once healthy."""
        inst = next((i for i in self.store.instances() if i.id == iid), None)
        spec = self._specs.get(iid) or (self.spec_for(inst) if inst else None)
        if inst is None or spec is None:
            return
        if self.routed(inst.service):  # no request reaches it while it restarts
            try:
                self.proxy.set_state(inst.service, server_of(inst), "maint")
            except NotFound:
                pass
        self.stop(iid, timeout=spec.shutdown_delay_s)
        self.start(spec, InstancePhase.LIVE)
        self._readmit_later(inst)

    def recover(self, inst: InstanceRecord) -> None:
        """After a daemon restart: adopt a live instance (or start it again); end any other."""
        spec = self.spec_for(inst)
        adopted = bool(spec and inst.pid and inst.create_time and self.driver.adopt(spec, inst.pid, inst.create_time))
        if spec is not None:
            self._specs[inst.id] = spec
        if inst.state == InstancePhase.LIVE and spec is not None:
            self.follow(spec)
            if not adopted:
                self.start(spec, InstancePhase.LIVE)
                self.store.event(
                    "instance", f"{inst.id} was not running after a daemon restart; started again", service=inst.service
                )
            return
        if adopted:
            self.driver.stop(inst.id, timeout=spec.shutdown_delay_s if spec else 5)
        self.store.delete_instance(inst.id)

    # -- runtime events -----------------------------------------------------------------------
    def on_event(self, iid: str, kind: str, message: str) -> None:
        """Runtime callback: keep a crashed live instance out of rotation until it is healthy."""
        inst = next((i for i in self.store.instances() if i.id == iid), None)
        if inst is None:
            return
        self.store.event("instance", self.masker.mask(f"{iid}: {message}"), service=inst.service)
        if kind in ("restarted", "started"):
            st = self.status(iid)
            if st is not None:
                self.store.put_instance(
                    InstanceRecord(inst.id, inst.service, inst.deploy_id, inst.port, st.pid, st.create_time, inst.state)
                )
        if inst.state != InstancePhase.LIVE or not self.routed(inst.service):
            return
        if kind == "exited":
            self.proxy.set_state(inst.service, server_of(inst), "maint")
        elif kind in ("restarted", "started"):
            self._readmit_later(inst)

    def _readmit_later(self, inst: InstanceRecord) -> None:
        threading.Thread(target=self.readmit, args=(inst,), daemon=True, name=f"readmit-{inst.id}").start()

    def readmit(self, inst: InstanceRecord, within_s: float = 300.0) -> bool:
        """Put ``inst`` back in rotation once its health check passes (False if it never did)."""
        release = Release.from_dict(self.store.deploy_release(inst.deploy_id))
        deadline = time.monotonic() + within_s
        told = False
        while time.monotonic() < deadline and not self._closing.is_set():
            if self.probe(release, inst.port or 0).ok:
                foreign = self.foreign_listener(inst)
                if foreign is not None:  # the check reached someone else's server: never route to it
                    if not told:
                        told = True
                        self.store.event(
                            "instance", f"{inst.id}: {foreign}; not back in rotation", service=inst.service
                        )
                    time.sleep(0.5)
                    continue
                self.proxy.set_state(inst.service, server_of(inst), "ready")
                self.store.event("instance", f"{inst.id} is healthy again and back in rotation", service=inst.service)
                return True
            time.sleep(0.1)
        return False

    def foreign_listener(self, inst: InstanceRecord) -> str | None:
        """What else listens on a local instance's port (``"port 20001 is taken by pid 7 (nc)"``), or
        None when only the instance itself does (or the driver's processes cannot be seen)."""
        spec, st = self._specs.get(inst.id), self.status(inst.id)
        if spec is None or spec.image or not inst.port or st is None or st.pid is None:
            return None
        foreign = self.foreign_listeners(inst.port, st.pid)
        return f"port {inst.port} is taken by {describe_pid(foreign[0])}" if foreign else None


def _container_port(release: Release) -> int | None:
    """The port the app listens on inside its container: the service's own PORT, else the driver's
    default (Render's 10000 for Docker services)."""
    raw = release.env.get("PORT")
    return int(raw) if raw and raw.isdigit() else None

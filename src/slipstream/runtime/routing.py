"""One driver for the engine over two kinds of instance: processes and containers.

An instance whose spec names an ``image`` runs on the container driver (Podman), any other on the
local process driver; the router remembers which driver holds each instance id, so stop, inspect,
signal and adopt reach the right one. One-off commands go to the container driver when given an
image. Both drivers report through the same ``on_event``. Without a container driver, an image spec
is refused with the reason.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from pathlib import Path

from slipstream.errors import NotFound, Unavailable
from slipstream.runtime.base import Driver, InstanceSpec, InstanceStatus
from slipstream.runtime.podman import PodmanDriver


class RoutingDriver:
    """Implements ``Driver`` over a process driver and an optional container driver."""

    def __init__(self, local: Driver, containers: PodmanDriver | None = None) -> None:
        self.local = local
        self.containers = containers
        self._owner: dict[str, Driver] = {}
        self._lock = threading.Lock()

    def _for_spec(self, spec: InstanceSpec) -> Driver:
        if spec.image is None:
            return self.local
        if self.containers is None:
            raise Unavailable(
                f"instance {spec.instance_id} needs a container engine, which this machine lacks",
                "install Podman ('make install') and restart slipstream",
            )
        return self.containers

    def _for_id(self, instance_id: str) -> list[Driver]:
        with self._lock:
            owner = self._owner.get(instance_id)
        if owner is not None:
            return [owner]
        drivers: list[Driver] = [self.local]
        if self.containers is not None:
            drivers.append(self.containers)
        return drivers

    def start(self, spec: InstanceSpec) -> InstanceStatus:
        driver = self._for_spec(spec)
        status = driver.start(spec)
        with self._lock:
            self._owner[spec.instance_id] = driver
        return status

    def stop(self, instance_id: str, timeout: float | None = None) -> None:
        for driver in self._for_id(instance_id):
            try:
                driver.stop(instance_id, timeout=timeout)
            except NotFound:
                continue
            break
        else:
            raise NotFound(f"unknown instance {instance_id}")
        with self._lock:
            self._owner.pop(instance_id, None)

    def signal(self, instance_id: str, sig: int) -> None:
        for driver in self._for_id(instance_id):
            try:
                driver.signal(instance_id, sig)
                return
            except NotFound:
                continue
        raise NotFound(f"unknown instance {instance_id}")

    def inspect(self, instance_id: str) -> InstanceStatus:
        for driver in self._for_id(instance_id):
            try:
                return driver.inspect(instance_id)
            except NotFound:
                continue
        raise NotFound(f"unknown instance {instance_id}")

    def list(self) -> list[InstanceStatus]:
        found = [*self.local.list(), *(self.containers.list() if self.containers else [])]
        return sorted(found, key=lambda s: s.instance_id)

    def adopt(self, spec: InstanceSpec, pid: int, create_time: float) -> bool:
        if spec.image is not None and self.containers is None:
            return False
        driver = self._for_spec(spec)
        adopted = driver.adopt(spec, pid, create_time)
        if adopted:
            with self._lock:
                self._owner[spec.instance_id] = driver
        return adopted

    def close(self) -> None:
        self.local.close()
        if self.containers is not None:
            self.containers.close()

    def run_once(
        self,
        command: str,
        cwd: Path,
        env: Mapping[str, str],
        log_path: Path,
        timeout_s: float | None = None,
        on_output: Callable[[str], None] | None = None,
        cancel: threading.Event | None = None,
        *,
        image: str | None = None,
        user: str | None = None,
        memory_limit_mb: int | None = None,
        cpus: float | None = None,
    ) -> int:
        if image is None:
            return self.local.run_once(
                command,
                cwd,
                env,
                log_path,
                timeout_s,
                on_output,
                cancel,
                user=user,
                memory_limit_mb=memory_limit_mb,
                cpus=cpus,
            )
        if self.containers is None:
            raise Unavailable("a one-off command in a container needs Podman, which this machine lacks")
        return self.containers.run_once(
            command,
            cwd,
            env,
            log_path,
            timeout_s,
            on_output,
            cancel=cancel,
            image=image,
            memory_limit_mb=memory_limit_mb,
            cpus=cpus,
        )

    def remove_unsupervised(self) -> tuple[str, ...]:
        """Containers of this installation that nothing supervises (after adoption at start)."""
        return tuple(self.containers.remove_unsupervised()) if self.containers is not None else ()

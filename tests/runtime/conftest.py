"""Fixtures for runtime tests: drivers that always stop what they started, and small helpers."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from slipstream.runtime import InstanceSpec, LocalDriver

BASE_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}


def is_live(pid: int) -> bool:
    """True when ``pid`` runs and is not a zombie."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


class Events:
    """Collects on_event calls."""

    def __init__(self) -> None:
        self.items: list[tuple[str, str, str]] = []

    def __call__(self, instance_id: str, kind: str, message: str) -> None:
        self.items.append((instance_id, kind, message))

    def kinds(self, instance_id: str | None = None) -> list[str]:
        return [k for i, k, _ in self.items if instance_id in (None, i)]


@pytest.fixture
def make_spec(tmp_path: Path) -> Callable[..., InstanceSpec]:
    """Build an InstanceSpec running ``command`` in tmp_path."""

    def make(command: str, instance_id: str = "web-d1-1", **kw: object) -> InstanceSpec:
        env = {**BASE_ENV, "PORT": str(kw.pop("port", 10001)), **kw.pop("env", {})}  # type: ignore[dict-item]
        return InstanceSpec(
            instance_id=instance_id,
            service="web",
            deploy_id=1,
            command=command,
            cwd=tmp_path,
            env=env,
            log_path=tmp_path / "logs" / f"{instance_id}.log",
            **kw,
        )  # type: ignore[arg-type]

    return make


@pytest.fixture
def drivers() -> Iterator[Callable[..., LocalDriver]]:
    """Make LocalDrivers with fast test timings; on teardown every instance is stopped."""
    made: list[LocalDriver] = []
    extra_pids: list[int] = []  # group leaders a test started itself; killed only if still the same process

    def make(**kw: object) -> LocalDriver:
        opts: dict[str, object] = {"poll_interval": 0.02, "backoff_initial": 0.1, "backoff_max": 0.4}
        opts.update(kw)
        d = LocalDriver(**opts)  # type: ignore[arg-type]
        made.append(d)
        return d

    make.extra_pids = extra_pids  # type: ignore[attr-defined]
    try:
        yield make
    finally:
        for d in made:
            for st in d.list():
                try:
                    d.stop(st.instance_id, timeout=0.5)
                except Exception:
                    pass
            d.close()
        for pid in extra_pids:
            try:
                if is_live(pid) and os.getpgid(pid) == pid:
                    os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


@pytest.fixture
def driver(drivers: Callable[..., LocalDriver]) -> LocalDriver:
    return drivers()

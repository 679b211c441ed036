"""An in-process slipstream for engine and API tests: a real Engine on fakes, in milliseconds.

A :class:`Rig` is one "daemon": a real :class:`Engine` with a real SQLite :class:`Store` in the
test's directory, a ``FakeProxy``, a ``FakeDriver`` (its runtime events wired to the engine, as the
daemon wires the real one), a ``FakeBuilder`` and short timings. Nothing it runs opens a socket
or starts a process:

- **health checks** go to :class:`Probes` instead of HTTP/TCP: an instance whose pretend process
  is not alive is refused (like a dead app); a live one answers ``Probes.default`` unless the test
  set an answer for its instance id;
- **ports** come from a counter (20001, 20002, ...; the ``rigs`` fixture), so a test can compare
  the proxy's calls as data;
- **app output**: :meth:`Rig.app_prints` appends lines to an instance's log file, as the app would.

A daemon restart is a second Rig on the same directory, FakeHost and FakeProxy
(``rigs(host=old.host, proxy=old.proxy)``), usually after :meth:`Rig.kill` stopped the old one
where it stood, as ``kill -9`` would.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

import yaml

from slipstream.builds.fake import FakeBuilder
from slipstream.engine.engine import Engine
from slipstream.engine.health import Probe, Target
from slipstream.engine.release import Release
from slipstream.osusers import ServiceUsers
from slipstream.proxy.fake import FakeProxy
from slipstream.runtime.fake import FakeDriver, FakeHost
from slipstream.secrets import Masker, SecretBox
from slipstream.settings import Settings
from slipstream.state.store import DeployRecord, Store
from slipstream.states import DeployStatus
from tests.polling import wait_for

T = TypeVar("T")

# Timings short enough that a whole deploy takes a few tens of milliseconds. The windows before and
# after the flip are off unless a test is about them (``rigs(settle_s=...)`` or ``Rig.retime``):
# each costs at least 50 ms of polling per deploy.
FAST: dict[str, Any] = {
    "min_healthy_s": 0.0,
    "settle_s": 0.0,
    "worker_grace_s": 0.05,
    "health_deadline_s": 1.0,
    "live_check_interval_s": 3600.0,  # the live monitor runs when a test calls check_all()
}
PASS = Probe(True, "status 200")
FAIL = Probe(False, "/healthz answered status 503")


# -- blueprints ---------------------------------------------------------------------------------
def service(type: str, name: str, **keys: Any) -> dict[str, Any]:
    """One blueprint service: its render.yaml keys (``startCommand`` defaults to ``serve``)."""
    entry: dict[str, Any] = {"type": type, "name": name, "runtime": "python"}
    if type != "keyvalue":
        entry["startCommand"] = "serve"
    entry.update(keys)
    return entry


def web(name: str = "web", **keys: Any) -> dict[str, Any]:
    return service("web", name, **{"healthCheckPath": "/healthz", "maxShutdownDelaySeconds": 1, **keys})


def worker(name: str = "jobs", **keys: Any) -> dict[str, Any]:
    return service("worker", name, **{"maxShutdownDelaySeconds": 1, **keys})


def cron(name: str = "nightly", **keys: Any) -> dict[str, Any]:
    return service("cron", name, **{"schedule": "0 3 * * *", **keys})


def render_yaml(*services: Mapping[str, Any], **top: Any) -> str:
    """A render.yaml holding ``services`` (and any top-level keys, e.g. ``databases``)."""
    return yaml.safe_dump({"services": [dict(s) for s in services], **top}, sort_keys=False)


# -- health checks ------------------------------------------------------------------------------
class Probes:
    """The health checks of one engine, steered by the test (replaces ``Instances.probe`` and the live monitor's ``probe_all``).

    ``answers[instance id]`` is what a live instance answers (else ``default``); an instance with no
    live pretend process is refused. ``freeze()`` makes every later check block for good: the
    thread that asked never acts again, like a daemon killed with ``kill -9``.
    """

    def __init__(self, host: FakeHost, default: Probe = PASS) -> None:
        self.host = host
        self.default = default
        self.answers: dict[str, Probe] = {}
        self.frozen: list[threading.Thread] = []  # the threads that will never return
        self._frozen = False

    def __call__(self, release: Release, port: int) -> Probe:
        return self.answer(port)

    def answer(self, port: int) -> Probe:
        if self._frozen:
            self.frozen.append(threading.current_thread())
            threading.Event().wait()  # never returns: the daemon is dead
        alive = [p for p in list(self.host.processes.values()) if p.alive and p.spec.port == port]
        if not alive:
            return Probe(False, f"connection refused on port {port} (is the app listening on $PORT?)")
        return self.answers.get(alive[-1].spec.instance_id, self.default)

    def all(self, targets: Sequence[Target]) -> list[Probe]:
        """The batch the live monitor asks for (replaces ``LiveMonitor.probe_all``)."""
        return [self.answer(t.port) for t in targets]

    def freeze(self) -> None:
        self._frozen = True


# -- the rig -------------------------------------------------------------------------------------
@dataclass
class Rig:
    """One in-process daemon and the fakes around it."""

    tmp: Path
    settings: Settings
    store: Store
    proxy: FakeProxy
    driver: FakeDriver
    builder: FakeBuilder
    probes: Probes
    engine: Engine
    project: str = "shop"
    killed: bool = False
    _dirs: Iterator[int] = field(default_factory=itertools.count)

    @property
    def host(self) -> FakeHost:
        return self.driver.host

    # -- requests ---------------------------------------------------------------------------
    def write_blueprint(self, text: str, where: str | None = None) -> Path:
        """Write ``text`` as render.yaml in a directory of its own (or in ``where``); its path."""
        d = self.tmp / (where or f"app{next(self._dirs)}")
        d.mkdir(parents=True, exist_ok=True)
        path = d / "render.yaml"
        path.write_text(text)
        return path

    def deploy(self, service: str, blueprint: str | Path | None = None, project: str | None = None) -> int:
        """Queue a deploy of ``service`` from a blueprint text (or path), its directory as the source."""
        path = self.write_blueprint(blueprint) if isinstance(blueprint, str) else blueprint
        from_dir = path.parent if path is not None else self.tmp
        return self.engine.deploy(service, blueprint=path, from_dir=from_dir, project=project or self.project)

    # -- reading ------------------------------------------------------------------------------
    def record(self, deploy_id: int) -> DeployRecord:
        return self.store.deploy(deploy_id)

    def status(self, deploy_id: int) -> DeployStatus:
        return self.store.deploy(deploy_id).status

    def wait_until(self, deploy_id: int, *statuses: DeployStatus, timeout: float = 5.0) -> DeployRecord:
        """Wait until deploy ``deploy_id`` is in one of ``statuses`` (default: until it has ended)."""

        def reached() -> DeployRecord | None:
            rec = self.store.deploy(deploy_id)
            done = rec.status in statuses if statuses else rec.finished_at is not None
            return rec if done else None

        what = f"deploy {deploy_id} to reach {', '.join(statuses) or 'its end'}"
        return wait_for(reached, timeout, what)

    def wait_step(self, deploy_id: int, step: str, timeout: float = 5.0) -> DeployRecord:
        """Wait until deploy ``deploy_id`` has recorded how long ``step`` took (the step is over)."""

        def done() -> DeployRecord | None:
            rec = self.store.deploy(deploy_id)
            return rec if step in rec.steps else None

        return wait_for(done, timeout, f"step {step} of deploy {deploy_id}")

    def wait_said(self, deploy_id: int, fragment: str, timeout: float = 5.0) -> str:
        """Wait until the transcript of ``deploy_id`` has a line holding ``fragment``; that line."""

        def said() -> str | None:
            return next((m for m in self.messages(deploy_id) if fragment in m), None)

        return wait_for(said, timeout, f"{fragment!r} in the transcript of deploy {deploy_id}")

    def finish(self, deploy_id: int, timeout: float = 5.0) -> DeployRecord:
        """Wait for deploy ``deploy_id`` to end; its record."""
        return self.wait_until(deploy_id, timeout=timeout)

    def messages(self, deploy_id: int, kinds: Iterable[str] | None = None) -> list[str]:
        """The transcript of a deploy (event messages, optionally of some kinds only)."""
        wanted = set(kinds) if kinds is not None else None
        events = self.store.events(deploy_id=deploy_id, limit=10_000)
        return [e["message"] for e in events if wanted is None or e["kind"] in wanted]

    def live(self, service: str) -> int | None:
        return self.store.service(service).live_deploy_id

    def instances(self, service: str) -> list[tuple[str, str]]:
        """``(instance id, phase)`` of every recorded instance of ``service``."""
        return [(i.id, i.state) for i in self.store.instances(service)]

    def running(self) -> list[str]:
        """Instance ids with a live pretend process on the host, sorted."""
        return sorted(p.spec.instance_id for p in self.host.running())

    def app_prints(self, iid: str, *lines: str) -> None:
        """Append ``lines`` to the log file of instance ``iid``, as the app would print them."""
        with open(self.engine.instances.log_path(iid), "a", encoding="utf-8") as f:
            f.writelines(line + "\n" for line in lines)

    def retime(self, **timings: float) -> None:
        """Change the timings the next deploy steps read (e.g. a long settle window to crash in)."""
        self.engine.ctx.settings = replace(self.engine.ctx.settings, **timings)

    # -- daemon life --------------------------------------------------------------------------
    def kill(self) -> None:
        """Stop this daemon where it stands, as ``kill -9``: its threads never act again, its
        pretend processes keep running on the host and HAProxy keeps its state."""
        self.probes.freeze()
        self.engine.cron.close()
        self.engine.monitor.close()
        self.engine.event_pruner.close()
        self.driver.close()
        self.killed = True

    def close(self) -> None:
        """End this daemon's deploys and stop supervising (as at the end of a test)."""
        if self.killed:
            return
        for svc in self.store.services():
            self.engine.queue.cancel(svc.name, "the test ended")
        self.engine.close()
        self.engine.queue.join(timeout=2)


def make_rig(
    tmp: Path,
    *,
    host: FakeHost | None = None,
    proxy: FakeProxy | None = None,
    start: bool = True,
    users: ServiceUsers | None = None,
    **settings: Any,
) -> Rig:
    """A daemon on the state under ``tmp/home`` (a new one, or the one a previous Rig left)."""
    s = Settings(home=tmp / "home", **{**FAST, **settings})
    s.ensure_dirs()
    store = Store(s.state_db, SecretBox(s.master_key))
    proxy = proxy or FakeProxy()
    driver = FakeDriver(host=host)
    builder = FakeBuilder(s.builds_dir)
    engine = Engine(s, store, proxy, driver, builder, Masker(), service_users=users)
    driver.on_event = engine.on_instance_event
    probes = Probes(driver.host)
    engine.instances.probe = probes  # type: ignore[method-assign]
    engine.monitor.probe_all = probes.all
    engine.instances.foreign_listeners = lambda port, pid: []  # no real sockets: a pretend port is the instance's
    rig = Rig(tmp, s, store, proxy, driver, builder, probes, engine)
    if start:
        engine.start()
    return rig

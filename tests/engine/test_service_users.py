"""Who runs what: with service users, every native process of a service gets its user (the
build, the pre-deploy command, instances, cron runs) and its HOME; containers and a daemon
without service users get none."""

from __future__ import annotations

from pathlib import Path

from slipstream.osusers import ServiceUser, ServiceUsers

from .conftest import RigFactory
from .harness import cron, render_yaml, web


class RecordedUsers(ServiceUsers):
    """Service users without useradd: a made-up uid per service, its HOME made here."""

    def __init__(self, home: Path) -> None:
        super().__init__(home / "builds", home / "cache", home / "disks")
        self.asked: list[str] = []

    def prepare(self, service: str) -> ServiceUser:
        self.asked.append(service)
        home = self.cache_dir / service / "home"
        home.mkdir(parents=True, exist_ok=True)
        return ServiceUser(f"slip-{service}", 4242, 4242, home)


def test_every_native_process_of_a_service_runs_as_its_user(rigs: RigFactory, tmp_path: Path) -> None:
    users = RecordedUsers(tmp_path / "state")
    rig = rigs(users=users, min_healthy_s=0.05, settle_s=0.05)
    rig.finish(rig.deploy("web", render_yaml(web(preDeployCommand="migrate"), cron(startCommand="report"))))
    home = str(users.cache_dir / "web" / "home")
    build = rig.builder.specs[-1]
    assert (build.user and build.user.name, build.env["HOME"], build.env["USER"]) == ("slip-web", home, "slip-web")
    assert rig.driver.run_once_users == ["slip-web"]  # the pre-deploy command
    spec = rig.engine.instances.spec_of("web-d1-1")
    assert spec is not None and (spec.user, spec.env["HOME"], spec.env["LOGNAME"]) == ("slip-web", home, "slip-web")

    rig.finish(rig.deploy("nightly", render_yaml(web(), cron(startCommand="report"))))
    assert rig.engine.cron.trigger("nightly") == "started"
    rig.engine.cron.wait_idle("nightly", timeout=5)
    assert rig.driver.run_once_users[-1] == "slip-nightly"


def test_without_service_users_everything_runs_as_the_daemon(rigs: RigFactory) -> None:
    rig = rigs(min_healthy_s=0.05, settle_s=0.05)
    rig.finish(rig.deploy("web", render_yaml(web(preDeployCommand="migrate"))))
    assert rig.builder.specs[-1].user is None and rig.driver.run_once_users == [None]
    spec = rig.engine.instances.spec_of("web-d1-1")
    assert spec is not None and spec.user is None

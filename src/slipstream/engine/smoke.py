"""Smoke checks (a slipstream extension): right after the flip, while the old release still runs,
each check must pass against every new instance, or traffic moves straight back."""

from __future__ import annotations

from typing import TYPE_CHECKING

from slipstream.engine.health import Probe, check_smoke
from slipstream.engine.release import BuildRef, hostname

if TYPE_CHECKING:
    from slipstream.engine.deployer import DeployRun


def run_smoke_checks(run: DeployRun, build: BuildRef) -> tuple[str, Probe] | None:
    """The release's smoke checks against each new instance; the first failure, if any."""
    run.say(f"-----> Running {len(run.release.smoke_checks)} smoke check(s)")
    host = run.release.hosts[0] if run.release.hosts else hostname(run.service)
    for check in run.release.smoke_checks:
        timeout = float(check.get("timeout_seconds") or 10)
        if check.get("command"):
            iid = f"{run.service}-smoke"
            code = run.ctx.driver.run_once(
                str(check["command"]),
                build.workdir,
                run.ctx.instances.env(run.release, build, None, iid),
                run.ctx.settings.instances_dir / f"{run.service}-d{run.id}-smoke.log",
                timeout_s=timeout,
                on_output=lambda line: run.say(line, "pre_deploy"),
                image=build.image,
                user=None if build.image else run.ctx.instances.user_name(run.service),
                memory_limit_mb=run.release.memory_limit_mb,
                cpus=run.ctx.instances.cpus(run.release),
            )
            if code != 0:
                return run.new[0][0], Probe(False, f"smoke check `{check['command']}` exited with {code}")
            continue
        for iid, _, port in run.new:
            probe = check_smoke(
                port, str(check["path"]), host, int(check.get("status") or 200), check.get("contains"), timeout
            )
            if not probe.ok:
                return iid, Probe(False, f"smoke check failed: {probe.reason}")
        run.say(f"       smoke check GET {check['path']}: ok")
    return None

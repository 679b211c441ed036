"""The settle window after a flip: the new release takes traffic while the old one still runs
behind it as HAProxy's backup servers. Smoke checks run, then the new instances are watched; on
any failure traffic moves straight back to the old release, which never stopped."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from slipstream import failpoints as fp
from slipstream.engine.names import server_of
from slipstream.engine.smoke import run_smoke_checks
from slipstream.states import DeployStatus

if TYPE_CHECKING:
    from slipstream.engine.deployer import DeployRun
    from slipstream.engine.gate import Gate
    from slipstream.engine.release import BuildRef
    from slipstream.state.store import InstanceRecord


def settle(run: DeployRun, gate: Gate, old: list[InstanceRecord], build: BuildRef) -> None:
    """Smoke checks, then the watch; a failure moves traffic back and fails the deploy."""
    window = run.ctx.settings.settle_s
    if not run.type.routed or (window <= 0 and not run.release.smoke_checks):
        return
    started = time.monotonic()
    fp.hit(fp.SETTLE)
    failed = run_smoke_checks(run, build) if run.release.smoke_checks else None
    if failed is None and window > 0:
        failed = gate.watch(window)
    if failed:
        iid, probe = failed
        run.ctx.proxy.switch(run.service, ready=[server_of(i) for i in old], drain=[n for _, n, _ in run.new])
        release_fallback(run)
        fp.hit(fp.MOVED_BACK)
        back = f"traffic moved back to deploy {old[0].deploy_id}" if old else "no earlier release to move back to"
        raise gate.failure(iid, f"failed right after the flip: {probe.reason}", then=back)
    release_fallback(run)
    run.to(DeployStatus.FLIPPING, step="settle", since=started)


def release_fallback(run: DeployRun) -> None:
    """The settle window is over (or traffic moved back): the old release is no longer a backup."""
    if run.falling_back:
        run.ctx.proxy.release_fallback(run.service)
        run.falling_back = False

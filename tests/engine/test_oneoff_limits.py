"""One-off commands get their service's limits: the pre-deploy command and cron runs are capped at
the plan's memory and CPU share, like its instances (the kernel side is in tests/runtime/test_cgroups.py)."""

from __future__ import annotations

import os

from .conftest import RigFactory
from .harness import cron, render_yaml, web


def test_pre_deploy_and_cron_runs_get_the_plan_limits(rigs: RigFactory) -> None:
    rig = rigs(min_healthy_s=0.05, settle_s=0.05)
    rig.finish(rig.deploy("web", render_yaml(web(plan="starter", preDeployCommand="migrate"))))
    cores = float(os.cpu_count() or 1)
    assert rig.driver.run_once_limits == [(512, min(0.5, cores))]  # starter: 512 MB, half a core

    rig.finish(rig.deploy("nightly", render_yaml(cron(plan="standard", startCommand="report"))))
    assert rig.engine.cron.trigger("nightly") == "started"
    rig.engine.cron.wait_idle("nightly", timeout=5)
    assert rig.driver.run_once_limits[-1] == (2048, min(1.0, cores))


def test_a_planless_one_off_has_no_memory_or_cpu_cap(rigs: RigFactory) -> None:
    rig = rigs(min_healthy_s=0.05, settle_s=0.05)
    rig.finish(rig.deploy("web", render_yaml(web(preDeployCommand="migrate"))))
    assert rig.driver.run_once_limits == [(None, None)]

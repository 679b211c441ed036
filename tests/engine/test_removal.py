"""Deletes (engine.removal): only on an explicit command, and nothing of another service is touched."""

from __future__ import annotations

import pytest

from slipstream.errors import NotFound

from .harness import FAIL, Rig, render_yaml, web

SHOP = render_yaml(web("web"), web("api"))


def test_deleting_a_service_leaves_the_others_serving(rig: Rig) -> None:
    for name in ("web", "api"):
        rig.finish(rig.deploy(name, SHOP))
    rig.engine.set_env("web", {"FEATURE": "on"})
    rig.finish(3)
    assert rig.engine.removal.service("web") == {"service": "web", "instances_stopped": 1, "disk_kept": None}
    assert [s.name for s in rig.store.services()] == ["api"]
    assert ([r.service for r in rig.proxy.routes()], rig.proxy.ready("api"), rig.running()) == (
        ["api"],
        ["d2-1"],
        ["api-d2-1"],
    )
    assert rig.store.projects() == {"shop": [("service", "api")]}
    assert [k for k in rig.store.kept_values() if k.startswith(("web.", "overrides:web"))] == []
    assert not (rig.settings.builds_dir / "web").exists() and (rig.settings.builds_dir / "api").exists()
    with pytest.raises(NotFound):
        rig.store.service("web")


def test_deleting_a_service_cancels_its_deploy_in_progress(rig: Rig) -> None:
    rig.finish(rig.deploy("web", SHOP))
    rig.probes.answers["web-d2-1"] = FAIL
    rig.retime(health_deadline_s=60)
    d = rig.deploy("web", SHOP)
    rig.wait_said(d, "Waiting for health check")
    assert rig.engine.removal.service("web")["instances_stopped"] == 1
    # the deploy ended canceled before the service went: its transcript says so; its record went
    # with the service (a later service of that name starts a history of its own)
    assert "canceled: service web was deleted; the live release keeps serving" in rig.messages(d)
    assert rig.store.deploys("web") == []
    assert (rig.running(), rig.proxy.routes()) == ([], [])


@pytest.mark.parametrize("purge", [False, True], ids=["kept", "purged"])
def test_a_deleted_service_keeps_its_disk_unless_purged(rig: Rig, purge: bool) -> None:
    disk = {"name": "data", "mountPath": str(rig.tmp / "mnt" / "data")}
    rig.finish(rig.deploy("web", render_yaml(web(disk=disk))))
    target = rig.settings.disks_dir / "web"
    answer = rig.engine.removal.service("web", purge_disks=purge)
    assert (answer["disk_kept"], target.exists()) == ((None, False) if purge else (str(target), True))


def test_deleting_a_project_deletes_what_it_owns_only(rig: Rig) -> None:
    rig.finish(rig.deploy("web", SHOP, project="alpha"))
    rig.finish(rig.deploy("api", SHOP, project="alpha"))
    rig.finish(rig.deploy("site", render_yaml(web("site")), project="beta"))
    answer = rig.engine.removal.project("alpha")
    assert (answer["project"], [d["service"] for d in answer["deleted"]], answer["errors"]) == (
        "alpha",
        ["api", "web"],
        [],
    )
    assert (rig.store.projects(), rig.running()) == ({"beta": [("service", "site")]}, ["site-d3-1"])
    with pytest.raises(NotFound) as info:
        rig.engine.removal.project("alpha")
    assert (info.value.message, info.value.hint) == ("unknown project 'alpha'", "projects: beta")


def test_rollback_never_reaches_into_a_deleted_service(rig: Rig) -> None:
    rig.finish(rig.deploy("web", SHOP))
    rig.finish(rig.deploy("web", SHOP))
    rig.engine.removal.service("web")
    rig.finish(rig.deploy("web", SHOP))
    with pytest.raises(NotFound, match="web has no earlier successful deploy to roll back to"):
        rig.engine.rollback("web")

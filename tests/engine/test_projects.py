"""Projects: every blueprint owns its resources; a name another project owns is refused, nothing recorded."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from slipstream.errors import Conflict
from slipstream.states import DeployStatus

from .harness import Rig, render_yaml, web, worker

SHARED = {"envVarGroups": [{"name": "shared", "envVars": [{"key": "REGION", "value": "eu"}]}]}
ALPHA = render_yaml(web("api", envVars=[{"fromGroup": "shared"}]), **SHARED)
BETA = render_yaml(web("site"))


def test_two_projects_live_side_by_side(rig: Rig) -> None:
    api = rig.deploy("api", ALPHA, project="alpha")
    site = rig.deploy("site", BETA, project="beta")
    assert [rig.finish(d).status for d in (api, site)] == [DeployStatus.LIVE, DeployStatus.LIVE]
    assert {s["name"]: s["project"] for s in rig.engine.status()} == {"api": "alpha", "site": "beta"}
    assert rig.store.projects() == {"alpha": [("group", "shared"), ("service", "api")], "beta": [("service", "site")]}
    assert {r.service: r.hosts for r in rig.proxy.routes()} == {"api": ("api.localhost",), "site": ("site.localhost",)}


def state(rig: Rig) -> tuple[Any, ...]:
    """Everything a refused request must leave as it was."""
    return (
        rig.store.projects(),
        [(s.name, s.project, s.blueprint, s.live_deploy_id) for s in rig.store.services()],
        [(d.id, d.service, d.status) for s in rig.store.services() for d in rig.store.deploys(s.name)],
        rig.store.kept_values(),
        len(rig.builder.specs),
    )


CLASHES: dict[str, tuple[Callable[[Rig], Any], str]] = {
    "deploy a service": (
        lambda rig: rig.deploy("api", render_yaml(web("api")), project="beta"),
        "service 'api' belongs to project 'alpha'; project 'beta' cannot use that name",
    ),
    "apply a blueprint": (
        lambda rig: rig.engine.apply(rig.write_blueprint(render_yaml(worker("mailer"), web("api"))), "beta"),
        "service 'api' belongs to project 'alpha'; project 'beta' cannot use that name",
    ),
    "use a group": (
        lambda rig: rig.deploy("site", render_yaml(web("site"), **SHARED), project="beta"),
        "env var group 'shared' belongs to project 'alpha'; project 'beta' cannot use that name",
    ),
}


@pytest.mark.parametrize(("request_", "message"), CLASHES.values(), ids=CLASHES.keys())
def test_a_name_another_project_owns_is_refused_and_nothing_recorded(
    rig: Rig, request_: Callable[[Rig], Any], message: str
) -> None:
    rig.finish(rig.deploy("api", ALPHA, project="alpha"))
    before = state(rig)
    with pytest.raises(Conflict) as info:
        request_(rig)
    assert (info.value.message, info.value.hint) == (
        message,
        "rename it in this blueprint, or delete it from 'alpha' first",
    )
    assert state(rig) == before


def test_plan_state_shows_one_project_and_names_the_others(rig: Rig) -> None:
    rig.finish(rig.deploy("api", ALPHA, project="alpha"))
    rig.finish(rig.deploy("site", BETA, project="beta"))
    alpha = rig.engine.plan_state("alpha")
    assert (alpha["project"], sorted(alpha["services"]), sorted(alpha["groups"]), alpha["databases"]) == (
        "alpha",
        ["api"],
        ["shared"],
        {},
    )
    assert alpha["foreign"] == {"service": {"site": "beta"}, "database": {}, "group": {}, "keyvalue": {}}
    beta = rig.engine.plan_state("beta")
    assert (sorted(beta["services"]), beta["groups"]) == (["site"], {})
    assert beta["foreign"] == {
        "service": {"api": "alpha"},
        "database": {},
        "group": {"shared": "alpha"},
        "keyvalue": {},
    }


def test_a_project_is_named_after_the_blueprint_directory_by_default(rig: Rig) -> None:
    path = rig.write_blueprint(BETA, "my shop")
    d = rig.engine.deploy("site", blueprint=path, from_dir=path.parent)
    assert rig.finish(d).status == DeployStatus.LIVE
    assert rig.store.service("site").project == "my-shop"

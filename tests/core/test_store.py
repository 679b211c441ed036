from __future__ import annotations

from pathlib import Path

import pytest

from slipstream.errors import NotFound
from slipstream.secrets import SecretBox
from slipstream.state import InstanceRecord, Store


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "state.db", SecretBox(tmp_path / "master.key"))


def test_env_is_encrypted_at_rest(store: Store, tmp_path: Path) -> None:
    store.upsert_service("web", "web", "python", {"hosts": ["web.localhost"]}, {"K": "plain-secret-xyz"}, None, None)
    assert store.service_env("web") == {"K": "plain-secret-xyz"}
    d = store.new_deploy("web", "deploy", source="x", release={"env": {"K": "plain-secret-xyz"}})
    assert store.deploy_release(d)["env"]["K"] == "plain-secret-xyz"
    store.keep_value("web.GEN", "plain-secret-xyz")
    for f in tmp_path.glob("state.db*"):
        assert b"plain-secret-xyz" not in f.read_bytes()


def test_transitions_record_steps_and_make_live(store: Store) -> None:
    store.upsert_service("web", "web", "python", {}, {}, None, None)
    d = store.new_deploy("web", "deploy", source="commit abc")
    store.transition(d, "building", step=("build", 1.5))
    store.transition(d, "live", step=("flip", 0.002), make_live=True, finished=True)
    rec = store.deploy(d)
    assert rec.status == "live" and rec.steps == {"build": 1.5, "flip": 0.002} and rec.finished_at
    assert store.service("web").live_deploy_id == d
    assert store.unfinished_deploys() == []
    assert [e["message"] for e in store.events(deploy_id=d)] == [f"deploy {d} queued"]


def test_unknown_objects_raise_not_found(store: Store) -> None:
    with pytest.raises(NotFound, match="unknown service 'nope'"):
        store.service("nope")
    with pytest.raises(NotFound):
        store.deploy(42)


def test_instances_and_reopen(store: Store, tmp_path: Path) -> None:
    store.put_instance(InstanceRecord("web-d1-1", "web", 1, 4000, 123, 1.5, "live"))
    store.set_instance_state("web-d1-1", "draining")
    again = Store(tmp_path / "state.db", SecretBox(tmp_path / "master.key"))
    assert again.instances("web") == [InstanceRecord("web-d1-1", "web", 1, 4000, 123, 1.5, "draining")]
    again.delete_instance("web-d1-1")
    assert again.instances() == []

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


def test_metrics_read_the_newest_finished_deploys_and_live_ids_in_one_query_each(store: Store) -> None:
    """As the per-service reads answered: each service's newest finished deploy among its five
    newest (a service whose five newest are unfinished has none), and its live deploy id."""
    for name in ("a", "b", "c"):
        store.upsert_service(name, "web", "python", {}, {}, None, None)
    a1 = store.new_deploy("a", "deploy", source="x")
    store.transition(a1, "live", make_live=True, finished=True)
    a2 = store.new_deploy("a", "deploy", source="x")
    store.transition(a2, "build_failed", finished=True)
    store.new_deploy("a", "deploy", source="x")  # still queued: not finished
    b1 = store.new_deploy("b", "deploy", source="x")
    store.transition(b1, "live", make_live=True, finished=True)
    for _ in range(5):  # five newer unfinished ones push b1 out of the window
        store.new_deploy("b", "deploy", source="x")

    one_by_one = {
        s: d for s in ("a", "b", "c") if (d := next((d for d in store.deploys(s, limit=5) if d.finished_at), None))
    }
    assert store.newest_finished_deploys(among=5) == one_by_one == {"a": store.deploy(a2)}
    assert store.live_deploy_ids() == {"a": a1, "b": b1, "c": None}


def test_status_reads_deploys_in_two_queries_with_the_per_service_answers(store: Store) -> None:
    from slipstream.states import ACTIVE

    for name in ("a", "b", "c"):
        store.upsert_service(name, "web", "python", {}, {}, None, None)
    a1 = store.new_deploy("a", "deploy", source="x")  # queued, but behind five newer ones of a
    for _ in range(5):
        store.transition(store.new_deploy("a", "deploy", source="x"), "live", finished=True)
    b1 = store.new_deploy("b", "deploy", source="x")
    store.transition(b1, "live", make_live=True, finished=True)
    b2, b3 = store.new_deploy("b", "deploy", source="x"), store.new_deploy("b", "deploy", source="x")
    store.transition(b2, "building")
    store.transition(b3, "canceled", finished=True)

    one_by_one = {s: next((d for d in store.deploys(s, limit=5) if d.status in ACTIVE), None) for s in ("a", "b", "c")}
    assert one_by_one == {"a": None, "b": store.deploy(b2), "c": None}
    batched = store.newest_deploys_in(sorted(ACTIVE), among=5)
    assert batched == {"b": store.deploy(b2)} and store.deploy(a1).status == "queued"
    assert store.deploys_by_id([b1, b2, 999]) == {b1: store.deploy(b1), b2: store.deploy(b2)}
    assert store.deploys_by_id([]) == {}


def test_events_commit_without_fsync_and_transitions_with_it(store: Store) -> None:
    store.upsert_service("web", "web", "python", {}, {}, None, None)
    d = store.new_deploy("web", "deploy", source="x")
    conn = store._conn()
    seen: list[str] = []
    conn.set_trace_callback(seen.append)
    store.event("step", "-----> Building", service="web", deploy_id=d)
    store.transition(d, "building")
    conn.set_trace_callback(None)
    commits = [i for i, sql in enumerate(seen) if sql == "COMMIT"]
    modes = [sql for sql in seen if sql.startswith("PRAGMA synchronous")]
    assert len(commits) == 2 and modes == ["PRAGMA synchronous=NORMAL", "PRAGMA synchronous=FULL"]
    assert seen.index("PRAGMA synchronous=NORMAL") < commits[0] < seen.index("PRAGMA synchronous=FULL") < commits[1]
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL


def test_a_failed_relaxed_write_leaves_the_connection_durable(store: Store) -> None:
    with pytest.raises(RuntimeError), store.tx(durable=False) as c:
        c.execute("INSERT INTO events(ts, service, deploy_id, kind, message) VALUES(1, NULL, NULL, 'x', 'y')")
        raise RuntimeError("boom")
    assert store._conn().execute("PRAGMA synchronous").fetchone()[0] == 2
    assert store.events() == []


def test_every_threads_connection_keeps_a_small_page_cache(store: Store) -> None:
    """Each thread's connection caches at most 512 KiB of pages (SQLite's default is 2000 KiB: a
    few idle threads held ~2 MB each of a 200-service state.db)."""
    import threading

    sizes: list[int] = []
    t = threading.Thread(target=lambda: sizes.append(store._conn().execute("PRAGMA cache_size").fetchone()[0]))
    t.start()
    t.join()
    assert sizes == [-512] and store._conn().execute("PRAGMA cache_size").fetchone()[0] == -512

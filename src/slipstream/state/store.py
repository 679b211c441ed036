"""The state store: typed records in, typed records out; callers never write SQL.

Connections are per thread; writes take an immediate transaction so a transition is recorded whole
or not at all, before the engine acts on it.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Collection, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from slipstream.errors import Conflict, NotFound
from slipstream.secrets import SecretBox
from slipstream.state.schema import MIGRATIONS
from slipstream.states import DeployKind, DeployStatus, InstancePhase


@dataclass(frozen=True)
class ServiceRecord:
    name: str
    type: str
    runtime: str
    blueprint: str | None
    repo: str | None
    config: dict[str, Any]
    live_deploy_id: int | None
    project: str | None = None


@dataclass(frozen=True)
class DeployRecord:
    id: int
    service: str
    kind: DeployKind
    status: DeployStatus
    build_id: int | None
    commit_sha: str | None
    source: str | None
    rollback_of: int | None
    with_pre_deploy: bool
    steps: dict[str, float]
    message: str | None
    created_at: float
    finished_at: float | None

    def public(self) -> dict[str, Any]:
        """The record as the API shows it (no release, which holds env values)."""
        return {
            "id": self.id,
            "service": self.service,
            "kind": self.kind,
            "status": self.status,
            "build_id": self.build_id,
            "commit": self.commit_sha,
            "source": self.source,
            "rollback_of": self.rollback_of,
            "steps": self.steps,
            "message": self.message,
            "created_at": self.created_at,
            "finished_at": self.finished_at,
        }


@dataclass(frozen=True)
class InstanceRecord:
    id: str
    service: str
    deploy_id: int
    port: int | None
    pid: int | None
    create_time: float | None
    state: InstancePhase


@dataclass(frozen=True)
class BuildRecord:
    id: int
    service: str
    commit_sha: str | None
    source_dir: str | None
    workdir: str | None
    path_prefix: list[str] = field(default_factory=list)
    extra_env: dict[str, str] = field(default_factory=dict)
    log_path: str | None = None
    duration_s: float | None = None
    status: str = "building"
    image: str | None = None  # container services: the image this build runs


@dataclass(frozen=True)
class TokenRecord:
    id: str
    name: str
    scope: str
    digest: str
    created_at: float
    last_used_at: float | None

    def public(self) -> dict[str, Any]:
        """The record as the API shows it (never the digest)."""
        return {
            "id": self.id,
            "name": self.name,
            "scope": self.scope,
            "created_at": self.created_at,
            "last_used_at": self.last_used_at,
        }


# A deploy record without its release: the encrypted release holds the blueprint text it was planned
# from (tens of KB for a large blueprint), which `status` would otherwise read for 6 deploys a service.
DEPLOY_COLUMNS = (
    "id, service, kind, status, build_id, commit_sha, source, rollback_of, with_pre_deploy, steps, message, "
    "created_at, finished_at"
)


# Page cache per connection, in KiB as SQLite takes it (negative). Every thread has its own
# connection and SQLite's default (2000 KiB) filled up on the idle daemon's rounds: 200 services'
# releases are ~8 MB of state.db. Pages come back from the OS's file cache in microseconds, and a
# write by any other connection empties a WAL reader's cache anyway.
CACHE_KIB = -512


class Store:
    """SQLite-backed state; safe to share between threads."""

    def __init__(self, path: Path, box: SecretBox) -> None:
        self.path = path
        self.box = box
        self._local = threading.local()
        self._write_lock = threading.Lock()
        self._listeners: list[Callable[[float, str, str, str | None, int | None], None]] = []
        self._migrate()

    def listen(self, listener: Callable[[float, str, str, str | None, int | None], None]) -> None:
        """Call ``listener(ts, kind, message, service, deploy_id)`` after each event is recorded."""
        self._listeners.append(listener)

    # -- plumbing -----------------------------------------------------------------------------
    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute(f"PRAGMA cache_size={CACHE_KIB}")
            self._local.conn = conn
        return conn

    @contextmanager
    def tx(self, *, durable: bool = True) -> Iterator[sqlite3.Connection]:
        """One write transaction (BEGIN IMMEDIATE ... COMMIT). ``durable=False`` commits without
        waiting for the disk (synchronous=NORMAL: the WAL is not fsynced); the next durable commit's
        fsync carries it too, and only a power loss, never a killed daemon, can lose it."""
        conn = self._conn()
        with self._write_lock:
            if not durable:
                conn.execute("PRAGMA synchronous=NORMAL")
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield conn
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
            finally:
                if not durable:
                    conn.execute("PRAGMA synchronous=FULL")

    def _migrate(self) -> None:
        conn = self._conn()
        conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
        row = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        done = int(row["value"]) if row else 0
        for i, script in enumerate(MIGRATIONS[done:], start=done + 1):
            with self._write_lock:
                conn.executescript(
                    "BEGIN IMMEDIATE;"
                    + script
                    + f";INSERT OR REPLACE INTO meta VALUES('schema_version', '{i}');COMMIT;"
                )

    def _enc(self, value: Mapping[str, Any], context: str) -> bytes:
        return self.box.encrypt(json.dumps(value, sort_keys=True), context)

    def _dec(self, blob: bytes | None, context: str) -> dict[str, Any]:
        return json.loads(self.box.decrypt(blob, context)) if blob else {}

    # -- services -----------------------------------------------------------------------------
    def upsert_service(
        self,
        name: str,
        type: str,
        runtime: str,
        config: Mapping[str, Any],
        env: Mapping[str, str],
        blueprint: str | None,
        repo: str | None,
        project: str | None = None,
    ) -> None:
        now = time.time()
        with self.tx() as c:
            c.execute(
                """INSERT INTO services(name, type, runtime, blueprint, repo, config, env, created_at, updated_at,
                     project)
                   VALUES(?,?,?,?,?,?,?,?,?,?)
                   ON CONFLICT(name) DO UPDATE SET type=excluded.type, runtime=excluded.runtime,
                     blueprint=excluded.blueprint, repo=excluded.repo, config=excluded.config,
                     env=excluded.env, updated_at=excluded.updated_at,
                     project=COALESCE(excluded.project, services.project)""",
                (
                    name,
                    type,
                    runtime,
                    blueprint,
                    repo,
                    json.dumps(dict(config), sort_keys=True),
                    self._enc(env, f"service:{name}"),
                    now,
                    now,
                    project,
                ),
            )

    def service(self, name: str) -> ServiceRecord:
        row = self._conn().execute("SELECT * FROM services WHERE name=?", (name,)).fetchone()
        if row is None:
            raise NotFound(f"unknown service '{name}'", "run 'slipstream status' to list services")
        return self._service(row)

    def services(self, kind: str | None = None) -> list[ServiceRecord]:
        """Every service, or those of type ``kind`` (the cron tick asks each second; decoding every
        service's config for it was a quarter of the idle daemon's CPU samples with 200 web services)."""
        if kind is None:
            rows = self._conn().execute("SELECT * FROM services ORDER BY name").fetchall()
        else:
            rows = self._conn().execute("SELECT * FROM services WHERE type=? ORDER BY name", (kind,)).fetchall()
        return [self._service(r) for r in rows]

    def service_types(self) -> dict[str, str]:
        """Each service's type by name, without decoding any config."""
        return {r["name"]: r["type"] for r in self._conn().execute("SELECT name, type FROM services")}

    def live_deploy_ids(self) -> dict[str, int | None]:
        """Each service's live deploy id by name, without decoding any config (a metrics round asks)."""
        rows = self._conn().execute("SELECT name, live_deploy_id FROM services")
        return {r["name"]: r["live_deploy_id"] for r in rows}

    @staticmethod
    def _service(row: sqlite3.Row) -> ServiceRecord:
        return ServiceRecord(
            row["name"],
            row["type"],
            row["runtime"],
            row["blueprint"],
            row["repo"],
            json.loads(row["config"]),
            row["live_deploy_id"],
            row["project"],
        )

    def service_env(self, name: str) -> dict[str, str]:
        row = self._conn().execute("SELECT env FROM services WHERE name=?", (name,)).fetchone()
        if row is None:
            raise NotFound(f"unknown service '{name}'")
        return self._dec(row["env"], f"service:{name}")

    def set_service_env(self, name: str, env: Mapping[str, str]) -> None:
        with self.tx() as c:
            c.execute(
                "UPDATE services SET env=?, updated_at=? WHERE name=?",
                (self._enc(env, f"service:{name}"), time.time(), name),
            )

    # -- builds -------------------------------------------------------------------------------
    def new_build(self, service: str) -> int:
        with self.tx() as c:
            cur = c.execute(
                "INSERT INTO builds(service, status, created_at) VALUES(?,?,?)", (service, "building", time.time())
            )
            return int(cur.lastrowid or 0)

    def finish_build(
        self,
        build_id: int,
        *,
        status: str,
        commit_sha: str | None = None,
        source_dir: str | None = None,
        workdir: str | None = None,
        path_prefix: list[str] | None = None,
        extra_env: Mapping[str, str] | None = None,
        log_path: str | None = None,
        duration_s: float | None = None,
        image: str | None = None,
    ) -> None:
        with self.tx() as c:
            c.execute(
                """UPDATE builds SET status=?, commit_sha=?, source_dir=?, workdir=?, path_prefix=?,
                         extra_env=?, log_path=?, duration_s=?, image=? WHERE id=?""",
                (
                    status,
                    commit_sha,
                    source_dir,
                    workdir,
                    json.dumps(path_prefix or []),
                    json.dumps(dict(extra_env or {})),
                    log_path,
                    duration_s,
                    image,
                    build_id,
                ),
            )

    def set_build_status(self, build_id: int, status: str) -> None:
        with self.tx() as c:
            c.execute("UPDATE builds SET status=? WHERE id=?", (status, build_id))

    def builds(self, service: str) -> list[BuildRecord]:
        rows = self._conn().execute("SELECT * FROM builds WHERE service=? ORDER BY id", (service,)).fetchall()
        return [_build_record(r) for r in rows]

    def build(self, build_id: int) -> BuildRecord:
        row = self._conn().execute("SELECT * FROM builds WHERE id=?", (build_id,)).fetchone()
        if row is None:
            raise NotFound(f"unknown build {build_id}")
        return _build_record(row)

    # -- deploys ------------------------------------------------------------------------------
    def new_deploy(
        self,
        service: str,
        kind: DeployKind,
        *,
        source: str | None,
        build_id: int | None = None,
        commit_sha: str | None = None,
        rollback_of: int | None = None,
        with_pre_deploy: bool = True,
        release: Mapping[str, Any] | None = None,
    ) -> int:
        with self.tx() as c:
            cur = c.execute(
                """INSERT INTO deploys(service, kind, status, build_id, commit_sha, source, rollback_of,
                   with_pre_deploy, release, created_at) VALUES(?,?,?,?,?,?,?,?,?,?)""",
                (
                    service,
                    kind,
                    DeployStatus.QUEUED,
                    build_id,
                    commit_sha,
                    source,
                    rollback_of,
                    int(with_pre_deploy),
                    self._enc(release or {}, f"deploy:{service}"),
                    time.time(),
                ),
            )
            deploy_id = int(cur.lastrowid or 0)
            c.execute(
                "INSERT INTO events(ts, service, deploy_id, kind, message) VALUES(?,?,?,?,?)",
                (time.time(), service, deploy_id, "step", f"deploy {deploy_id} queued"),
            )
            return deploy_id

    def transition(
        self,
        deploy_id: int,
        status: DeployStatus,
        *,
        message: str | None = None,
        step: tuple[str, float] | None = None,
        build_id: int | None = None,
        commit_sha: str | None = None,
        release: Mapping[str, Any] | None = None,
        finished: bool = False,
        make_live: bool = False,
    ) -> None:
        """Record one transition of a deploy (and, with ``make_live``, point its service at it)."""
        with self.tx() as c:
            row = c.execute("SELECT service, steps FROM deploys WHERE id=?", (deploy_id,)).fetchone()
            steps = json.loads(row["steps"])
            if step is not None:
                steps[step[0]] = round(step[1], 4)
            sets = ["status=?", "steps=?"]
            args: list[Any] = [status, json.dumps(steps)]
            if message is not None:
                sets.append("message=?")
                args.append(message)
            if build_id is not None:
                sets.append("build_id=?")
                args.append(build_id)
            if commit_sha is not None:
                sets.append("commit_sha=?")
                args.append(commit_sha)
            if release is not None:
                sets.append("release=?")
                args.append(self._enc(release, f"deploy:{row['service']}"))
            if finished:
                sets.append("finished_at=?")
                args.append(time.time())
            c.execute(f"UPDATE deploys SET {', '.join(sets)} WHERE id=?", (*args, deploy_id))
            if make_live:
                c.execute("UPDATE services SET live_deploy_id=? WHERE name=?", (deploy_id, row["service"]))

    def promote(self, deploy_id: int, live: list[str], draining: list[str], *, total_s: float) -> None:
        """The moment a deploy goes live, as one transaction: its instances live, the old ones
        draining, the deploy live and its service pointing at it."""
        with self.tx() as c:
            for iid in live:
                c.execute("UPDATE instances SET state=? WHERE id=?", (InstancePhase.LIVE, iid))
            for iid in draining:
                c.execute("UPDATE instances SET state=? WHERE id=?", (InstancePhase.DRAINING, iid))
            row = c.execute("SELECT service, steps FROM deploys WHERE id=?", (deploy_id,)).fetchone()
            steps = {**json.loads(row["steps"]), "total_to_live": round(total_s, 4)}
            c.execute(
                "UPDATE deploys SET status=?, steps=? WHERE id=?", (DeployStatus.LIVE, json.dumps(steps), deploy_id)
            )
            c.execute("UPDATE services SET live_deploy_id=? WHERE name=?", (deploy_id, row["service"]))

    def deploy(self, deploy_id: int) -> DeployRecord:
        row = self._conn().execute(f"SELECT {DEPLOY_COLUMNS} FROM deploys WHERE id=?", (deploy_id,)).fetchone()
        if row is None:
            raise NotFound(f"unknown deploy {deploy_id}", "run 'slipstream deploys SERVICE' to list deploys")
        return self._deploy(row)

    def deploy_release(self, deploy_id: int) -> dict[str, Any]:
        row = self._conn().execute("SELECT service, release FROM deploys WHERE id=?", (deploy_id,)).fetchone()
        if row is None:
            raise NotFound(f"unknown deploy {deploy_id}")
        return self._dec(row["release"], f"deploy:{row['service']}")

    def deploys(self, service: str, limit: int = 50) -> list[DeployRecord]:
        rows = (
            self._conn()
            .execute(f"SELECT {DEPLOY_COLUMNS} FROM deploys WHERE service=? ORDER BY id DESC LIMIT ?", (service, limit))
            .fetchall()
        )
        return [self._deploy(r) for r in rows]

    def deploys_by_id(self, ids: Collection[int]) -> dict[int, DeployRecord]:
        """The deploys with these ids (unknown ids left out), in one query."""
        if not ids:
            return {}
        marks = ",".join("?" * len(ids))
        rows = self._conn().execute(f"SELECT {DEPLOY_COLUMNS} FROM deploys WHERE id IN ({marks})", tuple(ids))
        return {r["id"]: self._deploy(r) for r in rows.fetchall()}

    def newest_deploys_in(self, statuses: Collection[str], among: int = 5) -> dict[str, DeployRecord]:
        """Each service's newest deploy in ``statuses`` among its ``among`` newest, in one query
        (``slipstream status`` with 200 services asked once per service)."""
        marks = ",".join("?" * len(statuses))
        query = (  # the few deploys in those statuses, each kept if fewer than ``among`` of its service are newer
            f"SELECT {DEPLOY_COLUMNS} FROM deploys AS d WHERE status IN ({marks}) AND"
            " (SELECT COUNT(*) FROM deploys AS e WHERE e.service = d.service AND e.id > d.id) < ? ORDER BY id DESC"
        )
        out: dict[str, DeployRecord] = {}
        for r in self._conn().execute(query, (*statuses, among)).fetchall():
            out.setdefault(r["service"], self._deploy(r))
        return out

    def newest_finished_deploys(self, among: int = 5) -> dict[str, DeployRecord]:
        """Each service's newest finished deploy among its ``among`` newest, in one query (a metrics
        round asked once per service: the larger part of its CPU with 200 services)."""
        query = (
            f"SELECT {DEPLOY_COLUMNS} FROM (SELECT {DEPLOY_COLUMNS},"
            " ROW_NUMBER() OVER (PARTITION BY service ORDER BY id DESC) AS n FROM deploys)"
            " WHERE n <= ? AND finished_at IS NOT NULL ORDER BY id DESC"
        )
        out: dict[str, DeployRecord] = {}
        for r in self._conn().execute(query, (among,)).fetchall():
            if r["service"] not in out:  # the newest of the service's finished ones; the rest not decoded
                out[r["service"]] = self._deploy(r)
        return out

    def unfinished_deploys(self) -> list[DeployRecord]:
        query = f"SELECT {DEPLOY_COLUMNS} FROM deploys WHERE finished_at IS NULL ORDER BY id"
        rows = self._conn().execute(query).fetchall()
        return [self._deploy(r) for r in rows]

    @staticmethod
    def _deploy(row: sqlite3.Row) -> DeployRecord:
        return DeployRecord(
            row["id"],
            row["service"],
            DeployKind(row["kind"]),
            DeployStatus(row["status"]),
            row["build_id"],
            row["commit_sha"],
            row["source"],
            row["rollback_of"],
            bool(row["with_pre_deploy"]),
            json.loads(row["steps"]),
            row["message"],
            row["created_at"],
            row["finished_at"],
        )

    # -- instances ----------------------------------------------------------------------------
    def put_instance(self, inst: InstanceRecord) -> None:
        with self.tx() as c:
            c.execute(
                """INSERT INTO instances(id, service, deploy_id, port, pid, create_time, state, created_at)
                         VALUES(?,?,?,?,?,?,?,?) ON CONFLICT(id) DO UPDATE SET port=excluded.port,
                         pid=excluded.pid, create_time=excluded.create_time, state=excluded.state""",
                (inst.id, inst.service, inst.deploy_id, inst.port, inst.pid, inst.create_time, inst.state, time.time()),
            )

    def set_instance_state(self, instance_id: str, state: InstancePhase) -> None:
        with self.tx() as c:
            c.execute("UPDATE instances SET state=? WHERE id=?", (state, instance_id))

    def delete_instance(self, instance_id: str) -> None:
        with self.tx() as c:
            c.execute("DELETE FROM instances WHERE id=?", (instance_id,))

    def instances(self, service: str | None = None) -> list[InstanceRecord]:
        args: tuple[str, ...]
        q, args = "SELECT * FROM instances", ()
        if service is not None:
            q, args = q + " WHERE service=?", (service,)
        rows = self._conn().execute(q + " ORDER BY id", args).fetchall()
        return [
            InstanceRecord(
                r["id"], r["service"], r["deploy_id"], r["port"], r["pid"], r["create_time"], InstancePhase(r["state"])
            )
            for r in rows
        ]

    # -- databases ----------------------------------------------------------------------------
    def put_database(self, name: str, database_name: str, user: str, host: str, port: int) -> None:
        with self.tx() as c:
            c.execute(
                """INSERT INTO databases(name, database_name, user, host, port, created_at)
                         VALUES(?,?,?,?,?,?) ON CONFLICT(name) DO UPDATE SET database_name=excluded.database_name,
                         user=excluded.user, host=excluded.host, port=excluded.port""",
                (name, database_name, user, host, port, time.time()),
            )

    def databases(self) -> list[dict[str, Any]]:
        rows = self._conn().execute("SELECT * FROM databases ORDER BY name").fetchall()
        return [dict(r) for r in rows]

    # -- cron runs ----------------------------------------------------------------------------
    def new_cron_run(self, service: str, deploy_id: int, trigger: str, log_path: str) -> int:
        with self.tx() as c:
            cur = c.execute(
                """INSERT INTO cron_runs(service, deploy_id, trigger, status, log_path, started_at)
                               VALUES(?,?,?,?,?,?)""",
                (service, deploy_id, trigger, "running", log_path, time.time()),
            )
            return int(cur.lastrowid or 0)

    def finish_cron_run(self, run_id: int, status: str, exit_code: int | None) -> None:
        with self.tx() as c:
            c.execute(
                "UPDATE cron_runs SET status=?, exit_code=?, finished_at=? WHERE id=?",
                (status, exit_code, time.time(), run_id),
            )

    def cron_runs(self, service: str, limit: int = 50) -> list[dict[str, Any]]:
        rows = (
            self._conn()
            .execute("SELECT * FROM cron_runs WHERE service=? ORDER BY id DESC LIMIT ?", (service, limit))
            .fetchall()
        )
        return [dict(r) for r in rows]

    def end_running_cron_runs(self) -> None:
        """Runs a previous daemon left 'running' are over (their processes died or were orphaned)."""
        with self.tx() as c:
            c.execute("UPDATE cron_runs SET status='failed', finished_at=? WHERE status='running'", (time.time(),))

    # -- projects: who owns what -----------------------------------------------------------------
    def owners(self, kind: str) -> dict[str, str]:
        """``{name: project}`` of every owned resource of ``kind``."""
        rows = self._conn().execute("SELECT name, project FROM resources WHERE kind=?", (kind,)).fetchall()
        return {r["name"]: r["project"] for r in rows}

    def claim(self, project: str, resources: list[tuple[str, str]]) -> None:
        """Record ``project`` as the owner of each ``(kind, name)`` (kept if it already is)."""
        now = time.time()
        with self.tx() as c:
            c.executemany(
                "INSERT INTO resources(kind, name, project, created_at) VALUES(?,?,?,?) "
                "ON CONFLICT(kind, name) DO UPDATE SET project=excluded.project",
                [(kind, name, project, now) for kind, name in resources],
            )

    def disown(self, kind: str, name: str) -> None:
        """Forget who owns a resource (it was deleted)."""
        with self.tx() as c:
            c.execute("DELETE FROM resources WHERE kind=? AND name=?", (kind, name))

    def projects(self) -> dict[str, list[tuple[str, str]]]:
        """Every project with its ``(kind, name)`` resources."""
        out: dict[str, list[tuple[str, str]]] = {}
        rows = self._conn().execute("SELECT kind, name, project FROM resources ORDER BY project, kind, name")
        for r in rows.fetchall():
            out.setdefault(r["project"], []).append((r["kind"], r["name"]))
        return out

    def delete_service(self, name: str) -> None:
        """Drop a service with its instances, deploys, builds, cron runs and ownership: a service
        created later under the same name starts a history of its own."""
        with self.tx() as c:
            for table in ("instances", "deploys", "builds", "cron_runs"):
                c.execute(f"DELETE FROM {table} WHERE service=?", (name,))
            c.execute("DELETE FROM services WHERE name=?", (name,))
            c.execute("DELETE FROM resources WHERE kind='service' AND name=?", (name,))

    def delete_database(self, name: str) -> None:
        """Drop a database's record and its ownership."""
        with self.tx() as c:
            c.execute("DELETE FROM databases WHERE name=?", (name,))
            c.execute("DELETE FROM resources WHERE kind='database' AND name=?", (name,))

    def forget_value(self, value_id: str) -> None:
        with self.tx() as c:
            c.execute("DELETE FROM kept_values WHERE id=?", (value_id,))

    # -- kept values (generateValue, sync: false) ----------------------------------------------
    def kept_values(self) -> dict[str, str]:
        rows = self._conn().execute("SELECT id, value FROM kept_values").fetchall()
        return {r["id"]: self.box.decrypt(r["value"], f"kept:{r['id']}") for r in rows}

    def keep_value(self, value_id: str, value: str) -> None:
        with self.tx() as c:
            c.execute(
                "INSERT OR REPLACE INTO kept_values(id, value) VALUES(?,?)",
                (value_id, self.box.encrypt(value, f"kept:{value_id}")),
            )

    # -- API tokens (digests only) -------------------------------------------------------------
    def add_token(self, token_id: str, name: str, scope: str, digest: str) -> TokenRecord:
        with self.tx() as c:
            if c.execute("SELECT 1 FROM api_tokens WHERE name = ?", (name,)).fetchone():
                raise Conflict(f"a token named {name!r} exists", f"revoke it first: 'slipstream tokens revoke {name}'")
            c.execute(
                "INSERT INTO api_tokens(id, name, scope, digest, created_at) VALUES(?,?,?,?,?)",
                (token_id, name, scope, digest, time.time()),
            )
        return self.token(token_id) or _missing_token(token_id)

    def token(self, token_id: str) -> TokenRecord | None:
        row = self._conn().execute("SELECT * FROM api_tokens WHERE id = ?", (token_id,)).fetchone()
        return TokenRecord(**dict(row)) if row else None

    def tokens(self) -> list[TokenRecord]:
        rows = self._conn().execute("SELECT * FROM api_tokens ORDER BY created_at, name").fetchall()
        return [TokenRecord(**dict(r)) for r in rows]

    def delete_token(self, name_or_id: str) -> TokenRecord:
        with self.tx() as c:
            row = c.execute("SELECT * FROM api_tokens WHERE name = ? OR id = ?", (name_or_id, name_or_id)).fetchone()
            if row is None:
                _missing_token(name_or_id)
            c.execute("DELETE FROM api_tokens WHERE id = ?", (row["id"],))
        return TokenRecord(**dict(row))

    def touch_token(self, token_id: str, ts: float) -> None:
        with self.tx() as c:
            c.execute("UPDATE api_tokens SET last_used_at = ? WHERE id = ?", (ts, token_id))

    # -- events -------------------------------------------------------------------------------
    def event(self, kind: str, message: str, *, service: str | None = None, deploy_id: int | None = None) -> int:
        """Record one line of a transcript. Not fsynced on its own: a 200-service apply records
        thousands, each fsync held the write lock ~0.8 ms, and every transition after it is durable
        (and makes it so)."""
        ts = time.time()
        with self.tx(durable=False) as c:
            cur = c.execute(
                "INSERT INTO events(ts, service, deploy_id, kind, message) VALUES(?,?,?,?,?)",
                (ts, service, deploy_id, kind, message),
            )
            event_id = int(cur.lastrowid or 0)
        for listener in self._listeners:
            try:
                listener(ts, kind, message, service, deploy_id)
            except Exception:  # a listener never breaks the record
                logging.getLogger("slipstream.state").exception("event listener failed")
        return event_id

    def prune_events(self, before: float, keep: int) -> int:
        """Delete the events recorded before ``before`` (epoch seconds) and all but the newest
        ``keep``; how many went."""
        with self.tx() as c:
            removed = c.execute("DELETE FROM events WHERE ts < ?", (before,)).rowcount
            removed += c.execute(
                "DELETE FROM events WHERE id <= (SELECT id FROM events ORDER BY id DESC LIMIT 1 OFFSET ?)", (keep,)
            ).rowcount
        return removed

    def events(
        self, *, deploy_id: int | None = None, service: str | None = None, after: int = 0, limit: int = 500
    ) -> list[dict[str, Any]]:
        where: list[str] = ["id > ?"]
        args: list[object] = [after]
        if deploy_id is not None:
            where.append("deploy_id = ?")
            args.append(deploy_id)
        if service is not None:
            where.append("service = ?")
            args.append(service)
        rows = (
            self._conn()
            .execute(f"SELECT * FROM events WHERE {' AND '.join(where)} ORDER BY id LIMIT ?", (*args, limit))
            .fetchall()
        )
        return [dict(r) for r in rows]


def _build_record(row: sqlite3.Row) -> BuildRecord:
    return BuildRecord(
        row["id"],
        row["service"],
        row["commit_sha"],
        row["source_dir"],
        row["workdir"],
        json.loads(row["path_prefix"] or "[]"),
        json.loads(row["extra_env"] or "{}"),
        row["log_path"],
        row["duration_s"],
        row["status"],
        row["image"],
    )


def _missing_token(name_or_id: str) -> NoReturn:
    raise NotFound(f"no token named {name_or_id!r}", "run 'slipstream tokens list'")

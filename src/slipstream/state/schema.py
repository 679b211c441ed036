"""The state schema, as an ordered list of migrations; ``meta.schema_version`` says how many ran."""

from __future__ import annotations

MIGRATIONS: list[str] = [
    """
    CREATE TABLE services (
        name TEXT PRIMARY KEY,
        type TEXT NOT NULL,
        runtime TEXT NOT NULL,
        blueprint TEXT,                 -- path of the render.yaml it came from
        repo TEXT,                      -- git work tree holding it
        config TEXT NOT NULL,           -- JSON of the non-secret service settings
        env BLOB,                       -- encrypted JSON of the resolved env
        live_deploy_id INTEGER,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    );
    CREATE TABLE builds (
        id INTEGER PRIMARY KEY,
        service TEXT NOT NULL,
        commit_sha TEXT,
        source_dir TEXT,
        workdir TEXT,
        path_prefix TEXT,               -- JSON list
        extra_env TEXT,                 -- JSON object (non-secret: VIRTUAL_ENV and the like)
        log_path TEXT,
        duration_s REAL,
        status TEXT NOT NULL,           -- building | ok | failed
        created_at REAL NOT NULL
    );
    CREATE TABLE deploys (
        id INTEGER PRIMARY KEY,
        service TEXT NOT NULL,
        kind TEXT NOT NULL,             -- deploy | rollback | config
        status TEXT NOT NULL,
        build_id INTEGER,
        commit_sha TEXT,
        source TEXT,                    -- what was asked for: commit, directory, or rollback target
        rollback_of INTEGER,
        with_pre_deploy INTEGER NOT NULL DEFAULT 1,
        release BLOB,                   -- encrypted JSON: commands, health path, env (what runs)
        steps TEXT NOT NULL DEFAULT '{}',  -- JSON {step: seconds}
        message TEXT,
        created_at REAL NOT NULL,
        finished_at REAL
    );
    CREATE INDEX deploys_service ON deploys(service, id);
    CREATE TABLE instances (
        id TEXT PRIMARY KEY,
        service TEXT NOT NULL,
        deploy_id INTEGER NOT NULL,
        port INTEGER,
        pid INTEGER,
        create_time REAL,
        state TEXT NOT NULL,            -- starting | live | draining | stopped | failed
        created_at REAL NOT NULL
    );
    CREATE TABLE events (
        id INTEGER PRIMARY KEY,
        ts REAL NOT NULL,
        service TEXT,
        deploy_id INTEGER,
        kind TEXT NOT NULL,
        message TEXT NOT NULL
    );
    CREATE INDEX events_deploy ON events(deploy_id, id);
    CREATE TABLE kept_values (
        id TEXT PRIMARY KEY,            -- "<owner>.<KEY>": generateValue results and sync: false answers
        value BLOB NOT NULL             -- encrypted
    );
    """,
    """
    CREATE TABLE databases (
        name TEXT PRIMARY KEY,          -- blueprint name
        database_name TEXT NOT NULL,
        user TEXT NOT NULL,
        host TEXT NOT NULL,
        port INTEGER NOT NULL,
        created_at REAL NOT NULL
    );
    """,
    """
    CREATE TABLE cron_runs (
        id INTEGER PRIMARY KEY,
        service TEXT NOT NULL,
        deploy_id INTEGER NOT NULL,
        trigger TEXT NOT NULL,          -- schedule | manual
        status TEXT NOT NULL,           -- running | succeeded | failed | timed_out
        exit_code INTEGER,
        log_path TEXT,
        started_at REAL NOT NULL,
        finished_at REAL
    );
    CREATE INDEX cron_runs_service ON cron_runs(service, id);
    """,
    """
    -- projects: every applied blueprint owns its resources; plan/apply touch only their own
    CREATE TABLE resources (
        kind TEXT NOT NULL,             -- service | database | group | keyvalue
        name TEXT NOT NULL,
        project TEXT NOT NULL,
        created_at REAL NOT NULL,
        PRIMARY KEY (kind, name)
    );
    CREATE INDEX resources_project ON resources(project);
    ALTER TABLE services ADD COLUMN project TEXT;
    """,
    """
    -- container services: the image a build made (or the digest an image service was pinned to)
    ALTER TABLE builds ADD COLUMN image TEXT;
    """,
    """
    -- API tokens for the TCP listener: only a SHA-256 digest of each token is kept
    CREATE TABLE api_tokens (
        id TEXT PRIMARY KEY,            -- public part of the token (slp_<id>_<secret>)
        name TEXT NOT NULL UNIQUE,
        scope TEXT NOT NULL,            -- read | deploy | admin
        digest TEXT NOT NULL,           -- hex SHA-256 of the whole token
        created_at REAL NOT NULL,
        last_used_at REAL
    );
    """,
]

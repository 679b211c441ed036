"""Apply migrations/NNN_*.sql in order, each in one transaction with its version row.

Run as the service's preDeployCommand: slipstream runs it after the build and before any new
instance starts, so the schema is ready before traffic. PostgreSQL DDL is transactional: a
migration that fails halfway leaves the schema exactly as it was.
"""

import os
import sys
from pathlib import Path

import psycopg

MIGRATIONS = Path(__file__).parent / "migrations"


def main() -> int:
    with psycopg.connect(os.environ["DATABASE_URL"]) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS schema_migrations (version TEXT PRIMARY KEY, "
                     "applied_at TIMESTAMPTZ NOT NULL DEFAULT now())")
        conn.commit()
        done = {r[0] for r in conn.execute("SELECT version FROM schema_migrations")}
        for path in sorted(MIGRATIONS.glob("*.sql")):
            version = path.stem
            if version in done:
                continue
            print(f"applying {version}", flush=True)
            try:
                with conn.transaction():
                    conn.execute(path.read_text())
                    conn.execute("INSERT INTO schema_migrations(version) VALUES (%s)", (version,))
            except psycopg.Error as exc:
                print(f"migration {version} failed: {exc}".strip(), file=sys.stderr, flush=True)
                return 1
    print("schema is up to date", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Pure SQL builders: each returns a composed statement with identifiers quoted by
``psycopg.sql.Identifier``. Passwords reach the server only as SCRAM verifiers computed by libpq
(:func:`encrypt_password`), so the plain text never lands in a server log.
"""

from __future__ import annotations

from psycopg import Connection, sql

ROLE_EXISTS = sql.SQL("SELECT 1 FROM pg_roles WHERE rolname = %s")
DATABASE_OWNER = sql.SQL(
    "SELECT pg_get_userbyid(datdba), shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s"
)
DATABASES_OWNED = sql.SQL("SELECT count(*) FROM pg_database d JOIN pg_roles r ON r.oid = d.datdba WHERE r.rolname = %s")
EXTENSION_AVAILABLE = sql.SQL("SELECT 1 FROM pg_available_extensions WHERE name = %s")
SERVER_VERSION = sql.SQL("SELECT current_setting('server_version_num')::int")
EXPORT_SNAPSHOT = sql.SQL("SELECT pg_export_snapshot()")

# User tables that pg_dump writes data for: not system schemas, not tables an extension owns.
USER_TABLES = sql.SQL("""
SELECT n.nspname, c.relname, greatest(c.reltuples, 0)::bigint
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p')
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%'
  AND NOT EXISTS (SELECT 1 FROM pg_depend d
                  WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
ORDER BY 1, 2
""")


def encrypt_password(conn: Connection[object], password: str, user: str) -> str:
    """A SCRAM-SHA-256 verifier for ``password``, computed client-side by libpq (``PQencryptPasswordConn``)."""
    return conn.pgconn.encrypt_password(password.encode(), user.encode(), b"scram-sha-256").decode()


def build_create_role(user: str, verifier: str) -> sql.Composed:
    """``CREATE ROLE user LOGIN PASSWORD '<verifier>'``."""
    return sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(user), sql.Literal(verifier))


def build_alter_role_password(user: str, verifier: str) -> sql.Composed:
    """``ALTER ROLE user LOGIN PASSWORD '<verifier>'`` (run on every ensure, so rotation is one call)."""
    return sql.SQL("ALTER ROLE {} WITH LOGIN PASSWORD {}").format(sql.Identifier(user), sql.Literal(verifier))


def build_create_database(database: str, owner: str) -> sql.Composed:
    """``CREATE DATABASE database OWNER owner``."""
    return sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(database), sql.Identifier(owner))


def build_revoke_public_connect(database: str) -> sql.Composed:
    """Keep other apps' roles out: only the owner (and the admin) may connect."""
    return sql.SQL("REVOKE CONNECT, TEMPORARY ON DATABASE {} FROM PUBLIC").format(sql.Identifier(database))


def build_label_database(database: str, label: str) -> sql.Composed:
    """Record which blueprint database owns ``database`` (``COMMENT ON DATABASE ... IS 'slipstream:<name>'``)."""
    return sql.SQL("COMMENT ON DATABASE {} IS {}").format(sql.Identifier(database), sql.Literal(f"slipstream:{label}"))


def build_drop_database(database: str) -> sql.Composed:
    """``DROP DATABASE IF EXISTS database WITH (FORCE)`` (disconnects its sessions first)."""
    return sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(database))


def build_drop_role(user: str) -> sql.Composed:
    """``DROP ROLE IF EXISTS user``."""
    return sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(user))


def build_create_extension(extension: str) -> sql.Composed:
    """``CREATE EXTENSION IF NOT EXISTS extension``."""
    return sql.SQL("CREATE EXTENSION IF NOT EXISTS {}").format(sql.Identifier(extension))


def build_count_rows(schema: str, table: str) -> sql.Composed:
    """``SELECT count(*) FROM schema.table``."""
    return sql.SQL("SELECT count(*) FROM {}.{}").format(sql.Identifier(schema), sql.Identifier(table))

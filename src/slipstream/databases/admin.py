"""Admin SQL against a server, as the admin login: roles, databases, extensions, table counts.

Each function opens its own short connection (:func:`connect`), so callers on different threads
never share one. Connection failures become :class:`~slipstream.errors.Unavailable`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg import errors as pg_errors

from slipstream.databases import sql as q
from slipstream.databases.commands import build_conninfo
from slipstream.databases.models import Endpoint
from slipstream.errors import Conflict, InvalidInput, Unavailable

# Above this many estimated rows, a backup records the table list but not exact row counts.
COUNT_ROWS_LIMIT = 5_000_000


@contextmanager
def connect(endpoint: Endpoint, *, autocommit: bool = True) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    """A connection to ``endpoint``, closed on exit; a refused login or a missing server raises Unavailable."""
    try:
        conn = psycopg.connect(**build_conninfo(endpoint), autocommit=autocommit)  # type: ignore[arg-type]  # conninfo is dict[str, str]; stubs want each key typed
    except psycopg.OperationalError as exc:
        reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise Unavailable(
            f"cannot connect to PostgreSQL at {endpoint.host}:{endpoint.port} (database {endpoint.dbname}): {reason}",
            "check 'slipstream status' and the postgres log",
        ) from None
    try:
        yield conn
    finally:
        conn.close()


def role_exists(conn: psycopg.Connection[tuple[object, ...]], user: str) -> bool:
    """Whether a role named ``user`` exists."""
    return conn.execute(q.ROLE_EXISTS, (user,)).fetchone() is not None


def database_owner(conn: psycopg.Connection[tuple[object, ...]], database: str) -> str | None:
    """The owning role of ``database``, or None when it does not exist."""
    row = conn.execute(q.DATABASE_OWNER, (database,)).fetchone()
    return str(row[0]) if row else None


def database_label(conn: psycopg.Connection[tuple[object, ...]], database: str) -> str | None:
    """The blueprint name recorded on ``database`` by :func:`create_database`, or None."""
    row = conn.execute(q.DATABASE_OWNER, (database,)).fetchone()
    comment = str(row[1]) if row and row[1] else ""
    return comment.removeprefix("slipstream:") if comment.startswith("slipstream:") else None


def ensure_role(conn: psycopg.Connection[tuple[object, ...]], user: str, password: str) -> None:
    """Create the login role if missing, and set its password either way."""
    verifier = q.encrypt_password(conn, password, user)
    if not role_exists(conn, user):
        try:
            conn.execute(q.build_create_role(user, verifier))
            return
        except pg_errors.DuplicateObject:
            pass  # created meanwhile by a concurrent ensure: fall through to set the password
    conn.execute(q.build_alter_role_password(user, verifier))


def check_claim(conn: psycopg.Connection[tuple[object, ...]], database: str, owner: str, label: str | None) -> bool:
    """Raise Conflict if ``database`` exists for another role or blueprint name; True when it exists."""
    current = database_owner(conn, database)
    if current is None:
        return False
    if current != owner:
        raise Conflict(
            f"database {database} exists and belongs to role {current}, not {owner}",
            "choose another databaseName or drop the old database",
        )
    recorded = database_label(conn, database)
    if label is not None and recorded not in (None, label):
        raise Conflict(
            f"database {database} already belongs to blueprint database {recorded!r}",
            f"give {label!r} its own databaseName",
        )
    return True


def create_database(
    conn: psycopg.Connection[tuple[object, ...]], database: str, owner: str, label: str | None = None
) -> bool:
    """Create ``database`` owned by ``owner`` unless it exists; True when it was created here.

    ``label`` (the blueprint name) is recorded on the database, so two blueprint names that map to
    one identifier ("main-db", "main_db") cannot silently share a database.
    """
    if check_claim(conn, database, owner, label):
        if label is not None and database_label(conn, database) is None:
            conn.execute(q.build_label_database(database, label))
        return False
    try:
        conn.execute(q.build_create_database(database, owner))
    except pg_errors.DuplicateDatabase:
        return create_database(conn, database, owner, label)
    conn.execute(q.build_revoke_public_connect(database))
    if label is not None:
        conn.execute(q.build_label_database(database, label))
    return True


def drop_database_and_role(conn: psycopg.Connection[tuple[object, ...]], database: str, user: str) -> None:
    """Drop ``database`` (disconnecting its sessions) and then ``user`` unless it still owns another database."""
    conn.execute(q.build_drop_database(database))
    row = conn.execute(q.DATABASES_OWNED, (user,)).fetchone()
    if row and int(str(row[0])) > 0:
        return  # e.g. a restore --into copy still belongs to this role
    try:
        conn.execute(q.build_drop_role(user))
    except pg_errors.DependentObjectsStillExist as exc:
        raise Conflict(
            f"role {user} still owns objects elsewhere and was kept: {exc.diag.message_primary}",
            "drop or reassign those objects, then drop the database again",
        ) from None


def ensure_extensions(conn: psycopg.Connection[tuple[object, ...]], extensions: list[str]) -> None:
    """``CREATE EXTENSION IF NOT EXISTS`` each one, after checking the server has it installed."""
    for ext in extensions:
        if conn.execute(q.EXTENSION_AVAILABLE, (ext,)).fetchone() is None:
            major = server_version_num(conn) // 10000
            package = f"postgresql-{major}-pgvector" if ext == "vector" else f"the package that provides {ext}"
            raise InvalidInput(
                f"extension {ext!r} is not installed on the PostgreSQL server",
                f"install {package} on this machine, or remove it from the blueprint",
            )
        try:
            conn.execute(q.build_create_extension(ext))
        except psycopg.Error as exc:
            message = exc.diag.message_primary or str(exc).strip()
            raise InvalidInput(
                f"extension {ext!r} could not be created: {message}",
                "check the extension's requirements (shared_preload_libraries, superuser)",
            ) from None


def server_version_num(conn: psycopg.Connection[tuple[object, ...]]) -> int:
    """``server_version_num``, e.g. 150014."""
    row = conn.execute(q.SERVER_VERSION).fetchone()
    assert row is not None
    return int(str(row[0]))


def table_counts(
    conn: psycopg.Connection[tuple[object, ...]], *, limit: int = COUNT_ROWS_LIMIT
) -> tuple[list[str], dict[str, int] | None]:
    """The user tables (``schema.table``) and their exact row counts, or None for counts past ``limit`` rows."""
    rows = conn.execute(q.USER_TABLES).fetchall()
    tables = [f"{schema}.{table}" for schema, table, _ in rows]
    if sum(int(str(estimate)) for _, _, estimate in rows) > limit:
        return tables, None
    counts: dict[str, int] = {}
    for schema, table, _ in rows:
        row = conn.execute(q.build_count_rows(str(schema), str(table))).fetchone()
        counts[f"{schema}.{table}"] = int(str(row[0])) if row else 0
    return tables, counts

"""Data of the databases part: what a database, a backup and a restore drill look like.

Everything here is plain data plus the naming rules (blueprint name -> PostgreSQL identifier).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from slipstream.errors import InvalidInput

BACKUP_KINDS = ("manual", "scheduled", "pre_deploy", "final")  # final: taken before a delete
IDENTIFIER_MAX = 63  # PostgreSQL's NAMEDATALEN - 1
_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]*$")
_EXTENSION = re.compile(r"^[a-z0-9_][a-z0-9_.-]*$")
_RESERVED = {"postgres", "template0", "template1", "public", "slipstream"}


@dataclass(frozen=True)
class DatabaseInfo:
    """One blueprint database: where it is and how an app logs in."""

    name: str  # blueprint name
    host: str  # "127.0.0.1"
    port: int
    database: str
    user: str
    password: str = field(repr=False)

    def connection_string(self) -> str:
        """The URL an app gets as ``DATABASE_URL`` (``postgresql://user:password@host:port/database``)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return (
            f"postgresql://{quote(self.user, safe='')}:{quote(self.password, safe='')}"
            f"@{host}:{self.port}/{quote(self.database, safe='')}"
        )

    def properties(self) -> dict[str, str]:
        """The values a blueprint's ``fromDatabase.property`` can name."""
        return {
            "connectionString": self.connection_string(),
            "host": self.host,
            "port": str(self.port),
            "user": self.user,
            "password": self.password,
            "database": self.database,
        }


@dataclass(frozen=True)
class Endpoint:
    """Where and as whom a client connects (the admin login, or an app's)."""

    host: str
    port: int
    user: str
    password: str | None = field(default=None, repr=False)
    dbname: str = "postgres"
    options: tuple[tuple[str, str], ...] = ()  # extra libpq keywords, e.g. (("sslmode", "require"),)

    def with_dbname(self, dbname: str) -> Endpoint:
        """The same login, pointed at another database."""
        return Endpoint(self.host, self.port, self.user, self.password, dbname, self.options)


@dataclass(frozen=True)
class Backup:
    """One ``pg_dump`` archive and what its sidecar says about it."""

    id: str  # sortable: "<name>-<UTC timestamp>Z-<kind>"
    database: str  # blueprint name
    path: Path
    kind: str  # "manual" | "scheduled" | "pre_deploy"
    created_at: float
    size_bytes: int
    status: str  # "ok" | "failed"
    error: str | None
    sha256: str | None = None
    row_counts: dict[str, int] | None = field(default=None, compare=False, hash=False)


@dataclass(frozen=True)
class DrillReport:
    """The outcome of restoring a backup into a scratch database and comparing it with its sidecar."""

    ok: bool
    tables: dict[str, tuple[int, int]]  # "schema.table" -> (rows in sidecar, rows restored); -1 = missing
    message: str


def derive_identifier(name: str) -> str:
    """A valid lower-case PostgreSQL identifier for a blueprint name (``"main-db"`` -> ``"main_db"``)."""
    ident = re.sub(r"[^a-z0-9_]", "_", name.strip().lower())
    if not ident or not ident.strip("_"):
        raise InvalidInput(
            f"database name {name!r} has no letters or digits to build an identifier from",
            "give the database a name such as 'main'",
        )
    if ident[0].isdigit() or ident.startswith("pg_"):
        ident = f"db_{ident}"
    if ident in _RESERVED:
        ident = f"{ident}_db"
    return ident[:IDENTIFIER_MAX]


def check_identifier(value: str, what: str) -> str:
    """Return ``value`` if it is a plain lower-case identifier slipstream may create, else raise InvalidInput."""
    if len(value) > IDENTIFIER_MAX or not _IDENTIFIER.fullmatch(value):
        raise InvalidInput(
            f"{what} {value!r} is not a valid PostgreSQL name",
            "use lower-case letters, digits and '_', starting with a letter, at most 63 characters",
        )
    if value in _RESERVED or value.startswith("pg_"):
        raise InvalidInput(f"{what} {value!r} is reserved", "choose another name")
    return value


def check_kind(kind: str) -> str:
    """Return ``kind`` if it is a known backup kind, else raise InvalidInput."""
    if kind not in BACKUP_KINDS:
        raise InvalidInput(f"unknown backup kind {kind!r}", f"use one of {', '.join(BACKUP_KINDS)}")
    return kind


def check_extension(name: str) -> str:
    """Return ``name`` if it looks like an extension name (``vector``, ``uuid-ossp``), else raise InvalidInput."""
    if len(name) > IDENTIFIER_MAX or not _EXTENSION.fullmatch(name):
        raise InvalidInput(
            f"extension {name!r} is not a valid extension name",
            "use the name CREATE EXTENSION takes, e.g. 'vector' or 'pg_trgm'",
        )
    return name

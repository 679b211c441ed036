"""Pure parsers for the answers of HAProxy's ``show`` commands (formats as printed by 2.6).

``show servers state`` gives each server's address, port and admin-state mask; ``show stat`` (CSV)
gives its current sessions; ``show map <file>`` gives ``<ref> <key> <value>`` lines.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass

from slipstream.errors import CommandFailed

# srv_admin_state bits (management guide, "show servers state").
_FMAINT, _IMAINT, _CMAINT, _FDRAIN, _IDRAIN, _RMAINT = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20


@dataclass(frozen=True)
class ServerRow:
    """One line of ``show servers state``: where a server lives and its admin state."""

    backend: str
    name: str
    addr: str
    port: int
    admin: str


def admin_from_mask(mask: int) -> str:
    """Map a ``srv_admin_state`` mask to "ready", "drain" or "maint".

    CMAINT alone does not count: HAProxy keeps that bit on a server written ``disabled`` in the
    config even after ``set server ... state ready`` has put it back into service.
    """
    if mask & (_FMAINT | _IMAINT | _RMAINT):
        return "maint"
    if mask & (_FDRAIN | _IDRAIN):
        return "drain"
    return "ready"


def parse_servers_state(text: str) -> list[ServerRow]:
    """Parse the answer of ``show servers state [<backend>]`` (format version 1)."""
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines or lines[0].strip() != "1" or len(lines) < 2 or not lines[1].startswith("#"):
        raise CommandFailed(f"unexpected answer to 'show servers state': {text.strip()[:200]!r}")
    columns = lines[1].lstrip("#").split()
    try:
        be, name = columns.index("be_name"), columns.index("srv_name")
        addr, admin = columns.index("srv_addr"), columns.index("srv_admin_state")
        port = columns.index("srv_port")
    except ValueError:
        raise CommandFailed(f"'show servers state' lacks a known column: {lines[1]!r}") from None
    rows = []
    for line in lines[2:]:
        if line.startswith("#"):
            continue
        fields = line.split()
        rows.append(
            ServerRow(
                backend=fields[be],
                name=fields[name],
                addr=fields[addr],
                port=int(fields[port]),
                admin=admin_from_mask(int(fields[admin])),
            )
        )
    return rows


def parse_stat_sessions(text: str) -> dict[tuple[str, str], int]:
    """Parse ``show stat`` CSV into ``{(backend, server): current sessions}`` for server rows."""
    lines = text.splitlines()
    if not lines or not lines[0].startswith("# pxname,svname"):
        raise CommandFailed(f"unexpected answer to 'show stat': {text.strip()[:200]!r}")
    reader = csv.DictReader([lines[0][2:]] + [line for line in lines[1:] if line.strip()])
    sessions = {}
    for row in reader:
        if row["svname"] in ("FRONTEND", "BACKEND"):
            continue
        sessions[(row["pxname"], row["svname"])] = int(row["scur"] or 0)
    return sessions


def parse_map(text: str) -> dict[str, str]:
    """Parse ``show map <file>`` lines (``<ref> <key> <value>``) into ``{key: value}``."""
    entries = {}
    for line in text.splitlines():
        parts = line.split(None, 2)
        if not parts:
            continue
        if len(parts) != 3 or not parts[0].startswith("0x"):
            raise CommandFailed(f"unexpected line in 'show map' answer: {line[:200]!r}")
        entries[parts[1]] = parts[2]
    return entries

"""Which slipstream server sits in which server slot: the record on disk and the live view.

HAProxy knows a slot only by its name (``be_03/s05``) and address; slipstream's server names
("d12-1") live in ``backends.json`` beside the service -> backend assignment:

    {"services": {"web": "be_03"},
     "slots": {"be_03/s05": {"name": "d12-1", "port": 41001}}}

The record is written before a slot is given an address and after it is freed, and it is only
believed when it agrees with the live process: a slot is held by the recorded server when its
live port is the recorded port. A free slot points at port 1 (:data:`config.FREE_PORT`); a slot
with another port that the record does not explain is reported under the slot's own name
(e.g. "s05"), so a caller reconciling against its own list sees it and can remove it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from slipstream.proxy.config import FREE_PORT
from slipstream.proxy.model import ServerState
from slipstream.proxy.parse import ServerRow

Records = dict[str, tuple[str, int]]  # "be_03/s05" -> (server name, port)


@dataclass(frozen=True)
class Slot:
    """One server slot of a backend as the live process has it; ``server`` is None when free."""

    backend: str
    slot: str
    server: ServerState | None


@dataclass(frozen=True)
class Live:
    """One read of the live process: the maps, and the slots of the backends that were read."""

    services: dict[str, str]  # service -> backend
    hosts: dict[str, str]  # host -> backend
    slots: dict[str, list[Slot]]  # backend -> its slots, in slot order

    def service_of(self, backend: str) -> str | None:
        return next((s for s, b in self.services.items() if b == backend), None)

    def hosts_of(self, backend: str) -> list[str]:
        return sorted(h for h, b in self.hosts.items() if b == backend)

    def servers_of(self, backend: str) -> list[ServerState]:
        """The servers held by ``backend``'s slots, sorted by name."""
        held = [s.server for s in self.slots.get(backend, []) if s.server is not None]
        return sorted(held, key=lambda server: server.name)

    def find(self, backend: str, name: str) -> Slot | None:
        """The slot of ``backend`` holding server ``name``, or None."""
        return next((s for s in self.slots.get(backend, []) if s.server is not None and s.server.name == name), None)

    def free_slot(self, backend: str) -> str | None:
        """The first free slot of ``backend``, or None when all are held."""
        return next((s.slot for s in self.slots.get(backend, []) if s.server is None), None)

    def occupied(self) -> set[str]:
        """Backends with at least one held slot."""
        return {b for b, slots in self.slots.items() if any(s.server for s in slots)}


def build_slots(
    rows: Iterable[ServerRow],
    sessions: Mapping[tuple[str, str], int],
    records: Mapping[str, tuple[str, int]],
    pool: Iterable[str],
    slot_names: Iterable[str],
) -> dict[str, list[Slot]]:
    """Name the live slots of the ``pool`` backends from ``records`` (see the module docstring)."""
    backends, names = set(pool), set(slot_names)
    slots: dict[str, list[Slot]] = {}
    for row in rows:
        if row.backend not in backends or row.name not in names:
            continue
        held = slots.setdefault(row.backend, [])
        server = None
        if row.port != FREE_PORT:
            name, port = records.get(f"{row.backend}/{row.name}", (row.name, row.port))
            taken = {s.server.name for s in held if s.server is not None}
            if port != row.port or name in taken:
                name = row.name
            server = ServerState(name, row.port, row.admin, sessions.get((row.backend, row.name), 0))
        held.append(Slot(row.backend, row.name, server))
    for held in slots.values():
        held.sort(key=lambda s: s.slot)
    return slots


def live_records(live: Live) -> Records:
    """The records that describe ``live``: every held slot whose server has a slipstream name."""
    return {
        f"{s.backend}/{s.slot}": (s.server.name, s.server.port)
        for slots in live.slots.values()
        for s in slots
        if s.server is not None and s.server.name != s.slot
    }


def load_records(path: Path) -> tuple[dict[str, str], Records]:
    """The service -> backend assignment and slot records of ``path`` (empty if unreadable)."""
    try:
        data = json.loads(path.read_text())
        services = {str(k): str(v) for k, v in data.get("services", {}).items()}
        slots = {str(k): (str(v["name"]), int(v["port"])) for k, v in data.get("slots", {}).items()}
        return services, slots
    except (OSError, ValueError, AttributeError, KeyError, TypeError):
        return {}, {}


def save_records(path: Path, services: Mapping[str, str], slots: Mapping[str, tuple[str, int]]) -> None:
    """Replace ``path`` atomically with the assignment and slot records."""
    body = {
        "services": dict(sorted(services.items())),
        "slots": {k: {"name": n, "port": p} for k, (n, p) in sorted(slots.items())},
    }
    write_atomic(path, json.dumps(body, indent=2) + "\n")


def write_atomic(path: Path, text: str) -> None:
    """Replace ``path`` atomically with ``text``."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)

"""The engine-facing boundary of the keyvalue part: every ``keyvalue`` server under one root.

How the engine drives it:
  1. daemon start: :meth:`KeyValueServers.start_all` adopts each wanted server that still runs and
     starts the others on their ports with their data (no password needed: ``redis.conf`` keeps
     hashes);
  2. apply: :meth:`~KeyValueServers.ensure` per blueprint entry starts, adopts or changes a server
     live and returns the :class:`KeyValueInfo` that ``fromService`` resolves from;
  3. every few seconds: :meth:`~KeyValueServers.check` starts a server that died again (at once the
     first time, then with the runtime's crash back-off) and says what it did;
  4. :meth:`~KeyValueServers.stop` (stays stopped), :meth:`~KeyValueServers.stop_all` (the next
     ``start_all`` brings them back), :meth:`~KeyValueServers.delete` (data kept aside, or purged).
"""

from __future__ import annotations

import datetime
import logging
import shutil
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from slipstream.errors import NotFound, SlipstreamError
from slipstream.keyvalue.commands import plan_bind
from slipstream.keyvalue.models import (
    DEFAULT_POLICY,
    HOST,
    KeyValueEvent,
    KeyValueInfo,
    ServerSpec,
    check_maxmemory,
    check_name,
    check_policy,
)
from slipstream.keyvalue.server import KeyValueServer
from slipstream.runtime.backoff import BackoffPolicy, plan_restart, render_delay

log = logging.getLogger("slipstream.keyvalue")
DELETED_DIR = ".deleted"


@dataclass
class _Restarts:
    """Crash bookkeeping of one server (in memory: a daemon restart forgives)."""

    in_row: int = 0
    last_start: float = float("-inf")  # monotonic
    not_before: float | None = None  # set when a death is noticed


class KeyValueServers:
    """All ``keyvalue`` servers under ``root`` (``<home>/keyvalue``); safe to call from several threads."""

    def __init__(self, root: Path, *, traverse_root: Path | None = None, backoff: BackoffPolicy | None = None) -> None:
        self.root = Path(root).absolute()
        self._traverse_root = traverse_root
        self._backoff = backoff or BackoffPolicy()
        self._lock = threading.RLock()
        self._servers: dict[str, KeyValueServer] = {}
        self._restarts: dict[str, _Restarts] = {}

    def server(self, name: str) -> KeyValueServer:
        """The server object of ``name`` (it need not exist yet)."""
        with self._lock:
            if name not in self._servers:
                self._servers[name] = KeyValueServer(self.root, check_name(name), traverse_root=self._traverse_root)
            return self._servers[name]

    def names(self) -> list[str]:
        """Every server set up under the root (running or not), sorted."""
        if not self.root.is_dir():
            return []
        return sorted(
            d.name for d in self.root.iterdir() if not d.name.startswith(".") and (d / "server.json").exists()
        )

    def ensure(
        self,
        name: str,
        *,
        password: str,
        policy: str = DEFAULT_POLICY,
        maxmemory_mb: int | None = None,
        ip_allow_list: Sequence[str] = (),
        listen: Sequence[str] = (),
        port: int | None = None,
    ) -> KeyValueInfo:
        """Start or adopt ``name`` with these settings (a change is applied live) and say how apps reach it.

        ``ip_allow_list`` empty: loopback only (Render's ``[]``, internal only). With entries, the
        server also listens on ``listen`` (the operator's addresses); Redis cannot filter by source,
        so the CIDRs only decide whether those addresses open.
        """
        spec = ServerSpec(check_policy(policy), check_maxmemory(maxmemory_mb), plan_bind(ip_allow_list, listen))
        if ip_allow_list and spec.bind == (HOST,):
            log.warning("keyvalue %s: ipAllowList has entries but no listen address is set: loopback only", name)
        with self._lock:
            server = self.server(name)
            result = server.start(password, spec=spec, port=port)
            self._restarts.pop(name, None)
            log.info("keyvalue %s %s on port %d", name, result, server.port)
            return KeyValueInfo(name, HOST, server.port, password)

    def info(self, name: str, password: str) -> KeyValueInfo:
        """How apps reach ``name`` (the engine keeps the password; this only adds host and port)."""
        server = self._existing(name)
        return KeyValueInfo(name, HOST, server.port, password)

    def start_all(self) -> list[KeyValueEvent]:
        """At daemon start: adopt each wanted server that runs, start the others; never raises."""
        events = []
        with self._lock:
            for name in self.names():
                server = self.server(name)
                if not server.wanted():
                    continue
                pid = server.pid()
                if pid is not None:
                    events.append(KeyValueEvent(name, "adopted", f"pid {pid} on port {server.port}"))
                    continue
                try:
                    server.start()
                    events.append(KeyValueEvent(name, "started", f"on port {server.port}"))
                except SlipstreamError as exc:
                    events.append(KeyValueEvent(name, "failed", str(exc)))
        return events

    def check(self) -> list[KeyValueEvent]:
        """Start again each wanted server that died (same port, same data); return what was done."""
        events = []
        with self._lock:
            for name in self.names():
                server = self.server(name)
                if not server.wanted() or server.running():
                    continue
                event = self._restart(name, server)
                if event is not None:
                    events.append(event)
        return events

    def stop(self, name: str) -> bool:
        """Stop ``name`` and keep it stopped (``check`` leaves it alone) until ``ensure``; True if it ran."""
        with self._lock:
            return self._existing(name).stop(wanted=False)

    def stop_all(self) -> list[str]:
        """Stop every server (the daemon is going down for good); ``start_all`` starts them again."""
        stopped = []
        with self._lock:
            for name in self.names():
                if self.server(name).stop(wanted=self.server(name).wanted()):
                    stopped.append(name)
        return stopped

    def delete(self, name: str, *, purge: bool = False) -> Path | None:
        """Stop ``name`` and remove it; its directory (data and log) is moved under ``.deleted/``
        and returned, or removed for good with ``purge``."""
        with self._lock:
            server = self._existing(name)
            server.stop(wanted=False)
            self._servers.pop(name, None)
            self._restarts.pop(name, None)
            if purge:
                shutil.rmtree(server.dir)
                return None
            stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
            kept = self.root / DELETED_DIR / f"{name}-{stamp}"
            kept.parent.mkdir(mode=0o700, exist_ok=True)
            server.dir.rename(kept)
            return kept

    # Helpers ---------------------------------------------------------------------------------
    def _existing(self, name: str) -> KeyValueServer:
        server = self.server(name)
        if not server.exists():
            raise NotFound(
                f"keyvalue {name} does not exist", "run 'slipstream apply' with a blueprint that declares it"
            )
        return server

    def _restart(self, name: str, server: KeyValueServer) -> KeyValueEvent | None:
        """One restart attempt, unless the back-off says wait; None when waiting."""
        now = time.monotonic()
        restarts = self._restarts.setdefault(name, _Restarts())
        if restarts.not_before is None:  # a death noticed now: the first in a row restarts at once
            plan = plan_restart(self._backoff, restarts.in_row, now - restarts.last_start)
            restarts.in_row = plan.crashes_in_row
            restarts.not_before = now if plan.crashes_in_row == 1 else now + plan.delay_s
        if now < restarts.not_before:
            return None
        restarts.last_start, restarts.not_before = now, None
        try:
            server.start()
        except SlipstreamError as exc:  # schedule the next try from this one
            plan = plan_restart(self._backoff, restarts.in_row, 0.0)
            restarts.in_row, restarts.not_before = plan.crashes_in_row, time.monotonic() + plan.delay_s
            return KeyValueEvent(name, "failed", f"{exc} (next try in {render_delay(plan.delay_s)})")
        return KeyValueEvent(name, "restarted", f"was not running; started again on port {server.port}")

"""Managed key value (Render's ``keyvalue``, formerly ``redis``) as the engine uses it.

Each entry is one real ``redis-server`` (``slipstream.keyvalue``). Its password is generated once
and kept encrypted in the store; the server keeps only hashes. Lifecycle: ``start`` adopts (or
starts) every server a previous daemon ran, ``provide`` creates or updates one from its blueprint
entry, a watcher starts again a server that died (same port, same data), ``close`` leaves them
running for the next daemon, ``stop`` ends them (``slipstream down``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any

from slipstream.errors import NotFound
from slipstream.keyvalue import DEFAULT_POLICY, KeyValueServers, plan_maxmemory_mb
from slipstream.secrets import Masker, generate_value
from slipstream.settings import Settings
from slipstream.state.store import Store

log = logging.getLogger("slipstream.keyvalue")

PASSWORD_KEY = "keyvalue:{name}.password"


class KeyValueManager:
    """Every key value server of this machine, with the passwords the store keeps."""

    def __init__(self, settings: Settings, store: Store, masker: Masker, *, check_interval_s: float = 5.0) -> None:
        self.settings = settings
        self.store = store
        self.masker = masker
        self.servers = KeyValueServers(settings.keyvalue_dir, traverse_root=settings.home)
        self.check_interval_s = check_interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self) -> None:
        """Adopt (or start) the servers a previous daemon ran, then watch them."""
        for name in self.servers.names():
            password = self.store.kept_values().get(PASSWORD_KEY.format(name=name))
            if password:
                self.masker.add([password])
        for ev in self.servers.start_all():
            self.store.event("keyvalue", f"key value {ev.name}: {ev.action} {ev.detail}".rstrip())
        self._thread = threading.Thread(target=self._watch, daemon=True, name="keyvalue-watch")
        self._thread.start()

    def close(self) -> None:
        """Stop watching; the servers keep running for the next daemon."""
        self._stop.set()

    def stop(self) -> None:
        """Stop every server ('slipstream down'); the next start brings them back."""
        self._stop.set()
        self.servers.stop_all()

    def _watch(self) -> None:
        while not self._stop.wait(self.check_interval_s):
            try:
                for ev in self.servers.check():
                    self.store.event("keyvalue", f"key value {ev.name}: {ev.action} {ev.detail}".rstrip())
            except Exception:
                log.exception("key value check failed")

    # -- entries ------------------------------------------------------------------------------
    def _password(self, name: str, create: bool) -> str | None:
        key = PASSWORD_KEY.format(name=name)
        kept = self.store.kept_values().get(key)
        if kept is None and create:
            kept = generate_value().replace("/", "_").replace("+", "-").rstrip("=")
            self.store.keep_value(key, kept)
        if kept:
            self.masker.add([kept])
        return kept

    def known(self, name: str) -> dict[str, str] | None:
        """Connection properties of an entry that exists; None otherwise. Creates nothing."""
        password = self._password(name, create=False)
        if password is None or name not in self.servers.names():
            return None
        return self.servers.info(name, password).properties()

    def provide(
        self, name: str, *, policy: str | None, allow: Sequence[str], plan: str | None = None
    ) -> dict[str, str]:
        """Start (or update) the server of a blueprint entry; its connection properties."""
        password = self._password(name, create=True)
        assert password is not None
        info = self.servers.ensure(
            name,
            password=password,
            policy=policy or DEFAULT_POLICY,
            maxmemory_mb=plan_maxmemory_mb(plan) if plan else None,
            ip_allow_list=allow,
            listen=self.settings.keyvalue_listen,
        )
        props = info.properties()
        self.masker.add([props["connectionString"]])
        return props

    def overview(self) -> list[dict[str, Any]]:
        """Every entry: address, state, policy, memory (the URL masked)."""
        out = []
        for name in self.servers.names():
            server = self.servers.server(name)
            running = server.running()
            row: dict[str, Any] = {
                "name": name,
                "host": "127.0.0.1",
                "port": server.port,
                "running": running,
                "pid": server.pid() if running else None,
            }
            row["url"] = f"redis://default:********@127.0.0.1:{server.port}"
            try:
                status = server.info()
                row.update(policy=status.policy, maxmemory=status.maxmemory, used_memory=status.used_memory)
            except Exception:  # a stopped server answers nothing
                pass
            out.append(row)
        return out

    def connection(self, name: str) -> dict[str, Any]:
        """The URL and a ``redis-cli`` command for ``name`` (the password for the caller to pass)."""
        password = self._password(name, create=False)
        if password is None or name not in self.servers.names():
            raise NotFound(f"unknown key value '{name}'", "run 'slipstream kv list'")
        info = self.servers.info(name, password)
        return {
            "url": info.properties()["connectionString"],
            "argv": ["redis-cli", "-h", info.host, "-p", str(info.port), "--user", "default"],
            "password": password,
        }

    def delete(self, name: str, *, purge: bool = False) -> str | None:
        """Stop and remove ``name``; where its data was moved (None when purged)."""
        if name not in self.servers.names():
            raise NotFound(f"unknown key value '{name}'", "run 'slipstream kv list'")
        moved = self.servers.delete(name, purge=purge)
        self.store.forget_value(PASSWORD_KEY.format(name=name))
        self.store.disown("keyvalue", name)
        return str(moved) if moved else None

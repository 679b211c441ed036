"""Provisioning: read what the machine knows (``facts``) and create what a release needs (``provide``).

Reading has no effect. Providing is the one step with effects before a build: it keeps generated
values (made once, never again), creates or updates databases and key value servers, and gives
private services their stable addresses. It runs inside a deploy, which records what it did;
one lock serialises it, so parallel deploys of one blueprint never create a thing twice.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from slipstream.blueprint import Blueprint
from slipstream.engine.context import DatabaseControl, KeyValueControl
from slipstream.engine.planning import EnvOverrides, Facts, Needs
from slipstream.errors import InvalidInput
from slipstream.proxy.base import ProxyControl
from slipstream.secrets import Masker, generate_value
from slipstream.state.store import Store

OVERRIDES_KEY = "overrides:{service}"


class Provisioner:
    """Reads facts for planning; provides what a plan needs."""

    def __init__(
        self,
        store: Store,
        proxy: ProxyControl,
        masker: Masker,
        http_port: int,
        databases: DatabaseControl | None = None,
        keyvalues: KeyValueControl | None = None,
    ) -> None:
        self.store = store
        self.proxy = proxy
        self.masker = masker
        self.http_port = http_port
        self.databases = databases
        self.keyvalues = keyvalues
        self._lock = threading.Lock()

    # -- reading --------------------------------------------------------------------------------
    def overrides(self, service: str) -> EnvOverrides:
        """What 'slipstream env set/unset' changed for ``service``."""
        return EnvOverrides.from_json(self.store.kept_values().get(OVERRIDES_KEY.format(service=service)))

    def save_overrides(self, service: str, overrides: EnvOverrides) -> None:
        self.store.keep_value(OVERRIDES_KEY.format(service=service), overrides.to_json())

    def facts(self, bp: Blueprint, service: str, overrides: EnvOverrides | None = None) -> Facts:
        """What the machine knows that ``bp`` refers to; creates nothing."""
        kept = self.store.kept_values()
        databases = {}
        for db in bp.databases:
            props = self.databases.known(db.name) if self.databases is not None else None
            if props is not None:
                databases[db.name] = props
        keyvalues = {}
        for s in bp.services:
            if s.type == "keyvalue" and self.keyvalues is not None:
                props = self.keyvalues.known(s.name)
                if props is not None:
                    keyvalues[s.name] = props
        private = self.proxy.private_ports()
        return Facts(
            kept=kept,
            databases=databases,
            keyvalues=keyvalues,
            private_ports=private,
            http_port=self.http_port,
            overrides=overrides if overrides is not None else self.overrides(service),
        )

    # -- providing ------------------------------------------------------------------------------
    def provide(self, bp: Blueprint, needs: Needs, *, refresh: bool, say: Callable[[str], None]) -> None:
        """Create what ``needs`` lists; with ``refresh``, also bring every database and key value of
        ``bp`` up to its blueprint (extensions, allow lists, policies). Raises InvalidInput."""
        with self._lock:
            for vid in needs.generate:
                if vid not in self.store.kept_values():
                    self.store.keep_value(vid, generate_value())
                    say(f"       generated {vid.split('.', 1)[1]} for {vid.split('.', 1)[0]} (kept for good)")
            self._databases(bp, set(needs.databases), refresh, say)
            self._keyvalues(bp, set(needs.keyvalues), refresh, say)
            for name in needs.private_ports:
                port = self.proxy.set_private_route(name)
                say(f"       private service {name} answers at 127.0.0.1:{port}")

    def _databases(self, bp: Blueprint, missing: set[str], refresh: bool, say: Callable[[str], None]) -> None:
        wanted = [d for d in bp.databases if refresh or d.name in missing]
        if not wanted:
            return
        if self.databases is None:
            raise InvalidInput(
                "this blueprint declares databases but managed PostgreSQL is not running",
                "restart slipstream with 'slipstream up'",
            )
        for db in wanted:
            note = self.databases.version_note(db.name, db.postgres_major_version)
            if note and db.name in missing:
                say(f"       warning: {note}")
            props = self.databases.provide(
                db.name,
                database_name=db.database_name,
                user=db.user,
                major_version=db.postgres_major_version,
                extensions=db.extensions,
                ip_allow_list=[a.source for a in db.ip_allow_list],
            )
            self.masker.add([props["password"], props["connectionString"]])
            if db.name in missing:
                say(f"       database {db.name} created ({props['database']} on {props['host']}:{props['port']})")

    def _keyvalues(self, bp: Blueprint, missing: set[str], refresh: bool, say: Callable[[str], None]) -> None:
        wanted = [s for s in bp.services if s.type == "keyvalue" and (refresh or s.name in missing)]
        if not wanted:
            return
        if self.keyvalues is None:
            raise InvalidInput("this blueprint declares key value instances but slipstream cannot run them here")
        for kv in wanted:
            props = self.keyvalues.provide(
                kv.name, policy=kv.maxmemory_policy, allow=[a.source for a in kv.ip_allow_list or []], plan=kv.plan
            )
            self.masker.add([props["connectionString"]])
            if kv.name in missing:
                say(f"       key value {kv.name} started on {props['hostport']}")

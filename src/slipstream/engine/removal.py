"""Deleting resources, only ever on an explicit command (``apply`` never deletes, as on Render).

- a service: its deploys are canceled, its instances stopped (routed ones drained first), its
  proxy route removed without disturbing any other service, its builds and records dropped; its
  disk is kept unless ``purge_disks``;
- a database: a final backup first (named in the answer; it stays in the backups directory),
  then the database and its role are dropped;
- a key value: its server is stopped and its data moved aside (or removed with ``purge``);
- a project: all of the above for everything it owns.
"""

from __future__ import annotations

import logging
import shutil
from typing import TYPE_CHECKING, Any

from slipstream.engine.context import DeployContext
from slipstream.engine.queue import DeployQueue
from slipstream.errors import NotFound, SlipstreamError
from slipstream.states import ServiceType

if TYPE_CHECKING:
    from slipstream.engine.dbs import DatabaseManager
    from slipstream.engine.keyvalues import KeyValueManager

log = logging.getLogger("slipstream.engine")


class Removal:
    """Explicit deletes of services, databases, key values and whole projects."""

    def __init__(
        self,
        ctx: DeployContext,
        queue: DeployQueue,
        databases: DatabaseManager | None,
        keyvalues: KeyValueManager | None,
    ) -> None:
        self.ctx = ctx
        self.queue = queue
        self.databases = databases
        self.keyvalues = keyvalues

    def service(self, name: str, *, purge_disks: bool = False) -> dict[str, Any]:
        """Delete service ``name``; what was done."""
        store = self.ctx.store
        try:
            svc = store.service(name)
        except NotFound:
            if name not in store.owners("service"):
                raise
            store.disown("service", name)  # claimed by an apply whose deploy never got recorded
            return {"service": name, "instances_stopped": 0, "disk_kept": None}
        self.queue.cancel(name, reason=f"service {name} was deleted")
        self.queue.wait_idle(name, timeout=60)
        instances = store.instances(name)
        for inst in instances:
            self.ctx.instances.drain(inst)
        if ServiceType(svc.type).routed:
            try:
                self.ctx.proxy.remove_route(name)
            except NotFound:
                pass
        builds = self.ctx.settings.builds_dir / name
        shutil.rmtree(builds, ignore_errors=True)
        disk = self.ctx.settings.disks_dir / name
        kept_disk = None
        if disk.exists():
            if purge_disks:
                shutil.rmtree(disk, ignore_errors=True)
            else:
                kept_disk = str(disk)
        for key in [k for k in store.kept_values() if k.startswith(f"{name}.") or k == f"overrides:{name}"]:
            store.forget_value(key)
        store.delete_service(name)
        store.event("delete", f"service {name} deleted ({len(instances)} instances stopped)")
        return {"service": name, "instances_stopped": len(instances), "disk_kept": kept_disk}

    def database(self, name: str) -> dict[str, Any]:
        """Back ``name`` up one last time, then drop it; the final backup's id and path."""
        if self.databases is None:
            raise NotFound(f"unknown database '{name}'")
        info = self.databases.info(name)
        final = self.databases.backup(name, kind="final")
        self.databases.cluster.drop_database(info)
        self.databases.forget(name)
        self.ctx.store.event("delete", f"database {name} deleted; final backup {final.id}")
        return {"database": name, "final_backup": final.id, "path": str(final.path)}

    def keyvalue(self, name: str, *, purge: bool = False) -> dict[str, Any]:
        """Stop and remove key value ``name``."""
        if self.keyvalues is None:
            raise NotFound(f"unknown key value '{name}'")
        moved = self.keyvalues.delete(name, purge=purge)
        self.ctx.store.event("delete", f"key value {name} deleted")
        return {"keyvalue": name, "data_moved_to": moved}

    def project(self, project: str, *, purge_disks: bool = False) -> dict[str, Any]:
        """Delete everything ``project`` owns; what was done, per resource."""
        owned = self.ctx.store.projects().get(project)
        if owned is None:
            known = ", ".join(sorted(self.ctx.store.projects())) or "none"
            raise NotFound(f"unknown project '{project}'", f"projects: {known}")
        done: list[dict[str, Any]] = []
        errors: list[str] = []
        order = {"service": 0, "keyvalue": 1, "database": 2, "group": 3}
        for kind, name in sorted(owned, key=lambda r: order.get(r[0], 9)):
            try:
                if kind == "service":
                    done.append(self.service(name, purge_disks=purge_disks))
                elif kind == "database":
                    done.append(self.database(name))
                elif kind == "keyvalue":
                    done.append(self.keyvalue(name, purge=purge_disks))
                else:
                    self.ctx.store.disown(kind, name)
                    done.append({"group": name})
            except SlipstreamError as exc:
                errors.append(f"{kind} {name}: {exc.message}")
                log.warning("deleting %s %s of project %s failed: %s", kind, name, project, exc.message)
        self.ctx.store.forget_value(f"plan-state:{project}")
        return {"project": project, "deleted": done, "errors": errors}

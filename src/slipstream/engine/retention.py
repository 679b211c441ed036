"""Retention: which of a service's builds stay on disk, collecting the others, and pruning events.

A build's directory (``builds/<service>/<id>/``: the source tree, its build log, a static site's
Caddy folder) is kept while something may run it: the live deploy's build, the build of any deploy
not finished yet, and the builds of the newest ``SLIPSTREAM_BUILDS_KEPT`` successful deploys (what
``slipstream rollback`` picks from). A failed build is kept only while it is the service's newest
build (its directory is where a person looks first). Everything else is removed, its virtualenv too
once no kept build uses it, and its record says ``collected``: a rollback to it then fails with a
message saying to deploy its commit again. ``collect`` runs after each deploy goes live and from
``slipstream gc`` (which can only show what it would free).

Platform events (the deploy transcripts, crashes, health changes in the state database) are kept
``SLIPSTREAM_EVENTS_KEPT_DAYS`` (30) and at most ``SLIPSTREAM_EVENTS_MAX`` (100,000) rows:
``EventPruner`` deletes the rest when the daemon starts and every hour after.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from slipstream.builds.model import Build
from slipstream.fsutil import dir_size
from slipstream.state.store import BuildRecord, DeployRecord, Store

if TYPE_CHECKING:
    from slipstream.engine.context import BuildControl, DeployContext

log = logging.getLogger(__name__)

COLLECTED = "collected"


@dataclass(frozen=True)
class Collected:
    """A build directory that was (or, in a dry run, would be) removed."""

    service: str
    build_id: int
    bytes: int

    def public(self) -> dict[str, object]:
        return {"service": self.service, "build": self.build_id, "bytes": self.bytes}


def builds_to_keep(
    builds: Sequence[BuildRecord], deploys: Sequence[DeployRecord], live_deploy_id: int | None, keep: int
) -> set[int]:
    """The ids of ``builds`` (one service's) whose directories stay (see the module docstring)."""
    kept: set[int] = set()
    succeeded: list[int] = []
    for d in sorted(deploys, key=lambda d: -d.id):
        if d.build_id is None:
            continue
        if d.id == live_deploy_id or d.status.active:
            kept.add(d.build_id)
        elif d.status.succeeded and d.build_id not in succeeded and len(succeeded) < keep:
            succeeded.append(d.build_id)
    kept.update(succeeded)
    kept.update(b.id for b in builds if b.status == "building")
    if builds:
        newest = max(builds, key=lambda b: b.id)
        if newest.status == "failed":
            kept.add(newest.id)
    return kept


def collect_builds(
    store: Store, builder: BuildControl, builds_dir: Path, keep: int, service: str | None = None, dry_run: bool = False
) -> list[Collected]:
    """Remove the build directories no longer kept, of ``service`` or of every service."""
    out: list[Collected] = []
    names = [service] if service is not None else [s.name for s in store.services()]
    for name in names:
        builds = store.builds(name)
        svc = store.service(name)
        kept = builds_to_keep(builds, store.deploys(name, limit=100_000), svc.live_deploy_id, keep)
        for b in builds:
            if b.id in kept or b.status not in ("ok", "failed"):
                continue
            root = builds_dir / name / str(b.id)
            size = dir_size(root)
            if not dry_run:
                try:
                    builder.remove(_as_build(b, root))
                except Exception as exc:  # a build that cannot go now is tried again next time
                    log.warning("could not remove build %s of %s: %s", b.id, name, exc)
                    continue
                store.set_build_status(b.id, COLLECTED)
            out.append(Collected(name, b.id, size))
    return out


def _as_build(b: BuildRecord, root: Path) -> Build:
    source = Path(b.source_dir) if b.source_dir else root / "src"
    return Build(b.id, b.service, b.commit_sha, source, Path(b.workdir or source), (), dict(b.extra_env))


class EventPruner:
    """Deletes events older than ``keep_days`` and beyond the newest ``max_rows``: at ``start``,
    then every ``every_s`` until ``close``."""

    def __init__(self, store: Store, keep_days: float, max_rows: int, every_s: float = 3600.0) -> None:
        self.store = store
        self.keep_s = keep_days * 86400
        self.max_rows = max_rows
        self.every_s = every_s
        self._stop = threading.Event()

    def prune(self, now: float | None = None) -> int:
        """One pass; how many events went (never raises: the next pass tries again)."""
        try:
            removed = self.store.prune_events((time.time() if now is None else now) - self.keep_s, self.max_rows)
        except Exception:
            log.exception("pruning old events failed")
            return 0
        if removed:
            log.info("pruned %d old events", removed)
        return removed

    def start(self) -> None:
        self.prune()
        threading.Thread(target=self._loop, daemon=True, name="event-pruner").start()

    def close(self) -> None:
        self._stop.set()

    def _loop(self) -> None:
        while not self._stop.wait(self.every_s):
            self.prune()


def collect_after_live(ctx: DeployContext, service: str, say: Callable[[str], None]) -> None:
    """After a deploy went live: collect the service's builds no longer kept (never fails it)."""
    try:
        freed = collect_builds(ctx.store, ctx.builder, ctx.settings.builds_dir, ctx.settings.builds_kept, service)
    except Exception:
        log.exception("collecting old builds of %s failed", service)
        return
    if freed:
        mb = sum(c.bytes for c in freed) / 2**20
        say(f"       removed {len(freed)} old build{'s' if len(freed) > 1 else ''} ({mb:.1f} MB)")

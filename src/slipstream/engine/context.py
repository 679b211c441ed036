"""The narrow context a deploy run, the cron scheduler and the live monitor work through.

They never see the :class:`~slipstream.engine.engine.Engine`: only the parts below, each behind
its own boundary (a fake of each lives beside it), so every one of them is testable in process.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from slipstream.builds import Build, BuildSpec
from slipstream.builds.docker import DockerBuildSpec, ImageBuild
from slipstream.logs.model import Source
from slipstream.proxy.base import ProxyControl
from slipstream.runtime.base import Driver
from slipstream.secrets import Masker
from slipstream.settings import Settings
from slipstream.state.store import Store

if TYPE_CHECKING:  # psycopg costs memory: the database package loads only once a database exists
    from slipstream.databases import Backup
    from slipstream.engine.instances import Instances
    from slipstream.engine.provision import Provisioner


class DatabaseControl(Protocol):
    """What the engine asks of managed PostgreSQL (``engine.dbs.DatabaseManager``)."""

    def known(self, name: str) -> Mapping[str, str] | None:
        """Connection properties of a database that exists, or None; creates nothing."""
        ...

    def provide(
        self,
        name: str,
        *,
        database_name: str | None = None,
        user: str | None = None,
        major_version: int | str | None = None,
        extensions: Sequence[str] = (),
        ip_allow_list: Sequence[str] = (),
    ) -> Mapping[str, str]:
        """Create (idempotently) a blueprint database; its connection properties."""
        ...

    def version_note(self, name: str, major_version: int | str | None) -> str | None:
        """A warning when the machine's PostgreSQL is not the major version asked for, else None."""
        ...

    def snapshot(self, names: list[str]) -> list[Backup]:
        """A backup of each named database now (before migrations run)."""
        ...

    def ensure_running(self) -> bool:
        """Start the cluster again if it was killed; True if it was down."""
        ...


class KeyValueControl(Protocol):
    """What the engine asks of managed key value servers (``engine.keyvalues``)."""

    def known(self, name: str) -> Mapping[str, str] | None:
        """Connection properties of a running key value entry, or None; creates nothing."""
        ...

    def provide(
        self, name: str, *, policy: str | None, allow: Sequence[str], plan: str | None = None
    ) -> Mapping[str, str]:
        """Start (or adopt) the server of a key value entry; its connection properties."""
        ...


class BuildControl(Protocol):
    """What the engine asks of the builder (``builds.Builder``)."""

    def build(
        self,
        spec: BuildSpec,
        on_output: Callable[[str], None] | None = None,
        cancel: threading.Event | None = None,
    ) -> Build:
        """Materialise the source and run its build command; raises BuildFailed."""
        ...

    def resolve_commit(self, repo: Path, ref: str | None, branch: str | None) -> str:
        """The full sha of ``commit`` (or the branch tip) in ``repo``; raises InvalidInput."""
        ...

    def remove(self, build: Build) -> None:
        """Delete a build's directory (and its virtualenv once no other build uses it)."""
        ...


class LogSink(Protocol):
    """Where log files go to be read into the searchable log store (``logs.LogPipeline``)."""

    def watch(self, path: os.PathLike[str] | str, source: Source) -> None:
        """Follow a file, tagging its lines with ``source``."""
        ...

    def retire(self, path: os.PathLike[str] | str) -> None:
        """Its writer is done: read the file to its end, then stop following it."""
        ...


class ImageControl(Protocol):
    """What the engine asks of container images (``builds.docker.DockerBuilder``)."""

    def build(self, spec: DockerBuildSpec, on_output: Callable[[str], None] | None = None) -> ImageBuild:
        """Build a service's Dockerfile into an image tagged by service and build id."""
        ...

    def pin(self, ref: str, *, pull: bool = False) -> str:
        """The immutable reference (digest) ``ref`` resolves to, pulling it first with ``pull``."""
        ...

    def prune(self, service: str, keep: int = 5, in_use: Iterable[str] = ()) -> list[str]:
        """Untag all but the newest ``keep`` images of ``service`` and those in use."""
        ...


@dataclass
class DeployContext:
    """Everything a deploy run may touch."""

    settings: Settings
    store: Store
    proxy: ProxyControl
    driver: Driver
    builder: BuildControl
    masker: Masker
    instances: Instances
    provisioner: Provisioner
    databases: DatabaseControl | None = None
    images: ImageControl | None = None  # None: no container engine on this machine
    logs: LogSink | None = None  # the log pipeline (None in tests that do not need it)
    base_env: Mapping[str, str] = field(default_factory=dict)

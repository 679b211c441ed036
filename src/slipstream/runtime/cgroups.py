"""Kernel-enforced memory caps: one memory cgroup per instance, when the machine lets us make them.

``MemoryCgroups.detect()`` finds the memory controller the daemon itself is accounted to (cgroup
v1's ``memory`` hierarchy, or v2's unified one) and makes ``<label>/`` below the daemon's own
cgroup, so instances stay inside whatever limits the machine already puts on the daemon. When that
is impossible (no controller, no permission, a v2 parent that holds processes) it returns None and
the RSS watchdog in :mod:`slipstream.runtime.local` is the only enforcement.

An instance joins its cgroup before its command starts: ``wrap`` makes the shell write its own pid
into ``cgroup.procs`` and then exec the command, so there is no window in which it runs uncapped
(and no ``preexec_fn``, which is unsafe in a threaded daemon). The kernel then OOM-kills whatever
goes over the limit; ``oom_kills`` and ``peak_mb`` let the driver say so in the event.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("slipstream.runtime")
ROOT = Path("/sys/fs/cgroup")
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,200}$")


def own_cgroup(text: str, version: int) -> str | None:
    """The daemon's cgroup path from ``/proc/self/cgroup`` (v1: the memory line; v2: the ``0::`` line)."""
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        if version == 1 and "memory" in parts[1].split(","):
            return parts[2]
        if version == 2 and parts[0] == "0" and parts[1] == "":
            return parts[2]
    return None


@dataclass(frozen=True)
class MemoryCgroups:
    """Per-instance memory cgroups under ``base`` (``version`` 1 or 2)."""

    base: Path
    version: int

    @classmethod
    def detect(
        cls, label: str = "slipstream", root: Path = ROOT, proc_self: Path = Path("/proc/self/cgroup")
    ) -> MemoryCgroups | None:
        """The controller the daemon can use, with instance cgroups under ``label`` (one per
        slipstream home), or None (then only the RSS watchdog enforces caps)."""
        if not _NAME.match(label):
            return None
        try:
            text = proc_self.read_text()
        except OSError:
            return None
        if (root / "memory" / "memory.limit_in_bytes").exists():
            path = own_cgroup(text, 1)
            if path is not None:
                return cls._make(root / "memory" / path.lstrip("/") / label, 1)
        if "memory" in _read(root / "cgroup.controllers").split():
            path = own_cgroup(text, 2)
            if path is not None:
                parent = root / path.lstrip("/")
                try:
                    if "memory" not in _read(parent / "cgroup.subtree_control").split():
                        (parent / "cgroup.subtree_control").write_text("+memory")
                except OSError:
                    return None
                return cls._make(parent / label, 2)
        return None

    @classmethod
    def _make(cls, base: Path, version: int) -> MemoryCgroups | None:
        try:
            base.mkdir(exist_ok=True)
            if version == 2:
                (base / "cgroup.subtree_control").write_text("+memory")
        except OSError as exc:
            log.info("memory cgroups unavailable (%s); memory caps use the RSS watchdog", exc)
            return None
        return cls(base, version)

    def prepare(self, name: str, limit_mb: int) -> Path | None:
        """The cgroup of instance ``name`` capped at ``limit_mb`` (no swap); its ``cgroup.procs``, or None."""
        if not _NAME.match(name):
            return None
        group = self.base / name
        limit = str(int(limit_mb) * 1024 * 1024)
        try:
            group.mkdir(exist_ok=True)
            if self.version == 1:
                _write_limit(group / "memory.limit_in_bytes", group / "memory.memsw.limit_in_bytes", limit)
            else:
                (group / "memory.max").write_text(limit)
                if (group / "memory.swap.max").exists():
                    (group / "memory.swap.max").write_text("0")
        except OSError as exc:
            log.warning("cannot cap %s with a cgroup (%s); the RSS watchdog still applies", name, exc)
            return None
        return group / "cgroup.procs"

    def oom_kills(self, name: str) -> int:
        """How many times the kernel OOM-killed a process of instance ``name``'s cgroup."""
        file = "memory.oom_control" if self.version == 1 else "memory.events"
        for line in _read(self.base / name / file).splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill" and value.strip().isdigit():
                return int(value)
        return 0

    def peak_mb(self, name: str) -> float | None:
        """The most memory the cgroup has used, in MB (None when the kernel does not say)."""
        file = "memory.max_usage_in_bytes" if self.version == 1 else "memory.peak"
        value = _read(self.base / name / file).strip()
        return int(value) / (1024 * 1024) if value.isdigit() else None

    def remove(self, name: str) -> None:
        """Remove an instance's cgroup (the kernel refuses while a process is still in it)."""
        try:
            (self.base / name).rmdir()
        except OSError:
            pass

    def cleanup(self) -> None:
        """Remove every empty instance cgroup and then the base (``slipstream down``)."""
        try:
            children = [c for c in self.base.iterdir() if c.is_dir()]
        except OSError:
            return
        for child in children:
            self.remove(child.name)
        try:
            self.base.rmdir()
        except OSError:
            pass


def wrap(argv: list[str], procs: Path | None) -> list[str]:
    """``argv`` that first moves its shell into the cgroup whose ``cgroup.procs`` is ``procs``."""
    if procs is None:
        return argv
    return ["/bin/sh", "-c", 'echo $$ > "$0" 2>/dev/null; exec "$@"', str(procs), *argv]


def _write_limit(limit_file: Path, memsw_file: Path, limit: str) -> None:
    # v1 refuses a memory limit above memsw (and memsw below memory): order the writes to fit
    current = _read(limit_file).strip()
    if memsw_file.exists() and current.isdigit() and int(limit) > int(current):
        memsw_file.write_text(limit)
        limit_file.write_text(limit)
        return
    limit_file.write_text(limit)
    if memsw_file.exists():
        memsw_file.write_text(limit)


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""

"""Kernel-enforced limits: one cgroup per instance and controller, when the machine lets us make them.

``MemoryCgroups.detect()`` finds the memory controller the daemon itself is accounted to (cgroup
v1's ``memory`` hierarchy, or v2's unified one) and makes ``<label>/`` below the daemon's own
cgroup, so instances stay inside whatever limits the machine already puts on the daemon. When that
is impossible (no controller, no permission, a v2 parent that holds processes) it returns None and
the RSS watchdog in :mod:`slipstream.runtime.local` is the only enforcement.

An instance joins its cgroup before its command starts: ``wrap`` makes the shell write its own pid
into ``cgroup.procs`` and then exec the command, so there is no window in which it runs uncapped
(and no ``preexec_fn``, which is unsafe in a threaded daemon). The kernel then OOM-kills whatever
goes over the limit; ``oom_kills`` and ``peak_mb`` let the driver say so in the event.

``LimitCgroups`` does the same for the ``cpu`` (the plan's share of the machine's cores, as a CFS
quota), ``pids`` (at most ``SLIPSTREAM_PIDS_MAX`` processes) and, on v1, ``freezer`` controllers, one
hierarchy each on v1. Every process an instance starts stays in its cgroups, ``setsid`` or
double-forked children included, so ``sweep`` finds and kills all of them when it stops: v2 writes
``cgroup.kill``; v1 freezes the group (nothing can fork while frozen), SIGKILLs every member, thaws
it, and reads ``cgroup.procs`` again until it is empty.

``OneOffCgroups`` gives each one-off command (a build, a pre-deploy, a cron run, a smoke check) a
cgroup set of its own, ``run-<random>``, with the same limits as an instance: it is made before the
command starts, swept when the command's own process ends (exit, timeout, cancel) and then removed.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("slipstream.runtime")
ROOT = Path("/sys/fs/cgroup")
_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,200}$")


CPU_PERIOD_US = 100_000  # the CFS period a quota is a share of (the kernel's default)
LIMIT_CONTROLLERS = ("cpu", "pids", "freezer")  # v2 has no freezer controller: cgroup.kill/freeze are built in
_UNAVAILABLE = {"cpu": "no CPU limits", "pids": "no process limits", "freezer": "stops sweep without freezing"}


def own_cgroup(text: str, version: int, controller: str = "memory") -> str | None:
    """The daemon's cgroup path from ``/proc/self/cgroup`` (v1: the ``controller`` line; v2: the ``0::`` line)."""
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        if version == 1 and controller in parts[1].split(","):
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
        if not _NAME.fullmatch(label):
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
        if not _NAME.fullmatch(name):
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


@dataclass(frozen=True)
class LimitCgroups:
    """Per-instance cpu, pids and freezer cgroups: ``bases`` pairs each controller with the directory
    instance cgroups go under (v2: one directory for all); ``cores`` caps any CPU quota."""

    bases: tuple[tuple[str, Path], ...]
    version: int
    cores: float

    @classmethod
    def detect(
        cls,
        label: str = "slipstream",
        root: Path = ROOT,
        proc_self: Path = Path("/proc/self/cgroup"),
        cores: float | None = None,
    ) -> LimitCgroups | None:
        """The controllers the daemon can use, each with instance cgroups under ``label``, or None
        (then instances have no CPU or process limit and a stop kills their process group only)."""
        if not _NAME.fullmatch(label):
            return None
        try:
            text = proc_self.read_text()
        except OSError:
            return None
        cores = float(cores or os.cpu_count() or 1)
        bases: list[tuple[str, Path]] = []
        if any((root / c / "cgroup.procs").exists() for c in LIMIT_CONTROLLERS):
            for controller in LIMIT_CONTROLLERS:
                path = own_cgroup(text, 1, controller)
                if not (root / controller / "cgroup.procs").exists() or path is None:
                    log.info("the %s cgroup controller is not mounted: %s", controller, _UNAVAILABLE[controller])
                    continue
                base = root / controller / path.lstrip("/") / label
                if _mkdir(base, controller):
                    bases.append((controller, base))
            return cls(tuple(bases), 1, cores) if bases else None
        available = _read(root / "cgroup.controllers").split()
        wanted = [c for c in ("cpu", "pids") if c in available]
        path = own_cgroup(text, 2)
        if not wanted or path is None:
            return None
        parent, base = root / path.lstrip("/"), root / path.lstrip("/") / label
        try:
            (parent / "cgroup.subtree_control").write_text(" ".join(f"+{c}" for c in wanted))
        except OSError as exc:
            log.info("cpu and pids cgroups unavailable (%s): no CPU or process limits", exc)
            return None
        if not _mkdir(base, "cpu and pids"):
            return None
        try:
            (base / "cgroup.subtree_control").write_text(" ".join(f"+{c}" for c in wanted))
        except OSError as exc:
            log.info("cpu and pids cgroups unavailable (%s): no CPU or process limits", exc)
            return None
        return cls(tuple((c, base) for c in wanted), 2, cores)

    def prepare(self, name: str, cpus: float | None, pids_max: int | None) -> list[Path]:
        """The ``cgroup.procs`` files instance ``name`` joins, its groups made and limited: at most
        ``cpus`` cores (capped at the machine's; None: no quota) and ``pids_max`` processes (None or 0: none)."""
        if not _NAME.fullmatch(name):
            return []
        out: list[Path] = []
        for controller, base in self.bases:
            if controller == "cpu" and not cpus and self.version == 1:
                continue  # v1: an instance without a quota stays out of the cpu hierarchy
            group = base / name
            try:
                group.mkdir(exist_ok=True)
                if controller == "cpu":
                    self._limit_cpu(group, cpus)
                elif controller == "pids":
                    (group / "pids.max").write_text(str(pids_max) if pids_max else "max")
            except OSError as exc:
                why = _UNAVAILABLE[controller]
                log.warning("cannot limit %s with its %s cgroup (%s): %s", name, controller, exc, why)
                continue
            if group / "cgroup.procs" not in out:
                out.append(group / "cgroup.procs")
        return out

    def _limit_cpu(self, group: Path, cpus: float | None) -> None:
        quota = cpu_quota_us(cpus, self.cores) if cpus else None
        if self.version == 2:
            (group / "cpu.max").write_text(f"{quota if quota else 'max'} {CPU_PERIOD_US}")
            return
        (group / "cpu.cfs_period_us").write_text(str(CPU_PERIOD_US))
        (group / "cpu.cfs_quota_us").write_text(str(quota if quota else -1))

    def groups(self, name: str) -> list[Path]:
        """The existing cgroup directories of instance ``name``, one per hierarchy."""
        out: list[Path] = []
        for _, base in self.bases:
            if (base / name).is_dir() and base / name not in out:
                out.append(base / name)
        return out

    def sweep(self, name: str, also: Sequence[Path] = (), timeout: float = 5.0) -> int:
        """SIGKILL every process of instance ``name`` (its cgroups and the directories ``also``)
        until none is left; how many processes were killed."""
        groups = [*self.groups(name), *(g for g in also if g.is_dir())]
        return sweep(groups, self._freezer(name), timeout)

    def _freezer(self, name: str) -> Path | None:
        for controller, base in self.bases:
            if controller == "freezer" and (base / name / "freezer.state").exists():
                return base / name / "freezer.state"
        return None

    def cpu_quota(self, name: str) -> float | None:
        """The CPU cap of instance ``name``'s cgroup in cores (None: no quota)."""
        for controller, base in self.bases:
            if controller != "cpu":
                continue
            if self.version == 2:
                quota, _, period = _read(base / name / "cpu.max").strip().partition(" ")
            else:
                quota, period = _read(base / name / "cpu.cfs_quota_us"), _read(base / name / "cpu.cfs_period_us")
            quota, period = quota.strip(), period.strip()
            if quota.isdigit() and period.isdigit() and int(period) > 0:
                return int(quota) / int(period)
        return None

    def remove(self, name: str) -> None:
        """Remove instance ``name``'s cgroups (the kernel refuses while a process is still in one)."""
        for group in self.groups(name):
            try:
                group.rmdir()
            except OSError:
                pass

    def cleanup(self) -> None:
        """Kill whatever is left in any instance cgroup, remove them, then the bases ('slipstream down')."""
        for _, base in self.bases:
            try:
                children = [c.name for c in base.iterdir() if c.is_dir()]
            except OSError:
                continue
            for child in children:
                self.sweep(child, timeout=2.0)
                self.remove(child)
        for _, base in self.bases:
            try:
                base.rmdir()
            except OSError:
                pass


@dataclass(frozen=True)
class OneOffCgroups:
    """Cgroups for one-off commands, made with the daemon's memory and limit cgroups (either may be
    None) and the same process limit as instances."""

    memory: MemoryCgroups | None
    limits: LimitCgroups | None
    pids_max: int | None = None

    def prepare(self, memory_limit_mb: int | None, cpus: float | None) -> tuple[str, list[Path]]:
        """A new run's cgroup name and the ``cgroup.procs`` files its shell joins: memory capped at
        ``memory_limit_mb`` (None: no memory cgroup), ``cpus`` cores (None: no quota), ``pids_max``."""
        name = f"run-{secrets.token_hex(6)}"
        procs: list[Path] = []
        if self.memory is not None and memory_limit_mb:
            memory = self.memory.prepare(name, memory_limit_mb)
            procs += [memory] if memory is not None else []
        if self.limits is not None:
            procs += self.limits.prepare(name, cpus, self.pids_max)
        return name, procs

    def sweep(self, name: str) -> int:
        """SIGKILL every process left in run ``name``'s cgroups (``setsid`` children too); how many."""
        memory = [self.memory.base / name] if self.memory is not None else []
        if self.limits is not None:
            return self.limits.sweep(name, also=memory)
        return sweep([g for g in memory if g.is_dir()])

    def remove(self, name: str) -> None:
        """Sweep run ``name``'s cgroups once more and remove them."""
        self.sweep(name)
        if self.memory is not None:
            self.memory.remove(name)
        if self.limits is not None:
            self.limits.remove(name)

    def end_stale(self) -> int:
        """Sweep and remove every run's cgroups a previous daemon left (call before any run starts);
        how many processes were killed."""
        bases = [b for _, b in self.limits.bases] if self.limits is not None else []
        bases += [self.memory.base] if self.memory is not None else []
        names: set[str] = set()
        for base in bases:
            try:
                names.update(c.name for c in base.iterdir() if c.is_dir() and c.name.startswith("run-"))
            except OSError:
                continue
        killed = 0
        for name in sorted(names):
            killed += self.sweep(name)
            self.remove(name)
        return killed


def cpu_quota_us(cpus: float, cores: float, period_us: int = CPU_PERIOD_US) -> int:
    """The CFS quota for ``cpus`` cores per ``period_us``, capped at the machine's ``cores`` (at least 1 ms)."""
    return max(1000, int(round(min(cpus, cores) * period_us)))


def members(groups: Sequence[Path]) -> set[int]:
    """The live (not zombie) processes in the cgroup directories ``groups``."""
    pids: set[int] = set()
    for group in groups:
        for line in _read(group / "cgroup.procs").split():
            if line.isdigit() and not _is_zombie(int(line)):
                pids.add(int(line))
    return pids


def sweep(groups: Sequence[Path], freezer_state: Path | None = None, timeout: float = 5.0) -> int:
    """SIGKILL every process in ``groups`` until they are empty (bounded by ``timeout``); how many
    were killed. v2's ``cgroup.kill`` first where there is one; with a v1 ``freezer_state``, each
    round kills a frozen group, so no member can fork a new one in between."""
    for group in groups:
        if (group / "cgroup.kill").exists():
            try:
                (group / "cgroup.kill").write_text("1")
            except OSError:
                pass
    killed: set[int] = set()
    deadline = time.monotonic() + timeout
    while True:
        pids = members(groups)
        if not pids:
            return len(killed)
        if time.monotonic() >= deadline:
            log.warning("processes %s survived the stop sweep", sorted(pids))
            return len(killed)
        if freezer_state is not None and _set_freezer(freezer_state, "FROZEN"):
            pids = members(groups)  # complete now: no member can fork while frozen
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
                killed.add(pid)
            except (ProcessLookupError, PermissionError):
                pass
        if freezer_state is not None:  # also after a freeze that did not finish: killed members die once thawed
            _set_freezer(freezer_state, "THAWED")
        time.sleep(0.01)


def _set_freezer(state_file: Path, state: str, timeout: float = 1.0) -> bool:
    """Write a v1 freezer state and wait until the kernel reports it; False if it did not."""
    try:
        state_file.write_text(state)
    except OSError:
        return False
    deadline = time.monotonic() + timeout
    while _read(state_file).strip() != state:
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.002)
    return True


def _is_zombie(pid: int) -> bool:
    stat = _read(Path(f"/proc/{pid}/stat"))
    fields = stat[stat.rfind(")") + 2 :].split()
    return not fields or fields[0] in ("Z", "X")


def _mkdir(base: Path, what: str) -> bool:
    try:
        base.mkdir(exist_ok=True)
    except OSError as exc:
        log.info("%s cgroups unavailable (%s): %s", what, exc, _UNAVAILABLE.get(what, "no CPU or process limits"))
        return False
    return True


def wrap(argv: list[str], procs: Path | Sequence[Path] | None) -> list[str]:
    """``argv`` that first moves its shell into each cgroup whose ``cgroup.procs`` is in ``procs``."""
    files = [procs] if isinstance(procs, Path) else list(procs or ())
    if not files:
        return argv
    join = 'n=$0; while [ "$n" -gt 0 ]; do echo $$ > "$1" 2>/dev/null; shift; n=$((n - 1)); done; exec "$@"'
    return ["/bin/sh", "-c", join, str(len(files)), *map(str, files), *argv]


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

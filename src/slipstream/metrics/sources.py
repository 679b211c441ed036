"""The effectful readers the daemon wires into :class:`~slipstream.metrics.collect.Sources`.

Each reads one boundary once and returns readings; all parsing is in ``parse.py``. The fakes are
plain callables returning readings (``tests/metrics``), plus ``fake.render_show_stat`` for a fake
HAProxy answer.

- ``read_proxy(socket_path, services_map)``: ``show map`` + ``show stat -1 2 -1`` (backend rows
  only, ~400 bytes per pre-declared backend) in one admin-socket round trip;
- ``read_instance(...)``: an instance's memory and CPU from its cgroup when it has one, else from
  its processes' ``/proc/<pid>/stat`` (one read each);
- ``read_databases(endpoint, names)``: two queries on the cluster's admin login;
- ``read_keyvalue(...)``: ``INFO`` on one key value server;
- ``read_disk(path)``, ``schedule_interval(schedule, now)``.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from slipstream.metrics.model import DatabaseReading, DiskReading, InstanceReading, KeyValueReading, ProxyReading
from slipstream.metrics.parse import (
    ARCHIVER_SQL,
    DATABASE_SQL,
    keyvalue_reading,
    parse_cgroup_cpu,
    parse_cgroup_memory,
    parse_database_rows,
)
from slipstream.proxy.admin import AdminClient
from slipstream.proxy.parse import parse_map

if TYPE_CHECKING:
    from slipstream.databases.models import Endpoint
    from slipstream.runtime.base import InstanceStatus


def read_proxy(socket_path: Path, services_map: Path, timeout: float = 2.0) -> ProxyReading:
    """HAProxy's backend counters and its backend -> service map, in one round trip."""
    answers = AdminClient(socket_path, timeout).send([f"show map {services_map}", "show stat -1 2 -1"], check=False)
    return ProxyReading(csv=answers[1], backends=parse_map(answers[0]))


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def _read_bytes(path: str) -> bytes:
    """A small file's bytes in three system calls (open, read to the end, close): open() added an
    isatty ioctl and a buffer for each of the ~600 files a metrics round reads."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        chunks = [os.read(fd, 65536)]
        while len(chunks[-1]) == 65536:
            chunks.append(os.read(fd, 65536))
        return b"".join(chunks)
    finally:
        os.close(fd)


_TICKS = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


def read_stat(pid: int) -> tuple[int, float, int] | None:
    """``(ppid, CPU seconds, RSS bytes)`` of ``pid`` from one read of ``/proc/<pid>/stat``: user and
    system time with its reaped children's (what psutil's ``cpu_times`` sums, from the same file)
    and the resident pages; None when the process is gone. psutil read three files and built an
    object per process for this, the larger part of a round's CPU with 200 instances."""
    try:
        data = _read_bytes(f"/proc/{pid}/stat")
        fields = data[data.rindex(b")") + 2 :].split()  # after the command name, which may hold spaces
        ticks = int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])  # utime..cstime
        return int(fields[1]), ticks / _TICKS, int(fields[21]) * _PAGE
    except (OSError, ValueError, IndexError):
        return None


def process_tree() -> dict[int, list[int]]:
    """Every process's children by pid, from one pass over /proc (a round reads it once, not once
    per instance as ``psutil.Process.children`` would)."""
    tree: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if name.isdigit() and (stat := read_stat(int(name))) is not None:
            tree.setdefault(stat[0], []).append(int(name))
    return tree


class LazyTree(Mapping[int, list[int]]):
    """:func:`process_tree`, read on first use: a round whose instances all have cgroups never walks /proc."""

    def __init__(self) -> None:
        self._tree: dict[int, list[int]] | None = None

    def _get(self) -> dict[int, list[int]]:
        if self._tree is None:
            self._tree = process_tree()
        return self._tree

    def __getitem__(self, pid: int) -> list[int]:
        return self._get()[pid]

    def __iter__(self) -> Iterator[int]:
        return iter(self._get())

    def __len__(self) -> int:
        return len(self._get())


def descendants(pid: int, tree: Mapping[int, list[int]]) -> list[int]:
    """``pid`` and all its descendants in ``tree``."""
    out, todo = [], [pid]
    while todo:
        current = todo.pop()
        out.append(current)
        todo.extend(tree.get(current, ()))
    return out


def _members(cgroup: Path) -> list[int] | None:
    """The pids in a cgroup (``cgroup.procs``), or None when it cannot be read."""
    try:
        return [int(line) for line in _read_bytes(os.path.join(cgroup, "cgroup.procs")).split()] or None
    except (OSError, ValueError):
        return None


def tree_usage(pid: int, members: list[int] | None = None) -> tuple[float | None, int | None]:
    """CPU seconds (user + system, with reaped children) and RSS bytes of ``pid`` and its descendants,
    or of ``members`` (the pids of its cgroup) when given: finding descendants reads every process
    of the machine, which 200 instances every round made a large part of the idle daemon's CPU."""
    root = read_stat(pid)
    if root is None:
        return None, None
    pids = [m for m in members if m != pid] if members else descendants(pid, process_tree())[1:]
    cpu, rss = root[1], root[2]
    for stat in map(read_stat, pids):
        if stat is not None:  # None: it exited since the list was read
            cpu += stat[1]
            rss += stat[2]
    return cpu, rss


def read_instance(
    status: InstanceStatus,
    service: str,
    memory_limit_mb: float | None,
    cgroup: Path | None = None,
    cgroup_version: int = 2,
    tree: Mapping[int, list[int]] | None = None,
    listing: Path | None = None,
) -> InstanceReading:
    """One instance's reading: cgroup memory (working set) and CPU where the cgroup says, else /proc.

    ``cgroup`` is the instance's cgroup directory (``MemoryCgroups.base / instance_id``) or None;
    ``listing`` is another cgroup of the instance (its pids cgroup) whose ``cgroup.procs`` names
    its processes when it has no memory cgroup; ``tree`` (:func:`process_tree`, read once per
    round) finds the descendants of one with neither.
    """
    cpu: float | None = None
    memory: int | None = None
    if cgroup is not None and cgroup.is_dir():
        usage = "memory.current" if cgroup_version == 2 else "memory.usage_in_bytes"
        memory = parse_cgroup_memory(cgroup_version, _read(cgroup / usage), _read(cgroup / "memory.stat"))
        if cgroup_version == 2:
            cpu = parse_cgroup_cpu(_read(cgroup / "cpu.stat"))
    if status.pid is not None and (cpu is None or memory is None):
        members = _members(cgroup) if cgroup is not None else None
        if members is None and listing is not None:
            members = _members(listing)
        if members is None and tree is not None:
            members = descendants(status.pid, tree)
        tree_cpu, tree_rss = tree_usage(status.pid, members)
        cpu = tree_cpu if cpu is None else cpu
        memory = tree_rss if memory is None else memory
    return InstanceReading(
        instance_id=status.instance_id,
        service=service,
        state=str(status.state),
        pid=status.pid,
        create_time=status.create_time,
        restarts=status.restarts,
        memory_limit_mb=memory_limit_mb,
        cpu_seconds=cpu,
        memory_bytes=memory,
    )


def read_databases(endpoint: Endpoint, names: Mapping[str, str]) -> list[DatabaseReading]:
    """Readings of the databases ``names`` (PostgreSQL name -> blueprint name) on the admin login."""
    if not names:
        return []
    from slipstream.databases.admin import connect  # psycopg only once a database exists

    with connect(endpoint) as conn:
        rows = conn.execute(DATABASE_SQL, {"names": list(names)}).fetchall()
        archiver = conn.execute(ARCHIVER_SQL).fetchone()
    return parse_database_rows(rows, archiver, names)


def read_keyvalue(name: str, host: str, port: int, user: str, password: str) -> KeyValueReading:
    """One key value server's memory and clients from ``INFO``."""
    from slipstream.keyvalue.client import connect
    from slipstream.keyvalue.commands import parse_info

    with connect(host, port, user, password, timeout=2.0) as conn:
        info = parse_info(conn.text("INFO", "memory") + "\n" + conn.text("INFO", "clients"))
    return keyvalue_reading(name, info)


def read_disk(path: Path) -> DiskReading:
    """The file system holding ``path``."""
    usage = shutil.disk_usage(path)
    return DiskReading(str(path), usage.total, usage.total - usage.free)


def schedule_interval(schedule: str, now: float) -> float:
    """Seconds between the two scheduled runs after ``now`` (a cron job's expected period)."""
    from croniter import croniter

    it = croniter(schedule, now)
    first = float(it.get_next(float))
    return float(it.get_next(float)) - first

"""Running a command as another OS user, which directories that user must be able to cross, and
the system user each service runs as.

The builders (``build_as_user``, ``plan_traversal``, ``plan_service_user``) are pure; the servers
(PostgreSQL, Redis) and :class:`ServiceUsers` act on them.

Lifecycle of a service's user (``ServiceUsers.prepare``, at a build and whenever an instance,
pre-deploy command or cron run needs it):

1. Its name comes from the service's name (``slip-<service>``, or a shortened name plus a hash
   when that is not a valid Linux user name). Service names are unique on one daemon (a project
   cannot take a name another project owns), so two services never share a user.
2. ``useradd --system --user-group`` creates it on first use: no login shell, no home directory
   (``/nonexistent``); the comment names the service, and an existing user without that comment
   is refused rather than borrowed.
3. Its area: ``builds/<service>/``, ``cache/<service>/`` and ``disks/<service>/`` are root's and
   open to the service's group only (0710); below them it owns its build trees, caches, disk and
   ``cache/<service>/home`` (its ``$HOME``). ``builds/``, ``cache/`` and ``disks/`` are
   traversable (0711); every other part of the state directory stays root's alone.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pwd
import re
import stat
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from slipstream import runner
from slipstream.errors import Conflict, Unavailable

log = logging.getLogger("slipstream.osusers")

SERVICE_USER_PREFIX = "slip-"
PROXY_USER = "slipstream-proxy"  # HAProxy's (no service's name maps to it: theirs start with "slip-")
USERADD_ATTEMPTS = 4
MAX_USER_NAME = 32  # Linux (useradd) limit
_VALID_USER = re.compile(r"[a-z_][a-z0-9_-]*")
COMMENT_PREFIX = "slipstream service "


def build_as_user(argv: Sequence[str], user: str | None) -> list[str]:
    """``argv`` run as ``user`` with that user's own groups (``setpriv``); unchanged when ``user`` is None.

    Not ``subprocess``'s ``user=``: that changes only the uid and keeps gid 0 and root's groups, and
    with gid 0 the kernel applies a root-owned directory's group bits (usually none) instead of
    its ``o+x``, so the server could not reach its own data directory.
    """
    if user is None:
        return list(argv)
    return ["setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups", "--", *argv]


def plan_traversal(target: Path, stop_at: Path, uid: int) -> list[Path]:
    """Directories from ``target``'s parent up to ``stop_at`` that user ``uid`` cannot traverse (need ``o+x``)."""
    needed = []
    stop_at = stop_at.resolve()
    for parent in target.resolve().parents:
        if not parent.exists():
            continue  # created later, by us
        st = parent.stat()
        if not (st.st_mode & stat.S_IXOTH) and st.st_uid != uid:
            needed.append(parent)
        if parent == stop_at:
            break
    return needed


def plan_service_user(service: str) -> str:
    """The system user of ``service``: ``slip-<service>`` when that is a valid user name of at most
    32 characters, else ``slip-<cleaned prefix>-<8 hex of a hash of the name>``."""
    plain = SERVICE_USER_PREFIX + service
    if len(plain) <= MAX_USER_NAME and _VALID_USER.fullmatch(service):
        return plain
    digest = hashlib.sha256(service.encode()).hexdigest()[:8]
    cleaned = re.sub(r"[^a-z0-9_-]+", "-", service.lower()).strip("-")
    room = MAX_USER_NAME - len(SERVICE_USER_PREFIX) - len(digest) - 1
    return f"{SERVICE_USER_PREFIX}{cleaned[:room].rstrip('-') or 'x'}-{digest}"


@dataclass(frozen=True)
class ServiceUser:
    """The unprivileged account a service's builds and processes run as."""

    name: str
    uid: int
    gid: int
    home: Path  # its $HOME, which it owns


def reachable_python(python: str = sys.executable, fallback: str = "/usr/bin/python3") -> str:
    """The interpreter service users' virtualenvs are made from: ``python`` when every user can
    reach it, else ``fallback`` (a daemon installed under root's 0700 home runs a Python its
    service users could not start)."""
    real = Path(os.path.realpath(python))
    if not plan_traversal(real, Path("/"), -1) or not Path(fallback).exists():
        return python
    log.info("service users cannot reach %s; their virtualenvs use %s", real, fallback)
    return fallback


def user_environment(user: ServiceUser) -> dict[str, str]:
    """What a process of ``user`` finds in HOME, USER and LOGNAME."""
    return {"HOME": str(user.home), "USER": user.name, "LOGNAME": user.name}


class ServiceUsers:
    """Creates each service's system user and area (see the module docstring), once per service."""

    def __init__(self, builds_dir: Path, cache_dir: Path, disks_dir: Path) -> None:
        self.builds_dir = builds_dir
        self.cache_dir = cache_dir
        self.disks_dir = disks_dir
        self._ready: dict[str, ServiceUser] = {}
        self._lock = threading.Lock()

    def prepare(self, service: str) -> ServiceUser:
        """The service's user, created with its area on first use; Unavailable when it cannot be."""
        with self._lock:
            user = self._ready.get(service)
            if user is None:
                user = self._create(service)
                self._ready[service] = user
            return user

    def disk_dir(self, service: str, name: str) -> Path:
        """A disk of ``service``, owned by its user (0700); one made before the service had a user
        (its processes ran as root) is handed over whole, once."""
        user = self.prepare(service)
        disk = self.disks_dir / service / name
        if not disk.exists():
            disk.mkdir(mode=0o700)
            os.chown(disk, user.uid, user.gid)
        elif disk.lstat().st_uid != user.uid:
            hand_over(disk, user)
        return disk

    def _create(self, service: str) -> ServiceUser:
        name = plan_service_user(service)
        comment = COMMENT_PREFIX + service
        entry = ensure_system_user(name, comment)
        log.debug("service %s runs as %s (uid %d)", service, name, entry.pw_uid)
        if entry.pw_gecos != comment:
            raise Conflict(
                f"the system user {name} exists but is not slipstream's user for service {service}",
                f"remove or rename that user, or rename the service (its comment is {entry.pw_gecos!r})",
            )
        home = self.cache_dir / service / "home"
        user = ServiceUser(name, entry.pw_uid, entry.pw_gid, home)
        self._make_area(service, user)
        return user

    def _make_area(self, service: str, user: ServiceUser) -> None:
        for top in (self.builds_dir, self.cache_dir, self.disks_dir):
            top.mkdir(mode=0o711, parents=True, exist_ok=True)
            os.chmod(top, 0o711)
            area = top / service
            area.mkdir(mode=0o710, exist_ok=True)
            os.chown(area, 0, user.gid, follow_symlinks=False)
            os.chmod(area, 0o710)
        for own in (user.home, *(self.cache_dir / service / tool for tool in ("pip", "uv", "npm"))):
            own.mkdir(mode=0o700, exist_ok=True)
            os.chown(own, user.uid, user.gid, follow_symlinks=False)
        blocked = plan_traversal(self.builds_dir / service, Path("/"), user.uid)
        if blocked:
            raise Unavailable(
                f"user {user.name} cannot reach {self.builds_dir}: {blocked[-1]} is not traversable",
                f"run 'chmod o+x {blocked[-1]}', put SLIPSTREAM_HOME elsewhere, or set SLIPSTREAM_SERVICE_USERS=off",
            )


def ensure_system_user(name: str, comment: str) -> pwd.struct_passwd:
    """The passwd entry of ``name``, created by ``useradd`` when missing (retried: another daemon's
    ``useradd`` may hold the lock on /etc/passwd, or create the same user first)."""
    for attempt in range(USERADD_ATTEMPTS):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            pass
        result = runner.run(
            ["useradd", "--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent",
             "--shell", "/usr/sbin/nologin", "--comment", comment, name],
            timeout=60, check=attempt == USERADD_ATTEMPTS - 1,
        )  # fmt: skip
        if result.returncode == 0:
            log.info("created system user %s (%s)", name, comment)
        else:
            time.sleep(0.2 * (attempt + 1))
    return pwd.getpwnam(name)


def hand_over(root: Path, user: ServiceUser) -> None:
    """Make ``root`` and everything below it ``user``'s (links themselves, never what they point at).

    Only for trees no process of that user has touched yet (a fresh checkout, a new virtualenv):
    walking a tree the user controls as root would race with its renames."""
    os.chown(root, user.uid, user.gid, follow_symlinks=False)
    for top, dirs, files in os.walk(root):
        for name in dirs + files:
            os.chown(os.path.join(top, name), user.uid, user.gid, follow_symlinks=False)

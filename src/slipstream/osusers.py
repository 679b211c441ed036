"""Running a command as another OS user, and which directories that user must be able to cross.

Pure: argv lists and the list of directories to open; the callers (PostgreSQL, Redis) act on them.
"""

from __future__ import annotations

import stat
from collections.abc import Sequence
from pathlib import Path


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

"""Giving back the disk space of log file bytes that are already in the log store.

An app keeps writing to its instance file (``O_APPEND``) for as long as it runs, so the file can
be neither renamed (the app would write on into the renamed file) nor truncated (a line written
between the last read and the truncation would be lost). Instead, once the store holds a file's
first N bytes, those bytes are *punched out* (``fallocate(PUNCH_HOLE | KEEP_SIZE)``): the file
keeps its size and every offset, so nothing moves under the app or the tailer, but the blocks are
freed (``du`` shows the difference; reads there return NUL bytes). The last ``KEEP_TAIL`` bytes
read stay, for whatever reads a file's end (the last lines of a crashed instance or a failed build).

Filesystems without hole punching (``EOPNOTSUPP``) keep the files whole.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import os
from typing import Any

log = logging.getLogger(__name__)

FALLOC_FL_KEEP_SIZE = 0x01
FALLOC_FL_PUNCH_HOLE = 0x02
STEP = 8 << 20  # punch once this much more of a file is stored
KEEP_TAIL = 1 << 20  # bytes before the stored offset that stay readable
BLOCK = 4096


@functools.cache
def _fallocate() -> Any:
    """libc's ``fallocate`` (``os`` has none that takes flags), from the libc the interpreter
    already has loaded: looked up on first use, never at import (a daemon start pays nothing)."""
    fn = ctypes.CDLL(None, use_errno=True).fallocate
    fn.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.c_longlong, ctypes.c_longlong)
    fn.restype = ctypes.c_int
    return fn


def punch_range(stored: int, punched: int) -> int:
    """Up to where a file whose first ``stored`` bytes are in the store should be punched, given
    it is punched up to ``punched`` already (``punched`` itself when it is not worth it yet)."""
    end = (max(0, stored - KEEP_TAIL) // BLOCK) * BLOCK
    return end if end - punched >= STEP else punched


def punch(path: str, end: int) -> bool:
    """Free the blocks of ``path``'s bytes ``0 .. end`` (its size stays); False if not possible."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        if _fallocate()(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, end) != 0:
            err = ctypes.get_errno()
            log.info("cannot punch %s: %s; the file stays whole", path, os.strerror(err))
            return False
        return True
    finally:
        os.close(fd)


class Reclaimer:
    """Remembers how far each file was punched (a punch again after a restart is harmless)."""

    def __init__(self) -> None:
        self._punched: dict[str, int] = {}
        self._unsupported: set[str] = set()
        self.freed = 0  # bytes punched since start

    def stored(self, path: str, offset: int) -> None:
        """The store now holds ``path`` up to ``offset``: punch what is worth punching."""
        if path in self._unsupported:
            return
        done = self._punched.get(path, 0)
        end = punch_range(offset, done)
        if end == done:
            return
        if punch(path, end):
            self.freed += end - done
            self._punched[path] = end
        else:
            self._unsupported.add(path)

    def forget(self, path: str) -> None:
        self._punched.pop(path, None)
        self._unsupported.discard(path)

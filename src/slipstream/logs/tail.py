"""Following growing files by offset: instance, pre-deploy, cron and build logs.

Apps append to their files directly (the daemon is not in the write path, so an app never waits
for it and keeps logging while it is down). The tailer reads what was added since its offset:

1. ``watch(path, source)`` adds a file; a file saved in the store (``LogStore.offsets``) resumes at
   its offset if it is the same file (device and inode) and at least that long, else from 0.
2. ``poll()`` reads at most ``chunk`` bytes per file and ``budget`` bytes in all, splits complete
   lines, cuts lines longer than ``max_line`` (the rest of such a line is dropped), flushes a last
   line without a newline once it has waited ``partial_after_s``, and returns :class:`TailRead`:
   one batch per file and each file's new offset. It detects truncation (the file is shorter than
   the offset: read again from 0) and rotation (a new file at the path: the old one is read to
   its end first, then the new one from 0).
3. The caller stores batches and offsets in one transaction, then calls ``commit()``; on failure
   ``rollback()`` seeks every file back to its committed offset.
4. ``retire(path)`` reads a file to its end, then drops it (``TailRead.finished``); so does a file
   that was deleted.

Memory is bounded by ``budget`` (plus ``max_line`` per file), however fast an app writes.
After a restart in the middle of an over-long line, the rest of it reads as a (cut) line.
"""

from __future__ import annotations

import os
import time
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import BinaryIO

from slipstream.logs.block import Batch
from slipstream.logs.mask import LogMasker
from slipstream.logs.model import Level, Source
from slipstream.logs.parse import continued_level, detect_level
from slipstream.logs.store import FileOffset

CUT = " …[cut]"


@dataclass
class _File:
    path: str
    source: Source
    offset: int = 0  # committed: every byte before it is stored or dropped
    dev: int = 0
    ino: int = 0
    fh: BinaryIO | None = None
    pos: int = 0  # consumed by reads not yet committed
    carry: bytes = b""  # a line whose newline has not arrived
    carry_since: float = 0.0
    skipping: bool = False  # dropping the rest of a cut line
    level: Level | None = None  # the last line's, for indented continuation lines
    retired: bool = False
    gone: bool = False


@dataclass
class TailRead:
    """What one poll read: batches to store, offsets to save with them, files now finished."""

    batches: list[Batch] = field(default_factory=list)
    offsets: list[FileOffset] = field(default_factory=list)
    finished: list[str] = field(default_factory=list)
    more: bool = False  # some file has more to read right away
    bytes: int = 0


class Tailer:
    """Follows many files from one thread; see the module docstring for the steps."""

    def __init__(
        self,
        saved: dict[str, FileOffset] | None = None,
        masker: LogMasker | None = None,
        *,
        max_line: int = 16 * 1024,
        chunk: int = 256 << 10,
        budget: int = 1 << 20,
        partial_after_s: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.masker = masker
        self.max_line = max_line
        self.chunk = chunk
        self.budget = budget
        self.partial_after_s = partial_after_s
        self.clock = clock
        self._files: dict[str, _File] = {}
        self._turn = 0
        for off in (saved or {}).values():
            self._files[off.path] = _File(off.path, off.source, off.offset, off.dev, off.ino)

    # -- the set of files -------------------------------------------------------------------
    def watch(self, path: os.PathLike[str] | str, source: Source) -> None:
        """Follow ``path`` (tagged ``source``) from its saved offset, or from its start."""
        key = os.fspath(path)
        f = self._files.get(key)
        if f is None:
            self._files[key] = _File(key, source)
        else:
            f.source, f.retired = source, False

    def retire(self, path: os.PathLike[str] | str) -> None:
        """Read ``path`` to its current end, then stop following it."""
        f = self._files.get(os.fspath(path))
        if f is not None:
            f.retired = True

    def watching(self) -> dict[str, Source]:
        return {p: f.source for p, f in self._files.items()}

    def close(self) -> None:
        for f in self._files.values():
            if f.fh is not None:
                f.fh.close()
                f.fh = None

    # -- reading ----------------------------------------------------------------------------
    def poll(self) -> TailRead:
        """Read what the files gained, up to the budget (see the module docstring)."""
        read = TailRead()
        files = list(self._files.values())
        if not files:
            return read
        self._turn = (self._turn + 1) % len(files)
        for f in files[self._turn :] + files[: self._turn]:
            if read.bytes >= self.budget:
                read.more = True
                break
            self._poll_file(f, read)
        return read

    def commit(self, read: TailRead) -> None:
        """The read was stored: its offsets are the committed ones now."""
        for off in read.offsets:
            f = self._files.get(off.path)
            if f is not None:
                f.offset = off.offset
        for path in read.finished:
            f = self._files.pop(path, None)
            if f is not None and f.fh is not None:
                f.fh.close()

    def rollback(self) -> None:
        """The read was not stored: read again from the committed offsets."""
        for f in self._files.values():
            if f.fh is not None:
                f.fh.close()
            f.fh, f.carry, f.skipping, f.gone = None, b"", False, False

    def _open(self, f: _File) -> bool:
        """Open ``f`` at its committed offset (0 if the file changed); False if it is missing."""
        try:
            fh = open(f.path, "rb", buffering=0)  # noqa: SIM115 - kept open; unbuffered: 200 buffers were ~1 MB
        except FileNotFoundError:
            return False
        st = os.fstat(fh.fileno())
        if (st.st_dev, st.st_ino) != (f.dev, f.ino) or st.st_size < f.offset:
            f.offset = 0
        f.dev, f.ino = st.st_dev, st.st_ino
        fh.seek(f.offset)
        f.fh, f.pos, f.carry, f.skipping = fh, f.offset, b"", False
        return True

    def _poll_file(self, f: _File, read: TailRead) -> None:
        if f.fh is None and not self._open(f):
            if f.retired:
                read.finished.append(f.path)
            return
        assert f.fh is not None
        replaced = False
        try:
            st = os.stat(f.path)
            replaced, f.gone = (st.st_dev, st.st_ino) != (f.dev, f.ino), False
        except FileNotFoundError:
            f.gone = True
        else:
            quiet = not (replaced or f.retired or f.carry or f.skipping) and f.pos == f.offset == st.st_size
            if quiet:  # nothing new and nothing pending: 200 idle instances' logs cost a stat each per poll
                return
        if os.fstat(f.fh.fileno()).st_size < f.fh.tell():  # truncated: start over
            f.fh.seek(0)
            f.pos, f.carry, f.skipping = 0, b"", False
        want = min(self.chunk, max(self.budget - read.bytes, 1))
        data = f.fh.read(want)
        read.bytes += len(data)
        now = self.clock()
        batch = Batch(f.source)
        if data:
            self._lines(f, data, now, batch)
        at_end = len(data) < want
        read.more = read.more or not at_end
        done = f.retired or f.gone or replaced  # nothing more will be added to this file
        if f.carry and at_end and (done or now - f.carry_since >= self.partial_after_s):
            self._add(f, batch, now, f.carry.decode("utf-8", "replace"))
            f.pos += len(f.carry)
            f.carry = b""
        if len(batch):
            read.batches.append(batch)
        if f.pos != f.offset:
            read.offsets.append(FileOffset(f.path, f.source, f.dev, f.ino, f.pos))
        if at_end and not f.carry:
            if replaced:  # rotated: the old file is done, the new one starts at 0
                f.fh.close()
                f.fh, f.dev, f.ino = None, 0, 0
                read.more = True
            elif f.retired or f.gone:
                read.finished.append(f.path)

    def _lines(self, f: _File, data: bytes, now: float, batch: Batch) -> None:
        """Split ``data`` (after the file's carry) into lines and add them to ``batch``."""
        if f.skipping:
            nl = data.find(b"\n")
            if nl < 0:
                f.pos += len(data)
                return
            f.pos += nl + 1
            data, f.skipping = data[nl + 1 :], False
        buf = f.carry + data if f.carry else data
        end = buf.rfind(b"\n") + 1
        if end:
            text = buf[:end].decode("utf-8", "replace")
            if "\r" in text:
                text = text.replace("\r\n", "\n")
            lines = text.split("\n")
            lines.pop()
            self._extend(f, batch, now, lines)
            f.pos += end
        rest = buf[end:]
        if rest != f.carry:
            f.carry_since = now  # the unfinished line grew
        f.carry = rest
        if len(rest) > self.max_line:  # too long to wait for: keep its start, drop the rest
            self._add(f, batch, now, rest.decode("utf-8", "replace"), cut=True)
            f.pos += len(rest)
            f.carry, f.skipping = b"", True

    def _extend(self, f: _File, batch: Batch, now: float, lines: list[str]) -> None:
        """Add complete lines: cut the long ones, state each one's level (the hot loop)."""
        if max(map(len, lines)) > self.max_line:
            lines = [self._cut(x) if len(x) > self.max_line else x for x in lines]
        levels = bytearray(len(lines))
        level = f.level
        for i, line in enumerate(lines):
            level = detect_level(line) or (level if line[:1] in (" ", "\t") else None)
            if level is not None:
                levels[i] = level
        f.level = level
        batch.messages += lines
        batch.levels += levels
        batch.ts.extend(array("d", (now,)) * len(lines))

    def _cut(self, line: str) -> str:
        line = line[: self.max_line]
        return (self.masker.mask_cut(line) if self.masker else line) + CUT

    def _add(self, f: _File, batch: Batch, now: float, line: str, cut: bool = False) -> None:
        if cut or len(line) > self.max_line:
            line = self._cut(line)
        level = detect_level(line) or continued_level(line, f.level)
        f.level = level
        batch.add(now, line, level)

"""Small file-system helpers."""

from __future__ import annotations

import os
from pathlib import Path

from slipstream.fsutil import dir_size


def test_dir_size_counts_regular_files_only(tmp_path: Path) -> None:
    (tmp_path / "a").write_bytes(b"x" * 100)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b").write_bytes(b"y" * 23)
    big = tmp_path.parent / f"{tmp_path.name}-outside"
    big.write_bytes(b"z" * 10_000)
    os.symlink(big, tmp_path / "link")  # a link is not followed
    os.symlink(tmp_path.parent, tmp_path / "sub" / "up", target_is_directory=True)
    assert dir_size(tmp_path) == 123
    assert dir_size(tmp_path / "absent") == 0

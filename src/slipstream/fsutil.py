"""Small file-system helpers the floors share."""

from __future__ import annotations

import os
import stat
from pathlib import Path


def dir_size(path: Path) -> int:
    """Bytes of every regular file under ``path`` (links are not followed; 0 when it is absent)."""
    total = 0
    for top, _, files in os.walk(path):
        for name in files:
            try:
                st = os.lstat(os.path.join(top, name))
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode):
                total += st.st_size
    return total

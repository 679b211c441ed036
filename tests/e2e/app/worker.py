"""A test worker: records its start and stop (version, time) in a shared file, then idles."""

import os
import signal
import sys
import time
from pathlib import Path

VERSION = (Path(__file__).parent / "VERSION").read_text().strip()
JOURNAL = os.environ["JOURNAL"]


def note(what: str) -> None:
    with open(JOURNAL, "a") as f:
        f.write(f"{what} {VERSION} {time.time():.6f}\n")


def stop(*_: object) -> None:
    note("stop")
    sys.exit(0)


signal.signal(signal.SIGTERM, stop)
note("start")
while True:
    time.sleep(0.1)

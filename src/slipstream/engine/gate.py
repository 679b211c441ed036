"""The health gate of a deploy: the new instances must prove themselves before any traffic.

Rules (DESIGN.md step 4, and where slipstream is stricter than Render):
- The instances' own output streams into the transcript while the gate waits (at most
  ``STREAM_LINES`` lines per instance; the rest stays in ``slipstream logs``), secrets masked.
- An instance that exits before it was ever healthy is restarted once at once by the runtime; if
  it exits again (``FAIL_AFTER_EXITS``), the deploy fails at once with its exit and its last
  ``TAIL_LINES`` lines: a crash-looping release fails in seconds, not after the deadline.
- An instance that runs but never answers fails at the deadline (Render's 15 minutes).
- Web and private services then stay healthy for ``min_healthy_s`` before the flip; workers are
  healthy when they are still running after ``worker_grace_s``. While it watches, the gate sees an
  exit within ``WATCH_TICK_S`` and probes every ``WATCH_PROBE_S``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from slipstream.engine.failures import Canceled, DeployFailed
from slipstream.engine.health import Probe
from slipstream.engine.instances import Instances
from slipstream.engine.release import Release
from slipstream.runtime.base import InstanceState
from slipstream.states import DeployStatus

STREAM_LINES = 200
TAIL_LINES = 20
FAIL_AFTER_EXITS = 2
# While the gate watches (the stability wait, the settle window after the flip): an exit or a restart
# is seen within WATCH_TICK_S (the runtime's own state, no I/O); a live instance is probed every
# WATCH_PROBE_S. Probing every tick cost an HTTP request to the app and one to the daemon's CPU 20
# times a second per instance: 40 of each per deploy in a 2 s settle window.
WATCH_TICK_S = 0.05
WATCH_PROBE_S = 0.25


def tail(path: Path, n: int = TAIL_LINES) -> list[str]:
    """The last ``n`` lines of a log file (empty when missing)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - 64 * 1024))
            return f.read().decode(errors="replace").splitlines()[-n:]
    except OSError:
        return []


@dataclass
class OutputStream:
    """Follows the log files of new instances and passes each new line on (bounded)."""

    files: dict[str, Path]
    emit: Callable[[str, str], None]  # (instance id, line)
    limit: int = STREAM_LINES
    _offsets: dict[str, int] = field(default_factory=dict)
    _partial: dict[str, bytes] = field(default_factory=dict)
    _count: dict[str, int] = field(default_factory=dict)

    def poll(self) -> None:
        for iid, path in self.files.items():
            sent = self._count.get(iid, 0)
            if sent > self.limit:
                continue
            try:
                with open(path, "rb") as f:
                    f.seek(self._offsets.get(iid, 0))
                    data = f.read(256 * 1024)
            except OSError:
                continue
            self._offsets[iid] = self._offsets.get(iid, 0) + len(data)
            buf = self._partial.get(iid, b"") + data
            *lines, self._partial[iid] = buf.split(b"\n")
            for raw in lines:
                sent += 1
                if sent > self.limit:
                    self.emit(iid, f"... (more output: slipstream logs {iid.rsplit('-d', 1)[0]})")
                    break
                self.emit(iid, raw.decode(errors="replace").rstrip("\r"))
            self._count[iid] = sent


class Gate:
    """Waits for new instances to be healthy, watching them die or hang."""

    def __init__(
        self,
        instances: Instances,
        release: Release,
        new: list[tuple[str, str, int]],  # (instance id, server name, port)
        say: Callable[[str, str], None],
        canceled: threading.Event,
    ) -> None:
        self.instances = instances
        self.release = release
        self.new = new
        self.say = say
        self.canceled = canceled
        self.stream = OutputStream(
            {iid: instances.log_path(iid) for iid, _, _ in new}, lambda iid, line: say(f"[{iid}] {line}", "app")
        )

    def _exits(self, iid: str) -> int:
        """How many times an instance has exited so far (its restarts, plus one if it is down now)."""
        st = self.instances.status(iid)
        if st is None:
            return FAIL_AFTER_EXITS
        return st.restarts + (0 if st.state == InstanceState.RUNNING else 1)

    def failure(self, iid: str, what: str, then: str = "the live release keeps serving") -> DeployFailed:
        """The failure of instance ``iid``: what happened, its exit, ``then``, and its last lines."""
        self.stream.poll()
        st = self.instances.status(iid)
        if st is not None and st.state == InstanceState.RUNNING:
            code = "it is still running"
        else:
            code = f"exit code {st.last_exit_code}" if st and st.last_exit_code is not None else "it exited"
        lines = tail(self.instances.log_path(iid))
        shown = "\n".join(f"  {line}" for line in lines) if lines else "  (it printed nothing)"
        return DeployFailed(
            DeployStatus.UPDATE_FAILED,
            f"instance {iid} {what} ({code}{self.instances.describe_exit(iid)}); {then}. "
            f"Its last {len(lines)} lines of output:\n{shown}",
        )

    def _check_cancel(self) -> None:
        if self.canceled.is_set():
            raise Canceled()

    def wait_healthy(self, deadline_s: float) -> float:
        """Block until every new instance passes its check; the seconds it took."""
        started = time.monotonic()
        deadline = started + deadline_s
        pending = {iid: port for iid, _, port in self.new}
        last: dict[str, Probe] = {}
        interval = 0.01  # a refused connection costs ~0.1 ms: probe often while the app boots
        while pending:
            self._check_cancel()
            self.stream.poll()
            for iid, port in list(pending.items()):
                if self._exits(iid) >= FAIL_AFTER_EXITS:
                    raise self.failure(iid, "exited before it was ever healthy, and again after a restart")
                p = self.instances.probe(self.release, port)
                last[iid] = p
                if p.ok:
                    del pending[iid]
            if not pending:
                break
            if time.monotonic() > deadline:
                iid = next(iter(pending))
                raise self.failure(iid, f"did not become healthy within {deadline_s:g} s: {last[iid].reason}")
            time.sleep(interval)
            interval = min(interval * 1.5, 0.05 if time.monotonic() - started < 10 else 1.0)
        self.stream.poll()
        return time.monotonic() - started

    def _restarts(self, iid: str) -> int:
        st = self.instances.status(iid)
        return st.restarts if st is not None else 0

    def watch(self, seconds: float) -> tuple[str, Probe] | None:
        """Keep checking the new instances for ``seconds``; the first one that fails, and why. A
        restart in between counts as a failure even if the check passes again (the runtime restarts a
        first crash at once, faster than a check may notice the gap)."""
        end = time.monotonic() + seconds
        restarts = {iid: self._restarts(iid) for iid, _, _ in self.new}
        next_probe = 0.0
        while (now := time.monotonic()) < end:
            self._check_cancel()
            probing = now >= next_probe
            if probing:
                self.stream.poll()
                next_probe = now + WATCH_PROBE_S
            for iid, _, port in self.new:
                alive = self.instances.alive(iid)
                if alive and self._restarts(iid) > restarts[iid]:
                    return iid, Probe(False, "the process exited and was restarted")
                if not alive:
                    return iid, Probe(False, "the process exited")
                probe = self.instances.probe(self.release, port) if probing else None
                if probe is not None and not probe.ok:
                    return iid, probe
            time.sleep(WATCH_TICK_S)
        return None

    def stay_healthy(self, seconds: float) -> None:
        """Before any traffic: the new instances stay healthy for ``seconds`` (like minReadySeconds)."""
        failed = self.watch(seconds)
        if failed:
            iid, probe = failed
            raise self.failure(iid, f"failed within {seconds:g} s of passing its health check: {probe.reason}")

    def worker_grace(self, seconds: float) -> None:
        """A worker is healthy when it is still running after ``seconds``."""
        started = time.monotonic()
        while time.monotonic() - started < seconds:
            self._check_cancel()
            self.stream.poll()
            for iid, _, _ in self.new:
                if not self.instances.alive(iid):
                    raise self.failure(iid, f"exited within {seconds:g} s of its start")
            time.sleep(0.05)
        self.stream.poll()

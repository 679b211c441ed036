"""How a deploy run ends early: :class:`DeployFailed` carries the status it ends in and why."""

from __future__ import annotations

import threading

from slipstream.states import DeployStatus


class DeployFailed(Exception):
    """Raised inside a deploy run to end it with ``status`` and a one-line ``message``."""

    def __init__(self, status: DeployStatus, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class Canceled(Exception):
    """Raised where a deploy run notices it was canceled (by 'slipstream cancel' or a newer deploy)."""


class CancelToken:
    """Cancels one deploy run, but never once it has sealed itself at the flip.

    ``event`` is what the run's waits poll (commands, builds, the health gate); ``cancel`` and
    ``seal`` take one lock, so a deploy is either canceled before its flip or finishes, never both.
    """

    def __init__(self) -> None:
        self.event = threading.Event()
        self.reason = "canceled"
        self._lock = threading.Lock()
        self._sealed = False

    def cancel(self, reason: str) -> bool:
        """Ask the run to stop; False when it already flipped (or was canceled before)."""
        with self._lock:
            if self._sealed or self.event.is_set():
                return False
            self.reason = reason
            self.event.set()
            return True

    def seal(self) -> bool:
        """Called by the run at its flip: from now on it finishes. False if canceled first."""
        with self._lock:
            if self.event.is_set():
                return False
            self._sealed = True
            return True

    @property
    def canceled(self) -> bool:
        return self.event.is_set()

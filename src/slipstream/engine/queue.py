"""The deploy queue: one deploy per service at a time, Render's overlap policies, and cancel.

Rules:
- Deploys of different services run in parallel, each service on a worker thread of its own that
  ends when its queue is empty.
- **override** (Render's default): a new deploy cancels the one in progress if it has not flipped
  yet, and every queued one; it then runs at once.
- **wait**: a new deploy waits for the one in progress to finish; of several waiting, only the
  newest runs (the others are canceled as superseded).
- ``cancel(service)`` cancels the queued deploys and the one in progress before its flip; a deploy
  that is flipping or draining always finishes. A canceled run stops its new instances (and starts
  the old ones again after a stop-first deploy): the live release keeps serving.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from slipstream.engine.failures import CancelToken
from slipstream.state.store import Store
from slipstream.states import DeployStatus

log = logging.getLogger("slipstream.engine")


@dataclass
class _Running:
    deploy_id: int
    token: CancelToken = field(default_factory=CancelToken)


class DeployQueue:
    """Runs deploys one per service; ``run(deploy_id, token)`` does the work."""

    def __init__(
        self,
        store: Store,
        run: Callable[[int, CancelToken], None],
        policy: str = "override",
        closing: threading.Event | None = None,
        on_idle: Callable[[], None] | None = None,
    ) -> None:
        self.store = store
        self._run = run
        self._on_idle = on_idle  # called when the last deploy of a burst has ended
        self.policy = policy
        self._closing = closing or threading.Event()
        self._lock = threading.RLock()
        self._queues: dict[str, list[int]] = {}
        self._running: dict[str, _Running] = {}
        self._workers: dict[str, threading.Thread] = {}

    def submit(self, service: str, deploy_id: int) -> None:
        """Queue ``deploy_id`` of ``service`` under the overlap policy."""
        with self._lock:
            queue = self._queues.setdefault(service, [])
            for older in queue:
                self._end_queued(older, f"superseded by deploy {deploy_id}")
            queue[:] = [deploy_id]
            if self.policy == "override":
                self._cancel_running(service, f"overridden by deploy {deploy_id}")
            worker = self._workers.get(service)
            if worker is None or not worker.is_alive():
                worker = threading.Thread(target=self._work, args=(service,), daemon=True, name=f"deploy-{service}")
                self._workers[service] = worker
                worker.start()

    def cancel(self, service: str, reason: str = "canceled by 'slipstream cancel'") -> list[int]:
        """Cancel the queued deploys of ``service`` and the one in progress (before its flip)."""
        with self._lock:
            canceled = list(self._queues.get(service, []))
            for deploy_id in canceled:
                self._end_queued(deploy_id, reason)
            self._queues[service] = []
            running = self._cancel_running(service, reason)
            if running is not None:
                canceled.append(running)
            return canceled

    def active(self, service: str) -> int | None:
        """The deploy of ``service`` running now, if any."""
        with self._lock:
            r = self._running.get(service)
            return r.deploy_id if r else None

    def wait_idle(self, service: str, timeout: float = 30.0) -> bool:
        """Block until ``service`` has no queued or running deploy (tests, shutdown)."""
        with self._lock:
            worker = self._workers.get(service)
        if worker is not None:
            worker.join(timeout)
            return not worker.is_alive()
        return True

    def join(self, timeout: float = 1.0) -> None:
        for worker in list(self._workers.values()):
            worker.join(timeout=timeout)

    # -- internals ------------------------------------------------------------------------------
    def _end_queued(self, deploy_id: int, reason: str) -> None:
        self.store.transition(deploy_id, DeployStatus.CANCELED, message=reason, finished=True)

    def _cancel_running(self, service: str, reason: str) -> int | None:
        running = self._running.get(service)
        if running is None or not running.token.cancel(reason):
            return None
        return running.deploy_id

    def _work(self, service: str) -> None:
        while not self._closing.is_set():
            with self._lock:
                queue = self._queues.get(service) or []
                if not queue:
                    self._workers.pop(service, None)
                    idle = not self._workers
                    break
                running = _Running(queue.pop(0))
                self._running[service] = running
            try:
                self._run(running.deploy_id, running.token)
            except Exception as exc:  # a defect before the run could record it: end the deploy
                log.exception("deploy %s could not run", running.deploy_id)
                self.store.transition(
                    running.deploy_id,
                    DeployStatus.UPDATE_FAILED,
                    finished=True,
                    message=f"internal error: {exc.__class__.__name__}: {exc}",
                )
            finally:
                with self._lock:
                    self._running.pop(service, None)
        else:
            return
        if idle and self._on_idle is not None:
            try:
                self._on_idle()
            except Exception:
                log.exception("the deploy queue's idle hook failed")

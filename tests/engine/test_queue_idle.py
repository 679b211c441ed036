"""The deploy queue's idle hook: called once when the last deploy of a burst has ended."""

from __future__ import annotations

import threading
from pathlib import Path

from slipstream.engine.failures import CancelToken
from slipstream.engine.queue import DeployQueue
from slipstream.secrets import SecretBox
from slipstream.settings import load_settings
from slipstream.state.store import Store
from tests.polling import wait_for


def test_idle_hook_runs_after_the_last_of_parallel_deploys(tmp_path: Path) -> None:
    settings = load_settings({"SLIPSTREAM_HOME": str(tmp_path)})
    settings.ensure_dirs()
    store = Store(settings.state_db, SecretBox(settings.master_key))
    release = threading.Event()
    ran: list[int] = []
    idle: list[int] = []

    def run(deploy_id: int, token: CancelToken) -> None:
        release.wait(10)
        ran.append(deploy_id)

    queue = DeployQueue(store, run, on_idle=lambda: idle.append(len(ran)))
    for i in range(1, 21):
        queue.submit(f"s{i:02d}", i)
    assert idle == []  # nothing has ended yet
    release.set()
    wait_for(lambda: idle, what="the idle hook")
    queue.join(5)
    assert idle == [20]  # once, after all twenty

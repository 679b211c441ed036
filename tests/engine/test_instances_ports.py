"""Instance ports under parallel deploys: no two deploys are handed the same port."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from slipstream.engine.instances import Instances
from slipstream.proxy.fake import FakeProxy
from slipstream.runtime.fake import FakeDriver
from slipstream.secrets import Masker, SecretBox
from slipstream.settings import load_settings
from slipstream.state.store import Store


def test_parallel_picks_never_share_a_port(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # 200 picks at once from 1000 ports: before any instance is recorded, each pick must still skip
    # the ports handed to the others (random picks alone would collide some 20 times here).
    settings = load_settings({"SLIPSTREAM_HOME": str(tmp_path), "SLIPSTREAM_INSTANCE_PORTS": "41000-41999"})
    settings.ensure_dirs()
    store = Store(settings.state_db, SecretBox(settings.master_key))
    instances = Instances(settings, store, FakeProxy(), FakeDriver(), Masker(), {}, threading.Event())
    picked: list[int] = []
    start = threading.Barrier(200)

    def pick() -> None:
        start.wait()
        picked.append(instances.pick_port())

    threads = [threading.Thread(target=pick) for _ in range(200)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(picked) == 200 and len(set(picked)) == 200
    assert all(41000 <= p <= 41999 for p in picked)

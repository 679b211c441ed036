"""A backed-off instance's port is held from other processes, and a foreign listener is recognised."""

from __future__ import annotations

import dataclasses
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator

import pytest

from slipstream.runtime import InstanceSpec, InstanceState, LocalDriver
from slipstream.runtime.ports import foreign_listeners, hold_port, listeners, release_port
from tests.polling import wait_for


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def can_bind(port: int, host: str = "127.0.0.1", reuse: bool = True) -> bool:
    """Whether another process could listen on ``port`` now (as most servers do: with SO_REUSEADDR)."""
    with socket.socket() as s:
        if reuse:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
            s.listen(1)
        except OSError:
            return False
        return True


@pytest.fixture
def server() -> Iterator[Callable[[int], subprocess.Popen[bytes]]]:
    """Start a python process listening on a loopback port; always stopped."""
    started: list[subprocess.Popen[bytes]] = []

    def start(port: int) -> subprocess.Popen[bytes]:
        code = f"import socket,time; s=socket.socket(); s.bind(('127.0.0.1',{port})); s.listen(); time.sleep(60)"
        started.append(subprocess.Popen([sys.executable, "-c", code]))
        return started[-1]

    yield start
    for p in started:
        p.kill()
        p.wait()


def test_a_held_port_refuses_every_other_bind_until_released() -> None:
    port = free_port()
    hold = hold_port(port)
    assert hold is not None
    assert not can_bind(port) and not can_bind(port, "0.0.0.0") and not can_bind(port, reuse=False)
    assert hold_port(port) is None  # taken: nothing to hold
    release_port(hold)
    assert can_bind(port)


def test_foreign_listeners_names_processes_outside_the_instance(
    server: Callable[[int], subprocess.Popen[bytes]],
) -> None:
    port = free_port()
    other = server(port)
    wait_for(lambda: listeners(port), what="the listener")
    assert foreign_listeners(port, root_pid=1 << 22) == [other.pid]  # not ours: someone else's server
    assert foreign_listeners(port, root_pid=other.pid) == []  # the instance's own
    assert foreign_listeners(free_port(), root_pid=other.pid) == []  # nobody listens


def test_the_driver_holds_the_port_of_a_backed_off_instance(
    drivers: Callable[..., LocalDriver], make_spec: Callable[..., InstanceSpec]
) -> None:
    port = free_port()
    driver = drivers(backoff_initial=0.3, backoff_max=0.3)
    code = f"import socket; s=socket.socket(); s.bind(('127.0.0.1',{port})); s.listen(); raise SystemExit(1)"
    spec = dataclasses.replace(make_spec(f'exec {sys.executable} -c "{code}"', port=port), port=port)
    driver.start(spec)
    wait_for(lambda: driver.inspect(spec.instance_id).state is InstanceState.BACKOFF, what="the back-off")
    assert not can_bind(port)  # another process cannot take it meanwhile
    # and the instance itself binds it again at each restart (it would crash otherwise: no 'restarted')
    wait_for(lambda: driver.inspect(spec.instance_id).restarts >= 2, what="two restarts")
    assert "could not" not in (driver.inspect(spec.instance_id).last_event or "")
    driver.stop(spec.instance_id, timeout=1)
    assert can_bind(port)  # given back with the instance

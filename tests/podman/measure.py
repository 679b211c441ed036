"""Measure the Podman driver and builds on this machine (not a test; run it by hand):

    PYTHONPATH=src .venv/bin/python -m tests.podman.measure

Prints: image build cold (no cached layer) vs cached (same source, next build id), and
``PodmanDriver.start`` -> first HTTP 200 on the published loopback port, median of 5.
"""

from __future__ import annotations

import socket
import statistics
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path

from slipstream.builds.docker import DockerBuilder, DockerBuildSpec
from slipstream.builds.docker_base import ensure_busybox_base
from slipstream.builds.docker_commands import build_untag_argv
from slipstream.runtime.base import InstanceSpec
from slipstream.runtime.podman import PodmanDriver
from slipstream.runtime.podman_cli import PodmanCli

from .conftest import APP_SH, DOCKERFILE


def first_200(port: int, timeout: float = 30.0) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1) as resp:
                if resp.status == 200:
                    return time.monotonic() - started
        except OSError:
            pass
        time.sleep(0.005)
    raise RuntimeError("no HTTP 200")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> None:
    run_id = uuid.uuid4().hex[:6]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        cli = PodmanCli(root / "podman")
        t = time.monotonic()
        ensure_busybox_base(cli)
        print(f"base image ready: {time.monotonic() - t:.2f} s")
        src = root / "src"
        src.mkdir()
        # a unique step so the first build finds nothing in the cache
        (src / "Dockerfile").write_text(DOCKERFILE.replace("COPY", f"RUN echo {run_id} > /id\nCOPY"))
        (src / "app.sh").write_text(APP_SH)
        builder = DockerBuilder(cli)
        service = f"measure-{run_id}"
        cold = builder.build(DockerBuildSpec(service, 1, src, root / "b1.log"))
        cached = builder.build(DockerBuildSpec(service, 2, src, root / "b2.log"))
        print(f"build cold: {cold.duration_s:.2f} s, cached: {cached.duration_s:.2f} s")

        driver = PodmanDriver(cli, name_prefix=f"measure-{run_id}-")
        to_200, start_calls, stops = [], [], []
        try:
            for i in range(5):
                port = free_port()
                spec = InstanceSpec(
                    f"web-d1-{i}", service, 1, "", root, {}, root / f"{i}.log", port=port, image=cached.image
                )
                t = time.monotonic()
                driver.start(spec)
                start_calls.append(time.monotonic() - t)
                to_200.append(start_calls[-1] + first_200(port))
                t = time.monotonic()
                driver.stop(spec.instance_id)
                stops.append(time.monotonic() - t)
        finally:
            driver.close()
            cli.run(build_untag_argv([cold.image, cached.image]), check=False)
        print(
            f"start -> first HTTP 200: median {statistics.median(to_200):.3f} s "
            f"(runs: {', '.join(f'{x:.3f}' for x in to_200)}); "
            f"start() call median {statistics.median(start_calls):.3f} s; stop() median {statistics.median(stops):.3f} s"
        )


if __name__ == "__main__":
    main()

"""`runtime: docker` end to end on real Podman: a Dockerfile service deploys through the same gated
flip as a native one (under load: 0 failed requests), rolls back to its earlier image without a
build, comes back after its container process is killed, is adopted by a restarted daemon, is
killed at its memory cap, and a failed build or a container that never gets healthy leaves the
live release serving. No registry: the image builds FROM the local busybox base image."""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from pathlib import Path

import pytest

from tests.e2e.conftest import Daemon, Load, git
from tests.e2e.test_resilience import wait_until

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(shutil.which("podman") is None, reason="podman is not installed (make install installs it)"),
]

# PID 1 is this shell: it serves with busybox httpd, leaves on SIGTERM, and grows its own memory
# once /tmp/hog appears (a CGI script makes it), so the kernel kills PID 1 at the cap.
APP_SH = """\
trap 'exit 0' TERM
echo "version $(cat /www/index.html) listening on $PORT"
httpd -f -p "$PORT" -h /www &
while [ ! -e /tmp/hog ]; do sleep 0.2; done
echo "growing past the cap"
x=a; while :; do x=$x$x; done
"""
HOG_CGI = "#!/bin/sh\ntouch /tmp/hog\necho 'Content-Type: text/plain'\necho\necho hogging\n"

DOCKERFILE = """\
FROM localhost/slipstream-base:busybox AS build
COPY VERSION /src/VERSION
RUN mkdir -p /out/cgi-bin && echo "version=$(cat /src/VERSION)" > /out/index.html && echo ok > /out/health

FROM localhost/slipstream-base:busybox
COPY --from=build /out /www
COPY hog.cgi /www/cgi-bin/hog
COPY app.sh /app.sh
RUN chmod 755 /www/cgi-bin/hog
CMD ["/bin/sh", "/app.sh"]
"""

BLUEPRINT = """\
services:
  - type: web
    name: box
    runtime: docker
    healthCheckPath: {health}
    memoryLimitMB: 48
    maxShutdownDelaySeconds: 3
"""


def status_of(d: Daemon) -> dict:
    return next(s for s in json.loads(d.cli("status", "--json").stdout)["services"] if s["name"] == "box")


def deploy(d: Daemon, repo: Path, commit: str, blueprint: str = "render.yaml") -> tuple[int, str]:
    r = d.cli("deploy", "box", "--blueprint", str(repo / blueprint), "--commit", commit, timeout=300)
    return r.returncode, r.stdout + r.stderr


@pytest.mark.timeout(900)
def test_a_dockerfile_service_runs_like_a_native_one(daemon: Daemon, tmp_path: Path) -> None:
    repo = tmp_path / "box"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / "app.sh").write_text(APP_SH)
    (repo / "hog.cgi").write_text(HOG_CGI)
    (repo / "render.yaml").write_text(BLUEPRINT.format(health="/health"))
    (repo / "render-sick.yaml").write_text(BLUEPRINT.format(health="/nowhere"))
    commits = {}
    for v in ("1", "2"):
        (repo / "VERSION").write_text(v + "\n")
        (repo / "Dockerfile").write_text(DOCKERFILE)
        git(repo, "add", "-A")
        git(repo, "commit", "-q", "-m", f"v{v}")
        commits[v] = git(repo, "rev-parse", "HEAD")
    (repo / "Dockerfile").write_text(DOCKERFILE.replace("COPY VERSION", "RUN echo broken && exit 3\nCOPY VERSION"))
    git(repo, "commit", "-q", "-am", "broken")
    commits["broken"] = git(repo, "rev-parse", "HEAD")

    code, out = deploy(daemon, repo, commits["1"])
    assert code == 0, out
    assert "image localhost/slipstream/box:b" in out
    assert daemon.get("box.localhost") == (200, "version=1\n")

    # a redeploy under keep-alive load: the same gated flip, 0 failed requests
    with Load(daemon.http_port, "box.localhost") as load:
        code, out = deploy(daemon, repo, commits["2"])
        assert code == 0, out
        time.sleep(0.5)
    assert load.failures == [] and load.ok > 50, load.failures[:5]
    assert set(load.versions) == {"version=1\n", "version=2\n"}

    # a rollback runs the earlier image again: no build
    r = daemon.cli("rollback", "box", timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Reusing build" in r.stdout and "Building" not in r.stdout
    assert daemon.get("box.localhost") == (200, "version=1\n")

    # a failed docker build and a container that never answers leave the live release serving
    code, out = deploy(daemon, repo, commits["broken"])
    assert code == 1 and "build_failed" in out and "broken" in out, out
    code, out = deploy(daemon, repo, commits["2"], "render-sick.yaml")
    assert code == 1 and "update_failed" in out and "did not become healthy" in out, out
    assert "listening on" in out  # the container's own output is in the transcript
    assert daemon.get("box.localhost") == (200, "version=1\n")

    # kill -9 of the container's process: restarted, back in rotation
    inst = status_of(daemon)["instances"][0]
    os.kill(inst["pid"], signal.SIGKILL)
    wait_until(lambda: status_of(daemon)["instances"][0].get("restarts", 0) >= 1, timeout=30)
    wait_until(lambda: daemon.get("box.localhost") == (200, "version=1\n"), timeout=30)

    # kill -9 of the daemon: the container keeps serving and the next daemon adopts it
    pid = status_of(daemon)["instances"][0]["pid"]
    os.kill(int((daemon.home / "run" / "daemon.pid").read_text()), signal.SIGKILL)
    time.sleep(0.3)
    assert daemon.get("box.localhost") == (200, "version=1\n")
    assert daemon.cli("up", "--detach").returncode == 0
    assert status_of(daemon)["instances"][0]["pid"] == pid

    # past its memory cap the kernel kills it, and the event says so
    assert daemon.get("box.localhost", "/cgi-bin/hog")[0] == 200

    def oom_event() -> bool:
        r = daemon.cli("logs", "box", "-n", "5")  # keeps the CLI honest while we wait
        assert r.returncode == 0
        events = json.loads(daemon.cli("deploys", "box", "--json").stdout)
        return bool(events) and _events_say(daemon, "exceeded memory limit")

    wait_until(oom_event, timeout=60)
    wait_until(lambda: daemon.get("box.localhost") == (200, "version=1\n"), timeout=30)


def _events_say(d: Daemon, text: str) -> bool:
    import httpx

    with httpx.Client(transport=httpx.HTTPTransport(uds=str(d.home / "run" / "api.sock")), base_url="http://x") as c:
        events = c.get("/v1/services/box/events").json()["events"]
    return any(text in e["message"] for e in events)

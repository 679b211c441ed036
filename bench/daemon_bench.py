"""Benchmarks 3-6 against a real daemon: deploys, rollbacks, restarts, and the idle daemon.

The stand: a daemon on a temp ``SLIPSTREAM_HOME`` and a free HTTP port, and a git repo holding
the bench upstream as ``app.py`` at two versions ("1", "2") with one blueprint of 20 minimal
Python web services (``s01`` ... ``s20``, no dependencies, ``buildCommand: echo build``).
Timings use the API on the unix socket (not the CLI, whose Python start-up is measured apart)
and read "traffic moved" from outside: a GET through HAProxy every 5 ms on a new connection.

Lifecycle: ``start()`` runs ``slipstream up --detach``; the measurements run in order (deploys and
rollbacks of ``s01``, then ``apply`` of all 20, one ``kill -9`` in each of five services, the idle
sample); ``stop()`` runs ``slipstream down`` and kills anything still running under the home. The
docker, fail-fast and TLS sections (``docker_bench``, ``failfast_bench``, ``tls_bench``) drive
their services through the same stand with ``deploy_commit``/``timed_deploy``.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil

from bench import procs

SERVICES = 20
BUILD_COMMAND = "echo build"
SLIPSTREAM = [sys.executable, "-m", "slipstream"]


def render_blueprint(count: int) -> str:
    """A render.yaml with ``count`` minimal web services s01, s02, ... running the bench app."""
    lines = ["services:"]
    for i in range(1, count + 1):
        lines += [
            "  - type: web",
            f"    name: s{i:02d}",
            "    runtime: python",
            f"    buildCommand: {BUILD_COMMAND}",
            "    startCommand: python app.py",
            "    healthCheckPath: /health",
            "    maxShutdownDelaySeconds: 5",
        ]
    return "\n".join(lines) + "\n"


def git(repo: Path, *args: str) -> str:
    """Run git in ``repo`` with a fixed identity; its output."""
    env = {
        "GIT_AUTHOR_NAME": "bench",
        "GIT_AUTHOR_EMAIL": "bench@example.com",
        "GIT_COMMITTER_NAME": "bench",
        "GIT_COMMITTER_EMAIL": "bench@example.com",
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(repo),
    }
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True, env=env, timeout=30
    ).stdout.strip()


def make_app_repo(root: Path, services: int) -> dict[str, str]:
    """The app repo (bench upstream + blueprint) committed at versions 1 and 2; version -> sha."""
    root.mkdir(parents=True)
    git(root, "init", "-q", "-b", "main")
    shutil.copy(procs.UPSTREAM, root / "app.py")
    (root / "render.yaml").write_text(render_blueprint(services))
    shas = {}
    for version in ("1", "2"):
        (root / "VERSION").write_text(version + "\n")
        git(root, "add", "-A")
        git(root, "commit", "-q", "-m", f"version {version}")
        shas[version] = git(root, "rev-parse", "HEAD")
    return shas


@dataclass(frozen=True)
class Timed:
    """One deploy or rollback: the client's time to traffic and the daemon's recorded steps."""

    ms: float
    deploy: dict[str, Any]
    request_ms: float = 0.0  # how long the POST itself took to answer


class DaemonStand:
    """A slipstream daemon on a temp home with the bench app repo beside it."""

    def __init__(self, workdir: Path, services: int = SERVICES, env: dict[str, str] | None = None) -> None:
        self.workdir = workdir
        self.services = services
        self.home = workdir / "home"
        self.repo = workdir / "app"
        self.blueprint = self.repo / "render.yaml"
        self.http_port = procs.free_port()
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("SLIPSTREAM_")}
        self.env.update(
            SLIPSTREAM_HOME=str(self.home), SLIPSTREAM_HTTP_PORT=str(self.http_port), SLIPSTREAM_HEALTH_DEADLINE="60"
        )
        self.env.update(env or {})
        self.shas: dict[str, str] = {}
        self.version_of: dict[str, str] = {}
        self._http: httpx.Client | None = None

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> None:
        """Make the app repo and start the daemon (``slipstream up --detach``)."""
        self.shas = make_app_repo(self.repo, self.services)
        self.version_of = {sha: v for v, sha in self.shas.items()}
        r = self.cli("up", "--detach")
        if r.returncode != 0:
            raise RuntimeError(f"slipstream up failed: {r.stdout}{r.stderr}")
        self._http = httpx.Client(
            transport=httpx.HTTPTransport(uds=str(self.home / "run" / "api.sock")),
            base_url="http://slipstream",
            timeout=60,
        )

    def stop(self) -> None:
        """``slipstream down``, then SIGKILL whatever still runs under the home."""
        if self._http is not None:
            self._http.close()
        try:
            self.cli("down", timeout=90)
        except subprocess.TimeoutExpired:
            print("warning: 'slipstream down' did not finish in 90 s")
        for p in procs.processes_under(self.home):
            try:
                p.kill()
            except psutil.Error:
                pass

    def cli(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*SLIPSTREAM, *args], env=self.env, capture_output=True, text=True, timeout=timeout)

    def api(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        """One API call on the unix socket; RuntimeError with the daemon's words on an error."""
        assert self._http is not None
        resp = self._http.request(method, path, json=body)
        data = resp.json()
        if resp.status_code >= 400:
            raise RuntimeError(f"{method} {path} answered {resp.status_code}: {data}")
        return data

    def pid(self) -> int:
        return int((self.home / "run" / "daemon.pid").read_text())

    def rss_mb(self) -> float:
        """The daemon's RSS now, in MB."""
        return float(psutil.Process(self.pid()).memory_info().rss / 2**20)

    def haproxy_pid(self) -> int:
        return int((self.home / "proxy" / "haproxy.pid").read_text().split()[0])

    # -- helpers -------------------------------------------------------------------------------
    def served(self, service: str) -> tuple[int, str]:
        return procs.get(self.http_port, f"{service}.localhost", timeout=1)

    def wait_serving(self, service: str, body: str, timeout: float = 60, deploy_id: int | None = None) -> float:
        """Poll through HAProxy every 5 ms until ``service`` answers 200 ``body``; monotonic time.
        With ``deploy_id``, a RuntimeError soon after that deploy ended without going live (its
        record is read once a second from 3 s on, so a deploy that serves sooner sees only the poll)."""
        deadline = time.monotonic() + timeout
        next_check = time.monotonic() + 3.0
        while self.served(service) != (200, body):
            now = time.monotonic()
            if deploy_id is not None and now >= next_check:
                d = self.api("GET", f"/v1/deploys/{deploy_id}")["deploy"]
                if d["finished_at"] and d["status"] not in ("live", "deactivated"):
                    raise RuntimeError(f"deploy {deploy_id} of {service} ended {d['status']}: {d.get('message')}")
                next_check = now + 1.0
            if now >= deadline:
                raise TimeoutError(f"{service} serving {body!r} not reached within {timeout:g} s")
            time.sleep(0.005)
        return time.perf_counter()

    def wait_finished(self, deploy_id: int, timeout: float = 120) -> dict[str, Any]:
        """Poll the deploy until it has finished; RuntimeError unless it went live."""
        d = procs.wait_for(
            lambda: (lambda x: x if x["finished_at"] else None)(self.api("GET", f"/v1/deploys/{deploy_id}")["deploy"]),
            timeout,
            0.05,
            f"deploy {deploy_id} finishing",
        )
        if d["status"] not in ("live", "deactivated"):
            raise RuntimeError(f"deploy {deploy_id} ended {d['status']}: {d.get('message')}")
        return d

    def deploy(self, service: str, version: str) -> int:
        return self.deploy_commit(service, self.blueprint, self.shas[version])

    def deploy_commit(self, service: str, blueprint: Path, commit: str) -> int:
        """``POST /v1/deploys`` of ``service`` from ``blueprint`` at ``commit``; the deploy id."""
        body = {"service": service, "blueprint": str(blueprint), "commit": commit}
        return int(self.api("POST", "/v1/deploys", body)["deploy"]["id"])

    def timed_deploy(self, service: str, blueprint: Path, commit: str, body: str, timeout: float = 60) -> Timed:
        """Deploy ``commit``: POST -> ``service`` answers ``body`` through HAProxy; then its record."""
        started = time.perf_counter()
        deploy_id = self.deploy_commit(service, blueprint, commit)
        answered = time.perf_counter()
        ms = (self.wait_serving(service, body, timeout, deploy_id) - started) * 1000
        return Timed(ms, self.wait_finished(deploy_id, timeout=max(120, timeout)), (answered - started) * 1000)

    def latest_deploy(self, service: str) -> dict[str, Any]:
        """The newest deploy record of ``service``."""
        return dict(self.api("GET", f"/v1/services/{service}/deploys?limit=1")["deploys"][0])

    def delete_service(self, service: str) -> None:
        """``DELETE /v1/services/<service>``: its instances stop and its route goes."""
        self.api("DELETE", f"/v1/services/{service}")

    def instances(self, service: str) -> list[dict[str, Any]]:
        status = self.api("GET", "/v1/status")["services"]
        return next(s["instances"] for s in status if s["name"] == service)

    # -- benchmark 3 and 4 ---------------------------------------------------------------------
    def first_deploy(self, service: str) -> Timed:
        """The first deploy of ``service`` (creates its virtualenv); not one of the timed runs."""
        started = time.perf_counter()
        deploy_id = self.deploy(service, "1")
        ms = (self.wait_serving(service, "ok 1", timeout=120) - started) * 1000
        return Timed(ms, self.wait_finished(deploy_id))

    def deploys(self, service: str, runs: int) -> list[Timed]:
        """``runs`` deploys alternating versions 2 and 1: POST -> new version served via HAProxy."""
        out = []
        for i in range(runs):
            version = "2" if i % 2 == 0 else "1"
            out.append(self.timed_deploy(service, self.blueprint, self.shas[version], f"ok {version}"))
        return out

    def rollbacks(self, service: str, runs: int) -> list[Timed]:
        """``runs`` rollbacks: POST rollback -> the earlier build's version served via HAProxy."""
        out = []
        for _ in range(runs):
            started = time.perf_counter()
            d = self.api("POST", f"/v1/services/{service}/rollback", {})["deploy"]
            answered = time.perf_counter()
            version = self.version_of[d["commit"]]
            ms = (self.wait_serving(service, f"ok {version}") - started) * 1000
            out.append(Timed(ms, self.wait_finished(int(d["id"])), (answered - started) * 1000))
        return out

    # -- benchmark 5 and 6 ---------------------------------------------------------------------
    def apply_all(self) -> float:
        """``apply`` the 20-service blueprint and wait until every deploy finished; seconds."""
        started = time.perf_counter()
        ids = [d["id"] for d in self.api("POST", "/v1/apply", {"blueprint": str(self.blueprint)})["deploys"]]
        for deploy_id in ids:
            self.wait_finished(int(deploy_id), timeout=400)
        return time.perf_counter() - started

    def restart(self, service: str) -> dict[str, Any]:
        """``kill -9`` the app process of ``service``; ms until its port and HAProxy answer again."""
        inst = self.instances(service)[0]
        port, pid = int(inst["port"]), int(inst["pid"])
        last_event = max((e["id"] for e in self.api("GET", f"/v1/services/{service}/events")["events"]), default=0)
        leader = psutil.Process(pid)  # the instance is `sh -c "python app.py"`: kill the app itself
        app = next((c for c in leader.children(recursive=True) if "app.py" in " ".join(c.cmdline())), leader)
        wall, started = time.time(), time.perf_counter()
        os.kill(app.pid, signal.SIGKILL)
        procs.wait_for(lambda: procs.get(port, timeout=0.5)[0] == 0, 5, 0.001, f"{service} to stop answering")
        process_back: float | None = None
        deadline = started + 30
        while True:
            now = time.perf_counter()
            if process_back is None and procs.get(port, timeout=0.5)[0] == 200:
                process_back = now
            if process_back is not None and self.served(service)[0] == 200:
                break
            if now > deadline:
                raise TimeoutError(f"{service} did not serve again within 30 s of kill -9")
            time.sleep(0.005)
        serving = time.perf_counter()
        events = self.api("GET", f"/v1/services/{service}/events", None)
        timeline = [(round((e["ts"] - wall) * 1000), e["message"]) for e in events["events"] if e["id"] > last_event]
        return {
            "ms": (serving - started) * 1000,
            "process_back_ms": ((process_back or serving) - started) * 1000,
            "timeline": timeline,
        }

    def idle(self, seconds: float, quiet: float = 3.0) -> dict[str, Any]:
        """RSS (median of 1 s samples) and CPU% (over the window) of the daemon and HAProxy."""
        time.sleep(quiet)
        procs_ = {"daemon": psutil.Process(self.pid()), "haproxy": psutil.Process(self.haproxy_pid())}
        for p in procs_.values():
            p.cpu_percent(None)
        rss: dict[str, list[float]] = {k: [] for k in procs_}
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            for k, p in procs_.items():
                rss[k].append(p.memory_info().rss / 2**20)
            time.sleep(1.0)
        out: dict[str, Any] = {}
        for k, p in procs_.items():
            out[k] = {
                "cpu_percent": p.cpu_percent(None),
                "rss_mb": sorted(rss[k])[len(rss[k]) // 2],
                "rss_mb_max": max(rss[k]),
                "threads": p.num_threads(),
            }
        out["instances"] = sum(len(s["instances"]) for s in self.api("GET", "/v1/status")["services"])
        out["services"] = len(self.api("GET", "/v1/status")["services"])
        return out

    def build_paths(self, service: str) -> tuple[str, Path]:
        """The virtualenv python and the app.py of ``service``'s newest build (for the boot timing)."""
        python = next((self.home / "cache" / service / "venvs").glob("*/bin/python"))
        builds = sorted(
            (self.home / "builds" / service).iterdir(), key=lambda p: int(p.name) if p.name.isdigit() else -1
        )
        app = next(p for b in reversed(builds) for p in [b / "src" / "app.py"] if p.exists())
        return str(python), app

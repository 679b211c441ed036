"""The chaos suite: ``kill -9`` of the daemon at every failpoint of a deploy, and of HAProxy, a
static site's Caddy and PostgreSQL mid-traffic, under keep-alive load.

One daemon home serves every point (a restart re-arms it with the next point). After each kill the
live release must keep serving while the daemon is dead, the restarted daemon must resolve the
deploy (live or failed, never stuck), and the state, HAProxy's servers and the processes must agree:
no orphan process, no leaked port. Each point prints a figure (failed and total requests, how long
the deploy took to resolve) and adds it to chaos.json under pytest's tmp dir.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
import psycopg
import pytest

from bench.procs import processes_under
from slipstream import failpoints as fp
from slipstream.engine.health import free_port
from slipstream.proxy import Proxy
from slipstream.states import ACTIVE
from tests.e2e.blueprints import web
from tests.e2e.conftest import SLIPSTREAM, Daemon, Load, make_app_repo, stop_daemon
from tests.polling import wait_for

pytestmark = pytest.mark.e2e

SETTINGS = {
    "SLIPSTREAM_HEALTH_DEADLINE": "6",
    "SLIPSTREAM_MIN_HEALTHY_SECONDS": "0.3",
    "SLIPSTREAM_SETTLE_SECONDS": "1.2",
    "SLIPSTREAM_LIVE_CHECK_INTERVAL": "0.5",
}
SITE = """services:
  - type: web
    name: site
    runtime: static
    buildCommand: mkdir -p dist && cp VERSION dist/index.html
    staticPublishPath: dist
"""

DB = """databases:
  - name: chaosdb
services:
  - type: web
    name: dbweb
    runtime: python
    buildCommand: echo building
    startCommand: python app.py
    healthCheckPath: /health
    envVars:
      - key: DATABASE_URL
        fromDatabase: {name: chaosdb, property: connectionString}
"""

BLUEPRINTS = {
    "render.yaml": web(),
    "render-pre.yaml": web(pre="echo migrating && sleep 5 && echo migrated"),
    "render-sick-later.yaml": web(env={"SICK_AFTER_HEALTH": "0.6"}),  # fails its check after the flip
    "render-crash.yaml": web(env={"CRASH_AFTER_HEALTH": "0.05"}),  # before the flip: the deploy fails
    "render-site.yaml": SITE,
    "render-db.yaml": DB,
}


@dataclass(frozen=True)
class Case:
    point: str
    blueprint: str = "render.yaml"  # or "rollback" for `slipstream rollback web`
    outcome: str = "failed"  # how the restarted daemon resolves the deploy: "live" or "failed"


CASES = [
    Case(fp.AFTER_BUILD),
    Case(fp.PRE_DEPLOY, "render-pre.yaml"),
    Case(fp.AFTER_START),
    Case(fp.HEALTH),
    Case(fp.STAY_HEALTHY),
    Case(fp.BEFORE_FLIP),
    Case(fp.AFTER_FLIP),
    Case(fp.SETTLE),
    Case(fp.MOVED_BACK, "render-sick-later.yaml"),
    Case(fp.PROMOTED, outcome="live"),
    Case(fp.DRAIN, outcome="live"),
    # a rollback needs an earlier live deploy (the two above); killed while it is still recorded
    # queued, it is queued again by the restarted daemon and goes live
    Case(fp.REUSE_BUILD, "rollback", outcome="live"),
    Case(fp.CLEANUP, "render-crash.yaml"),
]


@dataclass
class Chaos:
    """The shared daemon, its app repo, and what the suite measured."""

    root: Path
    daemon: Daemon
    repo_path: Path
    commits: dict[str, str]
    ports: tuple[int, int]
    armed: str | None = None
    figures: dict[str, dict[str, object]] = field(default_factory=dict)
    report: Path | None = None

    @property
    def pid(self) -> int:
        return int((self.daemon.home / "run" / "daemon.pid").read_text())

    def restart(self, armed: str | None) -> None:
        """Start the daemon again (same home and ports), with ``armed`` as its one failpoint."""
        env = {k: v for k, v in self.daemon.env.items() if k != "SLIPSTREAM_FAILPOINTS"}
        if armed:
            env["SLIPSTREAM_FAILPOINTS"] = armed
        self.daemon = Daemon(self.daemon.home, self.daemon.http_port, env)
        with open(self.daemon.home / "daemon.log", "ab") as log:  # as `up --detach` does, without the CLI's start-up
            proc = subprocess.Popen(
                [*SLIPSTREAM, "up"], env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True
            )
        threading.Thread(target=proc.wait, daemon=True).start()  # reaped when it dies: no zombie to wait for
        wait_for(lambda: api(self.daemon, "/v1/health", quiet=True), 60, "the daemon to answer")
        self.armed = armed

    def arm(self, point: str) -> None:
        """A daemon armed with ``point``: the running one if it is, else a graceful restart."""
        if self.armed == point:
            return
        pid = self.pid
        os.kill(pid, signal.SIGTERM)  # only the daemon stops: HAProxy and the apps keep serving
        wait_for(lambda: not alive(pid), 30, "the daemon to stop")
        self.restart(point)

    def record(self, name: str, figure: dict[str, object]) -> None:
        self.figures[name] = figure
        assert self.report is not None
        self.report.write_text(json.dumps(self.figures, indent=2) + "\n")
        print(f"\nchaos {name}: " + ", ".join(f"{k}={v}" for k, v in figure.items()))
        print(f"chaos figures: {self.report}")


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


@pytest.fixture(scope="module")
def chaos(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chaos]:
    report = tmp_path_factory.mktemp("chaos") / "chaos.json"
    tmp = Path(tempfile.mkdtemp(prefix="slipstream-chaos-"))  # not pytest's 0700 dir: PostgreSQL's user
    os.chmod(tmp, 0o711)  # must reach its data under the home
    low = random.randrange(20000, 29800, 100)  # a slice of the instance range of our own (leak check)
    repo = make_app_repo(tmp / "app", BLUEPRINTS)
    home = tmp / "home"
    home.mkdir(mode=0o700)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLIPSTREAM_")}
    env.update(SETTINGS, SLIPSTREAM_HOME=str(home), SLIPSTREAM_HTTP_PORT=str(port))
    env["SLIPSTREAM_INSTANCE_PORTS"] = f"{low}-{low + 99}"
    c = Chaos(tmp, Daemon(home, port, env), repo.path, repo.commits, (low, low + 99), report=report)
    try:
        c.restart(None)
        bp = str(repo.path / "render.yaml")
        first = api(c.daemon, "/v1/deploys", {"service": "web", "blueprint": bp, "commit": repo.commits["1"]})
        did = first["deploy"]["id"]
        wait_for(lambda: api(c.daemon, f"/v1/deploys/{did}")["deploy"]["status"] not in ACTIVE, 60, "v1 to deploy")
        assert served(c.daemon) == "version=1"
        yield c
    finally:
        stop_daemon(c.daemon)
        shutil.rmtree(tmp, ignore_errors=True)


def api(d: Daemon, path: str, body: dict | None = None, *, quiet: bool = False) -> Any:
    """One call to the daemon's API on its unix socket (the CLI's start-up would cost a second a
    call on a busy machine); with ``quiet``, None when the daemon does not answer."""
    try:
        with httpx.Client(transport=httpx.HTTPTransport(uds=str(d.home / "run" / "api.sock")), timeout=30) as h:
            r = h.get(f"http://slipstream{path}") if body is None else h.post(f"http://slipstream{path}", json=body)
    except httpx.TransportError:
        if quiet:
            return None
        raise
    assert r.status_code == 200, r.text
    return r.json()


def status(d: Daemon, service: str = "web") -> dict:
    return next(s for s in api(d, "/v1/status")["services"] if s["name"] == service)


def latest_deploy(d: Daemon) -> dict:
    return api(d, "/v1/services/web/deploys?limit=1")["deploys"][0]


def served(d: Daemon) -> str:
    code, body = d.get("web.localhost")
    assert code == 200, body
    return body


def check_consistent(c: Chaos) -> dict:
    """State, HAProxy and processes agree; nothing is left over. The web service's status."""
    svc = wait_for(lambda: settled(status(c.daemon)), 15, "every web instance live and running")
    live = svc["instances"]
    assert {i["deploy"] for i in live} == {svc["live_deploy"]["id"]}
    proxy = Proxy(c.daemon.home / "proxy", c.daemon.http_port)
    servers = {(s.name, s.port, s.admin) for s in proxy.servers("web")}
    assert servers == {(f"d{i['deploy']}-{i['id'].rsplit('-', 1)[1]}", i["port"], "ready") for i in live}, servers
    haproxy = proxy.pid()
    assert haproxy is not None
    running = [i["pid"] for s in api(c.daemon, "/v1/status")["services"] for i in s["instances"]]
    allowed = {c.pid, haproxy, *running}
    allowed |= {p.pid for pid in (haproxy, *running) for p in psutil.Process(pid).children(True)}
    under = processes_under(c.daemon.home)
    orphans = [f"{p.pid} {' '.join(p.cmdline())}" for p in under if p.pid not in allowed]
    assert orphans == [], orphans
    low, high = c.ports
    listening = {
        conn.laddr.port: conn.pid
        for conn in psutil.net_connections("tcp")
        if conn.status == psutil.CONN_LISTEN and low <= conn.laddr.port <= high
    }
    ours = {p.pid for p in under}  # other suites may run instances in this range
    leaked = {
        port: owner(pid) for port, pid in listening.items() if port not in {i["port"] for i in live} and pid in ours
    }
    assert leaked == {}, leaked
    return svc


def owner(pid: int | None) -> str:
    try:
        return f"{pid} {' '.join(psutil.Process(pid).cmdline())}" if pid else "?"
    except psutil.Error:
        return f"{pid} (gone)"


def settled(svc: dict) -> dict | None:
    """The service once every instance is live and running (a drained one may still be stopping)."""
    ok = svc["instances"] and all(i["state"] == "live" and i["process"] == "running" for i in svc["instances"])
    return svc if ok else None


@pytest.mark.parametrize("case", CASES, ids=[c.point for c in CASES])
def test_daemon_killed_at_failpoint(chaos: Chaos, case: Case) -> None:
    c = chaos
    c.arm(case.point)
    before = status(c.daemon)
    version = served(c.daemon)
    other = "2" if version == "version=1" else "1"
    log = c.daemon.home / "daemon.log"
    kills = log.read_text().count(f"failpoint {case.point}:")
    pid = c.pid
    with Load(c.daemon.http_port, "web.localhost", threads=2) as load:
        if case.blueprint == "rollback":
            api(c.daemon, "/v1/services/web/rollback", {}, quiet=True)
        else:
            bp = str(c.repo_path / case.blueprint)
            api(c.daemon, "/v1/deploys", {"service": "web", "blueprint": bp, "commit": c.commits[other]}, quiet=True)
        wait_for(lambda: not alive(pid), 10, "the daemon to die")
        died = time.monotonic()
        assert log.read_text().count(f"failpoint {case.point}:") == kills + 1, "killed elsewhere"
        time.sleep(0.3)
        assert served(c.daemon) in ("version=1", "version=2")  # HAProxy and the apps serve without it
        nxt = CASES[CASES.index(case) + 1].point if case is not CASES[-1] else None
        c.restart(nxt)
        deploy = wait_for(lambda: (d := latest_deploy(c.daemon))["status"] not in ACTIVE and d, 30, "resolution")
        resolved = time.monotonic() - died
        svc = check_consistent(c)
    assert deploy["id"] > (before["live_deploy"]["id"] or 0)
    if case.outcome == "live":
        assert deploy["status"] == "live" and svc["live_deploy"]["id"] == deploy["id"], deploy
    else:
        assert deploy["status"] != "live" and svc["live_deploy"]["id"] == before["live_deploy"]["id"], deploy
        assert [i["pid"] for i in svc["instances"]] == [i["pid"] for i in before["instances"]]  # adopted, not restarted
    assert served(c.daemon) == ("version=2" if svc["live_deploy"]["commit"] == c.commits["2"] else "version=1")
    c.record(
        case.point,
        {
            "failed": len(load.failures),
            "requests": load.ok + len(load.failures),
            "resolved_s": round(resolved, 2),
            "deploy": deploy["status"],
        },
    )
    assert load.failures == [], load.failures[:5]


def outage(c: Chaos, host: str, load: Load, kill: Callable[[], object]) -> dict[str, object]:
    """Kill something under load; the figures of the outage until ``host`` answers again."""
    before = len(load.failures)
    started = time.monotonic()
    kill()
    wait_for(lambda: answers(c.daemon, host), 20, f"{host} to answer again")
    down_s = time.monotonic() - started
    time.sleep(0.5)
    with load.lock:
        return {"failed": len(load.failures) - before, "requests": load.ok + len(load.failures), "down_s": down_s}


def answers(d: Daemon, host: str) -> bool:
    try:
        return d.get(host)[0] == 200
    except OSError:
        return False


def test_haproxy_killed_mid_traffic_is_started_again(chaos: Chaos) -> None:
    c = chaos
    proxy = Proxy(c.daemon.home / "proxy", c.daemon.http_port)
    old = proxy.pid()
    assert old is not None
    group = [psutil.Process(old), *psutil.Process(old).children(recursive=True)]

    def kill() -> None:
        for p in group:  # master and workers: nothing of the old HAProxy survives
            p.kill()

    with Load(c.daemon.http_port, "web.localhost", threads=2) as load:
        figure = outage(c, "web.localhost", load, kill)
    assert proxy.pid() not in (None, old)
    check_consistent(c)
    figure = {**figure, "down_s": round(float(figure["down_s"]), 2)}  # type: ignore[arg-type]
    c.record("kill -9 haproxy", figure)
    # every request sent while no HAProxy listened failed (the load retries every 2 ms): the
    # honest figure is how long it was down, bounded by the watch's 0.5 s period plus a start
    assert figure["down_s"] < 10


def test_caddy_killed_mid_traffic_is_restarted(chaos: Chaos) -> None:
    c = chaos
    bp = str(c.repo_path / "render-site.yaml")
    deploy = api(c.daemon, "/v1/deploys", {"service": "site", "blueprint": bp, "commit": c.commits["1"]})
    did = deploy["deploy"]["id"]
    wait_for(lambda: api(c.daemon, f"/v1/deploys/{did}")["deploy"]["status"] not in ACTIVE, 60, "the site to deploy")
    site = status(c.daemon, "site")
    assert site["live_deploy"]["id"] == did, site
    caddy = site["instances"][0]["pid"]
    assert "caddy" in " ".join(psutil.Process(caddy).cmdline())
    with Load(c.daemon.http_port, "site.localhost", threads=2) as load:
        figure = outage(c, "site.localhost", load, lambda: os.kill(caddy, signal.SIGKILL))
    again = status(c.daemon, "site")["instances"][0]
    assert again["pid"] != caddy and again["process"] == "running" and again["restarts"] >= 1
    figure = {**figure, "down_s": round(float(figure["down_s"]), 2)}  # type: ignore[arg-type]
    c.record("kill -9 caddy", figure)


def test_postgres_killed_is_started_again(chaos: Chaos) -> None:
    c = chaos
    bp = str(c.repo_path / "render-db.yaml")  # a service using the database makes it (and the cluster)
    did = api(c.daemon, "/v1/deploys", {"service": "dbweb", "blueprint": bp, "commit": c.commits["1"]})["deploy"]["id"]
    wait_for(lambda: api(c.daemon, f"/v1/deploys/{did}")["deploy"]["status"] not in ACTIVE, 90, "dbweb to deploy")
    info = api(c.daemon, "/v1/databases/chaosdb/connection?reveal=true")
    extra = {"sslrootcert": info["ca_file"]} if info["ca_file"] else {}

    def query() -> bool:
        try:
            with psycopg.connect(info["url"], connect_timeout=2, **extra) as conn:
                return conn.execute("SELECT 1").fetchone() == (1,)
        except psycopg.Error:
            return False

    assert query()
    pidfile = c.daemon.home / "postgres" / "pgdata" / "postmaster.pid"
    postmaster = int(pidfile.read_text().split()[0])
    failed = tried = 0
    started = time.monotonic()
    os.kill(postmaster, signal.SIGKILL)
    while time.monotonic() - started < 30:  # a client retrying every 20 ms until the server is back
        tried += 1
        if query():
            break
        failed += 1
        time.sleep(0.02)
    down_s = round(time.monotonic() - started, 2)
    assert query(), "PostgreSQL was not started again within 30 s"
    assert int(pidfile.read_text().split()[0]) != postmaster
    c.record("kill -9 postgres", {"failed": failed, "requests": tried, "down_s": down_s})

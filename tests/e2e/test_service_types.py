"""Every service type against real processes: workers, cron jobs, several instances, live health
checks, disks, memory caps and env changes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import tempfile
import time
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import Daemon, Load, make_app_repo, start_daemon, stop_daemon
from tests.e2e.test_resilience import wait_until

pytestmark = pytest.mark.e2e


def blueprint(tmp: Path) -> str:
    return f"""\
services:
  - type: worker
    name: consumer
    runtime: python
    buildCommand: echo ok
    startCommand: python worker.py
    envVars: [{{key: JOURNAL, value: {tmp}/consumer.journal}}]
  - type: worker
    name: single
    runtime: python
    buildCommand: echo ok
    startCommand: python worker.py
    singleton: true
    envVars: [{{key: JOURNAL, value: {tmp}/single.journal}}]
  - type: cron
    name: rollup
    runtime: python
    schedule: "0 0 1 1 *"
    buildCommand: echo ok
    startCommand: python job.py
    envVars:
      - {{key: JOURNAL, value: {tmp}/rollup.journal}}
      - {{key: JOB_SECONDS, value: "4"}}
  - type: web
    name: pair
    runtime: python
    buildCommand: echo ok
    startCommand: python app.py
    healthCheckPath: /health
    numInstances: 2
    maxShutdownDelaySeconds: 5
    envManifest: {{RETRIES: {{type: int, default: "3"}}}}
  - type: web
    name: stash
    runtime: python
    buildCommand: echo ok
    startCommand: python app.py
    healthCheckPath: /health
    disk: {{name: data, mountPath: {tmp}/mnt/stash, sizeGB: 1}}
  - type: web
    name: site
    runtime: static
    buildCommand: 'mkdir -p dist/assets && echo "index $(cat VERSION)" > dist/index.html && echo "console.log(1)" > dist/assets/app.js'
    staticPublishPath: dist
    routes:
      - {{type: redirect, source: /old, destination: /new}}
      - {{type: rewrite, source: /*, destination: /index.html}}
    headers:
      - {{path: /assets/*, name: Cache-Control, value: max-age=60}}
  - type: pserv
    name: inner
    runtime: python
    buildCommand: echo ok
    startCommand: python app.py
    maxShutdownDelaySeconds: 5
  - type: web
    name: outer
    runtime: python
    buildCommand: echo ok
    startCommand: python app.py
    healthCheckPath: /health
    envVars:
      - {{key: INNER, fromService: {{type: pserv, name: inner, property: hostport}}}}
  - type: web
    name: hog
    runtime: python
    buildCommand: echo ok
    startCommand: python app.py
    healthCheckPath: /health
    memoryLimitMB: 60
"""


@pytest.fixture(scope="module")
def env():  # type: ignore[no-untyped-def]
    # as root, each app runs as its own user and writes its journal here: open like /tmp, and not
    # under pytest's tmp root, which any pytest start makes 0700 again
    tmp = Path(tempfile.mkdtemp(prefix="slipstream-types-"))
    os.chmod(tmp, 0o1777)
    repo = make_app_repo(tmp / "app", {"render.yaml": blueprint(tmp)})
    d = start_daemon(
        tmp / "home",
        SLIPSTREAM_HEALTH_DEADLINE="10",
        SLIPSTREAM_SETTLE_SECONDS="0.5",
        SLIPSTREAM_WORKER_GRACE="0.5",
        SLIPSTREAM_LIVE_CHECK_INTERVAL="0.3",
        SLIPSTREAM_UNROUTE_AFTER="1",
        SLIPSTREAM_RESTART_AFTER="3",
    )
    try:
        yield d, repo, tmp
    finally:
        stop_daemon(d)
        shutil.rmtree(tmp, ignore_errors=True)


def deploy(d: Daemon, repo, name: str, version: str = "2") -> str:  # type: ignore[no-untyped-def]
    r = d.cli("deploy", name, "--blueprint", str(repo.path / "render.yaml"), "--commit", repo.commits[version])
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


def journal(path: Path) -> list[tuple[str, str, float]]:
    return [(w, v, float(t)) for w, v, t in (line.split() for line in path.read_text().splitlines())]


def api(d: Daemon) -> httpx.Client:
    return httpx.Client(
        transport=httpx.HTTPTransport(uds=str(d.home / "run" / "api.sock")), base_url="http://slipstream"
    )


def service(d: Daemon, name: str) -> dict:
    return next(s for s in json.loads(d.cli("status", "--json").stdout)["services"] if s["name"] == name)


def test_worker_starts_new_before_stopping_old(env) -> None:  # type: ignore[no-untyped-def]
    d, repo, tmp = env
    deploy(d, repo, "consumer", "1")
    deploy(d, repo, "consumer", "2")
    wait_until(lambda: any(w == "stop" for w, _, _ in journal(tmp / "consumer.journal")))
    j = journal(tmp / "consumer.journal")
    start2 = next(t for w, v, t in j if w == "start" and v == "2")
    stop1 = next(t for w, v, t in j if w == "stop" and v == "1")
    assert start2 < stop1  # overlap: no gap in consumption
    assert [i["process"] for i in service(d, "consumer")["instances"]] == ["running"]


def test_singleton_worker_never_overlaps(env) -> None:  # type: ignore[no-untyped-def]
    d, repo, tmp = env
    deploy(d, repo, "single", "1")
    out = deploy(d, repo, "single", "2")
    assert "Stopping the old release first" in out
    j = journal(tmp / "single.journal")
    stop1 = next(t for w, v, t in j if w == "stop" and v == "1")
    start2 = next(t for w, v, t in j if w == "start" and v == "2")
    assert stop1 < start2


def test_cron_runs_never_overlap(env) -> None:  # type: ignore[no-untyped-def]
    d, repo, tmp = env
    deploy(d, repo, "rollup")
    assert "started" in d.cli("jobs", "run", "rollup").stdout
    assert "delayed" in d.cli("jobs", "run", "rollup").stdout  # one is running: the next waits
    assert "delayed" in d.cli("jobs", "run", "rollup").stdout  # at most one waits
    runs = wait_until(
        lambda: (
            (rs := api(d).get("/v1/services/rollup/runs").json()["runs"])
            and len(rs) == 2
            and all(r["finished_at"] for r in rs)
            and rs
        ),
        timeout=90,  # two 4 s runs one after the other; a bound for a broken run, not a speed check
    )
    assert [r["status"] for r in runs] == ["succeeded", "succeeded"]
    lines = (tmp / "rollup.journal").read_text().split()
    assert lines[0::2] == ["begin", "end", "begin", "end"]
    times = [float(t) for t in lines[1::2]]
    assert times == sorted(times)  # begin1 < end1 <= begin2 < end2: never overlapping
    assert "succeeded" in d.cli("jobs", "rollup").stdout


def test_two_instances_zero_failures_through_deploys_rollback_and_a_crash(env) -> None:  # type: ignore[no-untyped-def]
    d, repo, tmp = env
    deploy(d, repo, "pair", "1")
    with Load(d.http_port, "pair.localhost", threads=2) as load:
        deploy(d, repo, "pair", "2")
        assert d.cli("rollback", "pair").returncode == 0
        deploy(d, repo, "pair", "2")
        victim = service(d, "pair")["instances"][0]
        os.kill(victim["pid"], signal.SIGKILL)
        wait_until(
            lambda: all(
                i["process"] == "running" and i["pid"] != victim["pid"] or i["id"] != victim["id"]
                for i in service(d, "pair")["instances"]
            )
        )
        time.sleep(1)
    assert load.failures == [], load.failures[:5]
    assert load.ok > 100
    seen = {d.get("pair.localhost", "/env/RENDER_INSTANCE_ID")[1] for _ in range(20)}
    assert len(seen) == 2


def test_unhealthy_live_instance_leaves_rotation_and_is_restarted(env) -> None:  # type: ignore[no-untyped-def]
    d, repo, tmp = env
    deploy(d, repo, "pair", "2")
    before = {i["id"]: i["pid"] for i in service(d, "pair")["instances"]}
    assert d.get("pair.localhost", "/sick")[0] == 200
    events = lambda: " ".join(e["message"] for e in api(d).get("/v1/services/pair/events").json()["events"])  # noqa: E731
    wait_until(lambda: "taken out of rotation" in events(), timeout=10)
    wait_until(lambda: "restarting it" in events(), timeout=15)
    after = wait_until(lambda: (s := {i["id"]: i["pid"] for i in service(d, "pair")["instances"]}) != before and s)
    assert set(after) == set(before) and sum(after[k] != before[k] for k in after) == 1
    wait_until(lambda: "back in rotation" in events(), timeout=15)


def test_disk_survives_deploy_and_rollback(env) -> None:  # type: ignore[no-untyped-def]
    d, repo, tmp = env
    deploy(d, repo, "stash", "1")
    assert d.get("stash.localhost", "/disk/write/first")[1] == "written"
    out = deploy(d, repo, "stash", "2")
    assert "persistent disk" in out
    assert d.get("stash.localhost", "/disk/write/second")[1] == "written"
    assert d.cli("rollback", "stash").returncode == 0
    assert d.get("stash.localhost")[1] == "version=1"
    assert d.get("stash.localhost", "/disk/read")[1] == "first\nsecond\n"
    assert (tmp / "mnt" / "stash").is_symlink()


def test_memory_cap_restarts_the_instance_and_says_why(env) -> None:  # type: ignore[no-untyped-def]
    d, repo, tmp = env
    deploy(d, repo, "hog")
    pid = service(d, "hog")["instances"][0]["pid"]
    try:
        d.get("hog.localhost", "/hog/120")
    except OSError:
        pass
    inst = wait_until(lambda: (i := service(d, "hog")["instances"][0])["pid"] != pid and i["restarts"] >= 1 and i)
    events = " ".join(e["message"] for e in api(d).get("/v1/services/hog/events").json()["events"])
    # the kernel's cgroup cap stops it at once where the machine allows cgroups, else the RSS watchdog
    assert "exceeded memory limit (reached the 60 MB cap; killed by the kernel)" in events or (
        "exceeded memory limit (" in events and "> 60 MB)" in events
    ), events
    assert inst["process"] in ("running", "backoff")


def test_env_set_rolls_out_from_the_same_build(env) -> None:  # type: ignore[no-untyped-def]
    d, repo, tmp = env
    deploy(d, repo, "pair", "2")
    build_before = json.loads(d.cli("deploys", "pair", "--json").stdout)[0]["build_id"]
    r = d.cli("env", "set", "pair", "FEATURE_FLAG=on-42", "API_TOKEN=tok-envset-secret-99")
    assert r.returncode == 0, r.stdout + r.stderr
    assert d.get("pair.localhost", "/env/FEATURE_FLAG")[1] == "on-42"
    latest = json.loads(d.cli("deploys", "pair", "--json").stdout)[0]
    assert latest["kind"] == "config" and latest["build_id"] == build_before and latest["status"] == "live"
    listing = d.cli("env", "list", "pair").stdout
    assert "FEATURE_FLAG" in listing and "on-42" not in listing and "tok-envset-secret-99" not in listing
    assert d.cli("env", "unset", "pair", "FEATURE_FLAG").returncode == 0
    assert d.get("pair.localhost", "/env/FEATURE_FLAG")[1] == "<unset>"
    # a value the envManifest refuses: one clear error, nothing saved, no new release
    assert d.get("pair.localhost", "/env/RETRIES")[1] == "3"  # the manifest's default
    deploys_before = len(json.loads(d.cli("deploys", "pair", "--json", "-n", "100").stdout))
    r = d.cli("env", "set", "pair", "RETRIES=many")
    assert r.returncode == 1 and "RETRIES: '********' is not a whole number" in r.stderr, r.stdout + r.stderr
    assert "Traceback" not in r.stderr
    assert len(json.loads(d.cli("deploys", "pair", "--json", "-n", "100").stdout)) == deploys_before
    assert "env set" not in [line for line in d.cli("env", "list", "pair").stdout.splitlines() if "RETRIES" in line][0]
    assert d.cli("env", "set", "pair", "RETRIES=5").returncode == 0
    assert d.get("pair.localhost", "/env/RETRIES")[1] == "5"
    for f in d.home.glob("state.db*"):
        assert b"tok-envset-secret-99" not in f.read_bytes()


def fetch(d: Daemon, host: str, path: str) -> tuple[int, dict[str, str], str]:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", d.http_port, timeout=10)
    try:
        conn.request("GET", path, headers={"Host": host})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read().decode()
    finally:
        conn.close()


def test_static_site_spa_headers_redirects_and_zero_downtime(env) -> None:  # type: ignore[no-untyped-def]
    d, repo, tmp = env
    deploy(d, repo, "site", "1")
    assert fetch(d, "site.localhost", "/")[2].strip() == "index 1"
    assert fetch(d, "site.localhost", "/app/settings/42")[2].strip() == "index 1"  # deep link
    status, headers, body = fetch(d, "site.localhost", "/assets/app.js")
    assert status == 200 and "console.log" in body and headers.get("cache-control") == "max-age=60"
    assert "cache-control" not in fetch(d, "site.localhost", "/")[1]
    status, headers, _ = fetch(d, "site.localhost", "/old")
    assert status == 301 and headers["location"].endswith("/new")
    with Load(d.http_port, "site.localhost", threads=2) as load:
        deploy(d, repo, "site", "2")
        assert fetch(d, "site.localhost", "/")[2].strip() == "index 2"
        assert d.cli("rollback", "site").returncode == 0
    assert fetch(d, "site.localhost", "/")[2].strip() == "index 1"
    assert load.failures == [] and load.ok > 50


def test_private_service_keeps_its_loopback_address_across_deploys(env) -> None:  # type: ignore[no-untyped-def]
    import http.client

    d, repo, tmp = env
    deploy(d, repo, "inner", "1")
    url = service(d, "inner")["url"]
    assert url.startswith("tcp://127.0.0.1:") and url.endswith("(private)")
    port = int(url.split(":")[2].split()[0])

    def get(path: str = "/") -> str:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            conn.request("GET", path)
            return conn.getresponse().read().decode()
        finally:
            conn.close()

    assert get() == "version=1"
    deploy(d, repo, "outer", "1")
    assert d.get("outer.localhost", "/env/INNER")[1] == f"127.0.0.1:{port}"  # fromService hostport
    # TCP: a connection stays on the instance it reached; one that outlives the old release is
    # closed when that release stops, so this client opens a connection per request
    with Load(port, "inner", threads=2, new_connection_each=True) as load:
        deploy(d, repo, "inner", "2")
        assert d.cli("rollback", "inner").returncode == 0
        deploy(d, repo, "inner", "2")
    assert load.failures == [] and load.ok > 50
    assert service(d, "inner")["url"] == url  # the same stable address
    assert get() == "version=2"
    assert d.get("inner.localhost")[0] == 503  # not on the public HTTP listener

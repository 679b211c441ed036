"""Several apps on one slipstream: projects never touch each other, a name clash changes nothing,
apply deletes nothing, deletes are explicit (real daemon, HAProxy, PostgreSQL and apps)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e.conftest import APP_DIR, Daemon, Load, git

pytestmark = pytest.mark.e2e


def service(name: str, extra: str = "") -> str:
    return (
        f"  - type: web\n    name: {name}\n    runtime: python\n    buildCommand: echo ok\n"
        f"    startCommand: python app.py\n    healthCheckPath: /health\n    maxShutdownDelaySeconds: 3\n{extra}"
    )


def repo_with(root: Path, blueprint: str) -> Path:
    root.mkdir(parents=True)
    (root / "app.py").write_text((APP_DIR / "app.py").read_text())
    (root / "VERSION").write_text(f"{root.name}\n")
    (root / "render.yaml").write_text(blueprint)
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "v1")
    return root


def status(d: Daemon) -> dict[str, dict]:
    return {s["name"]: s for s in json.loads(d.cli("status", "--json").stdout)["services"]}


def test_two_projects_coexist_and_never_touch_each_other(open_daemon: Daemon, open_root: Path) -> None:
    d = open_daemon
    db = "databases:\n  - name: shop-db\n"
    dburl = "    envVars:\n      - {key: DATABASE_URL, fromDatabase: {name: shop-db, property: connectionString}}\n"
    shop = repo_with(open_root / "shop", db + "services:\n" + service("shop-web", dburl) + service("shop-admin"))
    blog = repo_with(open_root / "blog", "services:\n" + service("blog-web"))
    for repo in (shop, blog):
        r = d.cli("apply", str(repo / "render.yaml"), timeout=300)
        assert r.returncode == 0, r.stdout + r.stderr
    s = status(d)
    assert {n: v["project"] for n, v in s.items()} == {"shop-web": "shop", "shop-admin": "shop", "blog-web": "blog"}
    projects = {p["name"]: p for p in json.loads(d.cli("projects", "--json").stdout)}
    assert set(projects) == {"shop", "blog"}
    assert {"kind": "database", "name": "shop-db"} in projects["shop"]["resources"]

    # plan of the blog never mentions the shop's resources
    r = d.cli("plan", str(blog / "render.yaml"))
    assert r.returncode == 0 and "shop" not in r.stdout, r.stdout

    # the blog declares a name the shop owns: one line naming the owner, nothing changes
    (blog / "clash.yaml").write_text("services:\n" + service("blog-web") + service("shop-admin"))
    before = {n: v["live_deploy"]["id"] for n, v in status(d).items()}
    r = d.cli("apply", str(blog / "clash.yaml"))
    assert r.returncode == 1 and "service 'shop-admin' belongs to project 'shop'" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
    r = d.cli("plan", str(blog / "clash.yaml"))
    assert r.returncode == 1 and "belongs to project 'shop'" in r.stdout
    assert {n: v["live_deploy"]["id"] for n, v in status(d).items()} == before

    # a service leaves the shop's blueprint: apply keeps it; plan says so and how to delete it
    (shop / "render.yaml").write_text(db + "services:\n" + service("shop-web", dburl))
    r = d.cli("plan", str(shop / "render.yaml"))
    assert "1 no longer in the blueprint (kept)" in r.stdout and "slipstream delete shop-admin" in r.stdout
    with Load(d.http_port, "blog-web.localhost") as load:
        r = d.cli("apply", str(shop / "render.yaml"), timeout=300)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "shop-admin" in status(d)
        # deleting one shop service disturbs nothing else: the blog keeps serving throughout
        r = d.cli("delete", "shop-admin", "--yes")
        assert r.returncode == 0 and "deleted service shop-admin" in r.stdout, r.stderr
        assert "shop-admin" not in status(d)
        assert d.get("shop-admin.localhost")[0] == 503
        assert d.get("shop-web.localhost") == (200, "version=shop")
    assert load.failures == [] and load.ok > 20 and set(load.versions) == {"version=blog"}

    # deleting the shop project backs its database up first, and leaves the blog alone
    r = d.cli("project", "delete", "shop", "--yes", timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "deleted database shop-db (final backup shop-db-" in r.stdout
    assert set(status(d)) == {"blog-web"}
    assert d.get("blog-web.localhost") == (200, "version=blog")
    assert json.loads(d.cli("db", "list", "--json").stdout) == []

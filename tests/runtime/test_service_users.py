"""Service users: their names, the Python their virtualenvs come from, and (as root) a real user
with its area, a build tree handed over and a command run as it."""

from __future__ import annotations

import os
import pwd
import stat
import subprocess
from pathlib import Path

import pytest

from slipstream.errors import Conflict
from slipstream.osusers import (
    ServiceUser,
    ServiceUsers,
    hand_over,
    plan_service_user,
    reachable_python,
    user_environment,
)
from slipstream.runtime.oneoff import run_command


@pytest.mark.parametrize(
    ("service", "user"),
    [
        ("web", "slip-web"),
        ("api-2", "slip-api-2"),
        ("a" * 27, "slip-" + "a" * 27),  # exactly 32 characters
        ("a" * 28, "slip-" + "a" * 18 + "-"),  # too long: prefix plus hash (checked below)
        ("Web.App", "slip-web-app-"),  # not a valid user name: cleaned plus hash
        ("9lives", "slip-9lives-"),  # a user name may not start with a digit
    ],
)
def test_plan_service_user(service: str, user: str) -> None:
    name = plan_service_user(service)
    assert name.startswith(user) and len(name) <= 32
    if name != user:  # the hashed form: eight hex digits of the service name at the end
        assert len(name) == len(user) + 8 and int(name[-8:], 16) >= 0
    assert plan_service_user(service) == name


def test_names_that_clean_up_alike_get_different_users() -> None:
    assert plan_service_user("Web.App") != plan_service_user("web-app") != plan_service_user("WEB_APP")


def test_reachable_python_falls_back_when_others_cannot_reach_it(open_tmp: Path) -> None:
    tmp_path = open_tmp
    closed = tmp_path / "closed"
    (closed / "bin").mkdir(parents=True)
    python = closed / "bin" / "python3"
    python.write_text("")
    fallback = tmp_path / "fallback-python"
    fallback.write_text("")
    os.chmod(tmp_path, 0o711)
    os.chmod(closed, 0o755)
    assert reachable_python(str(python), str(fallback)) == str(python)
    os.chmod(closed, 0o700)
    assert reachable_python(str(python), str(fallback)) == str(fallback)
    assert reachable_python(str(python), str(tmp_path / "missing")) == str(python)  # nothing better


def test_user_environment() -> None:
    user = ServiceUser("slip-web", 990, 990, Path("/state/cache/web/home"))
    assert user_environment(user) == {"HOME": "/state/cache/web/home", "USER": "slip-web", "LOGNAME": "slip-web"}


@pytest.mark.skipif(os.geteuid() != 0, reason="creating users needs root")
def test_a_service_user_and_its_area(open_tmp: Path) -> None:
    tmp_path = open_tmp
    os.chmod(tmp_path, 0o711)
    home = tmp_path / "home"
    home.mkdir(mode=0o711)
    users = ServiceUsers(home / "builds", home / "cache", home / "disks")
    user = users.prepare("unit-probe")
    entry = pwd.getpwnam("slip-unit-probe")
    assert (user.uid, user.gid, entry.pw_shell, entry.pw_dir) == (
        entry.pw_uid,
        entry.pw_gid,
        "/usr/sbin/nologin",
        "/nonexistent",
    )
    assert users.prepare("unit-probe") is user  # once per service
    for top in ("builds", "cache", "disks"):
        area = (home / top / "unit-probe").stat()
        assert (area.st_uid, area.st_gid, stat.S_IMODE(area.st_mode)) == (0, user.gid, 0o710)
    assert user.home.stat().st_uid == user.uid and stat.S_IMODE(user.home.stat().st_mode) == 0o700
    for tool in ("pip", "uv", "npm"):  # the installers' caches (a build's pip may be uv's shim)
        assert (home / "cache" / "unit-probe" / tool).stat().st_uid == user.uid, tool
    disk = users.disk_dir("unit-probe", "data")
    assert disk.stat().st_uid == user.uid

    tree = home / "builds" / "unit-probe" / "1" / "src"
    (tree / "sub").mkdir(parents=True)
    (tree / "sub" / "f").write_text("x")
    (tree / "link").symlink_to("/etc/passwd")
    hand_over(tree, user)
    assert {p.lstat().st_uid for p in [tree, *tree.rglob("*")]} == {user.uid}
    assert Path("/etc/passwd").stat().st_uid == 0  # a link is handed over, never what it points at

    log = tmp_path / "out.log"
    code = run_command(
        "id -un; cat $SECRET_FILE", tree, {"PATH": "/usr/bin:/bin", "SECRET_FILE": str(home)}, log, user=user.name
    )
    assert code != 0 and log.read_text().splitlines()[0] == "slip-unit-probe"  # cat of a 0711 dir fails

    subprocess.run(["usermod", "--comment", "not slipstream's", "slip-unit-probe"], check=True)
    try:
        with pytest.raises(Conflict, match="is not slipstream's user for service unit-probe"):
            ServiceUsers(home / "builds", home / "cache", home / "disks").prepare("unit-probe")
    finally:
        subprocess.run(["userdel", "slip-unit-probe"], check=False)

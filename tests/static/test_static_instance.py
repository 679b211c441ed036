"""The effectful edges: finding Caddy, the start command, writing the config, the publish dir."""

from __future__ import annotations

import json
import os
import shlex
import sys
from pathlib import Path

import pytest

from slipstream.errors import InvalidInput, Unavailable
from slipstream.static import caddy_binary, caddy_command, resolve_publish_dir, write_caddy_config


def test_caddy_binary_is_the_one_beside_python() -> None:
    binary = caddy_binary()
    assert binary == Path(sys.executable).parent / "caddy"
    assert os.access(binary, os.X_OK)


def test_caddy_binary_missing_raises_unavailable_with_hint(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(Unavailable) as err:
        caddy_binary()
    assert "caddy is not installed" in err.value.message and "make install" in str(err.value.hint)


def test_caddy_command_execs_caddy_with_its_own_data_dir(tmp_path: Path) -> None:
    config = tmp_path / "my release" / "caddy.json"
    argv = shlex.split(caddy_command(config))
    data = str(config.parent / "caddy-data")
    assert argv == [
        f"XDG_DATA_HOME={data}",
        f"XDG_CONFIG_HOME={data}",
        "exec",
        str(caddy_binary()),
        "run",
        "--config",
        str(config),
    ]
    other = shlex.split(caddy_command(config, data_dir=tmp_path / "d"))
    assert other[0] == f"XDG_DATA_HOME={tmp_path / 'd'}"


def test_write_caddy_config_round_trips_and_leaves_no_temp_file(tmp_path: Path) -> None:
    path = tmp_path / "rel" / "caddy.json"
    write_caddy_config(path, {"admin": {"disabled": True}})
    write_caddy_config(path, {"admin": {"disabled": False}})
    assert json.loads(path.read_text()) == {"admin": {"disabled": False}}
    assert [p.name for p in path.parent.iterdir()] == ["caddy.json"]


@pytest.fixture
def build(tmp_path: Path) -> Path:
    root = tmp_path / "build"
    (root / "dist" / "assets").mkdir(parents=True)
    (root / "dist" / "index.html").write_text("hi")
    (root / "shared.css").write_text("x")
    return root


@pytest.mark.parametrize("publish", ["dist", "./dist", "dist/", "./dist/assets/.."])
def test_resolve_publish_dir(build: Path, publish: str) -> None:
    assert resolve_publish_dir(build, publish) == (build / "dist").resolve()


def test_links_inside_the_build_are_allowed(build: Path) -> None:
    (build / "dist" / "shared.css").symlink_to(build / "shared.css")
    assert resolve_publish_dir(build, "dist") == (build / "dist").resolve()


@pytest.mark.parametrize(
    ("publish", "message"),
    [
        ("", "must be a path relative to the build directory"),
        ("/etc", "must be a path relative to the build directory"),
        ("../", "leads outside the build directory"),
        ("dist/../..", "leads outside the build directory"),
        ("build", "is not a directory in the build"),
        ("dist/index.html", "is not a directory in the build"),
    ],
)
def test_bad_publish_path_is_rejected(build: Path, publish: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        resolve_publish_dir(build, publish)


def test_publish_dir_linking_outside_is_rejected(build: Path, tmp_path: Path) -> None:
    (tmp_path / "secret.txt").write_text("s")
    (build / "dist" / "assets" / "leak.txt").symlink_to(tmp_path / "secret.txt")
    with pytest.raises(InvalidInput, match="dist/assets/leak.txt links outside the build"):
        resolve_publish_dir(build, "dist")


def test_publish_dir_itself_a_link_outside_is_rejected(build: Path, tmp_path: Path) -> None:
    (tmp_path / "elsewhere").mkdir()
    (build / "out").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(InvalidInput, match="leads outside the build directory"):
        resolve_publish_dir(build, "out")

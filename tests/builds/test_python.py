"""Python builds: a cached virtualenv first on PATH, reused while dependencies are unchanged.

requirements.txt holds only comments, so pip needs no network.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from slipstream.builds import Builder, BuildFailed, BuildSpec
from slipstream.builds.toolchain import build_venv_key, python_dependency_files, render_build_env

from .conftest import Repo

PIP = "pip install -r requirements.txt && echo pip-ran >> $VIRTUAL_ENV/pip-runs && command -v python && command -v pip"


def test_build_venv_key_changes_with_every_input(tmp_path: Path) -> None:
    base = build_venv_key("3.11.7", {"requirements.txt": b"flask==3.0\n"}, PIP)
    assert base == build_venv_key("3.11.7", {"requirements.txt": b"flask==3.0\n"}, PIP)
    assert (
        len(
            {
                base,
                build_venv_key("3.12.1", {"requirements.txt": b"flask==3.0\n"}, PIP),
                build_venv_key("3.11.7", {"requirements.txt": b"flask==3.1\n"}, PIP),
                build_venv_key("3.11.7", {"requirements-dev.txt": b"flask==3.0\n"}, PIP),
                build_venv_key("3.11.7", {"requirements.txt": b"flask==3.0\n"}, PIP + " -q"),
                build_venv_key("3.11.7", {}, PIP),
            }
        )
        == 6
    )
    # no ambiguity from concatenation
    assert build_venv_key("3", {"ab": b"c"}, None) != build_venv_key("3", {"a": b"bc"}, None)


def test_dependency_files_are_found_by_name(tmp_path: Path) -> None:
    for name in ("requirements.txt", "requirements-prod.txt", "pyproject.toml", "app.py", "setup.cfg"):
        (tmp_path / name).write_text(name)
    assert list(python_dependency_files(tmp_path)) == [
        "pyproject.toml",
        "requirements-prod.txt",
        "requirements.txt",
        "setup.cfg",
    ]


def test_render_build_env_puts_the_prefix_first() -> None:
    env = render_build_env({"PATH": "/usr/bin", "A": "1"}, ("/v/bin",), {"VIRTUAL_ENV": "/v"})
    assert env == {"PATH": "/v/bin:/usr/bin", "A": "1", "VIRTUAL_ENV": "/v"}
    assert render_build_env({}, (), {})["PATH"] == "/usr/local/bin:/usr/bin:/bin"


def test_virtualenv_is_created_reused_and_replaced_when_dependencies_change(
    builder: Builder, repo: Repo, make_spec: Callable[..., BuildSpec]
) -> None:
    repo.commit({"requirements.txt": "# nothing to install\n", "app.py": "v1"})
    out1: list[str] = []
    b1 = builder.build(make_spec(runtime="python", build_command=PIP), on_output=out1.append)
    venv = Path(b1.extra_env["VIRTUAL_ENV"])
    assert venv.parent == builder.cache_dir / "api" / "venvs"
    assert b1.path_prefix == (str(venv / "bin"),)
    assert str(venv / "bin" / "python") in out1 and str(venv / "bin" / "pip") in out1  # venv first on PATH
    assert any(line.startswith("==> Creating virtualenv") for line in out1)
    (venv / "sentinel").write_text("still the same venv")

    repo.commit({"app.py": "v2"})  # code change, same dependencies
    out2: list[str] = []
    b2 = builder.build(make_spec(runtime="python", build_command=PIP), on_output=out2.append)
    assert b2.extra_env == b1.extra_env and (venv / "sentinel").exists()
    assert not any(line.startswith("==> Creating virtualenv") for line in out2)
    assert any(line.startswith("==> Reusing virtualenv") for line in out2)
    assert (b2.workdir / "app.py").read_text() == "v2"

    repo.commit({"requirements.txt": "# nothing to install\n# but different\n"})
    b3 = builder.build(make_spec(runtime="python", build_command=PIP))
    venv3 = Path(b3.extra_env["VIRTUAL_ENV"])
    assert venv3 != venv and (venv3 / "bin" / "python").exists() and not (venv3 / "sentinel").exists()
    assert (venv / "sentinel").exists()  # old builds keep theirs (rollback)
    assert (venv3 / "pip-runs").read_text() == "pip-ran\n"

    builder.remove(b1)
    assert venv.exists()  # b2 still uses it
    builder.remove(b2)
    assert not venv.exists() and venv3.exists()


def test_a_failed_first_build_does_not_leave_a_reusable_virtualenv(
    builder: Builder, repo: Repo, make_spec: Callable[..., BuildSpec]
) -> None:
    repo.commit({"requirements.txt": "# none\n"})
    with pytest.raises(BuildFailed, match="exited with 1"):
        builder.build(make_spec(runtime="python", build_command="pip --version && false"))
    assert list((builder.cache_dir / "api" / "venvs").iterdir()) == []


def test_builder_uses_the_given_interpreter(tmp_path: Path) -> None:
    assert Builder(tmp_path, tmp_path).python == sys.executable

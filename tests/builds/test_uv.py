"""Python builds with uv: a Render-style ``pip install -r requirements.txt`` runs ``uv pip install``.

The requirement is a wheel the test writes beside requirements.txt (``--no-index --find-links``),
so neither uv nor pip needs the network. The uv binary is the one ``make install`` puts beside
the interpreter (pyproject's ``uv`` dependency), else one on PATH.
"""

from __future__ import annotations

import base64
import hashlib
import io
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from slipstream.builds import Builder, BuildFailed, BuildSpec
from slipstream.builds.toolchain import find_uv

from .conftest import Repo

pytestmark = pytest.mark.real

REQUIREMENTS = "--no-index\n--find-links ./wheels\ntinydep==1.0\n"


def wheel_bytes(name: str, version: str, module: str) -> bytes:
    """A minimal pure-Python wheel holding ``<name>/__init__.py`` with ``module`` as its text."""
    files = {
        f"{name}/__init__.py": module.encode(),
        f"{name}-{version}.dist-info/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode(),
        f"{name}-{version}.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = ""
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record += f"{path},sha256={digest},{len(data)}\n"
    record += f"{name}-{version}.dist-info/RECORD,,\n"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for path, data in files.items():
            z.writestr(path, data)
        z.writestr(f"{name}-{version}.dist-info/RECORD", record)
    return buf.getvalue()


@pytest.fixture
def uv() -> str:
    found = find_uv(sys.executable)
    assert found is not None, "no uv binary beside the interpreter or on PATH: run 'make install'"
    return found


def commit_app(repo: Repo) -> None:
    wheels = repo.path / "wheels"
    wheels.mkdir()
    (wheels / "tinydep-1.0-py3-none-any.whl").write_bytes(wheel_bytes("tinydep", "1.0", "VALUE = 'tiny'\n"))
    repo.commit({"requirements.txt": REQUIREMENTS, "app.py": "import tinydep\nprint(tinydep.VALUE)\n"})


def test_pip_install_of_requirements_runs_uv_and_the_app_imports_the_dependency(
    tmp_path: Path, repo: Repo, make_spec: Callable[..., BuildSpec], uv: str
) -> None:
    commit_app(repo)
    builder = Builder(tmp_path / "builds", tmp_path / "cache", uv=uv)
    out: list[str] = []
    build = builder.build(
        make_spec(runtime="python", build_command="pip install -r requirements.txt"), on_output=out.append
    )
    venv = Path(build.extra_env["VIRTUAL_ENV"])
    assert any("Installed 1 package" in line for line in out), out  # uv's words, not pip's
    assert not any("Successfully installed" in line for line in out)
    assert (tmp_path / "cache" / "api" / "uv").is_dir()  # the service's own uv cache
    ran = subprocess.run([str(venv / "bin" / "python"), "app.py"], cwd=build.workdir, capture_output=True, text=True)
    assert ran.stdout == "tiny\n", ran.stderr
    # Other pip commands are pip itself, which the virtualenv keeps.
    show = subprocess.run([str(venv / "bin" / "pip"), "--version"], capture_output=True, text=True)
    assert show.returncode == 0 and show.stdout.startswith("pip "), show.stderr


def test_an_install_option_uv_refuses_falls_back_to_pip(
    tmp_path: Path, repo: Repo, make_spec: Callable[..., BuildSpec], uv: str
) -> None:
    commit_app(repo)
    builder = Builder(tmp_path / "builds", tmp_path / "cache", uv=uv)
    out: list[str] = []
    command = "pip install --progress-bar off -r requirements.txt"  # pip knows --progress-bar; uv does not
    build = builder.build(make_spec(runtime="python", build_command=command), on_output=out.append)
    assert any("uv does not take these arguments; running pip itself" in line for line in out)
    assert any("Successfully installed tinydep-1.0" in line for line in out), out
    venv = Path(build.extra_env["VIRTUAL_ENV"])
    ran = subprocess.run([str(venv / "bin" / "python"), "-c", "import tinydep"], capture_output=True, text=True)
    assert ran.returncode == 0, ran.stderr


def test_without_uv_pip_is_pip(tmp_path: Path, repo: Repo, make_spec: Callable[..., BuildSpec]) -> None:
    commit_app(repo)
    builder = Builder(tmp_path / "builds", tmp_path / "cache")
    out: list[str] = []
    builder.build(make_spec(runtime="python", build_command="pip install -r requirements.txt"), on_output=out.append)
    assert any("Successfully installed tinydep-1.0" in line for line in out), out
    assert not (tmp_path / "cache" / "api" / "uv").exists()


def test_a_failed_install_fails_the_build_once_without_pip(
    tmp_path: Path, repo: Repo, make_spec: Callable[..., BuildSpec], uv: str
) -> None:
    commit_app(repo)
    repo.commit({"requirements.txt": REQUIREMENTS + "not-there==1.0\n"})
    builder = Builder(tmp_path / "builds", tmp_path / "cache", uv=uv)
    out: list[str] = []
    with pytest.raises(BuildFailed, match="exited with"):
        builder.build(
            make_spec(runtime="python", build_command="pip install -r requirements.txt"), on_output=out.append
        )
    assert any("not-there" in line for line in out), out  # uv's own words on what is missing
    assert not any("running pip itself" in line for line in out)


def test_service_users_build_with_pip_when_they_cannot_run_uv(open_tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from slipstream import daemon
    from slipstream.settings import Settings

    hidden = open_tmp / "home"  # like a checkout under root's 0700 home
    (hidden / "bin").mkdir(parents=True)
    uv = hidden / "bin" / "uv"
    uv.write_text("#!/bin/sh\n")
    uv.chmod(0o755)
    hidden.chmod(0o700)
    monkeypatch.setattr(daemon, "find_uv", lambda python: str(uv))
    settings = Settings(home=open_tmp / "state")
    assert daemon.python_installer(settings, service_users=False) == str(uv)
    assert daemon.python_installer(settings, service_users=True) is None
    hidden.chmod(0o755)
    assert daemon.python_installer(settings, service_users=True) == str(uv)

"""Per-runtime build environments: a cached virtualenv for Python, npm's cache for Node.

Python: the virtualenv is first on PATH while ``buildCommand`` runs, so ``pip install`` never
touches the system. It lives in ``cache_dir/<service>/venvs/<key>``, the key hashing the Python
version, the dependency files and the build command: an unchanged rebuild finds it ready (pip has
nothing left to install), changed dependencies get a fresh one, and the builds that used the old
one keep it for rollbacks. A virtualenv counts as ready only after a build command succeeded in it.

The virtualenv's ``pip`` is pip itself, or, when uv is the installer (the default where its binary
is found), a shim: ``pip install ...`` runs ``uv pip install ...`` against the virtualenv (4-6x
faster here, docs/benchmarks.md), and every other pip command, or an install whose arguments uv
refuses (e.g. ``--progress-bar``), runs the real pip, which the virtualenv keeps. So a
``buildCommand`` written for Render (``pip install -r requirements.txt``) works unchanged;
``python -m pip`` always means pip.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from slipstream.runner import run

DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"
PYTHON_DEPENDENCY_FILES = (
    "pyproject.toml",
    "setup.cfg",
    "setup.py",
    "Pipfile",
    "Pipfile.lock",
    "poetry.lock",
    "uv.lock",
)
READY_MARKER = ".slipstream-ready"


@dataclass(frozen=True)
class Toolchain:
    """What the runtime adds to a build: its environment, and what instances need later."""

    env: Mapping[str, str]
    path_prefix: tuple[str, ...] = ()
    extra_env: Mapping[str, str] = field(default_factory=dict)
    venv: Path | None = None
    venv_created: bool = False


def python_dependency_files(workdir: Path) -> dict[str, bytes]:
    """The files whose content decides a Python app's dependencies, by name."""
    names = {p.name for p in workdir.glob("requirements*.txt")} | set(PYTHON_DEPENDENCY_FILES)
    return {n: (workdir / n).read_bytes() for n in sorted(names) if (workdir / n).is_file()}


def build_venv_key(python_version: str, files: Mapping[str, bytes], build_command: str | None) -> str:
    """A short stable hash naming the virtualenv for these inputs."""
    h = hashlib.sha256()
    for part in (
        python_version.encode(),
        (build_command or "").encode(),
        *(x for name in sorted(files) for x in (name.encode(), files[name])),
    ):
        h.update(len(part).to_bytes(8, "big") + part)
    return h.hexdigest()[:16]


def render_build_env(base: Mapping[str, str], path_prefix: tuple[str, ...], extra: Mapping[str, str]) -> dict[str, str]:
    """``base`` with ``path_prefix`` first on PATH and ``extra`` on top."""
    env = {**base, **extra}
    env["PATH"] = ":".join((*path_prefix, base.get("PATH") or DEFAULT_PATH))
    return env


def python_version(python: str) -> str:
    """The full version string of the interpreter virtualenvs are made from."""
    return run([python, "-c", "import sys; print(sys.version)"], timeout=60).stdout.strip()


def find_uv(python: str) -> str | None:
    """The uv binary beside ``python`` (``make install`` puts it in the same virtualenv), else on PATH."""
    beside = Path(python).parent / "uv"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which("uv")


def prepare_python(
    workdir: Path,
    cache: Path,
    python: str,
    version: str,
    build_command: str | None,
    env: Mapping[str, str],
    say: Callable[[str], None],
    uv: str | None = None,
) -> Toolchain:
    """Find or create the service's virtualenv for this build's dependencies; with ``uv`` (its
    binary), the virtualenv's ``pip install`` runs uv."""
    key = build_venv_key(version, python_dependency_files(workdir), build_command)
    if uv is not None:
        key = "uv-" + key  # a shim, not pip's launcher: never mix one key's two kinds
    venv = cache / "venvs" / key
    created = False
    if (venv / READY_MARKER).exists():
        say(f"==> Reusing virtualenv {key} (dependencies unchanged)")
    else:
        if venv.exists():
            shutil.rmtree(venv)  # left by a failed or interrupted build
        say(f"==> Creating virtualenv {key} with Python {version.split()[0]}")
        venv.parent.mkdir(parents=True, exist_ok=True)
        create_venv(python, venv)
        if uv is not None:
            install_uv_shim(venv, uv)
        created = True
    prefix = (str(venv / "bin"),)
    extra = {"VIRTUAL_ENV": str(venv)}
    build_extra = {"PIP_CACHE_DIR": str(cache / "pip"), "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    if uv is not None:
        build_extra["UV_CACHE_DIR"] = str(cache / "uv")
    base = {k: v for k, v in {**build_extra, **env}.items() if k != "PYTHONHOME"}
    return Toolchain(render_build_env(base, prefix, extra), prefix, extra, venv, created)


PIP_LAUNCHER = """#!{python}
import sys
from pip._internal.cli.main import main
sys.exit(main())
"""


def _pip_seed(python: str) -> list[Path]:
    """The interpreter's own pip package and its metadata directory (empty when it has none)."""
    probe = (
        "import pathlib, pip; p = pathlib.Path(pip.__file__).parent; print(p); "
        "print(*p.parent.glob('pip-*.dist-info'), sep='\\n')"
    )
    r = run([python, "-c", probe], check=False, timeout=60)
    return [Path(line) for line in r.stdout.splitlines() if line] if r.returncode == 0 else []


def create_venv(python: str, venv: Path) -> None:
    """A virtualenv with pip, seeded by copying the interpreter's pip (0.3 s) instead of ensurepip (7 s)."""
    run([python, "-m", "venv", "--without-pip", str(venv)], timeout=600)
    seed = _pip_seed(python)
    site = next(iter(sorted(venv.glob("lib/python*/site-packages"))), None)
    if len(seed) < 2 or site is None:
        run([str(venv / "bin" / "python"), "-m", "ensurepip", "--default-pip"], timeout=600)
        return
    for src in seed:
        shutil.copytree(src, site / src.name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pip", "pip3"):
        launcher = venv / "bin" / name
        launcher.write_text(PIP_LAUNCHER.format(python=venv / "bin" / "python"))
        launcher.chmod(0o755)


# uv reads UV_* variables, not pip's: an index, find-links or CA bundle given to pip in the build env
# is passed on, and uv trusts the machine's certificate store as pip does. Only arguments uv refuses
# (exit 2 saying "unexpected argument" or "unsupported") fall back to pip: a failed download or
# resolution fails the build as pip's would, not twice.
UV_SHIM = """#!/bin/sh
# slipstream: 'pip install' runs 'uv pip install' in this virtualenv; everything else runs pip.
if [ "$1" = install ]; then
  shift
  export UV_SYSTEM_CERTS="${{UV_SYSTEM_CERTS:-1}}"
  [ -z "$PIP_CERT" ] || export SSL_CERT_FILE="${{SSL_CERT_FILE:-$PIP_CERT}}"
  [ -z "$PIP_INDEX_URL" ] || export UV_INDEX_URL="${{UV_INDEX_URL:-$PIP_INDEX_URL}}"
  [ -z "$PIP_EXTRA_INDEX_URL" ] || export UV_EXTRA_INDEX_URL="${{UV_EXTRA_INDEX_URL:-$PIP_EXTRA_INDEX_URL}}"
  [ -z "$PIP_FIND_LINKS" ] || export UV_FIND_LINKS="${{UV_FIND_LINKS:-$PIP_FIND_LINKS}}"
  err=$(mktemp) && rc=$(mktemp) || exit 1
  {{ {{ {uv} pip install --python {python} "$@"; echo $? >"$rc"; }} 2>&1 1>&3 | tee "$err" 1>&2; }} 3>&1
  code=$(cat "$rc")
  refused=no
  [ "$code" = 2 ] && grep -qE "unexpected argument|unsupported" "$err" && refused=yes
  rm -f "$err" "$rc"
  [ "$refused" = yes ] || exit "$code"
  echo "slipstream: uv does not take these arguments; running pip itself" >&2
  set -- install "$@"
fi
exec {python} -m pip "$@"
"""


def install_uv_shim(venv: Path, uv: str) -> None:
    """Replace the virtualenv's ``pip``/``pip3`` launchers with the uv shim (pip stays installed)."""
    for name in ("pip", "pip3"):
        launcher = venv / "bin" / name
        launcher.unlink(missing_ok=True)
        launcher.write_text(UV_SHIM.format(uv=shlex.quote(uv), python=shlex.quote(str(venv / "bin" / "python"))))
        launcher.chmod(0o755)


def mark_ready(venv: Path) -> None:
    """Record that a build command succeeded in ``venv``, so later builds may reuse it."""
    # O_NOFOLLOW: the virtualenv may belong to the service's user, who could plant a link here
    os.close(os.open(venv / READY_MARKER, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644))


def prepare_node(workdir: Path, cache: Path, env: Mapping[str, str]) -> Toolchain:
    """Machine node/npm with a per-service npm cache; node_modules/.bin first on PATH."""
    prefix = (str(workdir / "node_modules" / ".bin"),)
    base = {"npm_config_cache": str(cache / "npm"), **env}
    return Toolchain(render_build_env(base, prefix, {}), prefix)


def prepare_plain(env: Mapping[str, str]) -> Toolchain:
    """Static sites and other runtimes: the build environment as given."""
    return Toolchain(dict(env))

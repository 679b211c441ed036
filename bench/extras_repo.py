"""The daemon stand's second app repo: a Dockerfile service, a crash-looping release, a database.

It sits beside the 20-service repo (``bench/daemon_bench.py``) and is its own project, so
``apply`` of the 20 services never touches it. Each blueprint is a file of its own: a deploy
brings every database of its blueprint up to date first, so only ``postgres.yaml`` names one and
the docker and crash deploys carry no database work.

- ``docker.yaml``: ``bench-docker``, ``runtime: docker`` from ``docker/Dockerfile`` on the local
  busybox base image; busybox httpd serves ``docker/www`` (``/`` answers ``ok <version>``).
- ``crash-ok.yaml`` / ``crash.yaml``: ``bench-crash``, the bench app, then a start command that
  prints one line and exits 7 at once; ``crash-after.yaml``: the bench app exiting 0.3 s after its
  first request (the first health check), so it passes its check, takes traffic, then dies.
- ``postgres.yaml``: ``bench-pg`` (the bench app) with database ``benchdb``.

Every docker deploy gets a commit of its own (a new ``www/index.html``, as a code change would);
a cold build also gets a new stamp in the Dockerfile's first ``RUN``, so no layer is in the cache.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from bench import procs
from bench.daemon_bench import BUILD_COMMAND, git

DOCKER_SERVICE = "bench-docker"
CRASH_SERVICE = "bench-crash"
PG_SERVICE = "bench-pg"
PG_DATABASE = "benchdb"
CACHED_STAMP = "cached"  # the first RUN step of every warm build: in the layer cache after the first
CRASH_COMMAND = 'echo "bench: exiting with 7 on purpose"; exit 7'
CRASH_AFTER_CHECK_S = 0.3  # the crash-after-check release exits this long after its first request

# PID 1 of the container: busybox httpd on $PORT (slipstream sets it); SIGTERM ends it at once.
SERVE_SH = """\
trap 'exit 0' TERM
echo "serving /www on port $PORT"
httpd -f -p "$PORT" -h /www &
wait $!
"""


def render_dockerfile(stamp: str) -> str:
    """The bench container's Dockerfile; a new ``stamp`` misses every cached layer (a cold build)."""
    if not stamp.isalnum():
        raise ValueError(f"stamp {stamp!r} must be letters and digits (it is echoed by a RUN step)")
    return (
        "FROM localhost/slipstream-base:busybox\n"
        f"RUN echo {stamp} > /etc/bench-stamp && mkdir -p /www\n"
        "COPY serve.sh /serve.sh\n"
        "COPY www/ /www/\n"
        'CMD ["/bin/sh", "/serve.sh"]\n'
    )


def _web(name: str, extra: list[str]) -> list[str]:
    return [
        "  - type: web",
        f"    name: {name}",
        *extra,
        "    healthCheckPath: /health",
        "    maxShutdownDelaySeconds: 5",
    ]


def _python(start_command: str) -> list[str]:
    return [
        "    runtime: python",
        f"    buildCommand: {BUILD_COMMAND}",
        f"    startCommand: {json.dumps(start_command)}",  # a JSON string is a YAML string
    ]


def render_docker_blueprint() -> str:
    """``bench-docker``: the Dockerfile under ``docker/``."""
    return "\n".join(["services:", *_web(DOCKER_SERVICE, ["    runtime: docker", "    rootDir: docker"])]) + "\n"


def render_crash_blueprint(start_command: str, crash_after_s: float | None = None) -> str:
    """``bench-crash`` running ``start_command`` (the bench app, or one that exits at once); with
    ``crash_after_s``, the bench app exits that long after its first request."""
    env = (
        ["    envVars:", "      - key: CRASH_AFTER_FIRST_REQUEST_S", f'        value: "{crash_after_s:g}"']
        if crash_after_s is not None
        else []
    )
    return "\n".join(["services:", *_web(CRASH_SERVICE, [*_python(start_command), *env])]) + "\n"


def render_postgres_blueprint() -> str:
    """``bench-pg`` (the bench app) with its database ``benchdb``, so the daemon runs PostgreSQL."""
    env = [
        "    envVars:",
        "      - key: DATABASE_URL",
        "        fromDatabase:",
        f"          name: {PG_DATABASE}",
        "          property: connectionString",
    ]
    lines = [
        "databases:",
        f"  - name: {PG_DATABASE}",
        "services:",
        *_web(PG_SERVICE, [*_python("python app.py"), *env]),
    ]
    return "\n".join(lines) + "\n"


class ExtrasRepo:
    """The second app repo on disk; each ``commit_*`` returns the new commit's sha."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.docker_yaml = root / "docker.yaml"
        self.crash_ok_yaml = root / "crash-ok.yaml"
        self.crash_yaml = root / "crash.yaml"
        self.crash_after_yaml = root / "crash-after.yaml"
        self.postgres_yaml = root / "postgres.yaml"

    def create(self) -> str:
        """Write every file and make the first commit (docker version ``0``, the cached stamp)."""
        self.root.mkdir(parents=True)
        git(self.root, "init", "-q", "-b", "main")
        shutil.copy(procs.UPSTREAM, self.root / "app.py")
        self.docker_yaml.write_text(render_docker_blueprint())
        self.crash_ok_yaml.write_text(render_crash_blueprint("python app.py"))
        self.crash_yaml.write_text(render_crash_blueprint(CRASH_COMMAND))
        self.crash_after_yaml.write_text(render_crash_blueprint("python app.py", CRASH_AFTER_CHECK_S))
        self.postgres_yaml.write_text(render_postgres_blueprint())
        (self.root / "docker" / "www").mkdir(parents=True)
        (self.root / "docker" / "serve.sh").write_text(SERVE_SH)
        (self.root / "docker" / "www" / "health").write_text("ok\n")
        return self.commit_docker("0", CACHED_STAMP)

    def commit_docker(self, version: str, stamp: str) -> str:
        """A commit where ``/`` of the container answers ``ok <version>``, built with ``stamp``."""
        (self.root / "docker" / "Dockerfile").write_text(render_dockerfile(stamp))
        (self.root / "docker" / "www" / "index.html").write_text(docker_body(version))
        git(self.root, "add", "-A")
        git(self.root, "commit", "-q", "-m", f"docker version {version}")
        return git(self.root, "rev-parse", "HEAD")

    def head(self) -> str:
        return git(self.root, "rev-parse", "HEAD")


def docker_body(version: str) -> str:
    """What the container answers on ``/`` at ``version``."""
    return f"ok {version}"

"""The one place slipstream runs its own commands: argv lists, ``shell=False``, stderr captured.

User commands (``buildCommand``, ``preDeployCommand``, ``startCommand``) are the exception: they are
shell strings by definition and are run by ``builds`` and ``runtime`` with a controlled environment.
"""

from __future__ import annotations

import pwd
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from slipstream.errors import CommandFailed, Unavailable


@dataclass(frozen=True)
class Result:
    """What a finished command returned."""

    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str


def run(
    argv: Sequence[str],
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    input: str | None = None,
    timeout: float | None = 120,
    check: bool = True,
    user: str | None = None,
) -> Result:
    """Run ``argv`` and return its output; raise :class:`CommandFailed` on a non-zero exit when ``check``."""
    ids: dict[str, object] = {}
    if user is not None:  # drop to the user's own group too, not only its uid (root's gid 0 opens doors)
        pw = pwd.getpwnam(user)
        ids = {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}
    try:
        proc = subprocess.run(
            list(argv),
            cwd=cwd,
            env=dict(env) if env is not None else None,
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            **ids,
        )  # type: ignore[call-overload]  # typeshed has no overload for user/group passed through **ids
    except FileNotFoundError:
        raise Unavailable(f"{argv[0]} is not installed", "run 'make install'") from None
    except subprocess.TimeoutExpired:
        raise CommandFailed(f"{argv[0]} did not finish within {timeout} s") from None
    result = Result(tuple(argv), proc.returncode, proc.stdout, proc.stderr)
    if check and proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()
        last = detail[-1] if detail else "no output"
        raise CommandFailed(f"{argv[0]} exited with {proc.returncode}: {last}")
    return result

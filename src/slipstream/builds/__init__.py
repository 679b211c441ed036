"""builds: materialise a commit or a directory into an immutable build and run its buildCommand.

``model`` holds the data types, ``source`` git export and snapshots, ``toolchain`` the per-runtime
environments (cached Python virtualenvs, npm cache), ``builder`` the ``Builder`` tying them together.
"""

from __future__ import annotations

from slipstream.builds.builder import Builder
from slipstream.builds.model import Build, BuildFailed, BuildSpec

__all__ = ["Build", "BuildFailed", "BuildSpec", "Builder"]

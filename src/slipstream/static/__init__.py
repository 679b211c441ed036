"""static: Render static sites served by a Caddy file-server instance behind slipstream's HAProxy.

A static site deploys and rolls back like a web service: each release gets its own Caddy config
and instance (``PORT`` set by the runtime), health-checked at ``HEALTH_PATH`` before the flip.

Modules: ``rules`` (pure translation of Render's route and header patterns to regexes),
``config`` (pure rendering of the Caddy JSON), ``instance`` (the binary, the start command,
writing the config, resolving the publish dir; the lifecycle is described there).
"""

from __future__ import annotations

from slipstream.static.config import HEALTH_PATH, render_caddy_config
from slipstream.static.instance import caddy_binary, caddy_command, resolve_publish_dir, write_caddy_config
from slipstream.static.rules import HeaderLike, StaticRouteLike

__all__ = [
    "HEALTH_PATH",
    "HeaderLike",
    "StaticRouteLike",
    "caddy_binary",
    "caddy_command",
    "render_caddy_config",
    "resolve_publish_dir",
    "write_caddy_config",
]

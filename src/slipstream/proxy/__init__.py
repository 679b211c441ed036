"""proxy: slipstream's HAProxy data plane. Routes and servers change only through the admin socket.

Modules: ``haproxy`` (the :class:`Proxy` boundary and its lifecycle), ``config`` (pure rendering of
haproxy.cfg, with its backends and server slots, and the map files), ``slots`` (which slipstream
server holds which slot: the record in backends.json checked against the live ports), ``admin``
(the admin-socket client), ``parse`` (pure parsers of ``show`` answers), ``process`` (find, launch
and stop the HAProxy process), ``private`` (the stable ports of the private-service TCP
listeners), ``model`` (data).
"""

from __future__ import annotations

from slipstream.proxy.admin import AdminClient
from slipstream.proxy.config import render_config, render_hosts_map, render_services_map
from slipstream.proxy.haproxy import Proxy
from slipstream.proxy.model import ADMIN_STATES, Route, ServerState

__all__ = [
    "ADMIN_STATES",
    "AdminClient",
    "Proxy",
    "Route",
    "ServerState",
    "render_config",
    "render_hosts_map",
    "render_services_map",
]

"""The names an instance goes by: its runtime id (and log file) and its proxy server name."""

from __future__ import annotations

from slipstream.state.store import InstanceRecord


def instance_id(service: str, deploy_id: int, index: int) -> str:
    """The runtime's id (and log file name) for instance ``index`` of a deploy: ``web-d12-1``."""
    return f"{service}-d{deploy_id}-{index}"


def server_name(deploy_id: int, index: int) -> str:
    """The proxy's name for instance ``index`` of a deploy: ``d12-1``."""
    return f"d{deploy_id}-{index}"


def index_of(iid: str) -> int:
    """The instance number at the end of an instance id (``web-d12-1`` -> 1)."""
    return int(iid.rsplit("-", 1)[1])


def server_of(inst: InstanceRecord) -> str:
    """The proxy server name of a recorded instance."""
    return server_name(inst.deploy_id, index_of(inst.id))

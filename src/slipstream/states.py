"""The named states of slipstream's records, shared by state/, engine/, api/ and cli/.

Each is a ``StrEnum``: the value is what the store keeps and the API shows, so a member compares
equal to its string and JSON-encodes as it.

    DeployStatus   queued → building → pre_deploy → starting → health_check → flipping → live
                   → deactivated (replaced later); or build_failed | pre_deploy_failed |
                   update_failed | canceled
    DeployKind     deploy | rollback | config (an env change from the same build)
    InstancePhase  starting → live → draining (→ row deleted); stopped at 'slipstream down'
    ServiceType    the blueprint's service types slipstream knows
"""

from __future__ import annotations

from enum import StrEnum


class DeployStatus(StrEnum):
    """Where a deploy is in the state machine (DESIGN.md, "The deploy state machine")."""

    QUEUED = "queued"
    BUILDING = "building"
    PRE_DEPLOY = "pre_deploy"
    STARTING = "starting"
    HEALTH_CHECK = "health_check"
    FLIPPING = "flipping"
    LIVE = "live"
    DEACTIVATED = "deactivated"
    BUILD_FAILED = "build_failed"
    PRE_DEPLOY_FAILED = "pre_deploy_failed"
    UPDATE_FAILED = "update_failed"
    CANCELED = "canceled"

    @property
    def failed(self) -> bool:
        """Ended without going live."""
        return self in FAILED

    @property
    def active(self) -> bool:
        """Queued or running: not ended yet."""
        return self in ACTIVE

    @property
    def succeeded(self) -> bool:
        """Went live (and may since have been replaced)."""
        return self in (DeployStatus.LIVE, DeployStatus.DEACTIVATED)


FAILED = frozenset(
    {
        DeployStatus.BUILD_FAILED,
        DeployStatus.PRE_DEPLOY_FAILED,
        DeployStatus.UPDATE_FAILED,
        DeployStatus.CANCELED,
    }
)
ACTIVE = frozenset(
    {
        DeployStatus.QUEUED,
        DeployStatus.BUILDING,
        DeployStatus.PRE_DEPLOY,
        DeployStatus.STARTING,
        DeployStatus.HEALTH_CHECK,
        DeployStatus.FLIPPING,
    }
)
# Before the flip a deploy can be canceled or overridden; from 'flipping' on it finishes.
CANCELABLE = frozenset(ACTIVE - {DeployStatus.FLIPPING})


class DeployKind(StrEnum):
    """Why a deploy was made."""

    DEPLOY = "deploy"
    ROLLBACK = "rollback"
    CONFIG = "config"


class InstancePhase(StrEnum):
    """An instance record's place in its deploy's life (the process state is the runtime's)."""

    STARTING = "starting"
    LIVE = "live"
    DRAINING = "draining"
    STOPPED = "stopped"


class ServiceType(StrEnum):
    """Blueprint service types."""

    WEB = "web"
    PSERV = "pserv"
    WORKER = "worker"
    CRON = "cron"
    KEYVALUE = "keyvalue"

    @property
    def routed(self) -> bool:
        """Takes traffic through HAProxy (web: HTTP by host; pserv: a private TCP listener)."""
        return self in (ServiceType.WEB, ServiceType.PSERV)

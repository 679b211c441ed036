"""The typed model of a render.yaml: pydantic v2, snake_case attributes, camelCase YAML aliases.

The parser (``convert``) reads YAML into these models by looking at their fields, so a field
added here is a key the parser accepts, and ``docs/blueprint-reference.yaml`` must show it (a
test checks). ``DEPRECATED`` on a model names old keys the parser still accepts and maps.
Fields marked ``internal`` are filled by slipstream, never read from YAML.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr
from pydantic.alias_generators import to_camel

from slipstream.blueprint.problems import Problem

ServiceType = Literal["web", "pserv", "worker", "cron", "keyvalue", "workflow"]
Runtime = Literal["python", "node", "static", "docker", "image", "go", "ruby", "rust", "elixir"]
REGIONS = ("oregon", "ohio", "virginia", "frankfurt", "singapore")  # Render's, when this was written
DatabaseProperty = Literal["connectionString", "host", "port", "user", "password", "database"]
ServiceProperty = Literal["host", "port", "hostport", "connectionString"]
ManifestType = Literal["string", "bool", "int", "url", "enum"]

NATIVE_RUNTIMES = ("python", "node", "go", "ruby", "rust", "elixir")
SERVICE_TYPE_ALIASES = {"redis": "keyvalue"}


def internal() -> Any:
    """Mark a field as filled by slipstream (not a YAML key)."""
    return Field(default=None, json_schema_extra={"internal": True})


class Model(BaseModel):
    """Base: frozen, camelCase aliases, construction by field name allowed."""

    model_config = ConfigDict(frozen=True, populate_by_name=True, alias_generator=to_camel, extra="forbid")
    DEPRECATED: ClassVar[dict[str, str]] = {}


class Disk(Model):
    """A persistent disk mounted into every instance of the service."""

    name: str
    mount_path: str
    size_gb: int = Field(default=10, alias="sizeGB", ge=1, le=16384)


class StaticRoute(Model):
    """A redirect or rewrite rule of a static site, evaluated top to bottom."""

    type: Literal["redirect", "rewrite"]
    source: str
    destination: str


class Header(Model):
    """A response header a static site adds for paths matching ``path``."""

    path: str
    name: str
    value: str


class SmokeCheck(Model):
    """A check run right after the flip (slipstream extension): a request to ``path`` expecting
    ``status`` (and ``contains`` in the body), or a ``command`` in the release expecting exit 0."""

    path: str | None = None
    status: int = Field(default=200, ge=100, le=599)
    contains: str | None = None
    command: str | None = None
    timeout_seconds: int = Field(default=10, ge=1, le=300)


class AlertSetting(Model):
    """One alert rule's settings for a service (slipstream extension): e.g. ``threshold: 2%``,
    ``window: 10m``, ``hold: 2m``, ``enabled: false``."""

    threshold: str | None = None
    window: str | None = None
    hold: str | None = None
    enabled: bool | None = None


class FromDatabase(Model):
    """An env var taken from a property of a database in the same scope."""

    name: str
    property: DatabaseProperty


class FromService(Model):
    """An env var taken from a property (or an env var) of another service in the same scope."""

    type: ServiceType
    name: str
    property: ServiceProperty | None = None
    env_var_key: str | None = None


class EnvVar(Model):
    """One ``envVars`` entry; exactly one source is set (checked by the parser)."""

    key: str | None = None
    value: str | None = None
    generate_value: bool | None = None
    sync: bool | None = None
    from_database: FromDatabase | None = None
    from_service: FromService | None = None
    from_group: str | None = None
    preview_value: str | None = None  # the value in preview environments (not created here)
    display_name: str | None = None  # Render's prompt label for sync: false entries
    description: str | None = None
    sensitive: bool | None = None  # true: masked like a secret
    required: bool | None = None  # Render's prompt: a sync: false value must be given

    @property
    def source(self) -> str:
        """Which of Render's six sources this entry uses."""
        if self.from_group is not None:
            return "fromGroup"
        if self.from_database is not None:
            return "fromDatabase"
        if self.from_service is not None:
            return "fromService"
        if self.generate_value:
            return "generateValue"
        if self.sync is False:
            return "sync"
        return "value"


class ManifestEntry(Model):
    """slipstream extension: what one env var must look like (see docs/blueprint.md)."""

    type: ManifestType = "string"
    required: bool | None = None
    default: str | None = None
    values: list[str] = Field(default_factory=list)
    secret: bool = False
    description: str | None = None

    @property
    def is_required(self) -> bool:
        """Required unless it says otherwise or has a default."""
        return self.required if self.required is not None else self.default is None


class Scaling(Model):
    """Autoscaling bounds and targets (not performed here: slipstream runs ``minInstances``)."""

    min_instances: int = Field(default=1, ge=1, le=100)
    max_instances: int = Field(default=1, ge=1, le=100)
    target_cpu_percent: int | None = Field(default=None, alias="targetCPUPercent", ge=1, le=100)
    target_memory_percent: int | None = Field(default=None, ge=1, le=100)


class BuildFilter(Model):
    """Glob lists deciding which changed paths trigger an auto-deploy."""

    paths: list[str] = Field(default_factory=list)
    ignored_paths: list[str] = Field(default_factory=list)


class ServicePreviews(Model):
    """Per-service preview settings."""

    generation: Literal["off", "manual", "automatic"] | None = None
    plan: str | None = None
    num_instances: int | None = Field(default=None, ge=1, le=100)


class Previews(Model):
    """Top-level preview-environment settings."""

    generation: Literal["off", "manual", "automatic"] = "off"
    expire_after_days: int | None = Field(default=None, ge=1)


class RegistryCredsRef(Model):
    """A reference to registry credentials stored in the Render workspace."""

    name: str


class RegistryCredential(Model):
    """Credentials for pulling private base images (docker runtime)."""

    from_registry_creds: RegistryCredsRef


class Image(Model):
    """A prebuilt image (``runtime: image``)."""

    url: str
    creds: RegistryCredential | None = None


class IpAllow(Model):
    """One CIDR allowed to connect from outside."""

    source: str
    description: str | None = None


class ReadReplica(Model):
    """A read replica of a database."""

    name: str


class HighAvailability(Model):
    """High availability (standby) switch of a database."""

    enabled: bool = False


class Service(Model):
    """A web service, private service, worker, cron job or key value instance."""

    DEPRECATED: ClassVar[dict[str, str]] = {
        "env": "runtime",
        "autoDeploy": "autoDeployTrigger",
        "pullRequestPreviewsEnabled": "previews",
    }

    name: str
    type: ServiceType
    runtime: Runtime | None = None
    plan: str | None = None
    preview_plan: str | None = None
    region: str | None = None  # one of REGIONS; another is kept with a warning
    repo: str | None = None
    branch: str | None = None
    root_dir: str | None = None
    build_command: str | None = None
    start_command: str | None = None
    pre_deploy_command: str | None = None
    initial_deploy_hook: str | None = None
    docker_command: str | None = None
    dockerfile_path: str | None = None
    docker_context: str | None = None
    registry_credential: RegistryCredential | None = None
    image: Image | None = None
    health_check_path: str | None = None
    num_instances: int = Field(default=1, ge=1, le=100)
    max_shutdown_delay_seconds: int = Field(default=30, ge=1, le=300)
    disk: Disk | None = None
    schedule: str | None = None
    static_publish_path: str | None = None
    routes: list[StaticRoute] = Field(default_factory=list)
    headers: list[Header] = Field(default_factory=list)
    env_vars: list[EnvVar] = Field(default_factory=list)
    env_manifest: dict[str, ManifestEntry] = Field(default_factory=dict)
    singleton: bool = False  # slipstream extension (workers): stop the old release before the new starts
    memory_limit_mb: int | None = Field(default=None, ge=32, alias="memoryLimitMB")  # slipstream extension
    smoke_checks: list[SmokeCheck] = Field(default_factory=list)  # slipstream extension: after the flip
    alerts: dict[str, AlertSetting] = Field(default_factory=dict)  # slipstream extension: rule settings
    domains: list[str] = Field(default_factory=list)
    auto_deploy_trigger: Literal["commit", "checksPass", "off"] = "commit"
    render_subdomain_policy: Literal["enabled", "disabled"] | None = None
    build_filter: BuildFilter | None = None
    scaling: Scaling | None = None
    previews: ServicePreviews | None = None
    ip_allow_list: list[IpAllow] | None = None
    maxmemory_policy: (
        Literal[
            "allkeys-lru",
            "allkeys-lfu",
            "allkeys-random",
            "volatile-lru",
            "volatile-lfu",
            "volatile-random",
            "volatile-ttl",
            "noeviction",
        ]
        | None
    ) = Field(default=None, alias="maxmemoryPolicy")
    persistence_mode: str | None = None  # keyvalue: e.g. journal-snapshot
    environment: str | None = internal()
    project: str | None = internal()

    @property
    def is_static(self) -> bool:
        """True for a static site (``type: web`` with ``runtime: static``)."""
        return self.runtime == "static"

    @property
    def unsupported_reason(self) -> str | None:
        """Why slipstream cannot run this service yet, or None when it can."""
        if self.type == "workflow":
            return "workflow services (Render Workflows) are not provided by slipstream"
        return None


class Database(Model):
    """A PostgreSQL database (a database and a role in slipstream's cluster)."""

    name: str
    database_name: str | None = None
    user: str | None = None
    plan: str | None = None
    preview_plan: str | None = None
    region: str | None = None  # one of REGIONS; another is kept with a warning
    postgres_major_version: str | None = None
    disk_size_gb: int | None = Field(default=None, alias="diskSizeGB", ge=1)
    preview_disk_size_gb: int | None = Field(default=None, alias="previewDiskSizeGB", ge=1)
    storage_autoscaling_enabled: bool | None = None
    ip_allow_list: list[IpAllow] = Field(default_factory=list)
    extensions: list[str] = Field(default_factory=list)  # slipstream extension: CREATE EXTENSION each
    read_replicas: list[ReadReplica] = Field(default_factory=list)
    high_availability: HighAvailability | None = None
    environment: str | None = internal()
    project: str | None = internal()


class EnvVarGroup(Model):
    """A named set of env vars attached to services with ``fromGroup``."""

    name: str
    env_vars: list[EnvVar] = Field(default_factory=list)
    env_manifest: dict[str, ManifestEntry] = Field(default_factory=dict)
    environment: str | None = internal()
    project: str | None = internal()


class Networking(Model):
    """An environment's private network setting."""

    isolation: Literal["enabled", "disabled"] = "disabled"


class Permissions(Model):
    """An environment's protection setting."""

    protection: Literal["enabled", "disabled"] = "disabled"


class Environment(Model):
    """One environment of a project and the resources it holds."""

    name: str
    services: list[Service] = Field(default_factory=list)
    databases: list[Database] = Field(default_factory=list)
    env_var_groups: list[EnvVarGroup] = Field(default_factory=list)
    networking: Networking | None = None
    permissions: Permissions | None = None
    network_isolated: bool | None = None  # older spelling of networking.isolation
    protection_status: Literal["protected", "unprotected"] | None = None  # older spelling of permissions

    @property
    def is_isolated(self) -> bool:
        """True when the environment asks for private network isolation (either spelling)."""
        return self.networking.isolation == "enabled" if self.networking else bool(self.network_isolated)

    @property
    def is_protected(self) -> bool:
        """True when the environment is protected (either spelling)."""
        if self.permissions is not None:
            return self.permissions.protection == "enabled"
        return self.protection_status == "protected"


class Project(Model):
    """A project: environments plus env groups shared by all of them."""

    name: str
    environments: list[Environment] = Field(default_factory=list)
    env_var_groups: list[EnvVarGroup] = Field(default_factory=list)


class Ungrouped(Model):
    """Resources declared outside any project (same scope as the root lists)."""

    services: list[Service] = Field(default_factory=list)
    databases: list[Database] = Field(default_factory=list)
    env_var_groups: list[EnvVarGroup] = Field(default_factory=list)


class Document(Model):
    """The file exactly as written (before flattening projects)."""

    DEPRECATED: ClassVar[dict[str, str]] = {
        "previewsEnabled": "previews",
        "previewsExpireAfterDays": "previews",
    }

    services: list[Service] = Field(default_factory=list)
    databases: list[Database] = Field(default_factory=list)
    env_var_groups: list[EnvVarGroup] = Field(default_factory=list)
    previews: Previews | None = None
    projects: list[Project] = Field(default_factory=list)
    ungrouped: Ungrouped | None = None
    version: Literal["1"] | None = None  # the spec version; Render knows only "1"


class EnvironmentRef(Model):
    """Where an environment sits: its project and settings."""

    project: str
    name: str
    network_isolated: bool | None = None
    protection_status: str | None = None


class Blueprint(Model):
    """A valid blueprint: every resource flattened, each knowing its project and environment."""

    model_config = ConfigDict(
        frozen=True, populate_by_name=True, alias_generator=to_camel, extra="forbid", arbitrary_types_allowed=True
    )

    file: str = "render.yaml"
    services: list[Service] = Field(default_factory=list)
    databases: list[Database] = Field(default_factory=list)
    env_var_groups: list[EnvVarGroup] = Field(default_factory=list)
    previews: Previews = Field(default_factory=Previews)
    environments: list[EnvironmentRef] = Field(default_factory=list)
    warnings: list[Problem] = Field(default_factory=list)
    _paths: dict[tuple[str, str], tuple[str | int, ...]] = PrivateAttr(default_factory=dict)
    _marks: dict[tuple[str | int, ...], tuple[int, int]] = PrivateAttr(default_factory=dict)
    _key_marks: dict[tuple[str | int, ...], tuple[int, int]] = PrivateAttr(default_factory=dict)
    _labels: dict[tuple[str | int, ...], str] = PrivateAttr(default_factory=dict)

    def service(self, name: str) -> Service:
        """Return the service called ``name``; KeyError if there is none."""
        for s in self.services:
            if s.name == name:
                return s
        raise KeyError(name)

    def database(self, name: str) -> Database:
        """Return the database called ``name``; KeyError if there is none."""
        for d in self.databases:
            if d.name == name:
                return d
        raise KeyError(name)

    def group(self, name: str) -> EnvVarGroup:
        """Return the env var group called ``name``; KeyError if there is none."""
        for g in self.env_var_groups:
            if g.name == name:
                return g
        raise KeyError(name)

    def path_of(self, kind: str, name: str) -> tuple[str | int, ...]:
        """Return the YAML path of a resource ('service', 'database' or 'group')."""
        return self._paths.get((kind, name), ())

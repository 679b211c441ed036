"""Checks that need more than one key: names, per-type rules, and what slipstream does differently.

Structure (types, unknown keys, bounds) is checked while reading (``convert``); env vars and
references in ``envcheck``; the env manifest in ``manifest``. Here: names are DNS labels and
unique, each service type has the keys it needs, and every key slipstream cannot honour yet is
accepted with a warning that says what happens instead (nothing is silently ignored).
"""

from __future__ import annotations

import ipaddress
import posixpath
import re

from slipstream.blueprint.convert import likely_typo
from slipstream.blueprint.cron import parse_cron
from slipstream.blueprint.inventory import Inventory, Placed
from slipstream.blueprint.model import NATIVE_RUNTIMES, REGIONS, Database, Document, IpAllow, Service
from slipstream.blueprint.problems import Collector, Path, format_path

DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
# Render takes any name; slipstream's proxy, build directories and backups take these.
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
PG_IDENT = re.compile(r"[a-z_][a-z0-9_]{0,62}")
PG_EXTENSION = re.compile(r"[a-z0-9_][a-z0-9_.-]{0,62}")
HOSTNAME = re.compile(r"(\*\.)?([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?\.)+[a-z][-a-z0-9]{0,61}[a-z0-9]")
REGION_NOTE = "slipstream runs every resource on this machine; the region is kept for reference only"


def given(out: Collector, path: Path, key: str) -> bool:
    """True when ``key`` was written in the mapping at ``path`` (not just defaulted)."""
    return path + (key,) in out.key_marks


def suggest_label(name: str) -> str:
    """Return a DNS-label spelling of ``name`` to offer in a hint (never applied silently)."""
    label = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")[:63].strip("-")
    return label or "my-service"


def check_names(inv: Inventory, out: Collector) -> None:
    """Names are not blank and are unique per kind across the file; a service or database name
    slipstream cannot put in host names and directories is accepted (Render takes any name) with
    a warning."""
    for kind, items in (("service", inv.services), ("database", inv.databases), ("env var group", inv.groups)):
        first: dict[str, Path] = {}
        for p in items:
            name = p.obj.name
            here = p.path + ("name",)
            if not name.strip() or len(name) > 255:
                out.error(here, f"{kind} names must be 1 to 255 characters, not only spaces")
            elif kind != "env var group" and not SAFE_NAME.fullmatch(name):
                out.warn(
                    here,
                    f"Render accepts the {kind} name '{name[:80]}', but slipstream names host names, "
                    "directories and backups after resources, which take only letters, digits, '.', "
                    "'_' and '-' (at most 100): deploys or backups of it will be refused",
                    f"rename it, for example '{suggest_label(name)}'",
                )
            if name in first:
                out.error(
                    here,
                    f"{kind} name '{name}' is already used by {_short(first[name], out)}",
                    "names are unique across the whole file (slipstream routes and stores "
                    "resources by name); rename one of them",
                )
            else:
                first[name] = p.path
    seen_envs: dict[tuple[str, str], Path] = {}
    for env in inv.environments:
        if (env.project, env.name) in seen_envs:
            out.error(
                env.path + ("name",),
                f"environment '{env.name}' appears twice in project '{env.project}'",
                "merge the two environments",
            )
        seen_envs[(env.project, env.name)] = env.path


def _short(path: Path, out: Collector) -> str:
    line = out.place(path)[0]
    return f"{format_path(path, out.labels)} (line {line})"


def check_service(p: Placed[Service], out: Collector) -> None:
    """Per-type rules for one service, plus warnings for what slipstream does differently."""
    s, path = p.obj, p.path
    native = s.runtime in NATIVE_RUNTIMES
    if s.type == "keyvalue":
        _check_keyvalue(s, path, out)
    elif s.runtime is None:
        out.error(
            path,
            "missing required key 'runtime'",
            "one of: " + ", ".join(NATIVE_RUNTIMES + ("static", "docker", "image")) + " (older files call it 'env')",
        )
    if s.is_static and s.type != "web":
        out.error(
            _runtime_path(out, path),
            f"runtime 'static' is only valid for type 'web', not '{s.type}'",
            "a static site is 'type: web' with 'runtime: static'",
        )
    if native and s.type not in ("keyvalue", "workflow") and not s.start_command:
        out.error(
            path,
            f"missing required key 'startCommand' for a {s.runtime} {s.type} service",
            "the command that starts your app, e.g. 'gunicorn app:app' (bind to $PORT)",
        )
    if s.is_static:
        _check_static(s, path, out)
    else:
        for key in ("staticPublishPath", "routes", "headers"):
            if given(out, path, key):
                out.warn(
                    path + (key,),
                    f"'{key}' only applies to static sites; it has no effect here",
                    "remove it, or set 'runtime: static'",
                    key=True,
                )
    if s.type == "cron":
        _check_cron(s, path, out)
    elif given(out, path, "schedule"):
        out.warn(
            path + ("schedule",),
            f"'schedule' only applies to cron services, not '{s.type}'",
            "remove it, or set 'type: cron'",
            key=True,
        )
    _check_health(s, path, out)
    _check_disk(s, path, out)
    _check_scaling(s, path, out)
    _check_domains(s, path, out)
    if s.pre_deploy_command and (s.type in ("cron", "keyvalue") or s.is_static):
        out.warn(
            path + ("preDeployCommand",),
            f"preDeployCommand does not run for a {'static site' if s.is_static else s.type + ' service'}",
            "remove it",
            key=True,
        )
    _warn_unsupported(s, path, out)


def _check_keyvalue(s: Service, path: Path, out: Collector) -> None:
    if s.ip_allow_list is None:
        out.error(
            path,
            "missing required key 'ipAllowList' for a keyvalue service",
            "use 'ipAllowList: []' to allow only internal connections",
        )
    else:
        _check_cidrs(s.ip_allow_list, path + ("ipAllowList",), out)
    for key in ("runtime", "buildCommand", "startCommand", "envVars", "disk", "numInstances"):
        if given(out, path, key):
            out.warn(path + (key,), f"'{key}' has no effect on a keyvalue service", "remove it", key=True)


def _check_static(s: Service, path: Path, out: Collector) -> None:
    if not s.static_publish_path:
        out.error(
            path,
            "missing required key 'staticPublishPath' for a static site",
            "the folder your buildCommand writes, e.g. './dist' or 'build'",
        )
    for key in ("startCommand", "numInstances", "disk", "healthCheckPath", "scaling"):
        if given(out, path, key):
            out.warn(path + (key,), f"'{key}' has no effect on a static site", "remove it", key=True)
    for here, route in out.items(path + ("routes",), s.routes):
        if not route.source.startswith("/"):
            out.error(
                here + ("source",),
                f"route source '{route.source}' must start with '/'",
                "for example '/*' or '/old-page'",
            )
        if not (route.destination.startswith("/") or re.match(r"https?://", route.destination)):
            out.warn(
                here + ("destination",),
                f"route destination '{route.destination[:80]}' is neither a path nor an http(s) URL; "
                "the rule will not match anything useful",
                "for example '/index.html' or 'https://api.example.com/*' (a placeholder must be replaced)",
            )
    for here, header in out.items(path + ("headers",), s.headers):
        if not header.path.startswith("/"):
            out.error(
                here + ("path",), f"header path '{header.path}' must start with '/'", "for example '/*' or '/assets/*'"
            )
        if not re.fullmatch(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+", header.name):
            out.error(here + ("name",), f"'{header.name}' is not a valid HTTP header name")


def _check_cron(s: Service, path: Path, out: Collector) -> None:
    if s.schedule is None:
        out.error(path, "missing required key 'schedule' for a cron service", "five fields in UTC, e.g. '*/15 * * * *'")
    else:
        reason = parse_cron(s.schedule)
        if reason:
            out.error(
                path + ("schedule",),
                f"schedule '{s.schedule[:60]}' is not valid: {reason}",
                "five fields in UTC: minute hour day-of-month month day-of-week",
            )
    if s.disk is not None:
        out.error(path + ("disk",), "a cron service cannot have a disk", "remove 'disk'", key=True)
    if given(out, path, "numInstances"):
        out.warn(
            path + ("numInstances",),
            "a cron service runs one job at a time; numInstances has no effect",
            "remove it",
            key=True,
        )


def _check_health(s: Service, path: Path, out: Collector) -> None:
    hc = s.health_check_path
    if hc is None:
        return
    if not hc.startswith("/"):
        out.error(path + ("healthCheckPath",), "must start with '/'", f"write '/{hc.lstrip('/')}'")
    if s.type != "web":
        out.warn(
            path + ("healthCheckPath",),
            f"healthCheckPath only applies to web services; a {s.type} service is checked by its port (or not at all)",
            "remove it",
            key=True,
        )


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_DISK_NAME = re.compile(r"[^/\\\x00-\x1f\x7f]{1,255}")
# Host directories a disk's symlink must not be made in (or be): the system's own, and "/" itself.
_SYSTEM_DIRS = (
    "/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/libx32", "/proc", "/root", "/run",
    "/sbin", "/sys", "/usr", "/var/lib", "/var/run", "/var/log", "/var/spool", "/var/cache", "/var/backups",
)  # fmt: skip


def _system_dir(mount: str) -> str | None:
    """The system directory ``mount`` is (or is inside), or None."""
    norm = posixpath.normpath(mount)
    if norm in ("/", "//"):
        return "/"
    if norm.startswith("/dev/shm/"):  # a tmpfs anyone may write to, like /tmp
        return None
    return next((d for d in _SYSTEM_DIRS if norm == d or norm.startswith(d + "/")), None)


def _check_disk(s: Service, path: Path, out: Collector) -> None:
    if s.disk is None:
        return
    here = path + ("disk",)
    name = s.disk.name
    if name in ("", ".", "..") or not _DISK_NAME.fullmatch(name):
        out.error(
            here + ("name",),
            f"disk name {name!r} must be one path segment (no '/', no control characters, not '.' or '..')",
            "for example 'data'",
        )
    mount = s.disk.mount_path
    if not mount.startswith("/"):
        out.error(here + ("mountPath",), f"mountPath '{mount}' must be an absolute path", "for example '/var/data'")
    elif s.runtime in NATIVE_RUNTIMES and (system := _system_dir(mount)) is not None:  # a container's is its own
        out.error(
            here + ("mountPath",),
            f"mountPath '{mount}' is {'the host directory' if system == posixpath.normpath(mount) else 'inside'} "
            f"'{system}': a native service's disk is linked at its mountPath on this machine",
            "use a directory of its own, for example '/var/data'",
        )
    if s.num_instances > 1:
        out.error(
            path + ("numInstances",),
            f"a service with a disk runs exactly one instance, not {s.num_instances}",
            "remove numInstances or the disk",
        )
    if s.scaling is not None:
        out.error(path + ("scaling",), "a service with a disk cannot scale", "remove scaling or the disk", key=True)


def _check_scaling(s: Service, path: Path, out: Collector) -> None:
    if s.scaling is None:
        return
    here = path + ("scaling",)
    sc = s.scaling
    if sc.min_instances > sc.max_instances:
        out.error(
            here + ("minInstances",),
            f"minInstances ({sc.min_instances}) is larger than maxInstances ({sc.max_instances})",
        )
    if sc.target_cpu_percent is None and sc.target_memory_percent is None:
        out.error(
            here,
            "scaling needs targetCPUPercent or targetMemoryPercent (or both)",
            "for example 'targetCPUPercent: 70'",
        )
    if given(out, path, "numInstances"):
        out.warn(path + ("numInstances",), "numInstances is ignored when scaling is set", "remove one", key=True)
    out.warn(
        here,
        f"autoscaling is not performed here; slipstream runs minInstances ({sc.min_instances}) instance(s)",
        key=True,
    )


def _check_domains(s: Service, path: Path, out: Collector) -> None:
    if s.domains and (s.type != "web"):
        out.warn(
            path + ("domains",), f"custom domains only apply to web services, not '{s.type}'", "remove them", key=True
        )
    for here, domain in out.items(path + ("domains",), s.domains):
        if len(domain) > 253 or not HOSTNAME.fullmatch(domain.lower()):
            out.error(
                here,
                f"'{domain[:80]}' is not a valid domain name",
                "write a host name such as 'www.example.com' (no scheme, no path)",
            )


def _check_cidrs(items: list[IpAllow], path: Path, out: Collector) -> None:
    for here, item in out.items(path, items):
        try:
            ipaddress.ip_network(item.source, strict=False)
        except ValueError:
            out.error(
                here + ("source",),
                f"'{item.source[:60]}' is not an IP address or CIDR block",
                "for example '203.0.113.0/24'",
            )


def _check_region(region: str | None, path: Path, out: Collector) -> None:
    """A region is recorded only; a likely typo of a known one is an error, an unknown one (Render
    may have opened it since) a warning."""
    if region is None:
        return
    if region not in REGIONS:
        typo = likely_typo(region, list(REGIONS))
        if typo is not None:
            out.error(path + ("region",), f"'{region[:40]}' is not a region", f"did you mean '{typo}'?")
            return
        out.warn(
            path + ("region",),
            f"region '{region[:40]}' is not one slipstream knows ({', '.join(REGIONS)})",
            "check it against Render's list of regions",
        )
    out.warn(path + ("region",), REGION_NOTE, key=True)


def _runtime_path(out: Collector, path: Path) -> Path:
    """Path of the runtime as written: 'runtime', or the deprecated 'env'."""
    return path + ("env",) if given(out, path, "env") and not given(out, path, "runtime") else path + ("runtime",)


def _warn_unsupported(s: Service, path: Path, out: Collector) -> None:
    reason = s.unsupported_reason
    if reason:
        where = _runtime_path(out, path) if s.runtime in ("docker", "image") else path + ("type",)
        hint = {
            "keyvalue": "run Redis yourself and give services its URL with an env var value",
            "workflow": "run its tasks from a worker or cron service here",
        }.get(s.type, "use a native runtime (python, node, ...) to run it here")
        out.warn(where, f"{reason}: slipstream validates and plans this service but will not build or start it", hint)
    elif s.runtime in ("go", "ruby", "rust", "elixir"):
        out.warn(
            _runtime_path(out, path),
            f"slipstream runs buildCommand and startCommand with the "
            f"{s.runtime} tools installed on this machine; it does not install them",
        )
    for i, check in enumerate(s.smoke_checks):
        here = path + ("smokeChecks", i)
        if (check.path is None) == (check.command is None):
            out.error(here, "a smoke check has either a path or a command", "write 'path: /health' or 'command: ...'")
        elif check.path is not None and not check.path.startswith("/"):
            out.error(here + ("path",), f"smoke check path {check.path!r} must start with '/'", "write '/…'")
    if s.smoke_checks and s.type not in ("web", "pserv"):
        out.warn(path + ("smokeChecks",), "smokeChecks run only for web and private services", "remove them", key=True)
    for key in ("singleton", "memoryLimitMB", "smokeChecks", "alerts"):
        if given(out, path, key):
            out.warn(
                path + (key,),
                f"{key} is a slipstream extension: Render's validator rejects files that use it",
                "keep a copy without it for Render",
                key=True,
            )
    if s.singleton and s.type != "worker":
        out.warn(path + ("singleton",), "singleton only applies to workers", "remove it", key=True)
    _check_region(s.region, path, out)
    if s.previews is not None and s.previews.generation in ("manual", "automatic"):
        key = "previews" if given(out, path, "previews") else "pullRequestPreviewsEnabled"
        out.warn(path + (key,), "service previews are not created here; the setting is kept for Render", key=True)
    if s.initial_deploy_hook:
        out.warn(
            path + ("initialDeployHook",),
            "initialDeployHook is not run here",
            "run the command once by hand after the first deploy",
            key=True,
        )
    if s.auto_deploy_trigger == "checksPass":
        out.warn(
            path + ("autoDeployTrigger",),
            "slipstream does not see your git provider's checks; it deploys when you run 'slipstream deploy'",
            key=True,
        )
    if s.build_filter is not None:
        out.warn(
            path + ("buildFilter",),
            "buildFilter only filters automatic deploys, which slipstream "
            "does not start on its own; the filter is kept for Render",
            key=True,
        )
    if s.maxmemory_policy is not None and s.type != "keyvalue":
        out.warn(
            path + ("maxmemoryPolicy",), "maxmemoryPolicy only applies to keyvalue services", "remove it", key=True
        )
    if s.ip_allow_list is not None and s.type != "keyvalue":
        _check_cidrs(s.ip_allow_list, path + ("ipAllowList",), out)
        out.warn(
            path + ("ipAllowList",),
            f"ipAllowList is not enforced for a {s.type} service here: anything that reaches this "
            "machine's proxy reaches it",
            key=True,
        )
    if s.persistence_mode is not None and s.type != "keyvalue":
        out.warn(
            path + ("persistenceMode",), "persistenceMode only applies to keyvalue services", "remove it", key=True
        )
    if s.render_subdomain_policy == "disabled":
        out.warn(
            path + ("renderSubdomainPolicy",),
            f"slipstream always answers at {s.name.lower()}.localhost; the policy is kept for Render"
            + ("" if s.domains else " (which refuses 'disabled' on a service without custom domains)"),
            key=True,
        )


def check_database(p: Placed[Database], out: Collector) -> None:
    """Identifiers, versions and CIDRs of one database, plus what is not done here."""
    d, path = p.obj, p.path
    for key, value in (("databaseName", d.database_name), ("user", d.user)):
        if value is not None and not PG_IDENT.fullmatch(value):
            out.error(
                path + (key,),
                f"'{value[:70]}' is not a valid PostgreSQL name: use lowercase "
                "letters, digits and '_', starting with a letter or '_', at most 63",
                f"for example '{re.sub(r'[^a-z0-9_]+', '_', value.lower())[:63] or 'app'}'",
            )
    version = d.postgres_major_version
    if version is not None and not (version.isdigit() and 11 <= int(version) <= 18):
        out.error(
            path + ("postgresMajorVersion",),
            f"'{version[:20]}' is not a PostgreSQL major version slipstream knows (11 to 18)",
            "for example '16'",
        )
    _check_cidrs(d.ip_allow_list, path + ("ipAllowList",), out)
    if given(out, path, "extensions"):
        out.warn(
            path + ("extensions",),
            "extensions is a slipstream extension: Render's validator rejects files that use it",
            "keep a copy without it for Render (run CREATE EXTENSION there)",
            key=True,
        )
    seen: set[str] = set()
    for here, ext in out.items(path + ("extensions",), d.extensions):
        if not PG_EXTENSION.fullmatch(ext):
            out.error(
                here,
                f"'{ext[:60]}' is not a PostgreSQL extension name",
                "use the name CREATE EXTENSION takes, e.g. 'pg_trgm' or 'uuid-ossp'",
            )
        elif ext in seen:
            out.error(here, f"extension '{ext}' is listed twice", "list each extension once")
        seen.add(ext)
    if d.ip_allow_list:
        out.warn(
            path + ("ipAllowList",),
            "ipAllowList becomes pg_hba rules for this database's role; "
            "slipstream's PostgreSQL takes connections only on the addresses in "
            "SLIPSTREAM_POSTGRES_LISTEN (loopback by default)",
            key=True,
        )
    _check_region(d.region, path, out)
    if d.read_replicas:
        out.warn(path + ("readReplicas",), "read replicas are not created here; the primary serves all reads", key=True)
    if d.high_availability is not None and d.high_availability.enabled:
        out.warn(
            path + ("highAvailability",),
            "high availability is not provided here; one PostgreSQL cluster serves every database",
            key=True,
        )


def check_document(doc: Document, inv: Inventory, out: Collector) -> None:
    """File-level checks: something to do, previews, projects and environments."""
    if not (inv.services or inv.databases or inv.groups or out.broken_names or out.errors):
        out.error(
            (),
            "the file declares no services, databases or envVarGroups",
            "add a 'services:' list (see docs/blueprint-reference.yaml)",
            at=(1, 1),
        )
    for g in inv.groups:
        if _CONTROL.search(g.obj.name):
            out.error(
                g.path + ("name",),
                f"envVarGroup name {g.obj.name!r} contains control characters (they would reach terminals as-is)",
                "use letters, digits, spaces and punctuation",
            )
    if doc.previews is not None and doc.previews.generation in ("manual", "automatic"):
        key = "previews" if given(out, (), "previews") else "previewsEnabled"
        out.warn((key,), "preview environments are not created here; the setting is kept for Render", key=True)
    for env in inv.environments:
        if env.network_isolated:
            key = "networking" if given(out, env.path, "networking") else "networkIsolated"
            out.warn(
                env.path + (key,),
                "network isolation is not enforced here: all services share this machine's loopback network",
                key=True,
            )
        if env.protection_status == "protected":
            key = "permissions" if given(out, env.path, "permissions") else "protectionStatus"
            out.warn(env.path + (key,), "environment protection is not enforced here", key=True)

"""``slipstream cancel``, ``delete``, ``projects``, ``project delete`` and ``gc``: stopping deploys
and removing resources, only ever on an explicit command (``apply`` deletes nothing; ``gc`` removes
only build directories no rollback can need)."""

from __future__ import annotations

import typer

from slipstream.cli.common import FLAGS_ONLY, client, print_json, print_table

project_app = typer.Typer(help="Projects: the resources each applied blueprint owns.", no_args_is_help=True)

JSON_HELP = "print machine-readable JSON"


def cancel(service: str) -> None:
    """Cancel SERVICE's queued deploys and the one in progress (before its flip); the live release keeps serving."""
    canceled = client().post(f"/v1/services/{service}/cancel")["canceled"]
    if not canceled:
        typer.echo(f"{service} has no deploy in progress or queued (a deploy that is flipping always finishes)")
        return
    for d in canceled:
        typer.echo(f"canceled deploy {d['id']} ({d['source']})")


def delete(
    service: str,
    yes: bool = typer.Option(False, "--yes", "-y", help="do not ask for confirmation"),
    purge_disks: bool = typer.Option(False, "--purge-disks", help="also delete its persistent disk"),
) -> None:
    """Delete SERVICE: stop its instances, remove its route and builds (its disk is kept unless --purge-disks)."""
    if not yes:
        typer.confirm(f"Delete service {service}? Its instances stop and its URL stops answering.", abort=True)
    r = client().request("DELETE", f"/v1/services/{service}", params={"purge_disks": purge_disks})
    typer.echo(f"deleted service {service} ({r['instances_stopped']} instances stopped)")
    if r.get("disk_kept"):
        typer.echo(f"its disk is kept at {r['disk_kept']} (delete again with --purge-disks to remove it)")


def projects(as_json: bool = typer.Option(False, "--json", help=JSON_HELP)) -> None:
    """Projects and the resources each owns."""
    items = client().get("/v1/projects")["projects"]
    if as_json:
        print_json(items)
        return
    if not items:
        typer.echo("No projects yet: 'slipstream apply render.yaml' makes one.")
        return
    print_table(
        ("project", "resources"),
        ((p["name"], ", ".join(f"{r['kind']} {r['name']}" for r in p["resources"])) for p in items),
    )


@project_app.command("delete")
def project_delete(
    name: str,
    yes: bool = typer.Option(False, "--yes", "-y", help="do not ask for confirmation"),
    purge_disks: bool = typer.Option(False, "--purge-disks", help="also delete disks and key value data"),
) -> None:
    """Delete everything project NAME owns (each database is backed up first)."""
    if not yes:
        typer.confirm(f"Delete project {name} and every service, database and key value it owns?", abort=True)
    r = client().request("DELETE", f"/v1/projects/{name}", params={"purge_disks": purge_disks})
    for item in r["deleted"]:
        if "final_backup" in item:
            typer.echo(f"deleted database {item['database']} (final backup {item['final_backup']}: {item['path']})")
        else:
            kind, what = next(iter(item.items()))
            typer.echo(f"deleted {kind} {what}")
    for problem in r["errors"]:
        typer.echo(f"not deleted: {problem}", err=True)
    if r["errors"]:
        raise typer.Exit(1)


def gc(
    service: str | None = typer.Argument(None, help="only this service's builds"),
    dry_run: bool = typer.Option(False, "--dry-run", "-n", help="only show what would be removed"),
    json_out: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Remove old build directories: every service keeps its live build and those of its newest
    SLIPSTREAM_BUILDS_KEPT successful deploys (done after each deploy too)."""
    r = client().post("/v1/gc", {"service": service, "dry_run": dry_run})
    if json_out:
        print_json(r)
        return
    builds = r["builds"]
    verb = "would remove" if dry_run else "removed"
    for b in builds:
        typer.echo(f"{verb} build {b['build']} of {b['service']} ({b['bytes'] / 2**20:.1f} MB)")
    total = sum(b["bytes"] for b in builds) / 2**20
    typer.echo(f"{verb} {len(builds)} build{'' if len(builds) == 1 else 's'}, {total:.1f} MB")


def register(app: typer.Typer) -> None:
    """Add the top-level commands of this module to ``app``."""
    app.command()(cancel)
    app.command()(gc)
    app.command()(delete)
    app.command(context_settings=FLAGS_ONLY)(projects)

"""What a deployment is built from: `topics`, `db` (audit schema), `schemas` (message JSON Schemas), `policy` files."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from pipeline.cli.common import fail, settings_of

topics_app = typer.Typer(help="Create and list the pipeline's topics.", no_args_is_help=True)
db_app = typer.Typer(help="Audit database schema (Alembic).", no_args_is_help=True)
schemas_app = typer.Typer(help="Message schemas as JSON Schema files.", no_args_is_help=True)
policy_app = typer.Typer(help="Policy files.", no_args_is_help=True)


@topics_app.command("create")
def topics_create(ctx: typer.Context) -> None:
    """Create every pipeline topic that is missing (partitions and replication from settings)."""
    from pipeline.transport.topics import ensure_topics

    created = ensure_topics(settings_of(ctx))
    typer.echo("created: " + (", ".join(created) if created else "nothing (all present)"))


@topics_app.command("list")
def topics_list(ctx: typer.Context) -> None:
    """List the pipeline's topics in flow order."""
    from pipeline.transport.topics import TopicMap

    settings = settings_of(ctx)
    for spec in TopicMap.from_settings(settings).all_topics(settings):
        extra = " ".join(f"{k}={v}" for k, v in spec.config.items())
        typer.echo(f"{spec.name} {extra}".rstrip())


@db_app.command("upgrade")
def db_upgrade(ctx: typer.Context, revision: str = typer.Argument("head")) -> None:
    """Migrate the audit database to REVISION (default: head)."""
    from pipeline.audit.db import upgrade

    upgrade(settings_of(ctx).db_url, revision)
    typer.echo(f"audit database at {revision}")


@schemas_app.command("export")
def schemas_export(
    check: bool = typer.Option(False, "--check", help="Only report files that differ from the models"),
    directory: Optional[Path] = typer.Option(None, "--dir", help="Where to write (default: schemas/json)"),
) -> None:
    """Write one JSON Schema file per message model."""
    from schemas.export import JSON_DIR, stale_files, write_all

    target = directory or JSON_DIR
    if check:
        stale = stale_files(target)
        if stale:
            fail("out of date: " + ", ".join(stale) + " (run `trustreel schemas export`)")
        typer.echo("schema files are current")
        return
    for path in write_all(target):
        typer.echo(str(path))


@policy_app.command("check")
def policy_check(files: list[Path] = typer.Argument(..., help="Policy YAML files")) -> None:
    """Validate policy files; prints each one's id, stage and version hash."""
    import yaml

    from pipeline.worker.catalog import RULES
    from policies.loader import PolicyError, load_policy

    failed = False
    for path in files:
        try:
            document = yaml.safe_load(path.read_text()) if path.is_file() else None
            stage = document.get("stage") if isinstance(document, dict) else None
            if stage not in RULES:
                raise PolicyError(f"{path}: stage {stage!r} is not one of {', '.join(sorted(RULES))}")
            policy = load_policy(path, RULES[stage], expected_stage=stage)
            typer.echo(f"ok  {path}: {policy.policy_id} (stage {policy.stage}) version {policy.version[:16]}")
        except (PolicyError, yaml.YAMLError) as exc:
            failed = True
            typer.secho(f"bad {exc}", fg=typer.colors.RED, err=True)
    if failed:
        raise typer.Exit(1)

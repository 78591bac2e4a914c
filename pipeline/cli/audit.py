"""`trustreel audit`: what auditors ask the audit database, and retention."""

from __future__ import annotations

import json
from typing import Optional

import typer

from pipeline.cli.common import audit_sessions, emit_rows, fail, format_option, parse_time, settings_of

audit_app = typer.Typer(help="Query the audit database.", no_args_is_help=True)


@audit_app.command("show")
def audit_show(ctx: typer.Context, request_id: str,
               as_json: bool = typer.Option(False, "--json", help="Machine-readable output")) -> None:
    """Print a request's full path through the stages, with reasons and policy versions."""
    from pipeline.audit.queries import request_path

    from pipeline.audit.db import make_engine, make_sessionmaker

    path = request_path(make_sessionmaker(make_engine(settings_of(ctx).db_url)), request_id)
    if path is None:
        fail(f"no audit record for request {request_id}")
    if as_json:
        typer.echo(json.dumps(path.as_dict(), indent=2, default=str))
    else:
        typer.echo(path.render())


@audit_app.command("decisions")
def audit_decisions(ctx: typer.Context, account: Optional[str] = typer.Option(None, help="Requester account"),
                    cameo: Optional[str] = typer.Option(None, help="Cameo id"),
                    output_format: str = format_option()) -> None:
    """All decisions on an account's requests, or on requests that used a cameo."""
    from pipeline.audit.queries import decisions_for

    if (account is None) == (cameo is None):
        fail("give --account or --cameo")
    emit_rows(decisions_for(audit_sessions(ctx), account=account, cameo=cameo), output_format)


@audit_app.command("rejections")
def audit_rejections(ctx: typer.Context, since: str = typer.Option(..., help="ISO time (UTC if no offset)"),
                     until: str = typer.Option(..., help="ISO time, exclusive"),
                     stage: Optional[str] = typer.Option(None), reason: Optional[str] = typer.Option(None),
                     policy_version: Optional[str] = typer.Option(None, help="Version or its prefix"),
                     output_format: str = format_option()) -> None:
    """Rejections in a time range, by stage / reason code / policy version."""
    from pipeline.audit.queries import rejections

    emit_rows(rejections(audit_sessions(ctx), parse_time(since), parse_time(until), stage, reason,
                          policy_version), output_format)


@audit_app.command("published")
def audit_published(ctx: typer.Context, cameo: str = typer.Option(..., help="Cameo id"),
                    output_format: str = format_option()) -> None:
    """Published items that used a cameo, and whether each was taken down."""
    from pipeline.audit.queries import published_with_cameo

    emit_rows(published_with_cameo(audit_sessions(ctx), cameo, settings_of(ctx).stages[-1]), output_format)


@audit_app.command("counts")
def audit_counts(ctx: typer.Context, since: str = typer.Option(...), until: str = typer.Option(...),
                 output_format: str = format_option()) -> None:
    """Requests per terminal outcome per hour."""
    from pipeline.audit.queries import outcome_counts_per_hour

    emit_rows(outcome_counts_per_hour(audit_sessions(ctx), parse_time(since), parse_time(until),
                                       settings_of(ctx).stages[-1]), output_format)


@audit_app.command("expire")
def audit_expire(ctx: typer.Context, older_than_days: Optional[int] = typer.Option(
        None, help="Default: TRUSTREEL_RETENTION_DAYS")) -> None:
    """Drop prompts and media references older than the retention period, keeping the decision skeleton."""
    from datetime import timedelta

    from pipeline.audit.retention import expire

    days = older_than_days or settings_of(ctx).retention_days
    if days is None:
        fail("no retention period: pass --older-than-days or set TRUSTREEL_RETENTION_DAYS")
    result = expire(audit_sessions(ctx), timedelta(days=days))
    typer.echo(f"expired {result.requests} request(s), {result.decisions} decision(s), "
               f"{result.dead_letters} dead letter(s) older than {days} days")

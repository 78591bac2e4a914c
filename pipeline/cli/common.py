"""Helpers every command group shares: settings from the context, failing with a message, row output."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, NoReturn

import typer

from pipeline.settings import Settings


def settings_of(ctx: typer.Context) -> Settings:
    return ctx.obj


def fail(message: str, code: int = 1) -> NoReturn:
    typer.secho(message, fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def emit_rows(rows: list[dict], output_format: str) -> None:
    """Rows as an aligned table (people), JSON or CSV (tools)."""
    if output_format == "json":
        typer.echo(json.dumps(rows, indent=2, default=str))
        return
    if output_format == "csv":
        import csv
        import io

        buffer = io.StringIO()
        if rows:
            writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        typer.echo(buffer.getvalue(), nl=False)
        return
    if not rows:
        typer.echo("(no rows)")
        return
    columns = list(rows[0])
    widths = {c: min(40, max(len(c), *(len(str(r.get(c, ""))) for r in rows))) for c in columns}
    typer.echo("  ".join(c.ljust(widths[c]) for c in columns))
    for row in rows:
        typer.echo("  ".join(str(row.get(c, ""))[:40].ljust(widths[c]) for c in columns))


def format_option() -> Any:
    return typer.Option("table", "--format", help="table | json | csv")


def parse_time(value: str) -> datetime:
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def audit_sessions(ctx: typer.Context):
    from pipeline.audit.db import make_engine, make_sessionmaker

    return make_sessionmaker(make_engine(settings_of(ctx).db_url))


def guess_type(path: Path) -> str:
    import mimetypes

    guessed = mimetypes.guess_type(path.name)[0]
    if guessed is None:
        fail(f"cannot tell the media type of {path}; pass --media-type")
    return guessed

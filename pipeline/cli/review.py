"""`trustreel review`: people resolve parked requests and appeals."""

from __future__ import annotations

import typer

from pipeline.cli.common import audit_sessions, emit_rows, fail, format_option, settings_of

review_app = typer.Typer(help="Human review and appeals of parked or rejected requests.", no_args_is_help=True)


@review_app.command("list")
def review_list(ctx: typer.Context, output_format: str = format_option()) -> None:
    """Requests waiting for a person (oldest first)."""
    from pipeline.cases.reviews import pending_reviews

    emit_rows(pending_reviews(audit_sessions(ctx)), output_format)


def _resolve(ctx: typer.Context, request_id: str, approve: bool, reviewer: str, note: str) -> None:
    from pipeline.cases.reviews import ReviewError, describe, resolve, send_resolution
    from pipeline.producer import PipelineProducer
    from pipeline.transport.topics import TopicMap

    settings = settings_of(ctx)
    sessions = audit_sessions(ctx)
    try:
        resolution = resolve(sessions, TopicMap.from_settings(settings), request_id, approve, reviewer, note)
    except ReviewError as problem:
        fail(str(problem))
    with PipelineProducer(settings) as producer:
        sent = send_resolution(sessions, resolution, producer.once_sender())
    typer.echo(f"{describe(resolution)} ({sent.value})")


@review_app.command("approve")
def review_approve(ctx: typer.Context, request_id: str, reviewer: str = typer.Option(..., help="Who decides"),
                   note: str = typer.Option("", help="Why (kept in the audit database)")) -> None:
    """Let the request go on from the stage where it stopped."""
    _resolve(ctx, request_id, True, reviewer, note)


@review_app.command("reject")
def review_reject(ctx: typer.Context, request_id: str, reviewer: str = typer.Option(..., help="Who decides"),
                  note: str = typer.Option("", help="Why (shown to the requester)")) -> None:
    """End the request with a rejection."""
    _resolve(ctx, request_id, False, reviewer, note)


@review_app.command("appeal")
def review_appeal(ctx: typer.Context, request_id: str,
                  note: str = typer.Option("", help="What the requester says")) -> None:
    """Open an appeal of a rejection: a reviewer can then approve (resume) or reject it."""
    from pipeline.cases.reviews import ReviewError, appeal

    try:
        stage = appeal(audit_sessions(ctx), request_id, note)
    except ReviewError as problem:
        fail(str(problem))
    typer.echo(f"{request_id}: appeal of the {stage} rejection is waiting for review")

"""`report`, `account standing|appeal|appeals|decide-appeal` and `cameo videos|remove-video`: viewers' reports,
account sanctions and cameo owners' choices (the web console offers the same to staff)."""

from __future__ import annotations

import uuid

import typer

from pipeline.cli.common import audit_sessions, emit_rows, fail, format_option, settings_of
from pipeline.cli.registries import account_app, cameo_app

report_app = typer.Typer(help="Viewers' reports on published videos, and the cases they open.",
                         no_args_is_help=True)


@report_app.command("send")
def report_send(ctx: typer.Context, request_id: str, reporter: str = typer.Option(..., help="Reporting account"),
                category: str = typer.Option(..., help="sexual | child_safety | violence | hate | harassment | "
                                                       "impersonation | copyright | spam | other"),
                text: str = typer.Option("", help="What the viewer wrote"),
                report_id: str = typer.Option(None, help="Default: a fresh id")) -> None:
    """Send a viewer's report on a published video to feed.reports."""
    from pydantic import ValidationError

    from pipeline.producer import PipelineProducer
    from pipeline.runtime.runner import describe_validation_error
    from schemas.models import UserReport

    try:
        report = UserReport(report_id=report_id or str(uuid.uuid4()), request_id=request_id, reporter=reporter,
                            category=category, text=text)
    except ValidationError as exc:
        fail(f"not sent: {describe_validation_error(exc)}")
    with PipelineProducer(settings_of(ctx)) as producer:
        producer.send_report(report)
    typer.echo(f"report {report.report_id} on {request_id} sent")


@report_app.command("cases")
def report_cases_command(ctx: typer.Context, status: str = typer.Option("pending", help="pending | confirmed | "
                                                                                      "dismissed"),
                         output_format: str = format_option()) -> None:
    """Published videos whose reports passed the policy's threshold (oldest first)."""
    from pipeline.enforcement.reports import report_cases

    emit_rows(report_cases(audit_sessions(ctx), status), output_format)


def _decide_report(ctx: typer.Context, request_id: str, confirm: bool, reviewer: str, note: str) -> None:
    from pipeline.cases.takedowns import send_takedowns
    from pipeline.worker.catalog import takedown_service
    from pipeline.enforcement.reports import ReportCaseError, decide_case
    from pipeline.producer import PipelineProducer

    settings = settings_of(ctx)
    sessions = audit_sessions(ctx)
    service = takedown_service(settings, sessions)
    try:
        decision = decide_case(sessions, service, request_id, confirm, reviewer, note)
    except ReportCaseError as problem:
        fail(str(problem))
    with PipelineProducer(settings) as producer:
        send_takedowns(sessions, producer.once_sender(), decision.takedowns)
    typer.echo(f"{request_id}: reports {decision.status}" + (f", {len(decision.takedowns)} takedown sent"
                                                             if decision.takedowns else ""))


@report_app.command("confirm")
def report_confirm(ctx: typer.Context, request_id: str, reviewer: str = typer.Option(..., help="Who decides"),
                   note: str = typer.Option("", help="Why (shown to the author)")) -> None:
    """The reports are right: take the video down (once); it is a strike against its author."""
    _decide_report(ctx, request_id, True, reviewer, note)


@report_app.command("dismiss")
def report_dismiss(ctx: typer.Context, request_id: str, reviewer: str = typer.Option(..., help="Who decides"),
                   note: str = typer.Option("", help="Why")) -> None:
    """The reports are wrong: close the case, the video stays up."""
    _decide_report(ctx, request_id, False, reviewer, note)


def _standing_book(ctx: typer.Context):
    from pipeline.enforcement.rules import latest_enforcement
    from pipeline.enforcement.standing import SqlStandingBook

    return SqlStandingBook(audit_sessions(ctx), latest_enforcement(settings_of(ctx).policy_dir))


@account_app.command("standing")
def account_standing(ctx: typer.Context, account: str, output_format: str = format_option()) -> None:
    """The account's sanction, if any, and every strike behind it."""
    import dataclasses
    import json
    from datetime import datetime, timezone

    from pipeline.enforcement.standing import explain

    standing = _standing_book(ctx).standing(account, datetime.now(timezone.utc))
    if output_format == "json":
        typer.echo(json.dumps(standing.record() | {"strikes": [dataclasses.asdict(strike)
                                                              for strike in standing.strikes]},
                              indent=2, default=str))
    else:
        typer.echo(explain(standing))


@account_app.command("appeal")
def account_appeal(ctx: typer.Context, account: str,
                   note: str = typer.Option("", help="What the account says")) -> None:
    """Appeal the account's sanction: a senior reviewer decides."""
    from pipeline.enforcement.appeals import StandingAppealError, open_appeal

    try:
        appeal_id = open_appeal(audit_sessions(ctx), _standing_book(ctx), account, note)
    except StandingAppealError as problem:
        fail(str(problem))
    typer.echo(f"appeal #{appeal_id} of account {account} is waiting for a senior reviewer")


@account_app.command("appeals")
def account_appeals(ctx: typer.Context, output_format: str = format_option()) -> None:
    """Sanction appeals waiting for a senior reviewer (oldest first)."""
    from pipeline.enforcement.appeals import pending_appeals

    emit_rows(pending_appeals(audit_sessions(ctx)), output_format)


@account_app.command("decide-appeal")
def account_decide_appeal(ctx: typer.Context, appeal_id: int,
                          approve: bool = typer.Option(..., "--approve/--reject", help="Void the strikes, or not"),
                          reviewer: str = typer.Option(..., help="The senior reviewer deciding"),
                          note: str = typer.Option("", help="Why")) -> None:
    """Decide a sanction appeal: approving voids the strikes counted now, which ends the sanction."""
    from pipeline.enforcement.appeals import StandingAppealError, decide_appeal

    try:
        typer.echo(decide_appeal(audit_sessions(ctx), _standing_book(ctx), appeal_id, approve, reviewer, note))
    except StandingAppealError as problem:
        fail(str(problem))


@cameo_app.command("videos")
def cameo_videos(ctx: typer.Context, owner: str, output_format: str = format_option()) -> None:
    """Every request that used one of OWNER's cameos, rejected ones included, with its outcome."""
    from pipeline.enforcement.owners import owner_videos

    emit_rows(owner_videos(audit_sessions(ctx), owner), output_format)


@cameo_app.command("remove-video")
def cameo_remove_video(ctx: typer.Context, owner: str, request_id: str,
                       by: str = typer.Option(None, help="The support agent acting for the owner, if any"),
                       note: str = typer.Option("", help="The owner's words")) -> None:
    """The owner takes a published video made with their cameo down (once; recorded as the owner's choice)."""
    from pipeline.cases.takedowns import send_takedowns
    from pipeline.worker.catalog import takedown_service
    from pipeline.enforcement.owners import OwnerRemovalError, remove_video
    from pipeline.producer import PipelineProducer

    settings = settings_of(ctx)
    sessions = audit_sessions(ctx)
    service = takedown_service(settings, sessions)
    try:
        messages = remove_video(sessions, service, owner, request_id, by=by, note=note)
    except OwnerRemovalError as problem:
        fail(str(problem))
    with PipelineProducer(settings) as producer:
        send_takedowns(sessions, producer.once_sender(), messages)
    typer.echo(f"{request_id}: removed by its cameo owner {owner}" + ("" if messages else " (already down)"))

"""`trustreel console`: serve the trust and safety web console; `console reviewer ...`: its accounts."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from pipeline.cli.common import audit_sessions, emit_rows, fail, format_option, settings_of

console_app = typer.Typer(help="The trust and safety web console (run without a command to serve it).",
                          invoke_without_command=True)
reviewer_app = typer.Typer(help="Console accounts: reviewers and senior reviewers.", no_args_is_help=True)
console_app.add_typer(reviewer_app, name="reviewer")


@console_app.callback()
def console_serve(ctx: typer.Context, host: str = typer.Option("127.0.0.1", help="Address to listen on"),
                  port: int = typer.Option(8600, help="Port to listen on")) -> None:
    """Serve the console (put it behind TLS: TRUSTREEL_CONSOLE_SECURE_COOKIES=true there)."""
    if ctx.invoked_subcommand is not None:
        return
    import uvicorn

    from pipeline.audit.db import upgrade
    from pipeline.console.app import create_console

    settings = settings_of(ctx)
    upgrade(settings.db_url)
    typer.echo(f"trustreel console on http://{host}:{port}/")
    uvicorn.run(create_console(settings), host=host, port=port, log_level="warning", proxy_headers=False)


def _password(password_file: Optional[Path]) -> str:
    if password_file is not None:
        return password_file.read_text().strip()
    return typer.prompt("Password", hide_input=True, confirmation_prompt=True)


@reviewer_app.command("add")
def reviewer_add(ctx: typer.Context, username: str,
                 role: str = typer.Option("reviewer", help="reviewer | senior"),
                 password_file: Optional[Path] = typer.Option(None, help="Read the password from this file "
                                                                         "(default: ask)"),
                 proxy_only: bool = typer.Option(False, help="No password: only the trusted proxy header logs "
                                                             "this reviewer in")) -> None:
    """Create a console account."""
    from pipeline.audit.db import upgrade
    from pipeline.console.accounts import ReviewerAccountError, Role, add_reviewer

    try:
        chosen = Role(role)
    except ValueError:
        fail(f"role must be reviewer or senior, not {role}")
    upgrade(settings_of(ctx).db_url)
    try:
        add_reviewer(audit_sessions(ctx), username, chosen, None if proxy_only else _password(password_file))
    except ReviewerAccountError as problem:
        fail(str(problem))
    typer.echo(f"reviewer {username} ({chosen.value}) added")


@reviewer_app.command("password")
def reviewer_password(ctx: typer.Context, username: str,
                      password_file: Optional[Path] = typer.Option(None, help="Read it from this file")) -> None:
    """Set a reviewer's password."""
    from pipeline.console.accounts import ReviewerAccountError, set_password

    try:
        set_password(audit_sessions(ctx), username, _password(password_file))
    except ReviewerAccountError as problem:
        fail(str(problem))
    typer.echo(f"password of {username} changed")


@reviewer_app.command("disable")
def reviewer_disable(ctx: typer.Context, username: str) -> None:
    """Lock a reviewer out (at their next click; their past actions stay attributed to them)."""
    from pipeline.console.accounts import ReviewerAccountError, disable_reviewer

    try:
        disable_reviewer(audit_sessions(ctx), username)
    except ReviewerAccountError as problem:
        fail(str(problem))
    typer.echo(f"reviewer {username} disabled")


@reviewer_app.command("list")
def reviewer_list(ctx: typer.Context, output_format: str = format_option()) -> None:
    """Console accounts and their roles."""
    from pipeline.console.accounts import list_reviewers

    emit_rows(list_reviewers(audit_sessions(ctx)), output_format)

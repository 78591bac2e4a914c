"""`trustreel security`: who may do what on Kafka (the ACL plan), printed or applied."""

from __future__ import annotations

import json

import typer

from pipeline.cli.common import fail, settings_of

security_app = typer.Typer(help="Kafka principals and their least-privilege ACLs.", no_args_is_help=True)


@security_app.command("acl-plan")
def acl_plan_command(ctx: typer.Context,
                     output_format: str = typer.Option("table", "--format", help="table | json"),
                     apply: bool = typer.Option(False, "--apply", help="Create the ACLs on the broker (connect as "
                                                                       "a super user, e.g. admin)")) -> None:
    """The ACLs each principal needs for the configured stages and topic prefix, and nothing more."""
    from dataclasses import asdict

    from pipeline.transport.acl_plan import acl_plan, apply_plan

    settings = settings_of(ctx)
    grants = acl_plan(settings)
    if output_format == "json":
        typer.echo(json.dumps([asdict(grant) for grant in grants], indent=2))
    elif output_format == "table":
        for grant in grants:
            typer.echo(grant.line())
    else:
        fail("--format is table or json")
    if apply:
        from kafka.admin import KafkaAdminClient

        from pipeline.transport.security import KafkaConnection

        connection = KafkaConnection.from_settings(settings)
        try:
            admin = KafkaAdminClient(**connection.client_options(), client_id="trustreel-acl-plan")
            try:
                created = apply_plan(admin, grants)
            finally:
                admin.close()
        except Exception as exc:  # the client's own message names the broker and the refusal, never the secret
            fail(f"applying the ACL plan as {connection.principal} failed: {type(exc).__name__}: {exc}")
        typer.echo(f"applied {created} ACLs as {connection.principal}", err=True)

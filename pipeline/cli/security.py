"""`trustreel security`: who may do what on Kafka (the ACL plan), printed, applied or provisioned."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import typer

from pipeline.cli.common import fail, settings_of
from pipeline.settings import Settings

security_app = typer.Typer(help="Kafka principals and their least-privilege ACLs.", no_args_is_help=True)


def _as_configured_principal(settings: Settings, what: str, action: Callable[[Any], int]) -> tuple[int, str]:
    """Run `action` on an admin client of this process's principal (a super user, e.g. the admin certificate);
    a refusal ends the command with the principal's name and the broker's reason, never a secret."""
    from kafka.admin import KafkaAdminClient

    from pipeline.transport.security import KafkaConnection

    principal = settings.kafka_username or "the configured principal"
    try:
        connection = KafkaConnection.from_settings(settings)
        principal = connection.principal
        admin = KafkaAdminClient(**connection.client_options(), client_id="trustreel-security")
        try:
            return action(admin), principal
        finally:
            admin.close()
    except Exception as exc:
        fail(f"{what} as {principal} failed: {type(exc).__name__}: {exc}")


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
        created, principal = _as_configured_principal(settings, "applying the ACL plan",
                                                      lambda admin: apply_plan(admin, grants))
        typer.echo(f"applied {created} ACLs as {principal}", err=True)


@security_app.command("provision")
def provision_command(ctx: typer.Context,
                      passwords_dir: Path = typer.Option(..., "--passwords-dir",
                                                         help="A PRINCIPAL.password file for every principal "
                                                              "of the plan")) -> None:
    """Make (or update) each principal's SCRAM user and apply the ACL plan; run as a super user (the admin)."""
    from pipeline.transport.acl_plan import ADMIN, acl_plan, principals, provision

    settings = settings_of(ctx)
    users = [principal for principal in principals(settings) if principal != ADMIN]
    missing = [user for user in users if not (passwords_dir / f"{user}.password").is_file()]
    if missing:
        fail(f"no password file for {', '.join(missing)} in {passwords_dir} "
             "(trustreel security dev-secrets makes them)")
    passwords = {user: (passwords_dir / f"{user}.password").read_text().strip() for user in users}
    created, principal = _as_configured_principal(settings, "provisioning",
                                                  lambda admin: provision(admin, passwords, acl_plan(settings)))
    typer.echo(f"{len(users)} SCRAM users and {created} ACLs in place (as {principal})")


@security_app.command("dev-secrets")
def dev_secrets(ctx: typer.Context, directory: Path = typer.Argument(..., help="e.g. docker/secrets/kafka")) -> None:
    """Throwaway Kafka TLS material and one random password per principal, for compose or a demo.

    Writes ca.pem, broker.pem, admin.pem and credentials/PRINCIPAL.password (keys and passwords mode 0600);
    files already there are kept. Production uses the organisation's CA and secret store instead.
    """
    from pipeline.transport.acl_plan import ADMIN, principals
    from pipeline.transport.dev_credentials import password_file, write_broker_tls

    write_broker_tls(directory)
    users = [principal for principal in principals(settings_of(ctx)) if principal != ADMIN]
    for user in users:
        password_file(directory, user)
    typer.echo(f"CA, broker and admin certificates and {len(users)} passwords in {directory}")

"""`trustreel broker`: the local single-node KRaft broker for development and tests."""

from __future__ import annotations

from dataclasses import replace

import typer

from pipeline.cli.common import fail, settings_of
from pipeline.settings import Settings

broker_app = typer.Typer(help="Run a local single-node Kafka broker (KRaft) for development and tests.",
                         no_args_is_help=True)


def _local_broker(settings: Settings, secure: bool | None = None):
    """The local broker; `secure` None: as it was made (a secure node leaves a marker in its folder)."""
    from pipeline.broker import LocalBroker

    broker = LocalBroker(home=settings.broker_home, port=settings.broker_port)
    return replace(broker, secure=(broker.run_dir / "secure").exists() if secure is None else secure)


@broker_app.command("start")
def broker_start(ctx: typer.Context,
                 secure: bool = typer.Option(False, "--secure", help="SASL_SSL (TLS + SCRAM-SHA-512) with ACLs: "
                                                                     "a user per principal of the ACL plan")) -> None:
    """Fetch Kafka from Maven Central (once), start it, wait until it answers. Reuses a running one."""
    from pipeline.broker import BrokerError
    from pipeline.transport.acl_plan import acl_plan, principals

    settings = settings_of(ctx)
    broker = _local_broker(settings, secure)
    try:
        bootstrap = broker.start()
        if secure:
            created = broker.provision(principals(settings), acl_plan(settings))
    except BrokerError as exc:
        fail(str(exc))
    if not secure:
        typer.echo(f"Kafka broker ready at {bootstrap}")
        return
    typer.echo(f"Kafka broker ready at {bootstrap} (SASL_SSL, SCRAM-SHA-512, ACLs on): {len(principals(settings))} "
               f"principals, {created} ACLs from `trustreel security acl-plan`")
    typer.echo("a client's settings: trustreel broker credentials PRINCIPAL (e.g. admin, stage-consent, requester)")


@broker_app.command("credentials")
def broker_credentials(ctx: typer.Context, principal: str = typer.Argument(..., help="e.g. admin, stage-publish")
                       ) -> None:
    """Print the TRUSTREEL_KAFKA_* settings that connect to the secure local broker as PRINCIPAL.

    The password stays in its file (mode 0600); the lines name the file. Use: `export $(trustreel broker
    credentials requester)`.
    """
    from pipeline.transport.acl_plan import principals

    settings = settings_of(ctx)
    broker = _local_broker(settings)
    if not broker.secure:
        fail("the local broker was not started with --secure; it has no principals")
    if principal not in principals(settings):
        fail(f"{principal} is not a principal of the ACL plan: {', '.join(principals(settings))}")
    for name, value in broker.client_environment(principal).items():
        typer.echo(f"{name}={value}")


@broker_app.command("stop")
def broker_stop(ctx: typer.Context) -> None:
    """Stop the broker started by `broker start`."""
    stopped = _local_broker(settings_of(ctx)).stop()
    typer.echo("Kafka broker stopped" if stopped else "no local broker was running")


@broker_app.command("status")
def broker_status(ctx: typer.Context) -> None:
    """Say whether the local broker runs and answers."""
    broker = _local_broker(settings_of(ctx))
    pid = broker.running_pid()
    answering = broker.answers()
    typer.echo(f"pid={pid or '-'} answering={'yes' if answering else 'no'} bootstrap={broker.bootstrap}")
    if not answering:
        raise typer.Exit(1)


@broker_app.command("wipe")
def broker_wipe(ctx: typer.Context) -> None:
    """Stop the local broker and delete its data, certificates and passwords (the jar cache stays)."""
    broker = _local_broker(settings_of(ctx))
    broker.wipe()
    typer.echo(f"wiped {broker.run_dir.name}: topics, offsets{', certificates, passwords' if broker.secure else ''}")

"""`trustreel broker`: the local single-node KRaft broker for development and tests."""

from __future__ import annotations

import typer

from pipeline.cli.common import fail, settings_of
from pipeline.settings import Settings

broker_app = typer.Typer(help="Run a local single-node Kafka broker (KRaft) for development and tests.",
                         no_args_is_help=True)


def _local_broker(settings: Settings):
    from pipeline.broker import LocalBroker

    return LocalBroker(home=settings.broker_home, port=settings.broker_port)


@broker_app.command("start")
def broker_start(ctx: typer.Context) -> None:
    """Fetch Kafka from Maven Central (once), start it, wait until it answers. Reuses a running one."""
    from pipeline.broker import BrokerError

    try:
        bootstrap = _local_broker(settings_of(ctx)).start()
    except BrokerError as exc:
        fail(str(exc))
    typer.echo(f"Kafka broker ready at {bootstrap}")


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

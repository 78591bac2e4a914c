"""What operators run: `worker`, `health`, `demo`, and `generator tiny` for trying things out."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from pipeline.cli.common import settings_of

generator_app = typer.Typer(help="The generation model.", no_args_is_help=True)


def worker(ctx: typer.Context,
           stage: list[str] = typer.Option([], help="Stage to run (repeatable; default: every configured stage)"),
           state_feeds: bool = typer.Option(True, "--state-feeds/--no-state-feeds",
                                            help="Also apply cameo.consents, accounts.events and rights.registry "
                                                 "(a stage's own principal may not: run one --state-feeds-only "
                                                 "worker as the registries principal)"),
           state_feeds_only: bool = typer.Option(False, "--state-feeds-only",
                                                 help="Apply the state feeds, run no stage"),
           loglevel: str = typer.Option("warning", help="faust log level")) -> None:
    """Run stage workers until stopped (SIGTERM / Ctrl-C)."""
    from pipeline.worker.app import run_worker

    settings = settings_of(ctx)
    if state_feeds_only and stage:
        raise typer.BadParameter("--state-feeds-only runs no stage; leave out --stage")
    stages = [] if state_feeds_only else stage or list(settings.stages)
    run_worker(settings, stages, loglevel=loglevel, apply_state_feeds=state_feeds or state_feeds_only)


def health(ctx: typer.Context,
           worker: bool = typer.Option(False, "--worker", help="Also ask this machine's worker (its /healthz on "
                                                               "TRUSTREEL_METRICS_PORT) whether it is consuming")
           ) -> None:
    """Exit 0 if the broker (with topics), audit database (migrated) and asset store are usable."""
    from pipeline.health import run_checks

    checks = run_checks(settings_of(ctx), worker)
    for check in checks:
        typer.echo(f"{check.name}: {'ok' if check.ok else 'FAILED'}: {check.detail}")
    if not all(check.ok for check in checks):
        raise typer.Exit(1)


def demo(ctx: typer.Context,
         keep_running: bool = typer.Option(False, help="Leave the broker running afterwards"),
         secure: bool = typer.Option(False, "--secure", help="On a SASL_SSL broker with ACLs, every stage and "
                                                             "sample service as its own principal")) -> None:
    """Start the local broker and workers, send sample cameos and requests, print each request's path."""
    from pipeline.demo import run_demo

    sys.exit(run_demo(settings_of(ctx), keep_broker=keep_running, secure=secure))


@generator_app.command("tiny")
def generator_tiny(directory: Path, seed: int = typer.Option(0, help="Weight initialisation seed")) -> None:
    """Write a tiny randomly initialised LTX-Video pipeline (no download) for demos, tests and benchmarks."""
    from pipeline.generation.tiny_generator import build_tiny_ltx

    build_tiny_ltx(directory, seed)
    typer.echo(f"tiny pipeline written; use it with TRUSTREEL_GENERATOR_MODEL={directory}")

"""The `trustreel` command: the root app, its global options, and which module serves each command.

    trustreel [--bootstrap-servers B] [--db-url U] [-v] COMMAND ...
        broker | topics, db, schemas, policy | submit, asset | cameo, account | gallery, takedown | bank, rights
        audit | review, report, console | verify, provenance | worker, health, demo, generator | security
"""

from __future__ import annotations

import logging
from typing import Optional

import typer

from pipeline.cli import (audit, banks, broker, console, definitions, enforcement, likeness, operations, provenance,
                          registries, requests, review, security)
from pipeline.observability.logs import configure_logging
from pipeline.observability.tracing import configure_tracing
from pipeline.settings import load_settings

app = typer.Typer(help="trustreel: moderation and trust pipeline for AI-generated video, on Apache Kafka.",
                  no_args_is_help=True, context_settings={"help_option_names": ["-h", "--help"]})
for sub, name in [(broker.broker_app, "broker"), (definitions.topics_app, "topics"), (definitions.db_app, "db"),
                  (definitions.schemas_app, "schemas"), (definitions.policy_app, "policy"),
                  (registries.cameo_app, "cameo"), (registries.account_app, "account"),
                  (likeness.gallery_app, "gallery"), (requests.asset_app, "asset"), (audit.audit_app, "audit"),
                  (operations.generator_app, "generator"), (provenance.provenance_app, "provenance"),
                  (review.review_app, "review"), (likeness.takedown_app, "takedown"), (banks.bank_app, "bank"),
                  (banks.rights_app, "rights"), (security.security_app, "security"),
                  (enforcement.report_app, "report"), (console.console_app, "console")]:
    app.add_typer(sub, name=name)
for command, name in [(provenance.verify, "verify"), (operations.health, "health"), (requests.submit, "submit"),
                      (operations.worker, "worker"), (operations.demo, "demo")]:
    app.command(name)(command)


@app.callback()
def main(
    ctx: typer.Context,
    bootstrap_servers: Optional[str] = typer.Option(None, "--bootstrap-servers", "-b",
                                                    help="Kafka bootstrap servers (env: TRUSTREEL_BOOTSTRAP)"),
    db_url: Optional[str] = typer.Option(None, "--db-url", help="Audit database URL (env: TRUSTREEL_DB_URL)"),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log at INFO level"),
) -> None:
    settings = load_settings(bootstrap=bootstrap_servers, db_url=db_url)
    configure_logging(logging.INFO if verbose else logging.WARNING, settings.log_format)
    logging.getLogger("kafka").setLevel(logging.ERROR)
    configure_tracing("trustreel-cli", str(settings.trace_file) if settings.trace_file else None)
    ctx.obj = settings

"""`verify` (a video's manifest, watermark and audit record) and `provenance dev-cert`."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from pipeline.cli.common import settings_of

provenance_app = typer.Typer(help="C2PA signing credentials.", no_args_is_help=True)


def verify(ctx: typer.Context, file: Path = typer.Argument(..., exists=True, dir_okay=False),
           as_json: bool = typer.Option(False, "--json", help="Machine-readable output")) -> None:
    """Check a video's C2PA manifest and invisible watermark, and find its audit record.

    Exits 0 when the manifest validates (trusted, if trust anchors are configured), else 1.
    """
    from consumers.provenance import ProvenanceRules
    from pipeline.audit.db import make_engine, make_sessionmaker
    from pipeline.provenance.verification import verify_file
    from pipeline.provenance.watermarks import InvisibleMarkStyle
    from pipeline.worker.catalog import trust_anchors
    from policies.loader import load_policy, policy_path

    settings = settings_of(ctx)
    rules = load_policy(policy_path("provenance", settings.policy_dir), ProvenanceRules).rules
    report = verify_file(file.read_bytes(), trust_anchors(settings), InvisibleMarkStyle(**rules.invisible.model_dump()),
                         make_sessionmaker(make_engine(settings.db_url)))
    if as_json:
        typer.echo(json.dumps(report.summary(), indent=2, default=str))
    else:
        typer.echo(report.render())
    wanted = ("Trusted",) if settings.c2pa_trust_anchors else ("Trusted", "Valid")
    if report.credentials.state not in wanted:
        raise typer.Exit(1)


@provenance_app.command("dev-cert")
def provenance_dev_cert(directory: Path, valid_days: int = typer.Option(30, help="Leaf certificate lifetime")) -> None:
    """Write a throwaway CA + ES256 signing chain for development (never for production)."""
    from pipeline.provenance.dev_certificates import write_dev_credentials

    credentials = write_dev_credentials(directory, valid_days=valid_days)
    typer.echo(f"TRUSTREEL_C2PA_CERT_CHAIN={credentials.cert_chain}\n"
               f"TRUSTREEL_C2PA_PRIVATE_KEY={credentials.private_key}\n"
               f"TRUSTREEL_C2PA_TRUST_ANCHORS={credentials.trust_anchor}")

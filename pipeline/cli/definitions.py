"""What a deployment is built from: `topics`, `db` (audit schema), `schemas` (message JSON Schemas), `policy` files."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from pipeline.cli.common import fail, settings_of

topics_app = typer.Typer(help="Create and list the pipeline's topics.", no_args_is_help=True)
db_app = typer.Typer(help="Audit database schema (Alembic).", no_args_is_help=True)
schemas_app = typer.Typer(help="Message schemas as JSON Schema files.", no_args_is_help=True)
policy_app = typer.Typer(help="Policy files.", no_args_is_help=True)


@topics_app.command("create")
def topics_create(ctx: typer.Context) -> None:
    """Create every pipeline topic that is missing (partitions and replication from settings)."""
    from pipeline.transport.topics import ensure_topics

    created = ensure_topics(settings_of(ctx))
    typer.echo("created: " + (", ".join(created) if created else "nothing (all present)"))


@topics_app.command("list")
def topics_list(ctx: typer.Context) -> None:
    """List the pipeline's topics in flow order."""
    from pipeline.transport.topics import TopicMap

    settings = settings_of(ctx)
    for spec in TopicMap.from_settings(settings).all_topics(settings):
        extra = " ".join(f"{k}={v}" for k, v in spec.config.items())
        typer.echo(f"{spec.name} {extra}".rstrip())


@db_app.command("upgrade")
def db_upgrade(ctx: typer.Context, revision: str = typer.Argument("head")) -> None:
    """Migrate the audit database to REVISION (default: head)."""
    from pipeline.audit.db import upgrade

    upgrade(settings_of(ctx).db_url, revision)
    typer.echo(f"audit database at {revision}")


@schemas_app.command("export")
def schemas_export(
    check: bool = typer.Option(False, "--check", help="Only report files that differ from the models"),
    directory: Optional[Path] = typer.Option(None, "--dir", help="Where to write (default: schemas/json)"),
) -> None:
    """Write one JSON Schema file per message model."""
    from schemas.export import JSON_DIR, stale_files, write_all

    target = directory or JSON_DIR
    if check:
        stale = stale_files(target)
        if stale:
            fail("out of date: " + ", ".join(stale) + " (run `trustreel schemas export`)")
        typer.echo("schema files are current")
        return
    for path in write_all(target):
        typer.echo(str(path))


@policy_app.command("check")
def policy_check(files: list[Path] = typer.Argument(..., help="Policy YAML files")) -> None:
    """Validate policy files; prints each one's id, stage and version hash."""
    import yaml

    from pipeline.worker.catalog import RULES
    from policies.loader import PolicyError, load_policy

    failed = False
    for path in files:
        try:
            document = yaml.safe_load(path.read_text()) if path.is_file() else None
            stage = document.get("stage") if isinstance(document, dict) else None
            if stage not in RULES:
                raise PolicyError(f"{path}: stage {stage!r} is not one of {', '.join(sorted(RULES))}")
            policy = load_policy(path, RULES[stage], expected_stage=stage)
            typer.echo(f"ok  {path}: {policy.policy_id} (stage {policy.stage}) version {policy.version[:16]}")
        except (PolicyError, yaml.YAMLError) as exc:
            failed = True
            typer.secho(f"bad {exc}", fg=typer.colors.RED, err=True)
    if failed:
        raise typer.Exit(1)


@policy_app.command("try")
def policy_try(ctx: typer.Context, prompt: str = typer.Argument(..., help="A request's prompt"),
               output_format: str = typer.Option("text", "--format", help="text | json")) -> None:
    """How the content policy and the age bands would judge PROMPT: the outcome, reasons, labels, each band's
    answer, every signal with its evidence (matched phrases, the learned model's probability) and the semantic
    backend's reading of the whole text (its margin, the labels it cleared or lifted, the guesses it overruled). For
    policy writers trying a lexicon line or an example; a user only ever sees the reasons."""
    import json
    import tempfile

    from consumers.age import AgeRules
    from consumers.content import ContentBackends, ContentRules, ContentStage
    from pipeline.media.assets import LocalAssetStore
    from pipeline.worker.catalog import content_backends
    from policies.loader import load_policy, policy_path
    from schemas.models import GenerationRequest, Outcome, PipelineItem

    settings = settings_of(ctx)
    content = load_policy(policy_path("content", settings.policy_dir), ContentRules, expected_stage="content")
    age = load_policy(policy_path("age", settings.policy_dir), AgeRules, expected_stage="age")
    stage = ContentStage("content", content, ContentBackends(content_backends(settings, content).text, None),
                         LocalAssetStore(Path(tempfile.mkdtemp())))
    request = GenerationRequest(request_id="policy-try", requester_account="policy-try", prompt=prompt)
    verdict = stage.decide(PipelineItem(request=request))
    labels = verdict.details["labels"]
    bands = _band_answers(labels, age.rules) if verdict.outcome is Outcome.APPROVED else {}
    report = {"outcome": verdict.outcome.value, "reasons": [reason.code for reason in verdict.reasons],
              "labels": labels, "bands": bands, "signals": verdict.details["signals"],
              "readings": verdict.details.get("readings", []), "cleared": verdict.details.get("cleared_labels", []),
              "lifted": verdict.details.get("lifted_labels", []),
              "overruled": verdict.details.get("overruled_guesses", []),
              "errors": verdict.details["errors"],
              "policies": {"content": content.version[:16], "age": age.version[:16]}}
    if output_format == "json":
        typer.echo(json.dumps(report, ensure_ascii=False, indent=2))
        return
    typer.echo(f"{report['outcome']} {' '.join(report['reasons'])} (content {content.policy_id} "
               f"{report['policies']['content']}, age {age.policy_id} {report['policies']['age']})")
    typer.echo(f"labels: {', '.join(labels) or '-'}")
    for band, answer in bands.items():
        typer.echo(f"  {band:<9} {answer}")
    for signal in report["signals"]:
        typer.echo(f"signal: {json.dumps(signal, ensure_ascii=False)}")
    for reading in report["readings"]:
        typer.echo(f"reading: {json.dumps(reading, ensure_ascii=False)}")
    if report["cleared"]:
        typer.echo(f"cleared as another sense: {', '.join(report['cleared'])}")
    if report["lifted"]:
        typer.echo(f"lifted to medium by a reading leaning harmful: {', '.join(report['lifted'])}")
    if report["overruled"]:
        typer.echo(f"guesses overruled by a reading not leaning harmful: {', '.join(report['overruled'])}")
    for error in report["errors"]:
        typer.echo(f"error: {error}")


def _band_answers(labels: list[str], age_rules) -> dict[str, str]:
    """Per age band: whether an approved request with these content labels would pass the age stage."""
    from consumers.age import not_allowed_labels

    return {band.value: ("refused: band blocked" if rules.blocked else
                         "refused: labels not allowed" if not_allowed_labels(["general", *labels], rules) else
                         "allowed")
            for band, rules in age_rules.bands.items()}

"""The `trustreel` command line: broker, workers, producers, policies, schemas and audit."""

from __future__ import annotations

import json
import logging
import sys
import uuid
from pathlib import Path
from typing import Any, Optional

import typer

from pipeline.media.assets import asset_store
from pipeline.settings import Settings, load_settings

app = typer.Typer(help="trustreel: moderation and trust pipeline for AI-generated video, on Apache Kafka.",
                  no_args_is_help=True, context_settings={"help_option_names": ["-h", "--help"]})
broker_app = typer.Typer(help="Run a local single-node Kafka broker (KRaft) for development and tests.",
                         no_args_is_help=True)
topics_app = typer.Typer(help="Create and list the pipeline's topics.", no_args_is_help=True)
db_app = typer.Typer(help="Audit database schema (Alembic).", no_args_is_help=True)
schemas_app = typer.Typer(help="Message schemas as JSON Schema files.", no_args_is_help=True)
policy_app = typer.Typer(help="Policy files.", no_args_is_help=True)
cameo_app = typer.Typer(help="Cameo consent events and the consent registry.", no_args_is_help=True)
audit_app = typer.Typer(help="Query the audit database.", no_args_is_help=True)
gallery_app = typer.Typer(help="Face galleries: public figures and cameo owners.", no_args_is_help=True)
asset_app = typer.Typer(help="The content-addressed asset store (media travels by reference).", no_args_is_help=True)
account_app = typer.Typer(help="Account age data (birth date, parental link and controls).", no_args_is_help=True)
generator_app = typer.Typer(help="The generation model.", no_args_is_help=True)
provenance_app = typer.Typer(help="C2PA signing credentials.", no_args_is_help=True)
takedown_app = typer.Typer(help="Take published items off the feed.", no_args_is_help=True)
review_app = typer.Typer(help="Human review and appeals of parked or rejected requests.", no_args_is_help=True)
for sub, name in [(broker_app, "broker"), (topics_app, "topics"), (db_app, "db"), (schemas_app, "schemas"),
                  (policy_app, "policy"), (cameo_app, "cameo"), (account_app, "account"),
                  (gallery_app, "gallery"), (asset_app, "asset"), (audit_app, "audit"),
                  (generator_app, "generator"), (provenance_app, "provenance"), (review_app, "review"), (takedown_app, "takedown")]:
    app.add_typer(sub, name=name)


def _settings(ctx: typer.Context) -> Settings:
    return ctx.obj


@app.callback()
def main(
    ctx: typer.Context,
    bootstrap_servers: Optional[str] = typer.Option(None, "--bootstrap-servers", "-b",
                                                    help="Kafka bootstrap servers (env: TRUSTREEL_BOOTSTRAP)"),
    db_url: Optional[str] = typer.Option(None, "--db-url", help="Audit database URL (env: TRUSTREEL_DB_URL)"),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log at INFO level"),
) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("kafka").setLevel(logging.ERROR)
    ctx.obj = load_settings(bootstrap=bootstrap_servers, db_url=db_url)


def _fail(message: str, code: int = 1) -> None:
    typer.secho(message, fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


# --- broker -------------------------------------------------------------------------------------------------

def _local_broker(settings: Settings):
    from pipeline.broker import LocalBroker

    return LocalBroker(home=settings.broker_home, port=settings.broker_port)


@broker_app.command("start")
def broker_start(ctx: typer.Context) -> None:
    """Fetch Kafka from Maven Central (once), start it, wait until it answers. Reuses a running one."""
    from pipeline.broker import BrokerError

    try:
        bootstrap = _local_broker(_settings(ctx)).start()
    except BrokerError as exc:
        _fail(str(exc))
    typer.echo(f"Kafka broker ready at {bootstrap}")


@broker_app.command("stop")
def broker_stop(ctx: typer.Context) -> None:
    """Stop the broker started by `broker start`."""
    stopped = _local_broker(_settings(ctx)).stop()
    typer.echo("Kafka broker stopped" if stopped else "no local broker was running")


@broker_app.command("status")
def broker_status(ctx: typer.Context) -> None:
    """Say whether the local broker runs and answers."""
    broker = _local_broker(_settings(ctx))
    pid = broker.running_pid()
    answering = broker.answers()
    typer.echo(f"pid={pid or '-'} answering={'yes' if answering else 'no'} bootstrap={broker.bootstrap}")
    if not answering:
        raise typer.Exit(1)


# --- topics, database, schemas, policies ----------------------------------------------------------------------

@topics_app.command("create")
def topics_create(ctx: typer.Context) -> None:
    """Create every pipeline topic that is missing (partitions and replication from settings)."""
    from pipeline.transport.topics import ensure_topics

    created = ensure_topics(_settings(ctx))
    typer.echo("created: " + (", ".join(created) if created else "nothing (all present)"))


@topics_app.command("list")
def topics_list(ctx: typer.Context) -> None:
    """List the pipeline's topics in flow order."""
    from pipeline.transport.topics import TopicMap

    settings = _settings(ctx)
    for spec in TopicMap.from_settings(settings).all_topics(settings):
        extra = " ".join(f"{k}={v}" for k, v in spec.config.items())
        typer.echo(f"{spec.name} {extra}".rstrip())


@db_app.command("upgrade")
def db_upgrade(ctx: typer.Context, revision: str = typer.Argument("head")) -> None:
    """Migrate the audit database to REVISION (default: head)."""
    from pipeline.audit.db import upgrade

    upgrade(_settings(ctx).db_url, revision)
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
            _fail("out of date: " + ", ".join(stale) + " (run `trustreel schemas export`)")
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


# --- producers ------------------------------------------------------------------------------------------------

@app.command("verify")
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

    settings = _settings(ctx)
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


@app.command("health")
def health(ctx: typer.Context) -> None:
    """Exit 0 if the broker (with topics), audit database (migrated) and asset store are usable."""
    from pipeline.health import run_checks

    checks = run_checks(_settings(ctx))
    for check in checks:
        typer.echo(f"{check.name}: {'ok' if check.ok else 'FAILED'}: {check.detail}")
    if not all(check.ok for check in checks):
        raise typer.Exit(1)


@app.command("submit")
def submit(
    ctx: typer.Context,
    requester: Optional[str] = typer.Option(None, help="Requesting account id"),
    prompt: Optional[str] = typer.Option(None, help="Prompt text"),
    cameo: list[str] = typer.Option([], help="Cameo id used (repeatable)"),
    request_id: Optional[str] = typer.Option(None, help="Request id (default: a new UUID)"),
    duration: float = typer.Option(5.0, help="Requested duration in seconds"),
    width: int = typer.Option(720, help="Requested width in pixels"),
    height: int = typer.Option(1280, help="Requested height in pixels"),
    media: list[Path] = typer.Option([], exists=True, dir_okay=False, help="Input image or video (repeatable)"),
    label: list[str] = typer.Option([], help="Declared content label (repeatable)"),
    file: Optional[Path] = typer.Option(None, "--file", "-f", help="JSONL file of requests instead of flags"),
) -> None:
    """Validate and send generation requests to gen.requests."""
    from pydantic import ValidationError

    from pipeline.producer import PipelineProducer, read_requests_jsonl
    from pipeline.runtime.runner import describe_validation_error
    from schemas.models import GenerationRequest

    if file is not None:
        requests, problems = read_requests_jsonl(file)
        for problem in problems:
            typer.secho(f"{file}:{problem.line}: not sent: {problem.error}", fg=typer.colors.RED, err=True)
    else:
        if requester is None or prompt is None:
            _fail("give --requester and --prompt, or --file")
        settings = _settings(ctx)
        store = asset_store(settings.asset_dir, settings.asset_url)
        references = [store.put(path.read_bytes(), _guess_type(path)) for path in media]
        try:
            requests = [GenerationRequest(request_id=request_id or str(uuid.uuid4()), requester_account=requester,
                                          prompt=prompt, cameo_ids=cameo, duration_seconds=duration,
                                          resolution={"width": width, "height": height},
                                          input_media=references, content_labels=label)]
        except ValidationError as exc:
            _fail(f"not sent: {describe_validation_error(exc)}")
        problems = []
    with PipelineProducer(_settings(ctx)) as producer:
        producer.submit_many(requests)
    for request in requests:
        typer.echo(f"submitted {request.request_id}")
    if problems:
        raise typer.Exit(1)


def _send_state_event(ctx: typer.Context, model_name: str, **fields: object) -> None:
    """Validate a consent or account event and send it to its compacted topic."""
    from pydantic import ValidationError

    from pipeline.producer import PipelineProducer
    from pipeline.runtime.runner import describe_validation_error
    from schemas.models import AccountEvent, ConsentEvent

    model = {"consent": ConsentEvent, "account": AccountEvent}[model_name]
    try:
        event = model(event_id=str(uuid.uuid4()), **{k: v for k, v in fields.items() if v is not None})
    except ValidationError as exc:
        _fail(f"not sent: {describe_validation_error(exc)}")
    with PipelineProducer(_settings(ctx)) as producer:
        (producer.send_consent if model_name == "consent" else producer.send_account_event)(event)
    entity = event.cameo_id if model_name == "consent" else event.account_id
    typer.echo(f"{event.kind.value} {entity} sent ({event.event_id})")


def _send_consent(ctx: typer.Context, **fields: object) -> None:
    _send_state_event(ctx, "consent", **fields)


def _send_account_event(ctx: typer.Context, **fields: object) -> None:
    _send_state_event(ctx, "account", **fields)


@cameo_app.command("register")
def cameo_register(ctx: typer.Context, cameo_id: str, owner: str = typer.Option(..., help="Owner account"),
                   audience: str = typer.Option("only_me", help="only_me | approved | mutuals | everyone")) -> None:
    """Register a cameo to its owner, with who may use it."""
    _send_consent(ctx, cameo_id=cameo_id, kind="register", owner_account=owner, audience=audience)


@cameo_app.command("verify")
def cameo_verify(ctx: typer.Context, cameo_id: str,
                 verified_by: str = typer.Option(..., help="Verifier (service or staff id)"),
                 method: str = typer.Option("liveness", help="Verification method"),
                 media: list[Path] = typer.Option([], exists=True, dir_okay=False,
                                                  help="Verified reference image of the owner (repeatable); "
                                                       "generation conditions the cameo on these")) -> None:
    """Record that the owner's likeness was verified (the liveness check itself runs upstream)."""
    settings = _settings(ctx)
    store = asset_store(settings.asset_dir, settings.asset_url)
    references = [store.put(path.read_bytes(), _guess_type(path)) for path in media]
    _send_consent(ctx, cameo_id=cameo_id, kind="verify", verified_by=verified_by, verification_method=method,
                  reference_media=references)


@cameo_app.command("grant")
def cameo_grant(ctx: typer.Context, cameo_id: str, account: str,
                deny: bool = typer.Option(False, "--deny", help="Put the account on the deny list instead")) -> None:
    """Allow (or with --deny, forbid) an account to use the cameo."""
    _send_consent(ctx, cameo_id=cameo_id, kind="grant", account=account, access="deny" if deny else "allow")


@cameo_app.command("revoke")
def cameo_revoke(ctx: typer.Context, cameo_id: str,
                 account: Optional[str] = typer.Option(None, help="Only take this account off the lists"),
                 reason: Optional[str] = typer.Option(None, help="Why (kept in the registry)")) -> None:
    """Withdraw the whole cameo for good, or one account's access with --account."""
    _send_consent(ctx, cameo_id=cameo_id, kind="revoke", account=account, reason=reason)


@cameo_app.command("show")
def cameo_show(ctx: typer.Context, cameo_id: str) -> None:
    """Print the registry's current state of a cameo."""
    from pipeline.audit.db import make_engine, make_sessionmaker
    from pipeline.state.consent_registry import SqlConsentRegistry

    state = SqlConsentRegistry(make_sessionmaker(make_engine(_settings(ctx).db_url))).get(cameo_id)
    if state is None:
        _fail(f"cameo {cameo_id} is not registered")
    typer.echo(json.dumps({k: (v.value if hasattr(v, "value") else v) for k, v in vars(state).items()
                           if k not in ("access", "reference_media")}
                          | {"access": {a: l.value for a, l in state.access.items()},
                             "reference_media": [media.model_dump() for media in state.reference_media]},
                          default=str, indent=2))


def _rebuild(ctx: typer.Context, feed_name: str) -> None:
    from pipeline.audit.db import make_engine, make_sessionmaker, upgrade
    from pipeline.state.feeds import state_feeds

    settings = _settings(ctx)
    upgrade(settings.db_url)
    feed = next(f for f in state_feeds(settings, make_sessionmaker(make_engine(settings.db_url)))
                if f.name == feed_name)
    typer.echo(f"{feed_name} registry rebuilt: {feed.replay(settings)} events applied")


@cameo_app.command("rebuild")
def cameo_rebuild(ctx: typer.Context) -> None:
    """Rebuild the consent registry table from the cameo.consents topic."""
    _rebuild(ctx, "consents")


@account_app.command("profile")
def account_profile(ctx: typer.Context, account_id: str,
                    birth_date: str = typer.Option(..., help="YYYY-MM-DD"),
                    assurance: str = typer.Option("self_declared",
                                                  help="self_declared | estimated | verified_document")) -> None:
    """Set an account's birth date and how it was assured."""
    _send_account_event(ctx, account_id=account_id, kind="profile", birth_date=birth_date, assurance=assurance)


@account_app.command("link-parent")
def account_link_parent(ctx: typer.Context, account_id: str,
                        parent: Optional[str] = typer.Option(None, help="Parent account (omit to unlink)")) -> None:
    """Link a minor's account to a parent or guardian account."""
    _send_account_event(ctx, account_id=account_id, kind="parental_link", parent_account=parent)


@account_app.command("controls")
def account_controls(ctx: typer.Context, account_id: str,
                     generation: bool = typer.Option(True, "--generation/--no-generation",
                                                     help="Allow video generation"),
                     cameos: bool = typer.Option(True, "--cameos/--no-cameos", help="Allow cameo use")) -> None:
    """Set the parental controls of a linked account."""
    _send_account_event(ctx, account_id=account_id, kind="parental_controls",
                        generation_disabled=not generation, cameo_use_disabled=not cameos)


@account_app.command("show")
def account_show(ctx: typer.Context, account_id: str) -> None:
    """Print the registry's age data for an account."""
    from pipeline.audit.db import make_engine, make_sessionmaker
    from pipeline.state.account_registry import SqlAccountRegistry

    state = SqlAccountRegistry(make_sessionmaker(make_engine(_settings(ctx).db_url))).get(account_id)
    if state is None:
        _fail(f"account {account_id} has no age data")
    typer.echo(json.dumps({k: (v.value if hasattr(v, "value") else v) for k, v in vars(state).items()},
                          default=str, indent=2))


@account_app.command("rebuild")
def account_rebuild(ctx: typer.Context) -> None:
    """Rebuild the account registry table from the accounts.events topic."""
    _rebuild(ctx, "accounts")


# --- galleries and assets -----------------------------------------------------------------------------------

def _gallery_store(settings: Settings):
    from pipeline.audit.db import make_engine, make_sessionmaker, upgrade
    from pipeline.likeness.galleries import GalleryStore

    upgrade(settings.db_url)
    return GalleryStore(make_sessionmaker(make_engine(settings.db_url)))


@gallery_app.command("add")
def gallery_add(ctx: typer.Context, name: str, images: list[Path] = typer.Argument(..., exists=True, dir_okay=False),
                gallery: str = typer.Option("public_figures", help="public_figures | cameos (name = cameo id)"),
                sweep: bool = typer.Option(True, help="For public figures: re-check published videos and take "
                                                      "down those showing NAME")) -> None:
    """Embed the most confident face of each image and add it to NAME in the gallery."""
    from pipeline.likeness.faces import embedder_from_settings
    from pipeline.media.frames import decode_image

    settings = _settings(ctx)
    embedder = embedder_from_settings(settings.face_backend, settings.insightface_model_dir)
    embeddings = []
    for image in images:
        faces = embedder.faces(decode_image(image.read_bytes()))
        if not faces:
            typer.secho(f"{image}: no face found; skipped", fg=typer.colors.YELLOW, err=True)
            continue
        best = max(faces, key=lambda face: face.score)
        embeddings.append((best.embedding, image.name))
    if not embeddings:
        _fail("no face found in any image; nothing added")
    _gallery_store(settings).add(gallery, name, embedder.name, embeddings)
    typer.echo(f"added {len(embeddings)} {embedder.name} embedding(s) to {gallery}/{name}")
    if gallery == "public_figures" and sweep:
        try:
            _identity_sweep(settings, name, embedder)
        except Exception as exc:  # the gallery change stands; the sweep can be re-run
            typer.secho(f"published videos were not re-checked ({type(exc).__name__}: {exc}); run "
                        f"`trustreel takedown sweep '{name}'`", fg=typer.colors.YELLOW, err=True)


@gallery_app.command("list")
def gallery_list(ctx: typer.Context) -> None:
    """List identities and how many embeddings each backend has for them."""
    for gallery, name, backend, count in _gallery_store(_settings(ctx)).listing():
        typer.echo(f"{gallery:<16} {name:<40} {backend:<12} {count}")


@gallery_app.command("remove")
def gallery_remove(ctx: typer.Context, name: str,
                   gallery: str = typer.Option("public_figures", help="public_figures | cameos")) -> None:
    """Remove an identity and all its embeddings."""
    if not _gallery_store(_settings(ctx)).remove(gallery, name):
        _fail(f"{gallery}/{name} is not in the gallery")
    typer.echo(f"removed {gallery}/{name}")


@generator_app.command("tiny")
def generator_tiny(directory: Path, seed: int = typer.Option(0, help="Weight initialisation seed")) -> None:
    """Write a tiny randomly initialised LTX-Video pipeline (no download) for demos, tests and benchmarks."""
    from pipeline.generation.tiny_generator import build_tiny_ltx

    build_tiny_ltx(directory, seed)
    typer.echo(f"tiny pipeline written; use it with TRUSTREEL_GENERATOR_MODEL={directory}")


@provenance_app.command("dev-cert")
def provenance_dev_cert(directory: Path, valid_days: int = typer.Option(30, help="Leaf certificate lifetime")) -> None:
    """Write a throwaway CA + ES256 signing chain for development (never for production)."""
    from pipeline.provenance.dev_certificates import write_dev_credentials

    credentials = write_dev_credentials(directory, valid_days=valid_days)
    typer.echo(f"TRUSTREEL_C2PA_CERT_CHAIN={credentials.cert_chain}\n"
               f"TRUSTREEL_C2PA_PRIVATE_KEY={credentials.private_key}\n"
               f"TRUSTREEL_C2PA_TRUST_ANCHORS={credentials.trust_anchor}")


@asset_app.command("put")
def asset_put(ctx: typer.Context, file: Path = typer.Argument(..., exists=True, dir_okay=False),
              media_type: Optional[str] = typer.Option(None, help="Default: guessed from the file name")) -> None:
    """Store a file and print its reference (JSON) for a request's input_media."""
    settings = _settings(ctx)
    reference = asset_store(settings.asset_dir, settings.asset_url).put(file.read_bytes(),
                                                                        media_type or _guess_type(file))
    typer.echo(reference.model_dump_json())


def _guess_type(path: Path) -> str:
    import mimetypes

    guessed = mimetypes.guess_type(path.name)[0]
    if guessed is None:
        _fail(f"cannot tell the media type of {path}; pass --media-type")
    return guessed


# --- workers, audit, demo -------------------------------------------------------------------------------------

@app.command("worker")
def worker(ctx: typer.Context,
           stage: list[str] = typer.Option([], help="Stage to run (repeatable; default: every configured stage)"),
           loglevel: str = typer.Option("warning", help="faust log level")) -> None:
    """Run stage workers until stopped (SIGTERM / Ctrl-C)."""
    from pipeline.worker.app import run_worker

    settings = _settings(ctx)
    run_worker(settings, stage or list(settings.stages), loglevel=loglevel)


@audit_app.command("show")
def audit_show(ctx: typer.Context, request_id: str,
               as_json: bool = typer.Option(False, "--json", help="Machine-readable output")) -> None:
    """Print a request's full path through the stages, with reasons and policy versions."""
    from pipeline.audit.queries import request_path

    from pipeline.audit.db import make_engine, make_sessionmaker

    path = request_path(make_sessionmaker(make_engine(_settings(ctx).db_url)), request_id)
    if path is None:
        _fail(f"no audit record for request {request_id}")
    if as_json:
        typer.echo(json.dumps(path.as_dict(), indent=2, default=str))
    else:
        typer.echo(path.render())


def _emit_rows(rows: list[dict], output_format: str) -> None:
    """Rows as an aligned table (people), JSON or CSV (tools)."""
    if output_format == "json":
        typer.echo(json.dumps(rows, indent=2, default=str))
        return
    if output_format == "csv":
        import csv
        import io

        buffer = io.StringIO()
        if rows:
            writer = csv.DictWriter(buffer, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        typer.echo(buffer.getvalue(), nl=False)
        return
    if not rows:
        typer.echo("(no rows)")
        return
    columns = list(rows[0])
    widths = {c: min(40, max(len(c), *(len(str(r.get(c, ""))) for r in rows))) for c in columns}
    typer.echo("  ".join(c.ljust(widths[c]) for c in columns))
    for row in rows:
        typer.echo("  ".join(str(row.get(c, ""))[:40].ljust(widths[c]) for c in columns))


def _format_option() -> Any:
    return typer.Option("table", "--format", help="table | json | csv")


def _parse_time(value: str) -> "datetime":
    from datetime import datetime, timezone

    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def _audit_sessions(ctx: typer.Context):
    from pipeline.audit.db import make_engine, make_sessionmaker

    return make_sessionmaker(make_engine(_settings(ctx).db_url))


@audit_app.command("decisions")
def audit_decisions(ctx: typer.Context, account: Optional[str] = typer.Option(None, help="Requester account"),
                    cameo: Optional[str] = typer.Option(None, help="Cameo id"),
                    output_format: str = _format_option()) -> None:
    """All decisions on an account's requests, or on requests that used a cameo."""
    from pipeline.audit.queries import decisions_for

    if (account is None) == (cameo is None):
        _fail("give --account or --cameo")
    _emit_rows(decisions_for(_audit_sessions(ctx), account=account, cameo=cameo), output_format)


@audit_app.command("rejections")
def audit_rejections(ctx: typer.Context, since: str = typer.Option(..., help="ISO time (UTC if no offset)"),
                     until: str = typer.Option(..., help="ISO time, exclusive"),
                     stage: Optional[str] = typer.Option(None), reason: Optional[str] = typer.Option(None),
                     policy_version: Optional[str] = typer.Option(None, help="Version or its prefix"),
                     output_format: str = _format_option()) -> None:
    """Rejections in a time range, by stage / reason code / policy version."""
    from pipeline.audit.queries import rejections

    _emit_rows(rejections(_audit_sessions(ctx), _parse_time(since), _parse_time(until), stage, reason,
                          policy_version), output_format)


@audit_app.command("published")
def audit_published(ctx: typer.Context, cameo: str = typer.Option(..., help="Cameo id"),
                    output_format: str = _format_option()) -> None:
    """Published items that used a cameo, and whether each was taken down."""
    from pipeline.audit.queries import published_with_cameo

    _emit_rows(published_with_cameo(_audit_sessions(ctx), cameo, _settings(ctx).stages[-1]), output_format)


@audit_app.command("counts")
def audit_counts(ctx: typer.Context, since: str = typer.Option(...), until: str = typer.Option(...),
                 output_format: str = _format_option()) -> None:
    """Requests per terminal outcome per hour."""
    from pipeline.audit.queries import outcome_counts_per_hour

    _emit_rows(outcome_counts_per_hour(_audit_sessions(ctx), _parse_time(since), _parse_time(until),
                                       _settings(ctx).stages[-1]), output_format)


@audit_app.command("expire")
def audit_expire(ctx: typer.Context, older_than_days: Optional[int] = typer.Option(
        None, help="Default: TRUSTREEL_RETENTION_DAYS")) -> None:
    """Drop prompts and media references older than the retention period, keeping the decision skeleton."""
    from datetime import timedelta

    from pipeline.audit.retention import expire

    days = older_than_days or _settings(ctx).retention_days
    if days is None:
        _fail("no retention period: pass --older-than-days or set TRUSTREEL_RETENTION_DAYS")
    result = expire(_audit_sessions(ctx), timedelta(days=days))
    typer.echo(f"expired {result.requests} request(s), {result.decisions} decision(s), "
               f"{result.dead_letters} dead letter(s) older than {days} days")


def _identity_sweep(settings: Settings, name: str, embedder) -> None:
    from consumers.likeness import LikenessRules
    from pipeline.audit.db import make_engine, make_sessionmaker
    from pipeline.cases.takedowns import TakedownService, face_matcher
    from pipeline.likeness.galleries import GallerySearch, GalleryStore
    from pipeline.producer import PipelineProducer
    from pipeline.transport.topics import TopicMap
    from policies.loader import load_policy, policy_path

    rules = load_policy(policy_path("likeness", settings.policy_dir), LikenessRules, "likeness").rules
    sessions = make_sessionmaker(make_engine(settings.db_url))
    search = GallerySearch(GalleryStore(sessions), embedder.name, settings.gallery_approximate_above)
    matches = face_matcher(embedder, search, name, rules.face_match_distance[embedder.name], rules.frame_every,
                           rules.max_frames)
    service = TakedownService(sessions, TopicMap.from_settings(settings).takedowns, settings.stages[-1])
    messages = service.identity_sweep(name, matches, asset_store(settings.asset_dir, settings.asset_url))
    with PipelineProducer(settings) as producer:
        for message in messages:
            producer.send_outgoing(message)
    service.mark_sent([message.key.decode() for message in messages])
    typer.echo(f"re-checked published videos for {name}: {len(messages)} takedown(s) sent")


@takedown_app.command("sweep")
def takedown_sweep(ctx: typer.Context, name: str) -> None:
    """Re-check published videos against public figure NAME and take down those that show them."""
    from pipeline.likeness.faces import embedder_from_settings

    settings = _settings(ctx)
    _identity_sweep(settings, name, embedder_from_settings(settings.face_backend, settings.insightface_model_dir))


@review_app.command("list")
def review_list(ctx: typer.Context, output_format: str = _format_option()) -> None:
    """Requests waiting for a person (oldest first)."""
    from pipeline.cases.reviews import pending_reviews

    _emit_rows(pending_reviews(_audit_sessions(ctx)), output_format)


def _resolve(ctx: typer.Context, request_id: str, approve: bool, reviewer: str, note: str) -> None:
    from pipeline.cases.reviews import ReviewError, describe, mark_sent, resolve
    from pipeline.producer import PipelineProducer
    from pipeline.transport.topics import TopicMap

    settings = _settings(ctx)
    sessions = _audit_sessions(ctx)
    try:
        resolution = resolve(sessions, TopicMap.from_settings(settings), request_id, approve, reviewer, note)
    except ReviewError as problem:
        _fail(str(problem))
    with PipelineProducer(settings) as producer:
        producer.send_outgoing(resolution.output)
    mark_sent(sessions, resolution.request_id, resolution.stage)
    typer.echo(describe(resolution))


@review_app.command("approve")
def review_approve(ctx: typer.Context, request_id: str, reviewer: str = typer.Option(..., help="Who decides"),
                   note: str = typer.Option("", help="Why (kept in the audit database)")) -> None:
    """Let the request go on from the stage where it stopped."""
    _resolve(ctx, request_id, True, reviewer, note)


@review_app.command("reject")
def review_reject(ctx: typer.Context, request_id: str, reviewer: str = typer.Option(..., help="Who decides"),
                  note: str = typer.Option("", help="Why (shown to the requester)")) -> None:
    """End the request with a rejection."""
    _resolve(ctx, request_id, False, reviewer, note)


@review_app.command("appeal")
def review_appeal(ctx: typer.Context, request_id: str,
                  note: str = typer.Option("", help="What the requester says")) -> None:
    """Open an appeal of a rejection: a reviewer can then approve (resume) or reject it."""
    from pipeline.cases.reviews import ReviewError, appeal

    try:
        stage = appeal(_audit_sessions(ctx), request_id, note)
    except ReviewError as problem:
        _fail(str(problem))
    typer.echo(f"{request_id}: appeal of the {stage} rejection is waiting for review")


@app.command("demo")
def demo(ctx: typer.Context,
         keep_running: bool = typer.Option(False, help="Leave the broker running afterwards")) -> None:
    """Start the local broker and workers, send sample cameos and requests, print each request's path."""
    from pipeline.demo import run_demo

    sys.exit(run_demo(_settings(ctx), keep_broker=keep_running))


if __name__ == "__main__":
    app()

"""`cameo` and `account`: state events to the compacted topics, and the registries built from them."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any, Callable, Optional

import typer

from pipeline.cli.common import fail, guess_type, settings_of
from pipeline.media.assets import asset_store

cameo_app = typer.Typer(help="Cameo consent events and the consent registry.", no_args_is_help=True)
account_app = typer.Typer(help="Account age data (birth date, parental link and controls) and standing (sanctions).",
                          no_args_is_help=True)


def send_state_event(ctx: typer.Context, model: type, send: Callable[[Any, Any], None], **fields: object) -> Any:
    """Validate a state event (consent, account, rights) with a fresh event id and send it with
    `send(producer, event)` to its compacted topic; an invalid one is refused with the reason."""
    from pydantic import ValidationError

    from pipeline.producer import PipelineProducer
    from pipeline.runtime.runner import describe_validation_error

    try:
        event = model(event_id=str(uuid.uuid4()), **{k: v for k, v in fields.items() if v is not None})
    except ValidationError as exc:
        fail(f"not sent: {describe_validation_error(exc)}")
    with PipelineProducer(settings_of(ctx)) as producer:
        send(producer, event)
    return event


def _send_state_event(ctx: typer.Context, model_name: str, **fields: object) -> None:
    from pipeline.producer import PipelineProducer
    from schemas.models import AccountEvent, ConsentEvent

    if model_name == "consent":
        event = send_state_event(ctx, ConsentEvent, PipelineProducer.send_consent, **fields)
        entity = event.cameo_id
    else:
        event = send_state_event(ctx, AccountEvent, PipelineProducer.send_account_event, **fields)
        entity = event.account_id
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
    settings = settings_of(ctx)
    store = asset_store(settings.asset_dir, settings.asset_url)
    references = [store.put(path.read_bytes(), guess_type(path)) for path in media]
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

    state = SqlConsentRegistry(make_sessionmaker(make_engine(settings_of(ctx).db_url))).get(cameo_id)
    if state is None:
        fail(f"cameo {cameo_id} is not registered")
    typer.echo(json.dumps({k: (v.value if hasattr(v, "value") else v) for k, v in vars(state).items()
                           if k not in ("access", "reference_media")}
                          | {"access": {a: l.value for a, l in state.access.items()},
                             "reference_media": [media.model_dump() for media in state.reference_media]},
                          default=str, indent=2))


def rebuild(ctx: typer.Context, feed_name: str) -> None:
    from pipeline.audit.db import make_engine, make_sessionmaker, upgrade
    from pipeline.state.feeds import state_feeds

    settings = settings_of(ctx)
    upgrade(settings.db_url)
    feed = next(f for f in state_feeds(settings, make_sessionmaker(make_engine(settings.db_url)))
                if f.name == feed_name)
    typer.echo(f"{feed_name} registry rebuilt: {feed.replay(settings)} events applied")


@cameo_app.command("rebuild")
def cameo_rebuild(ctx: typer.Context) -> None:
    """Rebuild the consent registry table from the cameo.consents topic."""
    rebuild(ctx, "consents")


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

    state = SqlAccountRegistry(make_sessionmaker(make_engine(settings_of(ctx).db_url))).get(account_id)
    if state is None:
        fail(f"account {account_id} has no age data")
    typer.echo(json.dumps({k: (v.value if hasattr(v, "value") else v) for k, v in vars(state).items()},
                          default=str, indent=2))


@account_app.command("rebuild")
def account_rebuild(ctx: typer.Context) -> None:
    """Rebuild the account registry table from the accounts.events topic."""
    rebuild(ctx, "accounts")

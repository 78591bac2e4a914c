"""`bank` (hash banks of known media) and `rights` (rights holders' protected works)."""

from __future__ import annotations

import getpass
from pathlib import Path
from typing import Optional

import typer

from pipeline.cli.common import audit_sessions, emit_rows, fail, format_option, guess_type, settings_of

bank_app = typer.Typer(help="Hash banks: known media matched against every input and generated video.",
                       no_args_is_help=True)
rights_app = typer.Typer(help="Rights holders' protected characters, works, brands and voices.",
                         no_args_is_help=True)


def _store(ctx: typer.Context):
    from pipeline.audit.db import upgrade
    from pipeline.hashing.banks import BankStore

    upgrade(settings_of(ctx).db_url)
    return BankStore(audit_sessions(ctx))


def _who(added_by: Optional[str]) -> str:
    return added_by or getpass.getuser()


@bank_app.command("create")
def bank_create(ctx: typer.Context, name: str,
                action: str = typer.Option(..., help="block (everyone) | review (a person decides) | attribute "
                                                     "(allowed, named in the manifest)"),
                distance: int = typer.Option(31, help="Largest Hamming distance (bits of 256) that is a match"),
                source: str = typer.Option("manual", help="Where the list comes from (an exchange, a team)"),
                description: str = typer.Option("", help="What the bank holds and why"),
                added_by: Optional[str] = typer.Option(None, help="Who creates it (default: the OS user)")) -> None:
    """Create a bank."""
    from pipeline.hashing.banks import BankError

    try:
        _store(ctx).create(name, action, distance, source, description, _who(added_by))
    except BankError as problem:
        fail(str(problem))
    typer.echo(f"bank {name} created: {action}, distance <= {distance}")


@bank_app.command("add")
def bank_add(ctx: typer.Context, bank: str,
             media: list[Path] = typer.Option([], exists=True, dir_okay=False,
                                              help="Image or video to hash into the bank (repeatable)"),
             hash_value: list[str] = typer.Option([], "--hash", help="A PDQ hash as 64 hex digits (repeatable)"),
             content_id: Optional[str] = typer.Option(None, help="What these are of (default: the file name)"),
             note: str = typer.Option("", help="Why they are in the bank"),
             added_by: Optional[str] = typer.Option(None, help="Who adds them (default: the OS user)")) -> None:
    """Add media (hashed here: PDQ per sampled frame) or hashes to a bank."""
    from pipeline.hashing.banking import MediaBanker
    from pipeline.hashing.banks import BankError, NewEntry
    from pipeline.media.assets import asset_store

    if not media and not hash_value:
        fail("nothing to add: pass --media FILE or --hash HEX")
    store = _store(ctx)
    settings = settings_of(ctx)
    entries = [NewEntry(value, content_id or value, None, note) for value in hash_value]
    banker = MediaBanker(store, asset_store(settings.asset_dir, settings.asset_url))
    for path in media:
        hashed = banker.hash_bytes(bank, path.read_bytes(), guess_type(path), path.name, content_id or path.name,
                                   "cli", _who(added_by), note)
        if hashed.problems:
            fail(f"not added: {'; '.join(hashed.problems)}")
        entries += [NewEntry(row["hash"], row["content_id"], row["quality"], row["note"]) for row in hashed.rows]
    try:
        added, present = store.add(bank, entries, "cli", _who(added_by))
    except BankError as problem:
        fail(str(problem))
    typer.echo(f"{bank}: {added} hash(es) added, {present} already there")


@bank_app.command("import")
def bank_import(ctx: typer.Context, bank: str, path: Path = typer.Argument(..., exists=True, dir_okay=False),
                file_format: str = typer.Option("te", "--format", help="te (ThreatExchange / HMA signal file) | csv"),
                added_by: Optional[str] = typer.Option(None, help="Who imports it (default: the OS user)")) -> None:
    """Load a hash list; every hash is checked before any is stored."""
    from pipeline.hashing.banks import BankError
    from pipeline.hashing.exchange import read_hash_list

    try:
        read = read_hash_list(path, file_format)
        added, present = _store(ctx).add(bank, read.entries, f"import:{path.name}", _who(added_by))
    except (BankError, ValueError) as problem:
        fail(f"not imported: {problem}")
    skipped = ", ".join(f"{count} {kind}" for kind, count in sorted(read.skipped.items()))
    typer.echo(f"{bank}: {added} hash(es) added, {present} already there"
               + (f"; skipped other signal types: {skipped}" if skipped else ""))


@bank_app.command("export")
def bank_export(ctx: typer.Context, bank: str,
                file_format: str = typer.Option("te", "--format", help="te | csv"),
                output: Optional[Path] = typer.Option(None, "--output", "-o", help="File (default: stdout)")) -> None:
    """Write a bank's hashes in a format other systems load."""
    from pipeline.hashing.banks import BankError
    from pipeline.hashing.exchange import write_hash_list

    store = _store(ctx)
    try:
        store.get(bank)
        text = write_hash_list(store.entries(bank), file_format)
    except (BankError, ValueError) as problem:
        fail(str(problem))
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
        typer.echo(f"{bank}: {text.count(chr(10)) - (file_format == 'csv')} hash(es) written to {output}", err=True)


@bank_app.command("list")
def bank_list(ctx: typer.Context, bank: Optional[str] = typer.Argument(None, help="List this bank's entries"),
              output_format: str = format_option()) -> None:
    """Banks with their action, distance and size; or one bank's entries."""
    store = _store(ctx)
    if bank is None:
        rows = [{"bank": b.name, "action": b.action, "distance": b.distance, "entries": count, "source": b.source,
                 "description": b.description} for b, count in store.banks()]
    else:
        rows = [{"id": r.id, "hash": r.hash, "quality": r.quality, "content_id": r.content_id, "note": r.note,
                 "added_by": r.added_by, "added_at": r.added_at.isoformat(), "source": r.source}
                for r in store.entries(bank)]
    emit_rows(rows, output_format)


@bank_app.command("remove")
def bank_remove(ctx: typer.Context, bank: str,
                content_id: Optional[str] = typer.Option(None, help="Only the entries of this content id"),
                entry: list[int] = typer.Option([], help="Only this entry id (repeatable)"),
                whole_bank: bool = typer.Option(False, "--whole-bank", help="Delete the bank and every entry")) -> None:
    """Remove entries (by content id or entry id), or with --whole-bank the bank itself."""
    from pipeline.hashing.banks import BankError

    if not (content_id or entry or whole_bank):
        fail("say what to remove: --content-id, --entry or --whole-bank")
    store = _store(ctx)
    try:
        store.get(bank)
    except BankError as problem:
        fail(str(problem))
    removed = store.remove(bank, content_id, entry or None)
    typer.echo(f"{bank}: {removed} entr{'y' if removed == 1 else 'ies'} removed" + (", bank deleted" if whole_bank
                                                                                      else ""))


@rights_app.command("set")
def rights_set(ctx: typer.Context, work_id: str,
               holder: str = typer.Option(..., help="Rights holder id"),
               holder_name: str = typer.Option(..., help="Rights holder as named in attributions"),
               name: str = typer.Option(..., help="The character, work, brand or performer as usually written"),
               kind: str = typer.Option("character", help="character | work | brand | voice"),
               alias: list[str] = typer.Option([], help="Another name it goes by (repeatable)"),
               choice: str = typer.Option(..., help="blocked (opt-out) | allowed (opt-in, attributed) | review"),
               reference: list[Path] = typer.Option([], exists=True, dir_okay=False,
                                                    help="Reference image or video (repeatable)")) -> None:
    """Register or replace a protected work and its holder's choice (sent to rights.registry)."""
    from pipeline.media.assets import asset_store

    settings = settings_of(ctx)
    store = asset_store(settings.asset_dir, settings.asset_url)
    references = [store.put(path.read_bytes(), guess_type(path)) for path in reference]
    _send_rights(ctx, work_id=work_id, holder_id=holder, holder_name=holder_name, name=name, kind=kind,
                 aliases=alias, choice=choice, reference_media=references)


@rights_app.command("remove")
def rights_remove(ctx: typer.Context, work_id: str) -> None:
    """Take a work off the list (its names stop matching, its reference hashes are removed)."""
    from pipeline.state.feeds import rights_registry

    current = rights_registry(settings_of(ctx), audit_sessions(ctx)).get(work_id)
    if current is None:
        fail(f"work {work_id} is not in the rights registry")
    _send_rights(ctx, work_id=work_id, holder_id=current.holder_id, holder_name=current.holder_name,
                 name=current.name, kind=current.kind, aliases=list(current.aliases), choice=current.choice,
                 removed=True)


@rights_app.command("list")
def rights_list(ctx: typer.Context, output_format: str = format_option()) -> None:
    """Protected works with their holder's choice and how many references were hashed."""
    from pipeline.state.feeds import rights_registry

    emit_rows(rights_registry(settings_of(ctx), audit_sessions(ctx)).listing(), output_format)


@rights_app.command("rebuild")
def rights_rebuild(ctx: typer.Context) -> None:
    """Rebuild the rights registry (and its reference hashes) from the rights.registry topic."""
    from pipeline.cli.registries import rebuild

    rebuild(ctx, "rights")


def _send_rights(ctx: typer.Context, **fields: object) -> None:
    from pipeline.cli.registries import send_state_event
    from pipeline.producer import PipelineProducer
    from schemas.models import RightsEvent

    event = send_state_event(ctx, RightsEvent, PipelineProducer.send_rights, **fields)
    typer.echo(f"{event.work_id} ({event.choice.value}{', removed' if event.removed else ''}) sent ({event.event_id})")

"""What producers send: `submit` (generation requests) and `asset put` (media into the asset store)."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Optional

import typer

from pipeline.cli.common import fail, guess_type, settings_of
from pipeline.media.assets import asset_store

asset_app = typer.Typer(help="The content-addressed asset store (media travels by reference).", no_args_is_help=True)


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
            fail("give --requester and --prompt, or --file")
        settings = settings_of(ctx)
        store = asset_store(settings.asset_dir, settings.asset_url)
        references = [store.put(path.read_bytes(), guess_type(path)) for path in media]
        try:
            requests = [GenerationRequest(request_id=request_id or str(uuid.uuid4()), requester_account=requester,
                                          prompt=prompt, cameo_ids=cameo, duration_seconds=duration,
                                          resolution={"width": width, "height": height},
                                          input_media=references, content_labels=label)]
        except ValidationError as exc:
            fail(f"not sent: {describe_validation_error(exc)}")
        problems = []
    with PipelineProducer(settings_of(ctx)) as producer:
        producer.submit_many(requests)
    for request in requests:
        typer.echo(f"submitted {request.request_id}")
    if problems:
        raise typer.Exit(1)


@asset_app.command("put")
def asset_put(ctx: typer.Context, file: Path = typer.Argument(..., exists=True, dir_okay=False),
              media_type: Optional[str] = typer.Option(None, help="Default: guessed from the file name")) -> None:
    """Store a file and print its reference (JSON) for a request's input_media."""
    settings = settings_of(ctx)
    reference = asset_store(settings.asset_dir, settings.asset_url).put(file.read_bytes(),
                                                                        media_type or guess_type(file))
    typer.echo(reference.model_dump_json())

"""`gallery` (public figures and cameo faces) and `takedown sweep` (published videos showing a public figure)."""

from __future__ import annotations

from pathlib import Path

import typer

from pipeline.cli.common import fail, settings_of
from pipeline.media.assets import asset_store
from pipeline.settings import Settings

gallery_app = typer.Typer(help="Face galleries: public figures and cameo owners.", no_args_is_help=True)
takedown_app = typer.Typer(help="Take published items off the feed.", no_args_is_help=True)


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

    settings = settings_of(ctx)
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
        fail("no face found in any image; nothing added")
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
    for gallery, name, backend, count in _gallery_store(settings_of(ctx)).listing():
        typer.echo(f"{gallery:<16} {name:<40} {backend:<12} {count}")


@gallery_app.command("remove")
def gallery_remove(ctx: typer.Context, name: str,
                   gallery: str = typer.Option("public_figures", help="public_figures | cameos")) -> None:
    """Remove an identity and all its embeddings."""
    if not _gallery_store(settings_of(ctx)).remove(gallery, name):
        fail(f"{gallery}/{name} is not in the gallery")
    typer.echo(f"removed {gallery}/{name}")


def _identity_sweep(settings: Settings, name: str, embedder) -> None:
    from consumers.likeness import LikenessRules
    from pipeline.audit.db import make_engine, make_sessionmaker
    from pipeline.cases.takedowns import face_matcher, send_takedowns
    from pipeline.worker.catalog import takedown_service
    from pipeline.likeness.galleries import GallerySearch, GalleryStore
    from pipeline.producer import PipelineProducer
    from policies.loader import load_policy, policy_path

    rules = load_policy(policy_path("likeness", settings.policy_dir), LikenessRules, "likeness").rules
    sessions = make_sessionmaker(make_engine(settings.db_url))
    search = GallerySearch(GalleryStore(sessions), embedder.name, settings.gallery_approximate_above)
    matches = face_matcher(embedder, search, name, rules.face_match_distance[embedder.name], rules.frame_every,
                           rules.max_frames, rules.same_face_max_block_change)
    service = takedown_service(settings, sessions)
    messages = service.identity_sweep(name, matches, asset_store(settings.asset_dir, settings.asset_url))
    with PipelineProducer(settings) as producer:
        send_takedowns(sessions, producer.once_sender(), messages)
    typer.echo(f"re-checked published videos for {name}: {len(messages)} takedown(s) sent")


@takedown_app.command("sweep")
def takedown_sweep(ctx: typer.Context, name: str) -> None:
    """Re-check published videos against public figure NAME and take down those that show them."""
    from pipeline.likeness.faces import embedder_from_settings

    settings = settings_of(ctx)
    _identity_sweep(settings, name, embedder_from_settings(settings.face_backend, settings.insightface_model_dir))

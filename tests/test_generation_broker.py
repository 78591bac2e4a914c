"""The generate stage on the real broker with a real (tiny, random) diffusers pipeline.

    consent -> likeness -> age -> generate -> likeness-post -> publish, one or more worker processes;
    cameo registered and verified through the CLI with a reference photo in the asset store.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from pipeline.audit.db import DecisionRow, make_engine, make_sessionmaker
from pipeline.cli import app
from pipeline.media.assets import LocalAssetStore
from pipeline.media.video_files import probe_mp4
from pipeline.settings import Settings
from schemas.models import MediaReference
from tests import face_fixtures as photos
from tests.conftest import policies_with, settings_env, wait_for

FULL = ("consent", "likeness", "age", "generate", "likeness-post", "publish")
pytestmark = [pytest.mark.broker, pytest.mark.stages(*FULL)]


def cli(settings: Settings, *args: str) -> str:
    result = CliRunner().invoke(app, list(args), env=settings_env(settings))
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(autouse=True)
def adult_requester(settings: Settings) -> None:
    """bob is an adult; sent before any worker starts, so every worker's registry has it at start."""
    cli(settings, "account", "profile", "bob", "--birth-date", "1990-01-01")


def submit(settings: Settings, request_id: str, *extra: str, width: int = 64, height: int = 64,
           seconds: float = 1.0) -> None:
    cli(settings, "submit", "--requester", "bob", "--prompt", "a cat dances on the beach", "--request-id",
        request_id, "--width", str(width), "--height", str(height), "--duration", str(seconds), *extra)


def generate_details(settings: Settings) -> dict[str, dict]:
    sessions = make_sessionmaker(make_engine(settings.db_url))
    with sessions() as session:
        rows = session.scalars(select(DecisionRow).where(DecisionRow.stage == "generate")).all()
        return {row.request_id: row.details for row in rows}


def test_requests_come_out_as_mp4_in_the_asset_store_and_cameos_use_the_verified_reference(
        settings, start_worker, read_topic, tmp_path) -> None:
    reference = tmp_path / "owner.png"
    reference.write_bytes(photos.png_bytes(photos.astronaut()))
    cli(settings, "cameo", "register", "cam-owner", "--owner", "bob", "--audience", "only_me")
    cli(settings, "cameo", "verify", "cam-owner", "--verified-by", "liveness", "--media", str(reference))
    start_worker()
    submit(settings, "plain", width=64, height=96, seconds=2)
    submit(settings, "with-cameo", "--cameo", "cam-owner")
    submit(settings, "too-long", seconds=60)

    published = {p["request_id"]: p for p in read_topic("feed.published").wait_for_count(2, timeout=180)}
    rejected = read_topic("gen.rejected").wait_for_count(1, timeout=30)
    assert set(published) == {"plain", "with-cameo"}
    assert [(r["request_id"], r["stage"], r["reasons"][0]["code"]) for r in rejected] == [
        ("too-long", "generate", "too_long")]

    store = LocalAssetStore(settings.asset_dir)
    video = MediaReference.model_validate(published["plain"]["assets"]["video"])
    info = probe_mp4(store.get(video))  # the hash is checked on the way out
    assert (info.frames, info.width, info.height, info.fps) == (17, 64, 96, 8.0)  # 2 s at 8 fps: 16 + 1 frames
    assert [d["stage"] for d in published["plain"]["decisions"]] == list(FULL)

    details = generate_details(settings)
    assert details["plain"]["model"]["model_id"] == Path(settings.generator_model).name  # never the server path
    assert details["plain"]["parameters"]["num_frames"] == 17 and isinstance(details["plain"]["seed"], int)
    assert details["plain"]["audio"]["muxed"] is False
    registered = cli(settings, "cameo", "show", "cam-owner")
    reference_sha = LocalAssetStore(settings.asset_dir).put(reference.read_bytes(), "image/png").sha256
    assert reference_sha in registered
    assert details["with-cameo"]["conditioning"] == [{"cameo_id": "cam-owner", "reference_sha256": reference_sha}]
    post = next(d for d in published["with-cameo"]["decisions"] if d["stage"] == "likeness-post")
    assert post["outcome"] == "approved"


def test_compatible_requests_share_a_batch_and_incompatible_ones_do_not(settings, start_worker, read_topic,
                                                                          tmp_path) -> None:
    policies_with(settings.policy_dir, "generate", batch_size=4, batch_wait_seconds=3.0)
    sizes = {"s1": (64, 64), "s2": (64, 64), "s3": (64, 64), "s4": (64, 64), "w1": (96, 64), "w2": (96, 64)}
    start_worker("consent", "likeness", "age", "likeness-post", "publish")
    for request_id, (width, height) in sizes.items():
        submit(settings, request_id, width=width, height=height)
    wait_for(lambda: len(read_topic("gen.passed.age").poll()) >= 6, 120, what="six requests ready to generate")
    start_worker("generate")  # everything is queued: the generator sees full batches
    read_topic("feed.published").wait_for_count(6, timeout=180)
    batches = {tuple(d["batch"]["requests"]) for d in generate_details(settings).values()}
    assert sorted(request for batch in batches for request in batch) == sorted(sizes)
    for batch in batches:
        assert len({sizes[request] for request in batch}) == 1, f"batch {batch} mixes sizes"
    assert max(len(batch) for batch in batches) >= 2, f"nothing was batched: {batches}"


def test_a_hash_mismatch_after_generation_is_caught_downstream(settings, start_worker, read_topic) -> None:
    start_worker("consent", "likeness", "age", "generate")
    submit(settings, "tampered")
    generated = read_topic("gen.passed.generate").wait_for_count(1, timeout=120)[0]
    video = MediaReference.model_validate(generated["assets"]["video"])
    path = Path(settings.asset_dir) / video.sha256[:2] / video.sha256
    path.write_bytes(path.read_bytes()[:-100] + b"\0" * 100)
    start_worker("likeness-post", "publish")
    rejection = read_topic("gen.rejected").wait_for_count(1, timeout=120)[0]
    assert (rejection["stage"], rejection["reasons"][0]["code"]) == ("likeness-post", "media_unreadable")
    assert "does not match its hash" in rejection["reasons"][0]["message"]
    assert read_topic("feed.published").settle(3) == []


def test_generation_that_keeps_failing_ends_in_exactly_one_rejection(settings, start_worker, read_topic) -> None:
    policies_with(settings.policy_dir, "generate", timeout_seconds=0.001, max_attempts=2, steps=20)
    worker = start_worker()
    submit(settings, "doomed")
    rejected = read_topic("gen.rejected").wait_for_count(1, timeout=120)
    assert [(r["request_id"], r["stage"], r["reasons"][0]["code"]) for r in rejected] == [
        ("doomed", "generate", "generation_failed_timeout")]
    assert rejected[0]["decision"]["details"]["attempts"] == 2
    assert len(read_topic("gen.rejected").settle(3)) == 1
    assert read_topic("feed.published").settle(1) == [] and read_topic("gen.deadletter").settle(1) == []
    assert worker.alive


def test_a_worker_killed_mid_generation_loses_and_duplicates_nothing(settings, start_worker, read_topic) -> None:
    policies_with(settings.policy_dir, "generate", steps=40, batch_size=1, batch_wait_seconds=0.05)
    start_worker("consent", "likeness", "age", "likeness-post", "publish")
    for index in range(4):
        submit(settings, f"k{index}", seconds=2)
    first = start_worker("generate")
    wait_for(lambda: "stage-generate" in first.output() or "generate" in first.output(), 60, what="worker start")
    wait_for(lambda: len(generate_details(settings)) >= 1, 120, what="a first generated video")
    first.kill()  # almost surely in the middle of the next request's denoising loop
    start_worker("generate")
    published = read_topic("feed.published").wait_for_count(4, timeout=240)
    time.sleep(2)
    published = read_topic("feed.published").settle(3)
    assert sorted(p["request_id"] for p in published) == ["k0", "k1", "k2", "k3"]
    assert read_topic("gen.rejected").settle(1) == []

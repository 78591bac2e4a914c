"""Hash banks and rights holders on the real broker, as trust & safety staff and rights desks use them."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data as images
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.media.assets import LocalAssetStore
from pipeline.provenance.content_credentials import ATTRIBUTION_LABEL, read_credentials
from pipeline.settings import DEFAULT_STAGES, MODERATION_ONLY_STAGES, Settings
from schemas.models import MediaReference
from tests import face_fixtures as photos
from tests.conftest import settings_env

pytestmark = [pytest.mark.broker]


def cli(settings: Settings, *args: str) -> str:
    result = CliRunner().invoke(app, list(args), env=settings_env(settings))
    assert result.exit_code == 0, result.output
    return result.output


def save(path: Path, rgb: np.ndarray, quality: int | None = None) -> Path:
    if quality is None:
        path.write_bytes(photos.png_bytes(rgb))
    else:
        buffer = io.BytesIO()
        Image.fromarray(rgb).save(buffer, format="JPEG", quality=quality)
        path.write_bytes(buffer.getvalue())
    return path


@pytest.mark.stages(*MODERATION_ONLY_STAGES)
def test_banked_images_and_opted_out_characters_are_rejected_by_bank_name_and_by_reference(
        settings, start_worker, read_topic, tmp_path) -> None:
    cli(settings, "account", "profile", "bob", "--birth-date", "1990-01-01")
    cli(settings, "account", "profile", "carol", "--birth-date", "1991-01-01")
    cli(settings, "bank", "create", "industry-list", "--action", "block", "--source", "hash exchange",
        "--added-by", "tessa")
    banked = save(tmp_path / "known.png", images.coffee())
    assert "1 hash(es) added" in cli(settings, "bank", "add", "industry-list", "--media", str(banked),
                                     "--content-id", "case-77", "--added-by", "tessa")
    reference = save(tmp_path / "whiskers.png", images.chelsea())
    cli(settings, "rights", "set", "whiskers", "--holder", "big-studio", "--holder-name", "Big Studio",
        "--name", "Whiskers the Cat", "--alias", "Whiskerz", "--choice", "blocked", "--reference", str(reference))
    start_worker()

    def submit(request_id: str, prompt: str, *media: Path, requester: str = "bob") -> None:
        cli(settings, "submit", "--requester", requester, "--prompt", prompt, "--request-id", request_id,
            *[arg for path in media for arg in ("--media", str(path))])

    submit("banked", "my morning", save(tmp_path / "mirrored.jpg", np.ascontiguousarray(images.coffee()[:, ::-1]), 40))
    submit("by-name", "whiskerz chasing a laser pointer")
    submit("by-image", "my cat", save(tmp_path / "small-cat.jpg", images.chelsea()[::2, ::2], 60))
    # bob's three refusals are strikes (policies/enforcement.yaml) that put him under a cooldown, which publish
    # re-checks: the clean request comes from another account
    submit("clean", "a rocket launch", save(tmp_path / "rocket.png", images.rocket()), requester="carol")
    rejected = {r["request_id"]: r for r in read_topic("gen.rejected").wait_for_count(3, timeout=120)}
    published = read_topic("feed.published").wait_for_count(1, timeout=60)
    assert [p["request_id"] for p in published] == ["clean"]
    assert {rid: (r["stage"], r["reasons"][0]["code"]) for rid, r in rejected.items()} == {
        "banked": ("known-media", "known_media_match"), "by-name": ("known-media", "rights_blocked"),
        "by-image": ("known-media", "rights_blocked")}
    assert "hash bank industry-list" in rejected["banked"]["reasons"][0]["message"]
    match = rejected["banked"]["decision"]["details"]["matches"][0]
    assert match["bank"] == "industry-list" and match["content_id"] == "case-77" and match["distance"] <= 31
    assert "Whiskers the Cat" in rejected["by-name"]["reasons"][0]["message"]
    assert rejected["by-image"]["decision"]["details"]["matches"][0]["bank"] == "rights_references"

    banks = {row["bank"]: row for row in json.loads(cli(settings, "bank", "list", "--format", "json"))}
    assert banks["industry-list"]["entries"] == 1 and banks["rights_references"]["entries"] == 1
    works = json.loads(cli(settings, "rights", "list", "--format", "json"))
    assert [(w["work_id"], w["choice"], w["references"]) for w in works] == [("whiskers", "blocked", "1/1")]
    exported = cli(settings, "bank", "export", "industry-list")
    assert exported.startswith("pdq ") and len(exported.split()[1]) == 64


@pytest.mark.stages(*DEFAULT_STAGES)
def test_opted_in_works_are_attributed_and_a_taken_down_video_cannot_come_back(
        settings, start_worker, read_topic, tmp_path) -> None:
    cli(settings, "account", "profile", "bob", "--birth-date", "1990-01-01")
    owner = save(tmp_path / "owner.png", photos.astronaut())
    cli(settings, "cameo", "register", "cam-owner", "--owner", "bob", "--audience", "only_me")
    cli(settings, "cameo", "verify", "cam-owner", "--verified-by", "liveness", "--media", str(owner))
    cli(settings, "rights", "set", "boaty", "--holder", "boat-studios", "--holder-name", "Boat Studios",
        "--name", "Boaty McBoatface", "--kind", "character", "--choice", "allowed")
    start_worker()
    cli(settings, "submit", "--requester", "bob", "--prompt", "Boaty McBoatface sails down a river", "--request-id",
        "boaty", "--cameo", "cam-owner", "--width", "256", "--height", "256", "--duration", "1")
    published = read_topic("feed.published").wait_for_count(1, timeout=240)[0]
    assert [d["stage"] for d in published["decisions"]] == list(DEFAULT_STAGES)
    signed = LocalAssetStore(settings.asset_dir).get(MediaReference.model_validate(published["assets"]["video"]))
    attribution = read_credentials(signed).assertion(ATTRIBUTION_LABEL)
    assert attribution["works"] == [{"work_id": "boaty", "name": "Boaty McBoatface", "kind": "character",
                                     "holder_id": "boat-studios", "holder": "Boat Studios", "choice": "allowed"}]

    cli(settings, "cameo", "revoke", "cam-owner", "--reason", "no longer")
    assert [t["request_id"] for t in read_topic("feed.takedowns").wait_for_count(1, timeout=60)] == ["boaty"]
    banked = json.loads(cli(settings, "bank", "list", "taken_down", "--format", "json"))
    assert banked and {row["content_id"] for row in banked} == {"boaty"}

    reupload = tmp_path / "downloaded.mp4"
    reupload.write_bytes(signed)
    cli(settings, "submit", "--requester", "bob", "--prompt", "look at this", "--request-id", "again",
        "--media", str(reupload), "--width", "256", "--height", "256", "--duration", "1")
    rejected = read_topic("gen.rejected").wait_for_count(1, timeout=120)[0]
    assert (rejected["request_id"], rejected["stage"], rejected["reasons"][0]["code"]) == (
        "again", "known-media", "known_media_taken_down")
    assert rejected["decision"]["details"]["matches"][0]["content_id"] == "boaty"

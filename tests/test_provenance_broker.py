"""Provenance on the real broker: the whole product pipeline, then `trustreel verify` on what came out."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.media.assets import LocalAssetStore
from pipeline.provenance.content_credentials import read_credentials
from pipeline.provenance.dev_certificates import write_dev_credentials
from pipeline.settings import DEFAULT_STAGES, Settings
from schemas.models import MediaReference
from tests.conftest import settings_env, wait_for
from tests.test_provenance_unit import reencode

pytestmark = [pytest.mark.broker, pytest.mark.stages(*DEFAULT_STAGES)]


def cli(settings: Settings, *args: str, expect: int = 0) -> str:
    result = CliRunner().invoke(app, list(args), env=settings_env(settings))
    assert result.exit_code == expect, result.output
    return result.output


@pytest.fixture(autouse=True)
def adult_requester(settings: Settings) -> None:
    cli(settings, "account", "profile", "bob", "--birth-date", "1990-01-01")


def submit(settings: Settings, request_id: str, size: int = 256) -> None:
    cli(settings, "submit", "--requester", "bob", "--prompt", "a paper boat on a river", "--request-id", request_id,
        "--width", str(size), "--height", str(size), "--duration", "1")


def test_published_videos_are_signed_watermarked_and_verifiable_off_platform(settings, start_worker, read_topic,
                                                                             tmp_path) -> None:
    named = settings.model_copy(update={"generator_model_name": "trustreel-video", "generator_model_version": "2026.11"})
    start_worker(settings_override=named)
    submit(settings, "boat")
    submit(settings, "tiny", size=64)
    published = read_topic("feed.published").wait_for_count(1, timeout=180)
    rejected = read_topic("gen.rejected").wait_for_count(1, timeout=60)
    assert [p["request_id"] for p in published] == ["boat"]
    assert [(r["request_id"], r["stage"], r["reasons"][0]["code"]) for r in rejected] == [
        ("tiny", "provenance", "too_small_to_watermark")]
    assert [d["stage"] for d in published[0]["decisions"]] == list(DEFAULT_STAGES)
    by_stage = {d["stage"]: d["details"] for d in published[0]["decisions"]}
    # drawn before the generate stage's one encode, so the checks after it saw the pixels that are published
    assert by_stage["generate"]["marks"]["policy_id"] == "provenance-default"
    assert by_stage["provenance"]["marks"]["marked_by"] == "generate"
    assert by_stage["provenance"]["source_sha256"] == by_stage["generate"]["video"]["sha256"]
    # no face in the generated frames: the doubled search runs on every other sampled frame (small_face_every 2)
    searched = [frame["min_face_size"] for frame in by_stage["likeness-post"]["faces_searched"]]
    assert by_stage["likeness-post"]["faces"] == [] and len(searched) >= 2
    assert searched == [40 if position % 2 == 0 else 80 for position in range(len(searched))]

    signed = LocalAssetStore(settings.asset_dir).get(MediaReference.model_validate(published[0]["assets"]["video"]))
    original = tmp_path / "boat.mp4"
    original.write_bytes(signed)
    report = json.loads(cli(settings, "verify", str(original), "--json"))
    assert report["manifest"]["state"] == "Trusted" and report["manifest"]["ai_generated"] is True
    assert report["manifest"]["model"] == {"name": "trustreel-video", "version": "2026.11"}
    public = json.dumps(read_credentials(signed).manifest) + json.dumps(published[0])
    for private in (settings.generator_model, str(Path(settings.generator_model).parent), str(tmp_path),
                    settings.bootstrap, settings.db_url, socket.gethostname()):
        assert private not in public, f"{private} is in the public manifest or feed record"
    assert [d["stage"] for d in report["manifest"]["moderation"]["decisions"]] == list(DEFAULT_STAGES[:-2])
    assert report["audit_records"][0]["request_id"] == "boat"
    assert report["audit_records"][0]["outcome"] == "published"
    assert "AI-generated: yes" in cli(settings, "verify", str(original))

    copy = tmp_path / "reuploaded.mp4"
    copy.write_bytes(reencode(signed, crf=28))  # left the platform: manifest gone, pixels re-encoded
    text = cli(settings, "verify", str(copy), expect=1)
    assert "C2PA manifest: absent" in text or "C2PA manifest: Invalid" in text
    assert "audit database: request boat" in text and "differs: a copy" in text


def test_an_expired_signing_certificate_stops_the_worker_and_nothing_is_published(settings, start_worker,
                                                                                   read_topic, tmp_path) -> None:
    from datetime import datetime, timedelta, timezone

    expired = write_dev_credentials(tmp_path / "expired", valid_days=10,
                                    not_before=datetime.now(timezone.utc) - timedelta(days=30))
    broken = settings.model_copy(update={"c2pa_cert_chain": expired.cert_chain,
                                         "c2pa_private_key": expired.private_key})
    start_worker(*(stage for stage in settings.stages if stage != "provenance"))
    signer = start_worker("provenance", settings_override=broken)
    wait_for(lambda: not signer.alive, 120, what="the provenance worker to stop")
    assert signer.process.returncode != 0
    assert "the signing certificate expired on" in signer.output()
    submit(settings, "unsigned")
    ready = f"gen.passed.{settings.stages[settings.stages.index('provenance') - 1]}"
    wait_for(lambda: read_topic(ready).poll(), 180, what="a video ready to sign")
    assert read_topic("feed.published").settle(3) == []

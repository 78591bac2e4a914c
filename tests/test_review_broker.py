"""Human review and appeals on the real broker: parked requests resume or end exactly once."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.settings import Settings
from tests import face_fixtures as photos
from tests.conftest import policies_with, settings_env

pytestmark = [pytest.mark.broker, pytest.mark.stages("consent", "likeness", "publish")]


def cli(settings: Settings, *args: str, expect: int = 0) -> str:
    result = CliRunner().invoke(app, list(args), env=settings_env(settings))
    assert result.exit_code == expect, result.output
    return result.output


def test_borderline_faces_wait_for_a_person_who_resumes_or_ends_them_once(settings, start_worker, read_topic,
                                                                           tmp_path) -> None:
    # Tight match distance, wider review band: an altered copy of the owner's photo is borderline.
    live = settings.model_copy(update={"policy_dir": policies_with(
        tmp_path / "policies", "likeness", face_match_distance={"dlib": 0.1, "insightface": 1.0},
        review_distance={"dlib": 0.3})})
    owner, flipped = tmp_path / "owner.png", tmp_path / "flipped.png"
    owner.write_bytes(photos.png_bytes(photos.astronaut()))
    flipped.write_bytes(photos.png_bytes(photos.altered_copies(photos.astronaut())["flip"]))
    cli(live, "gallery", "add", "cam-astro", str(owner), "--gallery", "cameos")
    cli(live, "cameo", "register", "cam-astro", "--owner", "bob", "--audience", "only_me")
    cli(live, "cameo", "verify", "cam-astro", "--verified-by", "liveness")
    start_worker(settings_override=live)
    for request_id in ("resume-me", "end-me"):
        cli(live, "submit", "--requester", "bob", "--prompt", "me on the moon", "--cameo", "cam-astro",
            "--media", str(flipped), "--request-id", request_id)
    parked = read_topic("gen.review").wait_for_count(2, timeout=120)
    assert {p["request_id"]: p["reasons"][0]["code"] for p in parked} == {
        "resume-me": "borderline_cameo_match", "end-me": "borderline_cameo_match"}
    assert read_topic("feed.published").settle(2) == []  # pending reviews never publish by themselves
    listing = cli(live, "review", "list")
    assert "resume-me" in listing and "end-me" in listing

    assert "resume-me: approved" in cli(live, "review", "approve", "resume-me", "--reviewer", "rita", "--note", "same")
    assert "already approved by rita" in cli(live, "review", "approve", "resume-me", "--reviewer", "sam", expect=1)
    cli(live, "review", "reject", "end-me", "--reviewer", "rita", "--note", "not the owner")
    published = read_topic("feed.published").wait_for_count(1, timeout=60)
    assert [p["request_id"] for p in read_topic("feed.published").settle(3)] == ["resume-me"]
    assert [d["stage"] for d in published[0]["decisions"]] == ["consent", "likeness", "review-likeness", "publish"]
    rejected = read_topic("gen.rejected").wait_for_count(1, timeout=30)
    assert [(r["request_id"], r["stage"], r["reasons"][0]["message"]) for r in rejected] == [
        ("end-me", "review-likeness", "not the owner")]
    assert "resume-me" not in cli(live, "review", "list") and "end-me" not in cli(live, "review", "list")
    path = cli(live, "audit", "show", "resume-me")
    assert "review-likeness" in path and "outcome: published" in path


def test_a_rejection_can_be_appealed_and_approved_once(settings, start_worker, read_topic) -> None:
    start_worker()
    cli(settings, "submit", "--requester", "bob", "--prompt", "T0m H4nks the ferret eating", "--request-id", "ferret")
    rejection = read_topic("gen.rejected").wait_for_count(1, timeout=90)[0]
    assert (rejection["stage"], rejection["reasons"][0]["code"]) == ("likeness", "public_figure_named")
    assert "appeal of the likeness rejection" in cli(settings, "review", "appeal", "ferret", "--note",
                                                     "my ferret is called Tom Hanks")
    cli(settings, "review", "appeal", "ferret", expect=1)  # once
    cli(settings, "review", "approve", "ferret", "--reviewer", "rita", "--note", "a pet, not the actor")
    published = read_topic("feed.published").wait_for_count(1, timeout=60)
    assert published[0]["request_id"] == "ferret"
    assert len(read_topic("feed.published").settle(3)) == 1
    assert "outcome: published" in cli(settings, "audit", "show", "ferret")

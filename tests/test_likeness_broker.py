"""The likeness stage on the real broker, with galleries built through the CLI from real photographs."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.settings import Settings
from tests import face_fixtures as photos
from tests.conftest import settings_env

pytestmark = [pytest.mark.broker, pytest.mark.stages("consent", "likeness", "publish")]


def cli(settings: Settings, *args: str):
    result = CliRunner().invoke(app, list(args), env=settings_env(settings))
    assert result.exit_code == 0, result.output
    return result.output


def test_gallery_cli_and_face_and_name_checks_end_to_end(settings, start_worker, read_topic, tmp_path) -> None:
    astronaut = tmp_path / "astronaut.png"
    astronaut.write_bytes(photos.png_bytes(photos.astronaut()))
    flipped = tmp_path / "astronaut-flipped.jpg"
    flipped.write_bytes(photos.png_bytes(photos.altered_copies(photos.astronaut())["flip"]))
    guest = tmp_path / "guest.png"
    guest.write_bytes(photos.png_bytes(photos.group_portrait(2)))

    assert "added 1 dlib embedding(s) to public_figures/Eileen Collins" in cli(
        settings, "gallery", "add", "Eileen Collins", str(astronaut))
    assert "to cameos/cam-guest" in cli(settings, "gallery", "add", "cam-guest", str(guest), "--gallery", "cameos")
    listing = cli(settings, "gallery", "list")
    assert "Eileen Collins" in listing and "cam-guest" in listing
    for kind, extra in [("register", ["--owner", "guest", "--audience", "everyone"]),
                        ("verify", ["--verified-by", "liveness-service"])]:
        cli(settings, "cameo", kind, "cam-guest", *extra)

    start_worker(settings_override=settings)
    cli(settings, "submit", "--requester", "bob", "--prompt", "her in space", "--media", str(flipped),
        "--request-id", "astronaut-photo")
    cli(settings, "submit", "--requester", "bob", "--prompt", "this guest dancing", "--media", str(guest),
        "--cameo", "cam-guest", "--request-id", "consenting-cameo")
    cli(settings, "submit", "--requester", "bob", "--prompt", "someone dancing", "--media", str(guest),
        "--request-id", "no-consent")
    cli(settings, "submit", "--requester", "bob", "--prompt", "E1leen C0llins on the moon",
        "--request-id", "named")

    rejected = {r["request_id"]: r for r in read_topic("gen.rejected").wait_for_count(3, timeout=120)}
    published = read_topic("feed.published").wait_for_count(1, timeout=60)
    assert [p["request_id"] for p in published] == ["consenting-cameo"]
    assert {rid: r["reasons"][0]["code"] for rid, r in rejected.items()} == {
        "astronaut-photo": "public_figure_face", "no-consent": "unconsented_person_face",
        "named": "public_figure_named"}
    faces = rejected["astronaut-photo"]["decision"]["details"]["faces"]
    assert faces[0]["public_figure"]["name"] == "Eileen Collins"
    assert faces[0]["public_figure"]["distance"] <= faces[0]["threshold"]

    assert "removed public_figures/Eileen Collins" in cli(settings, "gallery", "remove", "Eileen Collins")
    cli(settings, "submit", "--requester", "bob", "--prompt", "her in space", "--media", str(flipped),
        "--request-id", "after-removal")
    later = {r["request_id"]: r for r in read_topic("gen.rejected").wait_for_count(4, timeout=60)}
    assert later["after-removal"]["reasons"][0]["code"] == "unconsented_person_face", \
        "the worker reloads the gallery: no longer a public figure, still a real person without consent"
    assert json.loads(cli(settings, "asset", "put", str(guest)))["media_type"] == "image/png"

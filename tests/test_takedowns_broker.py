"""Takedown on revocation, on the real broker: one takedown per affected published item, none for others."""

from __future__ import annotations

import json
import pytest
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.settings import Settings
from tests.conftest import settings_env

pytestmark = [pytest.mark.broker, pytest.mark.stages("consent", "publish")]


def cli(settings: Settings, *args: str) -> str:
    result = CliRunner().invoke(app, list(args), env=settings_env(settings))
    assert result.exit_code == 0, result.output
    return result.output


def test_a_revocation_takes_down_exactly_the_items_that_used_the_cameo(settings, start_worker, read_topic) -> None:
    for cameo, owner in (("cam-gone", "olive"), ("cam-kept", "kim")):
        cli(settings, "cameo", "register", cameo, "--owner", owner, "--audience", "everyone")
        cli(settings, "cameo", "verify", cameo, "--verified-by", "liveness")
    start_worker()
    for request_id, requester, cameos in (("g1", "bob", ["cam-gone"]), ("g2", "carol", ["cam-gone", "cam-kept"]),
                                          ("k1", "bob", ["cam-kept"]), ("n1", "bob", [])):
        cli(settings, "submit", "--requester", requester, "--prompt", "a walk", "--request-id", request_id,
            *[arg for cameo in cameos for arg in ("--cameo", cameo)])
    read_topic("feed.published").wait_for_count(4, timeout=90)

    cli(settings, "cameo", "revoke", "cam-gone", "--reason", "I changed my mind")
    takedowns = read_topic("feed.takedowns").wait_for_count(2, timeout=30)
    assert sorted(t["request_id"] for t in takedowns) == ["g1", "g2"]
    first = next(t for t in takedowns if t["request_id"] == "g1")
    assert first["reason"]["code"] == "consent_revoked" and "I changed my mind" in first["reason"]["message"]
    assert first["cause"]["cameo_id"] == "cam-gone"
    assert first["original_decision"]["stage"] == "publish" and first["original_decision"]["outcome"] == "approved"

    cli(settings, "cameo", "revoke", "cam-gone")  # said twice: still one takedown per item
    cli(settings, "cameo", "revoke", "cam-kept", "--account", "bob")  # bob only: his k1, not carol's g2 again
    takedowns = read_topic("feed.takedowns").wait_for_count(3, timeout=30)
    assert sorted(t["request_id"] for t in read_topic("feed.takedowns").settle(3)) == ["g1", "g2", "k1"]
    listing = json.loads(cli(settings, "audit", "published", "--cameo", "cam-gone", "--format", "json"))
    assert {row["request_id"]: row["taken_down"] for row in listing} == {"g1": "consent_revoked",
                                                                         "g2": "consent_revoked"}


def test_adding_a_public_figure_sends_takedowns_for_published_videos_showing_them(settings, read_topic,
                                                                                    tmp_path) -> None:
    from pipeline.audit.db import make_engine, make_sessionmaker
    from pipeline.audit.store import SqlAuditStore
    from pipeline.media.assets import LocalAssetStore
    from tests import face_fixtures as photos
    from tests.test_takedown_identity import publish

    store = SqlAuditStore(make_sessionmaker(make_engine(settings.db_url)))
    assets = LocalAssetStore(settings.asset_dir)
    publish(store, assets, "shows-her", [photos.astronaut()] * 3)
    publish(store, assets, "shows-others", [photos.group_portrait(2)] * 3)
    portrait = tmp_path / "collins.png"
    portrait.write_bytes(photos.png_bytes(photos.astronaut()))
    output = cli(settings, "gallery", "add", "Eileen Collins", str(portrait))
    assert "1 takedown(s) sent" in output
    takedowns = read_topic("feed.takedowns").wait_for_count(1, timeout=30)
    assert [(t["request_id"], t["cause"]["identity"]) for t in takedowns] == [("shows-her", "Eileen Collins")]
    assert "0 takedown(s) sent" in cli(settings, "takedown", "sweep", "Eileen Collins")
    assert len(read_topic("feed.takedowns").settle(2)) == 1

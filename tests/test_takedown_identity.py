"""Takedown when a public figure is added, and appeals of takedowns (real SQLite, dlib faces, MP4s)."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest

from pipeline.audit.db import make_engine, make_sessionmaker, upgrade
from pipeline.audit.store import DecisionRecord, SqlAuditStore
from pipeline.cases.reviews import ReviewError, appeal, resolve
from pipeline.audit.send_once import OnceSender
from pipeline.cases.takedowns import TakedownService, face_matcher, send_takedowns
from pipeline.hashing.banking import MediaBanker
from pipeline.hashing.banks import TAKEN_DOWN, BankStore
from pipeline.likeness.faces import DlibEmbedder
from pipeline.likeness.galleries import PUBLIC_FIGURES, GallerySearch, GalleryStore
from pipeline.media.assets import LocalAssetStore
from pipeline.transport.topics import TopicMap
from pipeline.transport.transactions import OutgoingMessage
from schemas.models import (ConsentEvent, DeadLetterSource, GenerationRequest, Outcome, PublishedItem,
                            StageDecision)
from tests import face_fixtures as photos

NOW = datetime(2026, 11, 25, 12, tzinfo=timezone.utc)
TOPICS = TopicMap(prefix="", stages=("consent", "publish"))


def publish(store: SqlAuditStore, assets: LocalAssetStore, request_id: str, frames, cameos=()) -> None:
    request = GenerationRequest(request_id=request_id, requester_account="bob", prompt="p", cameo_ids=list(cameos))
    video = assets.put(photos.mp4_bytes([photos.even(frame) for frame in frames]), "video/mp4")
    decision = StageDecision(request_id=request_id, stage="publish", outcome=Outcome.APPROVED, policy_id="publish",
                             policy_version="p" * 64, decided_at=NOW)
    item = PublishedItem(request_id=request_id, requester_account="bob", prompt="p", cameo_ids=list(cameos),
                         assets={"video": video}, decisions=[decision], published_at=NOW)
    store.record_decision(request, DecisionRecord(decision=decision, duration_ms=1, worker="w",
                                                  source=DeadLetterSource(topic="t", partition=0, offset=1)),
                          OutgoingMessage("feed.published", request_id.encode(), item.model_dump_json().encode()))


@pytest.fixture
def world(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    upgrade(url)
    sessions = make_sessionmaker(make_engine(url))
    assets = LocalAssetStore(tmp_path / "assets")
    store = SqlAuditStore(sessions)
    publish(store, assets, "astronaut-video", [photos.astronaut()] * 3)
    publish(store, assets, "group-video", [photos.group_portrait(2)] * 3)
    embedder = DlibEmbedder()
    face = max(embedder.faces(photos.astronaut()), key=lambda f: f.score)
    GalleryStore(sessions).add(PUBLIC_FIGURES, "Eileen Collins", embedder.name, [(face.embedding, "astronaut.png")])
    search = GallerySearch(GalleryStore(sessions), embedder.name, 50_000)
    matcher = face_matcher(embedder, search, "Eileen Collins", 0.5, every=1, max_frames=3,
                           same_face_max_block_change=12)  # as the shipped likeness policy sets it
    banker = MediaBanker(BankStore(sessions), assets)
    return sessions, assets, TakedownService(sessions, "feed.takedowns", banker=banker), matcher


def test_adding_a_public_figure_takes_down_only_the_videos_that_show_them(world) -> None:
    sessions, assets, service, matcher = world
    messages = service.identity_sweep("Eileen Collins", matcher, assets)
    assert [m.key for m in messages] == [b"astronaut-video"]
    event = json.loads(messages[0].value)
    assert event["cause"]["kind"] == "public_figure_added" and event["cause"]["identity"] == "Eileen Collins"
    assert event["cause"]["match_distance"] <= 0.5 and event["reason"]["code"] == "public_figure_added"
    assert [m.key for m in service.identity_sweep("Eileen Collins", matcher, assets)] == [b"astronaut-video"]
    sent: list[bytes] = []
    send_takedowns(sessions, OnceSender(lambda message, partition: sent.append(message.key), OnePartition()),
                   messages)  # as the CLI sends them (its producer here only records what it was given)
    assert sent == [b"astronaut-video"]
    assert service.identity_sweep("Eileen Collins", matcher, assets) == []  # sent: a later sweep sends nothing



def test_a_takedown_can_be_appealed_and_reinstated_but_not_a_consent_revocation(world) -> None:
    sessions, assets, service, matcher = world
    service.identity_sweep("Eileen Collins", matcher, assets)
    banked = BankStore(sessions).entries(TAKEN_DOWN)
    assert {row.content_id for row in banked} == {"astronaut-video"} and banked[0].source == "takedown:astronaut-video"
    assert appeal(sessions, "astronaut-video", "it is a look-alike", now=NOW) == "takedown"
    with pytest.raises(ReviewError, match="already appealed"):
        appeal(sessions, "astronaut-video", "again", now=NOW)
    resolution = resolve(sessions, TOPICS, "astronaut-video", True, "rita", "look-alike, not her", now=NOW)
    assert resolution.output.topic == "feed.published"
    reinstated = json.loads(resolution.output.value)
    assert [d["stage"] for d in reinstated["decisions"]] == ["publish", "review-takedown"]
    assert BankStore(sessions).entries(TAKEN_DOWN) == [], "reinstated: its frames may be used again"

    store = SqlAuditStore(sessions)
    publish(store, assets, "cameo-video", [photos.group_portrait(2)] * 2, cameos=["cam-1"])
    revoke = ConsentEvent(event_id="rv1", cameo_id="cam-1", kind="revoke")
    assert [m.key for m in service.on_consent_event(revoke)] == [b"cameo-video"]
    with pytest.raises(ReviewError, match="cannot overrule"):
        appeal(sessions, "cameo-video", "please", now=NOW)


class OnePartition:
    """The topic positions the send-once path reads, for a topic of one empty partition (no broker here)."""

    def partition_for(self, topic: str, key: bytes) -> int:
        return 0

    def end_of(self, topic: str, partition: int) -> int:
        return 0

    def contains(self, topic: str, partition: int, after: int, key: bytes, value: bytes) -> bool:
        return False


def test_a_sweep_describes_a_face_seen_again_in_one_video_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    upgrade(url)
    sessions = make_sessionmaker(make_engine(url))
    embedder = DlibEmbedder()
    face = max(embedder.faces(photos.astronaut()), key=lambda f: f.score)
    GalleryStore(sessions).add(PUBLIC_FIGURES, "Eileen Collins", embedder.name, [(face.embedding, "astronaut.png")])
    search = GallerySearch(GalleryStore(sessions), embedder.name, 50_000)
    video = photos.mp4_bytes([photos.even(photos.astronaut())] * 4)
    described = []
    network = embedder._describe
    embedder._describe = lambda crop: described.append(crop.shape) or network(crop)
    every_face = face_matcher(embedder, search, "Eileen Collins", 0.5, every=1, max_frames=4)(video)
    without_memory, described[:] = len(described), []
    remembered = face_matcher(embedder, search, "Eileen Collins", 0.5, every=1, max_frames=4,
                              same_face_max_block_change=12)(video)
    assert every_face is not None and remembered is not None and abs(remembered - every_face) < 0.05
    assert without_memory >= 4 and len(described) < without_memory / 2  # the same frames: described once

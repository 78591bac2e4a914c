"""Tools send a recorded review outcome or takedown once: not twice on a double click, not twice after a crash
between the send and "sent" (pipeline.audit.send_once), on the real broker.

Before send claims, both failed: two approvals of the same review by the same reviewer at the same moment both
sent the output (the second found it "not sent yet"), and a sweep that crashed after sending re-sent on its
next run.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime, timezone

import pytest

import pipeline.audit.send_once as send_once_module
from pipeline.audit.db import TakedownRow, make_engine, make_sessionmaker
from pipeline.audit.send_once import SendResult
from pipeline.audit.store import DecisionRecord, SqlAuditStore
from pipeline.cases.reviews import ReviewError, appeal, resolve, send_resolution
from pipeline.cases.takedowns import TakedownService, send_takedowns
from pipeline.likeness.faces import DlibEmbedder
from pipeline.likeness.galleries import PUBLIC_FIGURES, GallerySearch, GalleryStore
from pipeline.media.assets import LocalAssetStore
from pipeline.producer import PipelineProducer
from pipeline.transport.topics import TopicMap
from pipeline.transport.transactions import OutgoingMessage
from schemas.models import (DeadLetterSource, GenerationRequest, Outcome, PublishedItem, Reason, Rejection,
                            StageDecision)
from tests import face_fixtures as photos

pytestmark = [pytest.mark.broker, pytest.mark.stages("consent", "likeness", "publish")]
NOW = datetime(2026, 11, 25, 12, tzinfo=timezone.utc)


def record(settings, request_id: str, stage: str, outcome: Outcome, output: OutgoingMessage,
           reasons: list[Reason] = ()) -> None:
    request = GenerationRequest(request_id=request_id, requester_account="bob", prompt="p")
    decision = StageDecision(request_id=request_id, stage=stage, outcome=outcome, reasons=list(reasons),
                             policy_id=stage, policy_version="v" * 64, decided_at=NOW)
    SqlAuditStore(make_sessionmaker(make_engine(settings.db_url))).record_decision(
        request, DecisionRecord(decision=decision, duration_ms=1, worker="w",
                                source=DeadLetterSource(topic="t", partition=0, offset=1)), output)


def slow_sends(monkeypatch, seconds: float = 1.5) -> None:
    """Every producer send waits first: the window in which a second try used to send as well."""
    original = PipelineProducer.send_outgoing

    def slow(self, message, partition=None, timeout=30.0):
        time.sleep(seconds)
        original(self, message, partition, timeout)

    monkeypatch.setattr(PipelineProducer, "send_outgoing", slow)


def test_the_same_approval_clicked_twice_at_once_sends_the_request_on_once(settings, read_topic,
                                                                            monkeypatch) -> None:
    topics = TopicMap.from_settings(settings)
    reason = Reason(code="public_figure_named", message="named")
    rejection = Rejection(request_id="ferret", requester_account="bob", stage="likeness", reasons=[reason],
                          decision=StageDecision(request_id="ferret", stage="likeness", outcome=Outcome.REJECTED,
                                                 reasons=[reason], policy_id="l", policy_version="v",
                                                 decided_at=NOW), rejected_at=NOW)
    record(settings, "ferret", "likeness", Outcome.REJECTED,
           OutgoingMessage(topics.rejected, b"ferret", rejection.model_dump_json().encode()), [reason])
    sessions = make_sessionmaker(make_engine(settings.db_url))
    appeal(sessions, "ferret", "my ferret is called Tom Hanks")
    slow_sends(monkeypatch)
    results: list[SendResult] = []

    def click() -> None:
        with PipelineProducer(settings) as producer:
            resolution = resolve(sessions, topics, "ferret", True, "rita", "a pet")
            results.append(send_resolution(sessions, resolution, producer.once_sender()))

    clicks = [threading.Thread(target=click) for _ in range(2)]
    for thread in clicks:
        thread.start()
    for thread in clicks:
        thread.join(60)
    assert sorted(results) == sorted([SendResult.SENT, SendResult.BEING_SENT])
    resumed = read_topic("gen.passed.likeness").settle(3)
    assert [(m["request"]["request_id"], m["decisions"][-1]["stage"]) for m in resumed] == [
        ("ferret", "review-likeness")]
    with pytest.raises(ReviewError, match="already approved by rita"):  # once sent, a repeat is only told so
        resolve(sessions, topics, "ferret", True, "rita", "a pet")


@pytest.fixture
def swept(settings):
    """A published video showing the astronaut, and a sweep for her as a public figure: one takedown to send."""
    sessions = make_sessionmaker(make_engine(settings.db_url))
    assets = LocalAssetStore(settings.asset_dir)
    topics = TopicMap.from_settings(settings)
    video = assets.put(photos.mp4_bytes([photos.even(photos.astronaut())] * 3), "video/mp4")
    decision = StageDecision(request_id="moon", stage="publish", outcome=Outcome.APPROVED, policy_id="publish",
                             policy_version="p" * 64, decided_at=NOW)
    item = PublishedItem(request_id="moon", requester_account="bob", prompt="p", cameo_ids=[],
                         assets={"video": video}, decisions=[decision], published_at=NOW)
    record(settings, "moon", "publish", Outcome.APPROVED,
           OutgoingMessage(topics.published, b"moon", item.model_dump_json().encode()))
    embedder = DlibEmbedder()
    face = max(embedder.faces(photos.astronaut()), key=lambda f: f.score)
    GalleryStore(sessions).add(PUBLIC_FIGURES, "Eileen Collins", embedder.name, [(face.embedding, "a.png")])
    from pipeline.cases.takedowns import face_matcher

    matcher = face_matcher(embedder, GallerySearch(GalleryStore(sessions), embedder.name, 50_000), "Eileen Collins",
                           0.5, every=1, max_frames=3)
    service = TakedownService(sessions, topics.takedowns)
    return sessions, service, lambda: service.identity_sweep("Eileen Collins", matcher, assets)


def test_a_sweep_that_crashed_after_sending_does_not_send_again(settings, swept, read_topic, monkeypatch) -> None:
    sessions, _, sweep = swept
    expired_at_once = settings.model_copy(update={"send_claim_lease_seconds": 0})
    marks = []
    real_mark = send_once_module._mark

    def crash_once(*args) -> None:
        marks.append(args)
        if len(marks) == 1:
            raise RuntimeError("the sweep process died here, after the broker acknowledged the takedown")
        real_mark(*args)

    monkeypatch.setattr(send_once_module, "_mark", crash_once)
    with PipelineProducer(expired_at_once) as producer, pytest.raises(RuntimeError, match="died here"):
        send_takedowns(sessions, producer.once_sender(), sweep())
    assert len(read_topic("feed.takedowns").wait_for_count(1, timeout=30)) == 1
    with PipelineProducer(expired_at_once) as producer:  # the sweep is run again
        messages = sweep()
        assert [m.key for m in messages] == [b"moon"]  # still recorded as unsent
        assert send_takedowns(sessions, producer.once_sender(), messages) == [SendResult.FOUND_ON_TOPIC]
    assert len(read_topic("feed.takedowns").settle(3)) == 1
    assert sweep() == []
    with sessions() as session:
        assert session.get(TakedownRow, "moon").sent_at is not None


def test_two_sweeps_at_once_send_one_takedown(settings, swept, read_topic, monkeypatch) -> None:
    sessions, _, sweep = swept
    messages = sweep()
    slow_sends(monkeypatch)
    results: list[list[SendResult]] = []

    def run() -> None:
        with PipelineProducer(settings) as producer:
            results.append(send_takedowns(sessions, producer.once_sender(), messages))

    sweeps = [threading.Thread(target=run) for _ in range(2)]
    for thread in sweeps:
        thread.start()
    for thread in sweeps:
        thread.join(60)
    assert sorted(results) == sorted([[SendResult.SENT], [SendResult.BEING_SENT]])
    assert [t["request_id"] for t in read_topic("feed.takedowns").settle(3)] == ["moon"]

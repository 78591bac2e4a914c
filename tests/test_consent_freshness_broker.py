"""Consent decides on a consent registry that has applied what was produced before the request (real broker).

Before: the consents agent applies one record per transaction, so behind a burst of consent records a cameo
registered just before its first request was unknown to the consent stage (`cameo_unknown`).
"""

from __future__ import annotations

import time
import uuid

import pytest
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.producer import PipelineProducer
from pipeline.settings import Settings
from schemas.models import AccessLevel, ConsentEvent, ConsentKind
from tests.conftest import settings_env, wait_for

pytestmark = [pytest.mark.broker, pytest.mark.stages("consent", "likeness", "publish")]


def cli(settings: Settings, *args: str) -> str:
    result = CliRunner().invoke(app, list(args), env=settings_env(settings))
    assert result.exit_code == 0, result.output
    return result.output


def flood(settings: Settings, records: int) -> None:
    """Grants on other cameos: records the registry must apply before it reaches the ones after them."""
    with PipelineProducer(settings) as producer:
        for index in range(records):
            producer.send_consent(ConsentEvent(event_id=str(uuid.uuid4()), cameo_id=f"busy-{index % 50}",
                                               kind=ConsentKind.GRANT, account=f"fan-{index}",
                                               access=AccessLevel.ALLOW))


def started(settings: Settings, start_worker, read_topic, **changes) -> Settings:
    live = settings.model_copy(update=changes)
    start_worker(settings_override=live)
    cli(live, "submit", "--requester", "bob", "--prompt", "warm up", "--request-id", "warm-up")
    read_topic("feed.published").wait_for_count(1, timeout=90)
    return live


def test_a_cameo_registered_just_before_its_first_request_is_known(settings, start_worker, read_topic) -> None:
    live = started(settings, start_worker, read_topic, consent_feed_wait_seconds=90)  # a slow machine's margin
    flood(live, 600)
    cli(live, "cameo", "register", "cam-new", "--owner", "bob", "--audience", "only_me")
    cli(live, "cameo", "verify", "cam-new", "--verified-by", "liveness")
    cli(live, "submit", "--requester", "bob", "--prompt", "me dancing", "--cameo", "cam-new", "--request-id", "first")
    assert read_topic("gen.rejected").settle(1) == []
    published = read_topic("feed.published").wait_for_count(2, timeout=150)
    assert sorted(p["request_id"] for p in published) == ["first", "warm-up"]  # two partitions: no order between them
    assert read_topic("gen.rejected").settle(1) == []


def test_a_flood_the_registry_cannot_apply_in_time_refuses_with_a_retryable_reason(settings, start_worker,
                                                                                    read_topic) -> None:
    # one record per transaction keeps the registry ~8 s behind 600 records, the way an overloaded one is
    live = started(settings, start_worker, read_topic, consent_feed_wait_seconds=0.5, stage_batch_size=1)
    flood(live, 600)
    cli(live, "cameo", "register", "cam-new", "--owner", "bob", "--audience", "only_me")
    cli(live, "cameo", "verify", "cam-new", "--verified-by", "liveness")
    cli(live, "submit", "--requester", "bob", "--prompt", "me dancing", "--cameo", "cam-new", "--request-id", "early")
    cli(live, "submit", "--requester", "bob", "--prompt", "no cameo, nothing to wait for", "--request-id", "plain")
    rejected = read_topic("gen.rejected").wait_for_count(1, timeout=60)
    assert [(r["request_id"], r["stage"], r["reasons"][0]["code"]) for r in rejected] == [
        ("early", "consent", "consent_registry_behind")]
    assert "Send it again" in rejected[0]["reasons"][0]["message"]
    read_topic("feed.published").wait_for_count(2, timeout=60)  # the request without cameos went on
    # once the registry has caught up, the same request sent again passes
    published_reader, rejected_reader = read_topic("feed.published"), read_topic("gen.rejected")

    def outcome(request_id: str) -> str | None:
        if request_id in {p["request_id"] for p in published_reader.json_values()}:
            return "published"
        if request_id in {r["request_id"] for r in rejected_reader.json_values()}:
            return "rejected"
        return None

    for attempt in range(20):
        request_id = f"again-{attempt}"
        cli(live, "submit", "--requester", "bob", "--prompt", "me dancing", "--cameo", "cam-new", "--request-id",
            request_id)
        if wait_for(lambda: outcome(request_id), 90, what=f"{request_id} decided") == "published":
            break
        time.sleep(2)
    else:
        pytest.fail("the registry never caught up: every request sent again was refused")

"""The age stage on the real broker: registry from accounts.events, caps shared by workers, late controls."""

from __future__ import annotations

import uuid
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest
from kafka.admin import KafkaAdminClient
from sqlalchemy import select

from pipeline.audit.db import DecisionRow
from pipeline.settings import Settings
from pipeline.state.account_registry import SqlAccountRegistry
from policies.loader import policy_path
from schemas.models import AccountEvent, ConsentEvent, GenerationRequest
from tests.conftest import wait_for

pytestmark = [pytest.mark.broker, pytest.mark.stages("consent", "age", "publish")]


def profile(account: str, birth_date: date, assurance: str = "estimated") -> AccountEvent:
    return AccountEvent(event_id=uuid.uuid4().hex, account_id=account, kind="profile", birth_date=birth_date,
                        assurance=assurance)


def born_years_ago(years: int, days_later: int = 0) -> date:
    """The birth date of someone who turns `years` old `days_later` days from today (UTC, like the policy)."""
    day = datetime.now(timezone.utc).date() + timedelta(days=days_later)
    try:
        return day.replace(year=day.year - years)
    except ValueError:  # 29 February
        return day.replace(year=day.year - years, day=28)


def request(request_id: str, requester: str, *cameos: str, labels=(), metadata=None) -> GenerationRequest:
    return GenerationRequest(request_id=request_id, requester_account=requester, prompt="a video",
                             cameo_ids=list(cameos), content_labels=list(labels), client_metadata=metadata or {})


def with_age_policy(settings: Settings, tmp_path: Path, replace: tuple[str, str]) -> Settings:
    """The same pipeline with a policy directory whose age.yaml has one edit."""
    directory = tmp_path / "policies"
    directory.mkdir()
    # enrollment: the consents feed reads it; known-media: takedowns sample frames for the taken_down bank by it;
    # enforcement: consent refuses sanctioned accounts by it, the reports feed weighs reports by it
    for stage in ("consent", "age", "publish", "enrollment", "known-media", "enforcement"):
        text = policy_path(stage).read_text()
        if stage == "age":
            assert replace[0] in text
            text = text.replace(*replace)
        (directory / f"{stage}.yaml").write_text(text)
    return settings.model_copy(update={"policy_dir": directory})


def age_reason(rejection: dict) -> tuple[str, str, str]:
    return rejection["stage"], rejection["reasons"][0]["code"], rejection["decision"]["details"]["band"]


def test_bands_come_from_the_registry_not_the_payload(settings, producer, start_worker, read_topic) -> None:
    producer.send_account_events([profile("teen", born_years_ago(14)),  # one burst, as an import sends them
                                  profile("adult", born_years_ago(30), "self_declared"),
                                  profile("just-13", born_years_ago(13)),
                                  profile("still-12", born_years_ago(13, days_later=1))])  # 13 tomorrow
    start_worker()
    producer.submit(request("claims-adult", "teen", labels=["mature"], metadata={"age": "35", "band": "adult"}))
    producer.submit(request("adult-mature", "adult", labels=["mature"]))
    producer.submit(request("birthday-today", "just-13"))
    producer.submit(request("birthday-tomorrow", "still-12"))
    producer.submit(request("nobody-knows", "no-profile"))
    rejected = {r["request_id"]: r for r in read_topic("gen.rejected").wait_for_count(3)}
    published = {p["request_id"]: p for p in read_topic("feed.published").wait_for_count(2)}
    assert set(published) == {"adult-mature", "birthday-today"}
    assert age_reason(rejected["claims-adult"]) == ("age", "content_class_not_allowed", "13_15")
    assert age_reason(rejected["birthday-tomorrow"]) == ("age", "age_blocked", "under_13")
    assert age_reason(rejected["nobody-knows"]) == ("age", "age_unknown", "unknown")
    age_decision = next(d for d in published["birthday-today"]["decisions"] if d["stage"] == "age")
    assert age_decision["details"]["band"] == "13_15" and age_decision["policy_id"] == "age-default"


def test_cap_reached_is_rejected_and_later_requests_still_flow(
        settings, producer, start_worker, read_topic, tmp_path) -> None:
    capped = with_age_policy(settings, tmp_path, ("      daily_generation_cap: 10\n", "      daily_generation_cap: 3\n"))
    producer.send_account_event(profile("teen", born_years_ago(14)))
    producer.send_account_event(profile("other-teen", born_years_ago(15)))
    start_worker(settings_override=capped)
    for n in range(5):
        producer.submit(request(f"teen-{n}", "teen"))
    producer.submit(request("other-0", "other-teen"))
    rejected = read_topic("gen.rejected").wait_for_count(2)
    published = read_topic("feed.published").wait_for_count(4)
    assert len([p for p in published if p["requester_account"] == "teen"]) == 3
    assert "other-0" in {p["request_id"] for p in published}, "one account's cap does not touch another's"
    assert {age_reason(r)[1] for r in rejected} == {"daily_cap_reached"}
    assert "3 videos for today" in rejected[0]["reasons"][0]["message"]


def test_two_workers_share_the_cap_without_exceeding_it(settings, producer, start_worker, read_topic,
                                                        sessions, tmp_path) -> None:
    capped = with_age_policy(settings, tmp_path, ("      daily_generation_cap: 100\n", "      daily_generation_cap: 7\n"))
    producer.send_account_event(profile("busy-adult", born_years_ago(40), "verified_document"))
    first, second = start_worker(settings_override=capped), start_worker(settings_override=capped)
    group = settings.consumer_group
    wait_for(lambda: _stable_members(settings, group) == 2, 60, what="both workers to join the group")
    ids = [f"burst-{n:02d}" for n in range(30)]
    for request_id in ids:
        producer.submit(request(request_id, "busy-adult"))
    wait_for(lambda: len(read_topic("feed.published").poll()) + len(read_topic("gen.rejected").poll()) >= 30, 120,
             what="all 30 requests to finish")
    published = read_topic("feed.published").settle(2.0)
    assert len(published) == 7
    with sessions() as session:
        workers = set(session.scalars(select(DecisionRow.worker).where(DecisionRow.stage == "age")))
    assert len(workers) == 2, "both workers decided some of the burst"
    assert first.alive and second.alive


def _stable_members(settings: Settings, group: str) -> int:
    """Members of a group that finished rebalancing (round-robin then gives each some partitions)."""
    admin = KafkaAdminClient(bootstrap_servers=settings.bootstrap)
    try:
        described = admin.describe_groups([group]).get(group, {})
        return len(described.get("members", [])) if described.get("group_state") == "Stable" else 0
    finally:
        admin.close()


def test_parental_control_arriving_in_flight_stops_publication(
        settings, producer, start_worker, read_topic, sessions) -> None:
    producer.send_account_event(profile("teen", born_years_ago(14)))
    producer.send_account_event(AccountEvent(event_id="link", account_id="teen", kind="parental_link",
                                             parent_account="parent"))
    start_worker("consent", "age")
    producer.submit(request("before-controls", "teen"))
    read_topic("gen.passed.age").wait_for_count(1)  # past the age stage, not yet published
    producer.send_account_event(AccountEvent(event_id=uuid.uuid4().hex, account_id="teen", kind="parental_controls",
                                             generation_disabled=True, cameo_use_disabled=False))
    registry = SqlAccountRegistry(sessions)
    wait_for(lambda: registry.get("teen").generation_disabled, 30, what="the controls to reach the registry")
    producer.submit(request("after-controls", "teen"))
    start_worker("publish")
    rejected = {r["request_id"]: r for r in read_topic("gen.rejected").wait_for_count(2)}
    assert rejected["before-controls"]["stage"] == "publish"
    assert rejected["before-controls"]["reasons"][0]["code"] == "parental_generation_disabled"
    assert rejected["after-controls"]["stage"] == "age"
    assert read_topic("feed.published").settle(2.0) == []


def test_minor_cameo_rules_on_the_broker(settings, producer, start_worker, read_topic) -> None:
    for account, years in [("teen-owner", 14), ("teen-friend", 15), ("teen-stranger", 15), ("adult", 30)]:
        producer.send_account_event(profile(account, born_years_ago(years)))
    for event in [
        ConsentEvent(event_id="c1", cameo_id="teen-cam", kind="register", owner_account="teen-owner",
                     audience="everyone"),
        ConsentEvent(event_id="c2", cameo_id="teen-cam", kind="verify", verified_by="liveness",
                     verification_method="liveness"),
        ConsentEvent(event_id="c3", cameo_id="teen-cam", kind="grant", account="teen-friend", access="allow"),
    ]:
        producer.send_consent(event)
    start_worker()
    producer.submit(request("friend", "teen-friend", "teen-cam"))
    producer.submit(request("stranger", "teen-stranger", "teen-cam"))
    producer.submit(request("adult", "adult", "teen-cam"))
    published = read_topic("feed.published").wait_for_count(1)
    rejected = {r["request_id"]: age_reason(r)[1] for r in read_topic("gen.rejected").wait_for_count(2)}
    assert [p["request_id"] for p in published] == ["friend"]
    assert rejected == {"stranger": "minor_cameo_not_approved", "adult": "adult_using_minor_cameo"}

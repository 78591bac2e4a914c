"""End-to-end behaviour on the real Kafka broker, with real worker processes and a real SQLite file."""

from __future__ import annotations

import base64
import json
import uuid

import pytest
from sqlalchemy import delete, func, select

from pipeline.audit.db import CameoAccessRow, CameoRow, DeadLetterRow, DecisionRow
from pipeline.audit.queries import request_path
from schemas.models import ConsentEvent, GenerationRequest
from tests.conftest import wait_for

# The backbone's behaviours on the smallest pipeline; stage-specific suites add their stage.
pytestmark = [pytest.mark.broker, pytest.mark.stages("consent", "publish")]


def consent(cameo: str, kind: str, **fields) -> ConsentEvent:
    return ConsentEvent(event_id=uuid.uuid4().hex, cameo_id=cameo, kind=kind, **fields)


def verified_cameo(cameo: str, owner: str, audience: str = "approved", *allowed: str) -> list[ConsentEvent]:
    return [consent(cameo, "register", owner_account=owner, audience=audience),
            consent(cameo, "verify", verified_by="liveness-service", verification_method="liveness"),
            *[consent(cameo, "grant", account=account, access="allow") for account in allowed]]


def request(request_id: str, requester: str, *cameos: str) -> GenerationRequest:
    return GenerationRequest(request_id=request_id, requester_account=requester, prompt=f"video {request_id}",
                             cameo_ids=list(cameos))


def outcome(sessions, request_id: str) -> str:
    path = request_path(sessions, request_id)
    return path.final_outcome if path else "not seen"


def is_terminal(text: str) -> bool:
    return text in ("published", "dead letter") or text.startswith("rejected")


def test_permitted_cameo_request_is_published_with_an_audit_row_per_stage(
        settings, producer, start_worker, read_topic, sessions) -> None:
    for event in verified_cameo("cam-alice", "alice", "approved", "bob"):
        producer.send_consent(event)
    start_worker()
    producer.submit(request("ok-1", "bob", "cam-alice"))
    published = read_topic("feed.published").wait_for_count(1)
    assert [item["request_id"] for item in published] == ["ok-1"]
    assert [d["stage"] for d in published[0]["decisions"]] == ["consent", "publish"]
    assert published[0]["decisions"][0]["details"]["cameo_owners"] == {"cam-alice": "alice"}
    with sessions() as session:
        rows = session.scalars(select(DecisionRow).where(DecisionRow.request_id == "ok-1")
                               .order_by(DecisionRow.id)).all()
    assert [(row.stage, row.outcome) for row in rows] == [("consent", "approved"), ("publish", "approved")]
    assert all(len(row.policy_version) == 64 for row in rows)
    assert rows[0].policy_id == "consent-default" and rows[1].policy_id == "publish-default"
    from typer.testing import CliRunner

    from pipeline.cli import app
    from tests.conftest import settings_env

    shown = CliRunner().invoke(app, ["audit", "show", "ok-1", "--json"], env=settings_env(settings))
    path = json.loads(shown.output)
    assert path["final_outcome"] == "published" and [s["stage"] for s in path["steps"]] == ["consent", "publish"]
    table = CliRunner().invoke(app, ["audit", "show", "ok-1"], env=settings_env(settings)).output
    assert "consent    approved" in table and "outcome: published" in table


def test_each_consent_failure_is_rejected_with_its_reason(settings, producer, start_worker, read_topic) -> None:
    events = [
        *verified_cameo("cam-limited", "alice", "approved", "bob"),
        consent("cam-unverified", "register", owner_account="dave", audience="everyone"),
        *verified_cameo("cam-revoked", "erin", "everyone"),
        consent("cam-revoked", "revoke", reason="withdrawn"),
    ]
    for event in events:
        producer.send_consent(event)
    start_worker()
    cases = {"unknown": ("cam-ghost", "cameo_unknown"), "unverified": ("cam-unverified", "cameo_unverified"),
             "revoked": ("cam-revoked", "cameo_revoked"), "stranger": ("cam-limited", "cameo_not_allowed")}
    for request_id, (cameo, _) in cases.items():
        producer.submit(request(request_id, "carol" if request_id == "stranger" else "bob", cameo))
    rejected = {item["request_id"]: item for item in read_topic("gen.rejected").wait_for_count(len(cases))}
    for request_id, (cameo, code) in cases.items():
        assert rejected[request_id]["stage"] == "consent"
        assert [reason["code"] for reason in rejected[request_id]["reasons"]] == [code]
        assert cameo in rejected[request_id]["reasons"][0]["message"]
    assert read_topic("feed.published").settle(2.0) == []


def test_revocation_while_in_flight_stops_the_request_at_publish(
        settings, producer, start_worker, read_topic, sessions) -> None:
    for event in verified_cameo("cam-flight", "alice", "everyone"):
        producer.send_consent(event)
    consent_only = start_worker("consent")
    producer.submit(request("inflight-1", "bob", "cam-flight"))
    read_topic("gen.passed.consent").wait_for_count(1)  # consent approved; nothing runs publish yet
    producer.send_consent(consent("cam-flight", "revoke", reason="owner changed their mind"))
    wait_for(lambda: _revoked(sessions, "cam-flight"), 30, what="the registry to apply the revocation")
    start_worker("publish")
    rejected = read_topic("gen.rejected").wait_for_count(1)
    assert rejected[0]["request_id"] == "inflight-1" and rejected[0]["stage"] == "publish"
    assert [reason["code"] for reason in rejected[0]["reasons"]] == ["cameo_revoked"]
    assert read_topic("feed.published").settle(2.0) == []
    assert consent_only.alive


def _revoked(sessions, cameo_id: str) -> bool:
    with sessions() as session:
        row = session.get(CameoRow, cameo_id)
        return row is not None and row.revoked_at is not None


def test_bad_input_is_dead_lettered_and_good_traffic_keeps_flowing(
        settings, producer, start_worker, read_topic, sessions) -> None:
    worker = start_worker()
    bad = {
        b"{not json": "malformed_json",
        b'{"schema_version": 7, "request_id": "future-1"}': "unsupported_schema_version",
        b'{"schema_version": 1, "request_id": "partial-1", "prompt": "p"}': "invalid_message",
        b"\xff\xfe\x00binary": "malformed_json",
        json.dumps({"schema_version": 1, "request_id": "big-1", "requester_account": "bob",
                    "prompt": "x" * 100}).encode() + b" " * (settings.max_message_bytes + 10): "oversize_message",
    }
    for raw in bad:
        producer.send_raw("gen.requests", raw)
    producer.send_raw("gen.requests", None, key=b"tombstone")
    producer.submit(request("good-after-bad", "carol"))
    letters = read_topic("gen.deadletter").wait_for_count(len(bad) + 1)
    by_original = {base64.b64decode(letter["original_base64"]): letter for letter in letters}
    for raw, code in bad.items():
        letter = by_original[raw]
        assert letter["error_code"] == code and letter["stage"] == "consent"
        assert letter["original_size"] == len(raw) and letter["error"]
    assert by_original[b"{not json"]["error"].startswith("the message is not valid JSON")
    assert by_original[b'{"schema_version": 1, "request_id": "partial-1", "prompt": "p"}']["request_id"] == "partial-1"
    assert "requester_account: Field required" in by_original[
        b'{"schema_version": 1, "request_id": "partial-1", "prompt": "p"}']["error"]
    assert by_original[b""]["error_code"] == "empty_message"
    published = read_topic("feed.published").wait_for_count(1)
    assert [item["request_id"] for item in published] == ["good-after-bad"]
    assert worker.alive, worker.output()
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(DeadLetterRow)) == len(bad) + 1


def test_the_same_request_delivered_twice_gives_one_decision_and_one_output(
        settings, producer, start_worker, read_topic, sessions) -> None:
    start_worker()
    twice = request("twice-1", "carol")
    producer.submit(twice)
    producer.submit(twice)  # the client retried: same request id, same bytes
    published = read_topic("feed.published").wait_for_count(1)
    assert read_topic("feed.published").settle(3.0) == published
    assert len(read_topic("gen.passed.consent").settle(1.0)) == 1
    with sessions() as session:
        stages = session.scalars(select(DecisionRow.stage).where(DecisionRow.request_id == "twice-1")).all()
    assert sorted(stages) == ["consent", "publish"]


def test_killed_worker_restarts_and_every_request_ends_exactly_once(
        settings, producer, start_worker, read_topic, sessions) -> None:
    for event in verified_cameo("cam-k", "alice", "approved", "bob"):
        producer.send_consent(event)
    ids = [f"kill-{n:03d}" for n in range(150)]
    for n, request_id in enumerate(ids):
        producer.submit(request(request_id, "bob" if n % 3 else "mallory", "cam-k"))
    first = start_worker()
    wait_for(lambda: len(read_topic("gen.passed.consent").poll()) >= 20, 60, what="the worker to get going")
    first.kill()  # SIGKILL mid-stream: no chance to commit or flush
    start_worker()
    wait_for(lambda: all(is_terminal(outcome(sessions, request_id)) for request_id in ids), 120,
             interval=1.0, what="every request to reach a terminal state")
    expected = {request_id: ("rejected at consent" if n % 3 == 0 else "published") for n, request_id in enumerate(ids)}
    assert {request_id: outcome(sessions, request_id) for request_id in ids} == expected
    # a decision is recorded before its transaction commits: the restarted worker re-sends what the killed
    # one recorded but never committed, once it has joined the group
    published_reader, rejected_reader = read_topic("feed.published"), read_topic("gen.rejected")
    wait_for(lambda: len(published_reader.poll()) + len(rejected_reader.poll()) >= len(ids), 120, interval=1.0,
             what="every outcome on its topic")
    published = [item["request_id"] for item in published_reader.settle(3.0)]
    rejected = [item["request_id"] for item in rejected_reader.settle(1.0)]
    assert sorted(published) == sorted(set(published)) == sorted(k for k, v in expected.items() if v == "published")
    assert sorted(rejected) == sorted(set(rejected)) == sorted(k for k, v in expected.items() if v != "published")


def test_consent_registry_is_rebuilt_from_the_topic(settings, producer, start_worker, sessions) -> None:
    from typer.testing import CliRunner

    from pipeline.cli import app
    from tests.conftest import settings_env

    for event in [*verified_cameo("cam-r", "alice", "approved", "bob"), consent("cam-r", "grant", account="eve",
                                                                                   access="deny")]:
        producer.send_consent(event)
    result = CliRunner().invoke(app, ["cameo", "rebuild"], env=settings_env(settings))
    assert result.exit_code == 0, result.output
    with sessions.begin() as session:  # lose the table
        session.execute(delete(CameoAccessRow))
        session.execute(delete(CameoRow))
    result = CliRunner().invoke(app, ["cameo", "rebuild"], env=settings_env(settings))
    assert result.exit_code == 0 and "4 events applied" in result.output, result.output
    shown = CliRunner().invoke(app, ["cameo", "show", "cam-r"], env=settings_env(settings))
    state = json.loads(shown.output)
    assert state["owner_account"] == "alice" and state["verified_by"] == "liveness-service"
    assert state["access"] == {"bob": "allow", "eve": "deny"}

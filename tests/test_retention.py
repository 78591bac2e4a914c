"""Retention drops prompts and media references, keeps the decision skeleton (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from sqlalchemy import select
from typer.testing import CliRunner

from pipeline.audit.db import DeadLetterRow, DecisionRow, RequestRow, make_engine, make_sessionmaker, upgrade
from pipeline.audit.retention import expire
from pipeline.audit.store import DecisionRecord, DeadLetterRecord, SqlAuditStore
from pipeline.cli import app
from pipeline.transport.transactions import OutgoingMessage
from schemas.models import DeadLetterSource, GenerationRequest, Outcome, StageDecision
from tests.test_audit_database import db_url  # noqa: F401 (the SQLite + PostgreSQL fixture)

NOW = datetime(2026, 11, 25, 12, tzinfo=timezone.utc)


def store_request(store: SqlAuditStore, request_id: str, when: datetime) -> None:
    request = GenerationRequest(request_id=request_id, requester_account="bob", prompt="my secret birthday plan",
                                cameo_ids=["cam-1"], submitted_at=when)
    decision = StageDecision(request_id=request_id, stage="generate", outcome=Outcome.APPROVED, policy_id="g",
                             policy_version="v" * 64, decided_at=when,
                             details={"seed": 7, "video": {"sha256": "ab" * 32}, "conditioning": [{"x": 1}]})
    store.record_decision(request, DecisionRecord(decision=decision, duration_ms=1, worker="w",
                                                  source=DeadLetterSource(topic="t", partition=0, offset=1)),
                          OutgoingMessage("gen.passed.generate", request_id.encode(), b'{"prompt": "my secret"}'))


def test_expire_keeps_the_skeleton_and_drops_prompts_and_media(db_url) -> None:  # noqa: F811
    upgrade(db_url)
    sessions = make_sessionmaker(make_engine(db_url))
    store = SqlAuditStore(sessions)
    store_request(store, "old", NOW - timedelta(days=40))
    store_request(store, "new", NOW - timedelta(days=1))
    store.record_dead_letter(DeadLetterRecord(stage="consent", source=DeadLetterSource(topic="t", partition=0,
                                                                                       offset=9),
                                              request_id="x", error_code="malformed_json", error="bad",
                                              original=b'{"prompt": "secret', received_at=NOW - timedelta(days=40)))

    result = expire(sessions, timedelta(days=30), now=NOW)
    assert (result.requests, result.decisions, result.dead_letters) == (1, 1, 1)
    with sessions() as session:
        old, new = session.get(RequestRow, "old"), session.get(RequestRow, "new")
        assert old.prompt == "" and old.original is None and old.expired_at is not None
        assert new.prompt == "my secret birthday plan" and new.expired_at is None
        decision = session.scalar(select(DecisionRow).where(DecisionRow.request_id == "old"))
        assert (decision.stage, decision.outcome, decision.policy_version) == ("generate", "approved", "v" * 64)
        assert decision.details == {"seed": 7} and decision.output_payload == b""
        assert session.scalar(select(DecisionRow.details).where(DecisionRow.request_id == "new"))["video"]
        assert session.scalar(select(DeadLetterRow.original)) == b""
    assert expire(sessions, timedelta(days=30), now=NOW).requests == 0  # already expired: untouched

    cli = CliRunner().invoke(app, ["audit", "expire"], env={"TRUSTREEL_DB_URL": db_url})
    assert cli.exit_code == 1 and "no retention period" in cli.output
    cli = CliRunner().invoke(app, ["audit", "expire"], env={"TRUSTREEL_DB_URL": db_url,
                                                            "TRUSTREEL_RETENTION_DAYS": "30"})
    assert cli.exit_code == 0 and "expired 0 request(s)" in cli.output

"""Audit database: Alembic migrations match the models, and the stores behave alike on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, select, text

from pipeline.audit.db import Base, DeadLetterRow, alembic_config, make_engine, make_sessionmaker, upgrade
from pipeline.audit.store import DeadLetterRecord, DecisionRecord, SqlAuditStore
from pipeline.state.consent_registry import SqlConsentRegistry
from pipeline.transport.transactions import OutgoingMessage
from schemas.models import ConsentEvent, DeadLetterSource, GenerationRequest, Outcome, StageDecision

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'audit.db'}"
    url = request.getfixturevalue("postgres_url")
    engine = make_engine(url)
    with engine.begin() as connection:  # each test starts from an empty database
        connection.execute(text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    engine.dispose()
    return url


def test_upgrade_from_empty_reaches_head_and_matches_the_models(db_url: str) -> None:
    upgrade(db_url)
    engine = make_engine(db_url)
    head = ScriptDirectory.from_config(alembic_config(db_url)).get_current_head()
    with engine.connect() as connection:
        context = MigrationContext.configure(connection)
        assert context.get_current_revision() == head
        assert compare_metadata(context, Base.metadata) == []
    assert {"requests", "decisions", "dead_letters", "cameos", "cameo_access"} <= set(inspect(engine).get_table_names())
    upgrade(db_url)  # running it again is a no-op
    engine.dispose()


def decision(request_id: str, stage: str, outcome: Outcome) -> DecisionRecord:
    return DecisionRecord(
        decision=StageDecision(request_id=request_id, stage=stage, outcome=outcome, policy_id="p",
                               policy_version="a" * 64, decided_at=T0, details={"when": T0}),
        duration_ms=1.5, source=DeadLetterSource(topic="gen.requests", partition=0, offset=1), worker="w")


def test_decisions_are_unique_per_request_and_stage(db_url: str) -> None:
    upgrade(db_url)
    store = SqlAuditStore(make_sessionmaker(make_engine(db_url)))
    request = GenerationRequest(request_id="r1", requester_account="bob", prompt="p", submitted_at=T0)
    first = OutgoingMessage("gen.passed.consent", b"r1", b"first")
    stored = store.record_decision(request, decision("r1", "consent", Outcome.APPROVED), first)
    assert stored.output == first and stored.source.offset == 1
    second = store.record_decision(request, decision("r1", "consent", Outcome.REJECTED),
                                   OutgoingMessage("gen.rejected", b"r1", b"second"))
    assert second == stored, "a second decision for the same stage returns the first one"
    assert store.stored_decision("r1", "consent") == stored
    store.record_decision(request, decision("r1", "publish", Outcome.REJECTED), OutgoingMessage("x", b"r1", b""))
    assert store.approved_stages("r1") == {"consent"}


def test_dead_letters_are_unique_per_source_position(db_url: str) -> None:
    upgrade(db_url)
    store = SqlAuditStore(make_sessionmaker(make_engine(db_url)))
    source = DeadLetterSource(topic="gen.requests", partition=2, offset=9)
    record = DeadLetterRecord(stage="consent", source=source, request_id=None, error_code="malformed_json",
                              error="not JSON", original=b"\xff\x00raw", received_at=T0)
    store.record_dead_letter(record)
    store.record_dead_letter(record)  # redelivery of the same position adds nothing
    with make_sessionmaker(make_engine(db_url))() as session:
        rows = session.scalars(select(DeadLetterRow)).all()
    assert [(row.source_offset, row.original) for row in rows] == [(9, b"\xff\x00raw")]


def test_consent_registry_applies_slots_in_offset_order(db_url: str) -> None:
    upgrade(db_url)
    registry = SqlConsentRegistry(make_sessionmaker(make_engine(db_url)))
    register = ConsentEvent(event_id="e1", cameo_id="c1", kind="register", owner_account="alice",
                            audience="approved", occurred_at=T0)
    grant = ConsentEvent(event_id="e2", cameo_id="c1", kind="grant", account="bob", access="allow", occurred_at=T0)
    revoke = ConsentEvent(event_id="e3", cameo_id="c1", kind="revoke", reason="done", occurred_at=T0)
    assert registry.apply(register, 10) and registry.apply(grant, 11) and registry.apply(revoke, 12)
    assert registry.apply(grant, 11) is False
    state = registry.get("c1")
    assert (state.owner_account, state.audience.value, state.access["bob"].value) == ("alice", "approved", "allow")
    assert state.revoked_at == T0 and state.revoked_reason == "done"
    assert registry.get("missing") is None


def test_approved_stages_of_a_batch_equal_each_request_read_alone(db_url: str) -> None:
    """Publish reads a batch's approvals in one query; a review approving a stage counts as that stage."""
    upgrade(db_url)
    store = SqlAuditStore(make_sessionmaker(make_engine(db_url)))
    verdicts = {"r1": [("consent", Outcome.APPROVED), ("age", Outcome.APPROVED)],
                "r2": [("consent", Outcome.APPROVED), ("age", Outcome.REJECTED)],
                "r3": [("consent", Outcome.APPROVED), ("age", Outcome.REVIEW), ("review-age", Outcome.APPROVED)]}
    for request_id, stages in verdicts.items():
        request = GenerationRequest(request_id=request_id, requester_account="bob", prompt="p", submitted_at=T0)
        for stage, outcome in stages:
            store.record_decision(request, decision(request_id, stage, outcome),
                                  OutgoingMessage("out", request_id.encode(), b""))
    together = store.approved_stages_of(["r1", "r2", "r3", "never-seen"])
    assert together == {request_id: store.approved_stages(request_id) for request_id in ["r1", "r2", "r3", "never-seen"]}
    assert together == {"r1": {"consent", "age"}, "r2": {"consent"}, "r3": {"consent", "age", "review-age"},
                        "never-seen": set()}

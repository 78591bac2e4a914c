"""Auditor queries return the right rows on SQLite and PostgreSQL, through indexes."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from pipeline.audit.db import make_engine, make_sessionmaker, upgrade
from pipeline.audit.queries import (decisions_for, outcome_counts_per_hour, published_with_cameo, rejections,
                                    request_path, request_paths)
from pipeline.audit.store import DecisionRecord, SqlAuditStore
from pipeline.cli import app
from pipeline.transport.transactions import OutgoingMessage
from schemas.models import DeadLetterSource, GenerationRequest, Outcome, Reason, StageDecision
from tests.test_audit_database import db_url  # noqa: F401 (the SQLite + PostgreSQL fixture)

T0 = datetime(2026, 11, 25, 9, 0, tzinfo=timezone.utc)
V1, V2 = "1" * 64, "2" * 64


def record(store: SqlAuditStore, request_id: str, requester: str, cameos: list[str], stage: str, outcome: Outcome,
           minutes: int, version: str = V1, reason: str | None = None) -> None:
    request = GenerationRequest(request_id=request_id, requester_account=requester, prompt="p", cameo_ids=cameos,
                                submitted_at=T0)
    decision = StageDecision(request_id=request_id, stage=stage, outcome=outcome,
                             reasons=[Reason(code=reason, message=reason)] if reason else [], policy_id=f"{stage}-p",
                             policy_version=version, decided_at=T0 + timedelta(minutes=minutes))
    store.record_decision(request, DecisionRecord(decision=decision, duration_ms=1.0, worker="w",
                                                  source=DeadLetterSource(topic="t", partition=0, offset=minutes)),
                          OutgoingMessage("out", request_id.encode(), b"{}"))


@pytest.fixture
def sessions(db_url: str):  # noqa: F811
    upgrade(db_url)
    sessions = make_sessionmaker(make_engine(db_url))
    store = SqlAuditStore(sessions)
    record(store, "a1", "alice", ["cam-1"], "consent", Outcome.APPROVED, 0)
    record(store, "a1", "alice", ["cam-1"], "publish", Outcome.APPROVED, 1)
    record(store, "a2", "alice", [], "consent", Outcome.REJECTED, 70, reason="unknown_cameo")
    record(store, "b1", "bob", ["cam-1", "cam-2"], "consent", Outcome.APPROVED, 75)
    record(store, "b1", "bob", ["cam-1", "cam-2"], "likeness", Outcome.REJECTED, 76, V2, "public_figure_named")
    record(store, "b2", "bob", ["cam-2"], "consent", Outcome.APPROVED, 130)
    record(store, "b2", "bob", ["cam-2"], "publish", Outcome.APPROVED, 131)
    return sessions


def test_decisions_by_account_and_by_cameo(sessions) -> None:
    assert [(d["request_id"], d["stage"]) for d in decisions_for(sessions, account="alice")] == [
        ("a1", "consent"), ("a1", "publish"), ("a2", "consent")]
    assert [(d["request_id"], d["stage"]) for d in decisions_for(sessions, cameo="cam-1")] == [
        ("a1", "consent"), ("a1", "publish"), ("b1", "consent"), ("b1", "likeness")]
    with pytest.raises(ValueError):
        decisions_for(sessions)


def test_rejections_by_time_stage_reason_and_policy_version(sessions) -> None:
    day = (T0, T0 + timedelta(days=1))
    assert [r["request_id"] for r in rejections(sessions, *day)] == ["a2", "b1"]
    assert [r["request_id"] for r in rejections(sessions, *day, stage="likeness")] == ["b1"]
    assert [r["request_id"] for r in rejections(sessions, *day, reason="unknown_cameo")] == ["a2"]
    assert [r["request_id"] for r in rejections(sessions, *day, policy_version="2222")] == ["b1"]
    assert rejections(sessions, T0, T0 + timedelta(minutes=70)) == []  # until is exclusive


def test_published_items_with_a_cameo_and_hourly_counts(sessions) -> None:
    assert [p["request_id"] for p in published_with_cameo(sessions, "cam-1")] == ["a1"]
    assert [p["request_id"] for p in published_with_cameo(sessions, "cam-2")] == ["b2"]
    counts = outcome_counts_per_hour(sessions, T0, T0 + timedelta(days=1))
    assert [(c["hour"][11:16], c["outcome"], c["requests"]) for c in counts] == [
        ("09:00", "published", 1), ("10:00", "rejected at consent", 1), ("10:00", "rejected at likeness", 1),
        ("11:00", "published", 1)]


def test_many_request_paths_in_one_read_are_the_paths_one_by_one(sessions) -> None:
    wanted = ["b2", "a1", "missing", "b1", "a2"]
    paths = request_paths(sessions, wanted)
    assert set(paths) == {"a1", "a2", "b1", "b2"}  # a request no stage saw has no path
    for request_id in paths:
        assert paths[request_id] == request_path(sessions, request_id)
    assert [step.stage for step in paths["b1"].steps] == ["consent", "likeness"]
    assert paths["b1"].final_outcome == "rejected at likeness" and paths["b1"].cameo_ids == ["cam-1", "cam-2"]


def test_the_queries_use_indexes(sessions) -> None:
    engine = sessions.kw["bind"]
    statements = {
        "by cameo": "SELECT request_id FROM request_cameos WHERE cameo_id = 'cam-1'",
        "rejections in a range": "SELECT id FROM decisions WHERE outcome = 'rejected' "
                                 "AND decided_at >= '2026-11-25' AND decided_at < '2026-11-26'",
        "by policy version": f"SELECT id FROM decisions WHERE policy_version = '{V2}'",
        "by account": "SELECT request_id FROM requests WHERE requester_account = 'bob'",
    }
    with engine.connect() as connection:
        postgres = engine.dialect.name == "postgresql"
        if postgres:
            connection.execute(text("SET enable_seqscan = off"))  # tiny tables: ask whether an index *can* serve
        for name, statement in statements.items():
            prefix = "EXPLAIN " if postgres else "EXPLAIN QUERY PLAN "
            plan = " ".join(str(row[-1]) for row in connection.execute(text(prefix + statement)))
            assert "index" in plan.lower(), f"{name}: {plan}"


def test_audit_cli_tables_json_and_csv(sessions, db_url) -> None:  # noqa: F811
    env = {"TRUSTREEL_DB_URL": db_url}
    table = CliRunner().invoke(app, ["audit", "decisions", "--account", "bob"], env=env)
    assert table.exit_code == 0 and table.output.splitlines()[0].split()[:3] == ["request_id", "stage", "outcome"]
    csv_out = CliRunner().invoke(app, ["audit", "rejections", "--since", "2026-11-25T00:00", "--until",
                                       "2026-11-26T00:00", "--format", "csv"], env=env)
    assert csv_out.exit_code == 0 and csv_out.output.splitlines()[0].startswith("request_id,stage,outcome")
    assert len(csv_out.output.splitlines()) == 3
    published = CliRunner().invoke(app, ["audit", "published", "--cameo", "cam-2", "--format", "json"], env=env)
    assert published.exit_code == 0 and '"request_id": "b2"' in published.output
    counts = CliRunner().invoke(app, ["audit", "counts", "--since", "2026-11-25T00:00", "--until",
                                      "2026-11-26T00:00"], env=env)
    assert counts.exit_code == 0 and "rejected at likeness" in counts.output

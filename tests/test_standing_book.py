"""Standings read from a real SQLite audit database: one account at a time, or a whole batch's requesters at once."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

from pipeline.audit.db import (DecisionRow, RequestRow, StrikeVoidRow, TakedownRow, make_engine, make_sessionmaker,
                               upgrade)
from pipeline.enforcement.rules import latest_enforcement
from pipeline.enforcement.standing import SqlStandingBook
from pipeline.runtime.batch_snapshot import batch_snapshot

NOW = datetime.now(timezone.utc)


def filled_book(tmp_path: Path) -> SqlStandingBook:
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    upgrade(url)
    sessions = make_sessionmaker(make_engine(url))
    with sessions.begin() as session:
        for index, (account, code) in enumerate([("ann", "content_sexual_minors"), ("ann", "public_figure_named"),
                                                 ("bob", "public_figure_named"), ("bob", "public_figure_named"),
                                                 ("cyd", "too_long")]):
            request_id = f"{account}-{index}"
            session.add(RequestRow(request_id=request_id, requester_account=account, prompt="p", cameo_ids=[],
                                   submitted_at=NOW - timedelta(hours=2), first_seen_at=NOW - timedelta(hours=2)))
            session.flush()  # the request row before the rows that refer to it
            session.add(DecisionRow(request_id=request_id, stage="content", outcome="rejected",
                                    reasons=[{"code": code, "message": "m"}], details={}, policy_id="p",
                                    policy_version="v", decided_at=NOW - timedelta(hours=1), duration_ms=1.0,
                                    input_topic="t", input_partition=0, input_offset=index, output_topic="o",
                                    output_payload=b"", worker="w"))
        session.add(RequestRow(request_id="bob-taken", requester_account="bob", prompt="p", cameo_ids=[],
                               submitted_at=NOW - timedelta(hours=2), first_seen_at=NOW - timedelta(hours=2)))
        session.flush()
        session.add(TakedownRow(request_id="bob-taken", cause_event_id="e", reason_code="consent_revoked",
                                created_at=NOW - timedelta(minutes=30), payload=b""))
        session.add(StrikeVoidRow(account="bob", source="rejection", source_ref="bob-2", voided_by="senior",
                                  note="appeal", voided_at=NOW))
    return SqlStandingBook(sessions, latest_enforcement(None))


def test_a_batch_reads_every_requesters_standing_at_once_and_the_same_as_one_by_one(tmp_path: Path) -> None:
    book = filled_book(tmp_path)
    alone = {account: book.standing(account, NOW) for account in ("ann", "bob", "cyd", "dan")}
    assert alone["ann"].points >= 8 and alone["ann"].sanction is not None  # sexual_minors alone reaches the top
    assert [strike.voided_by for strike in alone["bob"].strikes if strike.source_ref == "bob-2"] == ["senior"]
    assert alone["cyd"].strikes == [] and alone["dan"].strikes == []  # too_long is no strike; dan has nothing
    calls: list[list[str]] = []
    loading = book.standings
    book.standings = lambda accounts, now: calls.append(accounts) or loading(accounts, now)  # type: ignore
    with batch_snapshot(frozenset({"ann", "bob", "cyd", "dan"})):
        batched = {account: book.standing(account, NOW) for account in ("bob", "ann", "dan", "cyd")}
    assert calls == [["ann", "bob", "cyd", "dan"]], "one load for the whole batch"
    for account in alone:
        assert batched[account].strikes == alone[account].strikes
        assert batched[account].sanction == alone[account].sanction

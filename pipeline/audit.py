"""Audit store: the durable record of every decision and dead letter.

The runtime's exactly-one-outcome promise rests on this store:

    record_decision(request, stage)  -- unique (request_id, stage); a second call returns the first row
    emit output to Kafka, wait for the broker's ack
    mark_decision_forwarded()        -- a redelivered input now finds "already forwarded" and stops
    commit the input offset

Real: SqlAuditStore (SQLAlchemy, SQLite or PostgreSQL). Tests: InMemoryAuditStore.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import sessionmaker

from pipeline.db import DeadLetterRow, DecisionRow, RequestRow
from schemas.models import DeadLetterSource, GenerationRequest, Outcome, StageDecision


@dataclass(frozen=True)
class StoredOutput:
    """What a stage decided to send, kept so a crash between record and send can be replayed."""

    key: str
    topic: str
    payload: bytes
    forwarded: bool


@dataclass(frozen=True)
class DecisionRecord:
    decision: StageDecision
    duration_ms: float
    source: DeadLetterSource
    worker: str


@dataclass(frozen=True)
class DeadLetterRecord:
    stage: str
    source: DeadLetterSource
    request_id: str | None
    error_code: str
    error: str
    original: bytes
    received_at: datetime


class AuditStore(Protocol):
    def stored_decision_output(self, request_id: str, stage: str) -> StoredOutput | None: ...

    def record_decision(self, request: GenerationRequest, record: DecisionRecord, output: StoredOutput) -> StoredOutput:
        """Store the decision and its output; if one exists for (request, stage), return that instead."""
        ...

    def mark_decision_forwarded(self, request_id: str, stage: str) -> None: ...

    def record_dead_letter(self, record: DeadLetterRecord, output: StoredOutput) -> StoredOutput: ...

    def mark_dead_letter_forwarded(self, source: DeadLetterSource) -> None: ...

    def approved_stages(self, request_id: str) -> set[str]: ...


class InMemoryAuditStore:
    """Dict-backed store with the same uniqueness rules, for unit tests."""

    def __init__(self) -> None:
        self.requests: dict[str, GenerationRequest] = {}
        self.decisions: dict[tuple[str, str], tuple[DecisionRecord, StoredOutput]] = {}
        self.dead_letters: dict[tuple[str, int, int], tuple[DeadLetterRecord, StoredOutput]] = {}

    def stored_decision_output(self, request_id: str, stage: str) -> StoredOutput | None:
        entry = self.decisions.get((request_id, stage))
        return entry[1] if entry else None

    def record_decision(self, request: GenerationRequest, record: DecisionRecord, output: StoredOutput) -> StoredOutput:
        self.requests.setdefault(request.request_id, request)
        entry = self.decisions.setdefault((request.request_id, record.decision.stage), (record, output))
        return entry[1]

    def mark_decision_forwarded(self, request_id: str, stage: str) -> None:
        record, output = self.decisions[(request_id, stage)]
        self.decisions[(request_id, stage)] = (record, _forwarded(output))

    def record_dead_letter(self, record: DeadLetterRecord, output: StoredOutput) -> StoredOutput:
        return self.dead_letters.setdefault(_source_key(record.source), (record, output))[1]

    def mark_dead_letter_forwarded(self, source: DeadLetterSource) -> None:
        record, output = self.dead_letters[_source_key(source)]
        self.dead_letters[_source_key(source)] = (record, _forwarded(output))

    def approved_stages(self, request_id: str) -> set[str]:
        return {stage for (rid, stage), (record, _) in self.decisions.items()
                if rid == request_id and record.decision.outcome is Outcome.APPROVED}


def _forwarded(output: StoredOutput) -> StoredOutput:
    return StoredOutput(output.key, output.topic, output.payload, True)


def _source_key(source: DeadLetterSource) -> tuple[str, int, int]:
    return (source.topic, source.partition, source.offset)


class SqlAuditStore:
    def __init__(self, sessions: sessionmaker) -> None:
        self._sessions = sessions

    def stored_decision_output(self, request_id: str, stage: str) -> StoredOutput | None:
        with self._sessions() as session:
            row = session.scalar(select(DecisionRow).where(DecisionRow.request_id == request_id,
                                                           DecisionRow.stage == stage))
            return None if row is None else StoredOutput(row.request_id, row.output_topic, row.output_payload,
                                                         row.forwarded)

    def record_decision(self, request: GenerationRequest, record: DecisionRecord, output: StoredOutput) -> StoredOutput:
        decision = record.decision
        try:
            with self._sessions.begin() as session:
                if session.get(RequestRow, request.request_id) is None:
                    session.add(RequestRow(
                        request_id=request.request_id, requester_account=request.requester_account,
                        prompt=request.prompt, cameo_ids=list(request.cameo_ids),
                        submitted_at=request.submitted_at, first_seen_at=decision.decided_at,
                    ))
                    session.flush()
                session.add(DecisionRow(
                    request_id=decision.request_id, stage=decision.stage, outcome=decision.outcome.value,
                    reasons=[reason.model_dump() for reason in decision.reasons],
                    details=_jsonable(decision.details), policy_id=decision.policy_id,
                    policy_version=decision.policy_version, decided_at=decision.decided_at,
                    duration_ms=record.duration_ms, input_topic=record.source.topic,
                    input_partition=record.source.partition, input_offset=record.source.offset,
                    output_topic=output.topic, output_payload=output.payload, forwarded=False,
                    worker=record.worker,
                ))
            return output
        except IntegrityError:
            existing = self.stored_decision_output(decision.request_id, decision.stage)
            if existing is None:
                raise
            return existing

    def mark_decision_forwarded(self, request_id: str, stage: str) -> None:
        with self._sessions.begin() as session:
            session.execute(update(DecisionRow)
                            .where(DecisionRow.request_id == request_id, DecisionRow.stage == stage)
                            .values(forwarded=True))

    def record_dead_letter(self, record: DeadLetterRecord, output: StoredOutput) -> StoredOutput:
        try:
            with self._sessions.begin() as session:
                session.add(DeadLetterRow(
                    stage=record.stage, source_topic=record.source.topic,
                    source_partition=record.source.partition, source_offset=record.source.offset,
                    request_id=record.request_id, error_code=record.error_code, error=record.error,
                    original=record.original, received_at=record.received_at, forwarded=False,
                ))
            return output
        except IntegrityError:
            with self._sessions() as session:
                row = session.scalar(select(DeadLetterRow).where(*_source_filter(record.source)))
                if row is None:
                    raise
                return StoredOutput(output.key, output.topic, output.payload, row.forwarded)

    def mark_dead_letter_forwarded(self, source: DeadLetterSource) -> None:
        with self._sessions.begin() as session:
            session.execute(update(DeadLetterRow).where(*_source_filter(source)).values(forwarded=True))

    def approved_stages(self, request_id: str) -> set[str]:
        with self._sessions() as session:
            return set(session.scalars(select(DecisionRow.stage).where(
                DecisionRow.request_id == request_id, DecisionRow.outcome == Outcome.APPROVED.value)))


def _source_filter(source: DeadLetterSource) -> tuple[Any, ...]:
    return (DeadLetterRow.source_topic == source.topic, DeadLetterRow.source_partition == source.partition,
            DeadLetterRow.source_offset == source.offset)


def _jsonable(details: dict[str, Any]) -> dict[str, Any]:
    import json

    return json.loads(json.dumps(details, default=str))

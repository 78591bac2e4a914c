"""Audit store: the durable record of every decision and dead letter.

The runtime's exactly-one-outcome promise rests on this store and on Kafka transactions:

    record_decision(request, stage, output, source position)
        -- unique (request_id, stage): a second call returns the first decision, never a new one
    send the stored output + commit the input offset, in one Kafka transaction
    redelivery of the same position (the transaction never committed) -> the stored output is sent again
    another copy of the request (a different position)                -> nothing is sent

Real: SqlAuditStore (SQLAlchemy, SQLite or PostgreSQL). Tests: InMemoryAuditStore.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import sessionmaker

from pipeline.db import RequestCameoRow, ReviewRow, DeadLetterRow, DecisionRow, RequestRow
from pipeline.transactions import OutgoingMessage
from schemas.models import DeadLetterSource, GenerationRequest, Outcome, StageDecision


@dataclass(frozen=True)
class StoredDecision:
    """What a stage decided to send and which input position it decided on."""

    output: OutgoingMessage
    source: DeadLetterSource


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
    def stored_decision(self, request_id: str, stage: str) -> StoredDecision | None: ...

    def record_decision(self, request: GenerationRequest, record: DecisionRecord,
                        output: OutgoingMessage) -> StoredDecision:
        """Store the decision and its output; if one exists for (request, stage), return that instead."""
        ...

    def record_dead_letter(self, record: DeadLetterRecord) -> None:
        """Store unreadable input once per source position (a redelivery adds nothing)."""
        ...

    def approved_stages(self, request_id: str) -> set[str]: ...


class InMemoryAuditStore:
    """Dict-backed store with the same uniqueness rules, for unit tests."""

    def __init__(self) -> None:
        self.requests: dict[str, GenerationRequest] = {}
        self.decisions: dict[tuple[str, str], tuple[DecisionRecord, StoredDecision]] = {}
        self.dead_letters: dict[tuple[str, int, int], DeadLetterRecord] = {}

    def stored_decision(self, request_id: str, stage: str) -> StoredDecision | None:
        entry = self.decisions.get((request_id, stage))
        return entry[1] if entry else None

    def record_decision(self, request: GenerationRequest, record: DecisionRecord,
                        output: OutgoingMessage) -> StoredDecision:
        self.requests.setdefault(request.request_id, request)
        stored = StoredDecision(output=output, source=record.source)
        return self.decisions.setdefault((request.request_id, record.decision.stage), (record, stored))[1]

    def record_dead_letter(self, record: DeadLetterRecord) -> None:
        source = record.source
        self.dead_letters.setdefault((source.topic, source.partition, source.offset), record)

    def approved_stages(self, request_id: str) -> set[str]:
        return _with_reviews({stage for (rid, stage), (record, _) in self.decisions.items()
                              if rid == request_id and record.decision.outcome is Outcome.APPROVED})


class SqlAuditStore:
    def __init__(self, sessions: sessionmaker) -> None:
        self._sessions = sessions

    def stored_decision(self, request_id: str, stage: str) -> StoredDecision | None:
        with self._sessions() as session:
            row = session.scalar(select(DecisionRow).where(DecisionRow.request_id == request_id,
                                                           DecisionRow.stage == stage))
            if row is None:
                return None
            return StoredDecision(
                output=OutgoingMessage(topic=row.output_topic, key=row.request_id.encode(), value=row.output_payload),
                source=DeadLetterSource(topic=row.input_topic, partition=row.input_partition, offset=row.input_offset),
            )

    def record_decision(self, request: GenerationRequest, record: DecisionRecord,
                        output: OutgoingMessage) -> StoredDecision:
        decision = record.decision
        try:
            with self._sessions.begin() as session:
                if session.get(RequestRow, request.request_id) is None:
                    session.add(RequestRow(
                        request_id=request.request_id, requester_account=request.requester_account,
                        prompt=request.prompt, cameo_ids=list(request.cameo_ids),
                        submitted_at=request.submitted_at, first_seen_at=decision.decided_at,
                        original=request.model_dump_json(),
                    ))
                    session.flush()
                    session.add_all(RequestCameoRow(request_id=request.request_id, cameo_id=cameo_id)
                                    for cameo_id in dict.fromkeys(request.cameo_ids))
                session.add(DecisionRow(
                    request_id=decision.request_id, stage=decision.stage, outcome=decision.outcome.value,
                    reasons=[reason.model_dump() for reason in decision.reasons],
                    details=_jsonable(decision.details), policy_id=decision.policy_id,
                    policy_version=decision.policy_version, decided_at=decision.decided_at,
                    duration_ms=record.duration_ms, input_topic=record.source.topic,
                    input_partition=record.source.partition, input_offset=record.source.offset,
                    output_topic=output.topic, output_payload=output.value, worker=record.worker,
                ))
                if decision.outcome is Outcome.REVIEW:  # parked for a person, in the same transaction
                    session.add(ReviewRow(request_id=decision.request_id, stage=decision.stage, kind="review",
                                          status="pending", reasons=[r.model_dump() for r in decision.reasons],
                                          payload=output.value, created_at=decision.decided_at))
            return StoredDecision(output=output, source=record.source)
        except IntegrityError:
            existing = self.stored_decision(decision.request_id, decision.stage)
            if existing is None:
                raise
            return existing

    def record_dead_letter(self, record: DeadLetterRecord) -> None:
        try:
            with self._sessions.begin() as session:
                session.add(DeadLetterRow(
                    stage=record.stage, source_topic=record.source.topic,
                    source_partition=record.source.partition, source_offset=record.source.offset,
                    request_id=record.request_id, error_code=record.error_code, error=record.error,
                    original=record.original, received_at=record.received_at,
                ))
        except IntegrityError:
            with self._sessions() as session:
                if session.scalar(select(DeadLetterRow.id).where(*_source_filter(record.source))) is None:
                    raise

    def approved_stages(self, request_id: str) -> set[str]:
        with self._sessions() as session:
            return _with_reviews(set(session.scalars(select(DecisionRow.stage).where(
                DecisionRow.request_id == request_id, DecisionRow.outcome == Outcome.APPROVED.value))))


REVIEW_PREFIX = "review-"
"""A person's decision on stage X is recorded as stage "review-X"; approving it counts as X approving."""


def _with_reviews(stages: set[str]) -> set[str]:
    return stages | {stage[len(REVIEW_PREFIX):] for stage in stages if stage.startswith(REVIEW_PREFIX)}


def _source_filter(source: DeadLetterSource) -> tuple[Any, ...]:
    return (DeadLetterRow.source_topic == source.topic, DeadLetterRow.source_partition == source.partition,
            DeadLetterRow.source_offset == source.offset)


def _jsonable(details: dict[str, Any]) -> dict[str, Any]:
    import json

    return json.loads(json.dumps(details, default=str))

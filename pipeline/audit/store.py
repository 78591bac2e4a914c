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

from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from pipeline.audit.db import DeadLetterRow, DecisionRow, RequestCameoRow, RequestRow, ReviewRow, in_chunks
from pipeline.transport.transactions import OutgoingMessage
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


DecisionEntry = tuple[GenerationRequest, DecisionRecord, OutgoingMessage]
"""One decision to store: the request it is about, the decision, and the output it sends."""


class AuditStore(Protocol):
    """The plural methods exist because one database round trip per poll batch, not per message,
    is most of the runtime's throughput (bench/pipeline.py); the singular ones are the same rules."""

    def stored_decision(self, request_id: str, stage: str) -> StoredDecision | None: ...

    def stored_decisions(self, request_ids: list[str], stage: str) -> dict[str, StoredDecision]: ...

    def record_decision(self, request: GenerationRequest, record: DecisionRecord,
                        output: OutgoingMessage) -> StoredDecision:
        """Store the decision and its output; if one exists for (request, stage), return that instead."""
        ...

    def record_decisions(self, entries: list[DecisionEntry]) -> list[StoredDecision]:
        """record_decision for each entry, together: what is stored for each, in order."""
        ...

    def record_dead_letter(self, record: DeadLetterRecord) -> None:
        """Store unreadable input once per source position (a redelivery adds nothing)."""
        ...

    def record_dead_letters(self, records: list[DeadLetterRecord]) -> None: ...

    def approved_stages(self, request_id: str) -> set[str]: ...

    def approved_stages_of(self, request_ids: list[str]) -> dict[str, set[str]]:
        """approved_stages for each request (every id is a key, with no approvals an empty set)."""
        ...


class InMemoryAuditStore:
    """Dict-backed store with the same uniqueness rules, for unit tests."""

    def __init__(self) -> None:
        self.requests: dict[str, GenerationRequest] = {}
        self.decisions: dict[tuple[str, str], tuple[DecisionRecord, StoredDecision]] = {}
        self.dead_letters: dict[tuple[str, int, int], DeadLetterRecord] = {}

    def stored_decision(self, request_id: str, stage: str) -> StoredDecision | None:
        entry = self.decisions.get((request_id, stage))
        return entry[1] if entry else None

    def stored_decisions(self, request_ids: list[str], stage: str) -> dict[str, StoredDecision]:
        return {rid: stored for rid in request_ids if (stored := self.stored_decision(rid, stage)) is not None}

    def record_decision(self, request: GenerationRequest, record: DecisionRecord,
                        output: OutgoingMessage) -> StoredDecision:
        self.requests.setdefault(request.request_id, request)
        stored = StoredDecision(output=output, source=record.source)
        return self.decisions.setdefault((request.request_id, record.decision.stage), (record, stored))[1]

    def record_decisions(self, entries: list[DecisionEntry]) -> list[StoredDecision]:
        return [self.record_decision(*entry) for entry in entries]

    def record_dead_letter(self, record: DeadLetterRecord) -> None:
        source = record.source
        self.dead_letters.setdefault((source.topic, source.partition, source.offset), record)

    def record_dead_letters(self, records: list[DeadLetterRecord]) -> None:
        for record in records:
            self.record_dead_letter(record)

    def approved_stages(self, request_id: str) -> set[str]:
        return self.approved_stages_of([request_id])[request_id]

    def approved_stages_of(self, request_ids: list[str]) -> dict[str, set[str]]:
        approved: dict[str, set[str]] = {request_id: set() for request_id in request_ids}
        for (request_id, stage), (record, _) in self.decisions.items():
            if request_id in approved and record.decision.outcome is Outcome.APPROVED:
                approved[request_id].add(stage)
        return {request_id: _with_reviews(stages) for request_id, stages in approved.items()}


class SqlAuditStore:
    def __init__(self, sessions: sessionmaker) -> None:
        self._sessions = sessions

    def stored_decision(self, request_id: str, stage: str) -> StoredDecision | None:
        return self.stored_decisions([request_id], stage).get(request_id)

    def stored_decisions(self, request_ids: list[str], stage: str) -> dict[str, StoredDecision]:
        found: dict[str, StoredDecision] = {}
        with self._sessions() as session:
            for chunk in in_chunks(list(dict.fromkeys(request_ids))):
                for row in session.scalars(select(DecisionRow).where(DecisionRow.request_id.in_(chunk),
                                                                     DecisionRow.stage == stage)):
                    found[row.request_id] = _stored(row)
        return found

    def record_decision(self, request: GenerationRequest, record: DecisionRecord,
                        output: OutgoingMessage) -> StoredDecision:
        return self.record_decisions([(request, record, output)])[0]

    def record_decisions(self, entries: list[DecisionEntry]) -> list[StoredDecision]:
        """One transaction for the lot; if any (request, stage) was stored meanwhile (another worker
        after a rebalance), fall back to one transaction each so the others still land."""
        if not entries:
            return []
        try:
            with self._sessions.begin() as session:
                self._add_requests(session, entries)
                self._add_decisions(session, entries)
            return [StoredDecision(output=output, source=record.source) for _, record, output in entries]
        except IntegrityError:
            if len(entries) > 1:
                return [self.record_decision(*entry) for entry in entries]
            _, record, _ = entries[0]
            existing = self.stored_decision(record.decision.request_id, record.decision.stage)
            if existing is None:
                raise
            return [existing]

    @staticmethod
    def _add_requests(session: Session, entries: list[DecisionEntry]) -> None:
        """The first stage to see a request writes its row (and which cameos it used)."""
        unique = {request.request_id: (request, record.decision.decided_at) for request, record, _ in entries}
        known = {request_id for chunk in in_chunks(list(unique))
                 for request_id in session.scalars(select(RequestRow.request_id).where(RequestRow.request_id.in_(chunk)))}
        new = [request for request_id, (request, _) in unique.items() if request_id not in known]
        if not new:
            return
        session.execute(insert(RequestRow), [
            {"request_id": request.request_id, "requester_account": request.requester_account,
             "prompt": request.prompt, "cameo_ids": list(request.cameo_ids), "submitted_at": request.submitted_at,
             "first_seen_at": unique[request.request_id][1], "original": request.model_dump_json()}
            for request in new])
        cameos = [{"request_id": request.request_id, "cameo_id": cameo_id}
                  for request in new for cameo_id in dict.fromkeys(request.cameo_ids)]
        if cameos:
            session.execute(insert(RequestCameoRow), cameos)

    @staticmethod
    def _add_decisions(session: Session, entries: list[DecisionEntry]) -> None:
        """Bulk INSERTs (executemany), not ORM objects: writing decisions took 11% of a worker's time with
        one object per row, 6% without (py-spy under bench/pipeline.py)."""
        session.execute(insert(DecisionRow), [_decision_values(record, output) for _, record, output in entries])
        reviews = [{"request_id": record.decision.request_id, "stage": record.decision.stage, "kind": "review",
                    "status": "pending", "reasons": [reason.model_dump() for reason in record.decision.reasons],
                    "payload": output.value, "created_at": record.decision.decided_at}
                   for _, record, output in entries if record.decision.outcome is Outcome.REVIEW]
        if reviews:  # parked for a person, in the same transaction
            session.execute(insert(ReviewRow), reviews)

    def record_dead_letter(self, record: DeadLetterRecord) -> None:
        self.record_dead_letters([record])

    def record_dead_letters(self, records: list[DeadLetterRecord]) -> None:
        """One transaction for the lot; a position already stored (redelivery) is skipped."""
        if not records:
            return
        try:
            with self._sessions.begin() as session:
                session.add_all(_dead_letter_row(record) for record in records)
        except IntegrityError:
            if len(records) > 1:
                for record in records:
                    self.record_dead_letter(record)
                return
            with self._sessions() as session:
                if session.scalar(select(DeadLetterRow.id).where(*_source_filter(records[0].source))) is None:
                    raise

    def approved_stages(self, request_id: str) -> set[str]:
        return self.approved_stages_of([request_id])[request_id]

    def approved_stages_of(self, request_ids: list[str]) -> dict[str, set[str]]:
        # Filtered by request id only, on purpose: given "outcome = approved" too, SQLite (no ANALYZE
        # statistics) walks the outcome index over every approval ever made, 10 ms at 20k requests.
        approved: dict[str, set[str]] = {request_id: set() for request_id in request_ids}
        with self._sessions() as session:
            for chunk in in_chunks(list(approved)):
                rows = session.execute(select(DecisionRow.request_id, DecisionRow.stage, DecisionRow.outcome)
                                       .where(DecisionRow.request_id.in_(chunk))).all()
                for request_id, stage, outcome in rows:
                    if outcome == Outcome.APPROVED.value:
                        approved[request_id].add(stage)
        return {request_id: _with_reviews(stages) for request_id, stages in approved.items()}


REVIEW_PREFIX = "review-"
"""A person's decision on stage X is recorded as stage "review-X"; approving it counts as X approving."""


def _with_reviews(stages: set[str]) -> set[str]:
    return stages | {stage[len(REVIEW_PREFIX):] for stage in stages if stage.startswith(REVIEW_PREFIX)}


def _stored(row: DecisionRow) -> StoredDecision:
    return StoredDecision(
        output=OutgoingMessage(topic=row.output_topic, key=row.request_id.encode(), value=row.output_payload),
        source=DeadLetterSource(topic=row.input_topic, partition=row.input_partition, offset=row.input_offset),
    )


def _decision_values(record: DecisionRecord, output: OutgoingMessage) -> dict[str, Any]:
    decision = record.decision
    return {"request_id": decision.request_id, "stage": decision.stage, "outcome": decision.outcome.value,
            "reasons": [reason.model_dump() for reason in decision.reasons], "details": _jsonable(decision.details),
            "policy_id": decision.policy_id, "policy_version": decision.policy_version,
            "decided_at": decision.decided_at, "duration_ms": record.duration_ms, "input_topic": record.source.topic,
            "input_partition": record.source.partition, "input_offset": record.source.offset,
            "output_topic": output.topic, "output_payload": output.value, "worker": record.worker}


def _dead_letter_row(record: DeadLetterRecord) -> DeadLetterRow:
    return DeadLetterRow(stage=record.stage, source_topic=record.source.topic,
                         source_partition=record.source.partition, source_offset=record.source.offset,
                         request_id=record.request_id, error_code=record.error_code, error=record.error,
                         original=record.original, received_at=record.received_at)



def _source_filter(source: DeadLetterSource) -> tuple[Any, ...]:
    return (DeadLetterRow.source_topic == source.topic, DeadLetterRow.source_partition == source.partition,
            DeadLetterRow.source_offset == source.offset)


def _jsonable(details: dict[str, Any]) -> dict[str, Any]:
    import json

    return json.loads(json.dumps(details, default=str))

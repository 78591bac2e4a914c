"""Human review and appeals: a person resumes or ends a parked request, exactly once.

    stage verdict "review" --runtime--> decision + reviews row (pending) + ReviewRequest on gen.review
    trustreel review appeal REQUEST  --> reviews row (kind appeal) for the stage that rejected it, or for its
                                         takedown (approving re-publishes and takes its frames out of the
                                         taken_down hash bank; consent revocations cannot be overruled)
    trustreel review approve|reject REQUEST --reviewer R --note N
      1. claim: UPDATE reviews SET status WHERE status = 'pending'   (one reviewer wins; a second is told who)
      2. record decision "review-<stage>" (approved counts as that stage approving for publish)
      3. send: approve -> the item with the new decision to the stage's output topic (it resumes there)
               reject  -> a Rejection to gen.rejected
      4. mark sent. Steps 3-4 are pipeline.audit.send_once: an approve repeated at the same moment (a double
         click) sends nothing more, and one repeated after a crash between 3 and 4 sends only if the
         output is not on its topic already
Pending reviews never publish: nothing moves until step 3.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import sessionmaker

from pipeline.audit.db import DecisionRow, RequestRow, ReviewRow, TakedownRow
from pipeline.audit.send_once import OnceSender, SendResult
from pipeline.audit.store import REVIEW_PREFIX, DecisionRecord, SqlAuditStore
from pipeline.hashing.banks import TAKEN_DOWN, BankStore
from pipeline.runtime.runner import output_message
from pipeline.transport.topics import TopicMap
from pipeline.transport.transactions import OutgoingMessage
from schemas.models import (DeadLetterSource, GenerationRequest, Outcome, PipelineItem, PublishedItem, Reason,
                            ReviewRequest, StageDecision, TakedownEvent)


class ReviewError(Exception):
    """Nothing to resolve (unknown, already resolved by someone else, or not appealable); says why."""


@dataclass(frozen=True)
class Resolution:
    request_id: str
    stage: str
    status: str
    output: OutgoingMessage | None  # what to send; None when it was sent before
    review_id: int = 0


def pending_reviews(sessions: sessionmaker) -> list[dict[str, Any]]:
    with sessions() as session:
        rows = session.scalars(select(ReviewRow).where(ReviewRow.status == "pending")
                               .order_by(ReviewRow.created_at, ReviewRow.id)).all()
        return [{"request_id": row.request_id, "stage": row.stage, "kind": row.kind,
                 "reasons": ",".join(reason["code"] for reason in row.reasons),
                 "waiting_since": row.created_at.isoformat()} for row in rows]


TAKEDOWN = "takedown"
"""The review "stage" of a takedown appeal; approving it re-publishes the item."""


def appeal(sessions: sessionmaker, request_id: str, note: str, now: datetime | None = None) -> str:
    """Open an appeal of a rejection or a takedown: a pending review a person then approves or rejects."""
    now = now or datetime.now(timezone.utc)
    with sessions() as session:
        takedown = session.get(TakedownRow, request_id)
    if takedown is not None:
        return _appeal_takedown(sessions, takedown, note, now)
    with sessions() as session:
        request_row = session.get(RequestRow, request_id)
        rejected = session.scalar(select(DecisionRow).where(DecisionRow.request_id == request_id,
                                                            DecisionRow.outcome == Outcome.REJECTED.value,
                                                            ~DecisionRow.stage.startswith(REVIEW_PREFIX)))
        if request_row is None or rejected is None or request_row.original is None:
            raise ReviewError(f"request {request_id} has no rejection on record that can be appealed")
        earlier = session.scalars(select(DecisionRow).where(DecisionRow.request_id == request_id,
                                                            DecisionRow.decided_at <= rejected.decided_at,
                                                            DecisionRow.id != rejected.id)
                                  .order_by(DecisionRow.decided_at, DecisionRow.id)).all()
    item = _input_of(GenerationRequest.model_validate_json(request_row.original), earlier, rejected)
    reasons = [Reason(code="appeal", message=note or "The requester appealed the rejection.")]
    review = ReviewRequest(request_id=request_id, stage=rejected.stage, kind="appeal", reasons=reasons, item=item,
                           requested_at=now)
    try:
        with sessions.begin() as session:
            session.add(ReviewRow(request_id=request_id, stage=rejected.stage, kind="appeal", status="pending",
                                  reasons=[r.model_dump() for r in reasons], payload=review.model_dump_json().encode(),
                                  created_at=now))
    except IntegrityError:
        raise ReviewError(f"request {request_id} was already appealed") from None
    return rejected.stage


def _appeal_takedown(sessions: sessionmaker, takedown: TakedownRow, note: str, now: datetime) -> str:
    if takedown.reason_code == "consent_revoked":
        raise ReviewError(f"request {takedown.request_id} was taken down because its cameo owner withdrew consent; "
                          f"review cannot overrule that (the owner can grant consent again)")
    event = TakedownEvent.model_validate_json(takedown.payload)
    with sessions() as session:
        request_row = session.get(RequestRow, takedown.request_id)
        published = session.scalar(select(DecisionRow.output_payload).where(
            DecisionRow.request_id == takedown.request_id, DecisionRow.stage == event.original_decision.stage))
    if request_row is None or request_row.original is None or not published:
        raise ReviewError(f"request {takedown.request_id} has no published item on record to reinstate")
    item = PublishedItem.model_validate_json(published)
    reasons = [Reason(code="appeal", message=note or "The requester appealed the takedown.")]
    review = ReviewRequest(request_id=takedown.request_id, stage=TAKEDOWN, kind="appeal", reasons=reasons,
                           item=PipelineItem(request=GenerationRequest.model_validate_json(request_row.original),
                                             decisions=item.decisions, assets=item.assets), requested_at=now)
    try:
        with sessions.begin() as session:
            session.add(ReviewRow(request_id=takedown.request_id, stage=TAKEDOWN, kind="appeal", status="pending",
                                  reasons=[r.model_dump() for r in reasons], payload=review.model_dump_json().encode(),
                                  created_at=now))
    except IntegrityError:
        raise ReviewError(f"the takedown of request {takedown.request_id} was already appealed") from None
    return TAKEDOWN


def _input_of(request: GenerationRequest, earlier: list[DecisionRow], rejected: DecisionRow) -> PipelineItem:
    """The item as the rejecting stage received it: the previous stage's recorded output, or the request."""
    for row in reversed(earlier):
        if row.outcome == Outcome.APPROVED.value and row.output_payload:
            try:
                return PipelineItem.model_validate_json(row.output_payload)
            except ValueError:
                break
    return PipelineItem(request=request)


def resolve(sessions: sessionmaker, topics: TopicMap, request_id: str, approve: bool, reviewer: str, note: str,
            now: datetime | None = None) -> Resolution:
    now = now or datetime.now(timezone.utc)
    status = "approved" if approve else "rejected"
    with sessions.begin() as session:
        row = session.scalar(select(ReviewRow).where(ReviewRow.request_id == request_id)
                             .order_by(ReviewRow.status != "pending", ReviewRow.created_at.desc()))
        if row is None:
            raise ReviewError(f"request {request_id} has no review")
        claimed = session.execute(update(ReviewRow).where(ReviewRow.id == row.id, ReviewRow.status == "pending")
                                  .values(status=status, reviewer=reviewer, note=note, resolved_at=now)).rowcount
        session.refresh(row)
    if not claimed and (row.status != status or row.reviewer != reviewer or row.sent_at is not None):
        # the same reviewer's repeat resends the recorded output (once: send_resolution); anyone else is told
        raise ReviewError(f"request {request_id} was already {row.status} by {row.reviewer} at {row.resolved_at}")
    review = ReviewRequest.model_validate_json(row.payload)
    decision = StageDecision(
        request_id=request_id, stage=f"{REVIEW_PREFIX}{review.stage}", outcome=Outcome(status),
        reasons=[] if approve else [Reason(code=f"{review.kind}_rejected",
                                           message=note or "A reviewer decided against this video.")],
        policy_id=f"human-{review.kind}", policy_version=f"reviewer:{reviewer}"[:64], decided_at=row.resolved_at,
        details={"reviewer": row.reviewer, "note": row.note, "kind": review.kind, "reviewed_stage": review.stage})
    # Approved, the item goes on from the reviewed stage; a reinstated takedown is published again.
    output = output_message(topics, review.stage, review.item, decision,
                            publishes=review.stage in (TAKEDOWN, topics.stages[-1]))
    stored = SqlAuditStore(sessions).record_decision(
        review.item.request, DecisionRecord(decision=decision, duration_ms=0.0, worker=reviewer,
                                            source=DeadLetterSource(topic="review", partition=0, offset=row.id)),
        output)
    if approve and review.stage == TAKEDOWN:
        BankStore(sessions).remove(TAKEN_DOWN, content_id=request_id)  # reinstated: its frames may be used again
    return Resolution(request_id, review.stage, status, stored.output, row.id)


def send_resolution(sessions: sessionmaker, resolution: Resolution, sender: OnceSender) -> SendResult:
    """Send the resolution's output once (pipeline.audit.send_once)."""
    if resolution.output is None:
        return SendResult.SENT_BEFORE
    return sender(sessions, ReviewRow, (ReviewRow.id == resolution.review_id,), resolution.output)


def describe(resolution: Resolution) -> str:
    where = json.loads(resolution.output.value).get("stage") if resolution.output else None
    return (f"{resolution.request_id}: {resolution.status} (review of {resolution.stage})"
            + (f" -> {resolution.output.topic}" if resolution.output else "") + (f" [{where}]" if where else ""))

"""Takedown on revocation: a cameo owner withdraws consent, every published item using it comes down.

    cameo.consents REVOKE (whole cameo, or one account's access)
      -> published items that used the cameo (request_cameos + the publish decision; for an
         account-level revoke only that account's items)
      -> one takedowns row per item, ever (primary key = request id): a repeated or redelivered
         revoke finds the rows it already made and re-sends exactly those
      -> TakedownEvent(s) to feed.takedowns, in the same Kafka transaction that commits the
         consents offset (pipeline.worker's registry agent)

Known window: a publish whose consent re-check ran just before the revocation was applied, but
whose decision row lands just after this query, is not found (milliseconds wide).
"""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import sessionmaker

from pipeline.db import DecisionRow, RequestCameoRow, RequestRow, TakedownRow
from pipeline.transactions import OutgoingMessage
from schemas.models import (ConsentEvent, ConsentKind, Outcome, Reason, StageDecision, TakedownCause,
                            TakedownEvent)


class TakedownService:
    def __init__(self, sessions: sessionmaker, topic: str, publish_stage: str = "publish") -> None:
        self._sessions = sessions
        self._topic = topic
        self._publish_stage = publish_stage

    def on_consent_event(self, event: ConsentEvent) -> list[OutgoingMessage]:
        """The takedowns this event causes (already recorded ones included), ready to send."""
        if event.kind is not ConsentKind.REVOKE:
            return []
        cause = TakedownCause(kind="consent_revoked", cameo_id=event.cameo_id, event_id=event.event_id,
                              account=event.account)
        reason = Reason(code="consent_revoked",
                        message=(f"The owner of cameo {event.cameo_id} withdrew consent"
                                 + (f" for account {event.account}" if event.account else "")
                                 + (f": {event.reason}" if event.reason else "") + "."))
        for request, decision in self._published_using(event.cameo_id, event.account):
            self._record(request, decision, cause, reason)
        with self._sessions() as session:
            rows = session.scalars(select(TakedownRow).where(TakedownRow.cause_event_id == event.event_id)
                                   .order_by(TakedownRow.request_id)).all()
            return [OutgoingMessage(topic=self._topic, key=row.request_id.encode(), value=row.payload) for row in rows]

    def _published_using(self, cameo_id: str, account: str | None) -> list[tuple[RequestRow, DecisionRow]]:
        query = (select(RequestRow, DecisionRow)
                 .join(RequestCameoRow, RequestCameoRow.request_id == RequestRow.request_id)
                 .join(DecisionRow, DecisionRow.request_id == RequestRow.request_id)
                 .where(RequestCameoRow.cameo_id == cameo_id, DecisionRow.stage == self._publish_stage,
                        DecisionRow.outcome == Outcome.APPROVED.value)
                 .where(~select(TakedownRow.request_id).where(TakedownRow.request_id == RequestRow.request_id)
                        .exists()))
        if account is not None:
            query = query.where(RequestRow.requester_account == account)
        with self._sessions() as session:
            return [(request, decision) for request, decision in session.execute(query).all()]

    def _record(self, request: RequestRow, decision: DecisionRow, cause: TakedownCause, reason: Reason) -> None:
        now = datetime.now(timezone.utc)
        event = TakedownEvent(
            request_id=request.request_id, requester_account=request.requester_account,
            cameo_ids=list(request.cameo_ids), reason=reason, cause=cause, taken_down_at=now,
            original_decision=StageDecision(
                request_id=decision.request_id, stage=decision.stage, outcome=decision.outcome,
                reasons=decision.reasons, policy_id=decision.policy_id, policy_version=decision.policy_version,
                decided_at=decision.decided_at, details=decision.details))
        try:
            with self._sessions.begin() as session:
                session.add(TakedownRow(request_id=request.request_id, cause_event_id=cause.event_id,
                                        reason_code=reason.code, created_at=now,
                                        payload=event.model_dump_json().encode()))
        except IntegrityError:
            pass  # another revocation took it down first: one takedown per item

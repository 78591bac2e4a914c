"""Takedown on revocation: a cameo owner withdraws consent, every published item using it comes down.

    cameo.consents REVOKE (whole cameo, or one account's access)
      -> published items that used the cameo (request_cameos + the publish decision; for an
         account-level revoke only that account's items)
      -> one takedowns row per item, ever (primary key = request id): a repeated or redelivered
         revoke finds the rows it already made and re-sends exactly those
      -> TakedownEvent(s) to feed.takedowns, in the same Kafka transaction that commits the
         consents offset (pipeline.worker.app's registry agent)

    a confirmed report, or a cameo owner removing a video (take_down): that one item, the same record

    identity added to the public-figure gallery (`trustreel gallery add`, or `trustreel takedown sweep`)
      -> published videos (from the publish decisions' recorded output) re-scanned: sampled frames ->
         faces -> distance to the new identity's embeddings <= the likeness policy's match distance
      -> the same one-row-per-item record; rows not yet sent are sent once (pipeline.audit.send_once)

Every takedown also puts the frames of the taken-down video (as published and as generated) into the
"taken_down" hash bank, in the same transaction as its row, so the known-media stages refuse it as input
media or as a generated video; an appeal that restores the item removes them (pipeline.cases.reviews).

Known window: a publish whose consent re-check ran just before the revocation was applied, but
whose decision row lands just after this query, is not found (milliseconds wide). Videos whose
recorded output was emptied by retention cannot be re-scanned.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import Callable

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import sessionmaker

from pipeline.audit.db import DecisionRow, RequestCameoRow, RequestRow, TakedownRow
from pipeline.audit.send_once import OnceSender, SendResult
from pipeline.hashing.banking import MediaBanker
from pipeline.hashing.banks import TAKEN_DOWN
from pipeline.media.assets import AssetIntegrityError, AssetStore
from pipeline.transport.transactions import OutgoingMessage
from schemas.models import (ConsentEvent, ConsentKind, MediaReference, Outcome, PublishedItem, Reason,
                            StageDecision, TakedownCause, TakedownEvent)

log = logging.getLogger("trustreel.takedowns")


class TakedownService:
    def __init__(self, sessions: sessionmaker, topic: str, publish_stage: str = "publish",
                 banker: MediaBanker | None = None) -> None:
        self._sessions = sessions
        self._topic = topic
        self._publish_stage = publish_stage
        self._banker = banker  # None: takedowns are not banked (tests of the takedown flow alone)

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
        query = (self._published_query()
                 .join(RequestCameoRow, RequestCameoRow.request_id == RequestRow.request_id)
                 .where(RequestCameoRow.cameo_id == event.cameo_id))
        if event.account is not None:
            query = query.where(RequestRow.requester_account == event.account)
        for request, decision in self._rows(query):
            self._record(request, decision, cause, reason)
        return self._messages(cause.event_id)

    def identity_sweep(self, identity: str, matches: "Callable[[bytes], float | None]",
                       assets: AssetStore) -> list[OutgoingMessage]:
        """Takedowns for published videos showing `identity` (matches: video bytes -> best distance or None)."""
        event_id = f"identity:{identity}"[:300]
        reason = Reason(code="public_figure_added",
                        message=f"The video shows {identity}, who has been added to the public figures that "
                                f"may not be depicted.")
        for request, decision in self._rows(self._published_query()):
            videos = _published_videos(decision.output_payload)
            video = videos[0] if videos else None
            if video is None:
                continue
            try:
                distance = matches(assets.get(video))
            except AssetIntegrityError:
                continue
            if distance is not None:
                cause = TakedownCause(kind="public_figure_added", event_id=event_id, identity=identity,
                                      match_distance=round(distance, 4))
                self._record(request, decision, cause, reason)
        return self._messages(event_id, unsent_only=True)

    def take_down(self, request_id: str, cause: TakedownCause, reason: Reason) -> list[OutgoingMessage]:
        """Take one published item down for `cause` (a confirmed report, its cameo owner's choice): the
        takedown to send, or none when it was sent before; an item already down for another cause stays so."""
        rows = self._rows(self._published_query().where(RequestRow.request_id == request_id))
        for request, decision in rows:
            self._record(request, decision, cause, reason)
        return self._messages(cause.event_id, unsent_only=True)

    def _published_query(self):
        """Published items not yet taken down, as (request, publish decision) rows; callers narrow it."""
        return (select(RequestRow, DecisionRow).join(DecisionRow, DecisionRow.request_id == RequestRow.request_id)
                .where(DecisionRow.stage == self._publish_stage, DecisionRow.outcome == Outcome.APPROVED.value)
                .where(~select(TakedownRow.request_id).where(TakedownRow.request_id == RequestRow.request_id)
                       .exists()))

    def _rows(self, query) -> list[tuple[RequestRow, DecisionRow]]:
        with self._sessions() as session:
            return [(request, decision) for request, decision in session.execute(query).all()]

    def _messages(self, event_id: str, unsent_only: bool = False) -> list[OutgoingMessage]:
        """The recorded takedowns of one cause, as they were first written (a re-send is identical)."""
        query = select(TakedownRow).where(TakedownRow.cause_event_id == _cause_key(event_id))
        if unsent_only:
            query = query.where(TakedownRow.sent_at.is_(None))
        with self._sessions() as session:
            rows = session.scalars(query.order_by(TakedownRow.request_id)).all()
            return [OutgoingMessage(topic=self._topic, key=row.request_id.encode(), value=row.payload) for row in rows]

    def _record(self, request: RequestRow, decision: DecisionRow, cause: TakedownCause, reason: Reason) -> None:
        now = datetime.now(timezone.utc)
        event = TakedownEvent(
            request_id=request.request_id, requester_account=request.requester_account,
            cameo_ids=list(request.cameo_ids), reason=reason, cause=cause, taken_down_at=now,
            original_decision=StageDecision(
                request_id=decision.request_id, stage=decision.stage, outcome=decision.outcome,
                reasons=decision.reasons, policy_id=decision.policy_id, policy_version=decision.policy_version,
                decided_at=decision.decided_at, details=decision.details))
        rows = self._frame_hashes(request.request_id, decision.output_payload)
        try:
            with self._sessions.begin() as session:
                session.add(TakedownRow(request_id=request.request_id, cause_event_id=_cause_key(cause.event_id),
                                        reason_code=reason.code, created_at=now,
                                        payload=event.model_dump_json().encode()))
                session.flush()
                if self._banker is not None:
                    self._banker.replace(session, TAKEN_DOWN, request.request_id, rows)
        except IntegrityError:
            pass  # another revocation took it down first: one takedown per item

    def _frame_hashes(self, request_id: str, output_payload: bytes) -> list[dict]:
        """The taken_down bank's rows for a published item: its video as published and as generated."""
        if self._banker is None:
            return []
        hashed = self._banker.hash_references(TAKEN_DOWN, _published_videos(output_payload), request_id,
                                              f"takedown:{request_id}", "takedown")
        for problem in hashed.problems:
            log.warning("taken-down video of %s not fully banked: %s", request_id, problem)
        return hashed.rows


def send_takedowns(sessions: sessionmaker, sender: OnceSender, messages: list[OutgoingMessage]) -> list[SendResult]:
    """Send recorded takedowns from a tool (a sweep, a confirmed report, an owner's removal), each once
    (pipeline.audit.send_once): concurrent runs and a crash between send and "sent" send none twice."""
    return [sender(sessions, TakedownRow, (TakedownRow.request_id == message.key.decode(),), message)
            for message in messages]


def _cause_key(event_id: str) -> str:
    """The indexed column is 128 characters; the event keeps the whole id."""
    return event_id[:128]


def _published_videos(output_payload: bytes) -> list[MediaReference]:
    """The published video first, then the generated one it was signed from (when recorded)."""
    try:
        assets = PublishedItem.model_validate_json(output_payload).assets
    except ValueError:
        return []  # emptied by retention, or not a published item
    return [assets[name] for name in ("video", "unsigned_video") if name in assets]


def face_matcher(embedder, search, identity: str, threshold: float, every: int, max_frames: int,
                 same_face_max_block_change: float = 0.0):
    """video bytes -> best distance of any sampled face to `identity` when within threshold, else None.
    A sweep re-reads every published video, so faces seen again in one video reuse their descriptor as
    likeness-post does (`same_face_max_block_change` from the likeness policy; 0: describe every face)."""
    from pipeline.likeness.faces import SameFaceMemory
    from pipeline.likeness.galleries import PUBLIC_FIGURES
    from pipeline.media.frames import UnreadableMedia, frames_of

    def matches(video: bytes) -> float | None:
        search.refresh()
        best = None
        try:
            frames = frames_of(video, "video/mp4", every, max_frames)
        except UnreadableMedia:
            return None
        memory = SameFaceMemory(same_face_max_block_change) if same_face_max_block_change else None
        for _, rgb in frames:
            for face in embedder.faces(rgb, None, memory):
                match = search.nearest_among(PUBLIC_FIGURES, [identity], face.embedding)
                if match is not None and match.distance <= threshold and (best is None or match.distance < best):
                    best = match.distance
        return best

    return matches

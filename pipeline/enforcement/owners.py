"""A cameo owner's view: every request that used one of their cameos, and the owner's removal of a video.

    owner_videos(OWNER)  requests naming a cameo the owner holds (request_cameos x cameos.owner_account),
                         rejected ones included, with each one's outcome, whether it was published and whether
                         it was taken down (and why)
    remove_video(OWNER, REQUEST, by)   the request must have used one of OWNER's cameos and be published:
                         one takedown (reason owner_removed, the owner named as the one who chose it; `by` is
                         the support agent who acted for them, if any), sent once
"""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import select
from sqlalchemy.orm import sessionmaker

from pipeline.audit.db import CameoRow, RequestCameoRow, RequestRow, StaffActionRow, TakedownRow, in_chunks
from pipeline.audit.queries import request_path, request_paths
from pipeline.cases.takedowns import TakedownService
from pipeline.transport.transactions import OutgoingMessage
from schemas.models import Reason, TakedownCause


class OwnerRemovalError(Exception):
    """The video cannot be removed by this owner; says why."""


def owner_videos(sessions: sessionmaker, owner: str) -> list[dict]:
    with sessions() as session:
        rows = session.execute(
            select(RequestRow.request_id, RequestRow.requester_account, RequestRow.prompt, RequestRow.submitted_at,
                   RequestCameoRow.cameo_id)
            .join(RequestCameoRow, RequestCameoRow.request_id == RequestRow.request_id)
            .join(CameoRow, CameoRow.cameo_id == RequestCameoRow.cameo_id)
            .where(CameoRow.owner_account == owner)
            .order_by(RequestRow.submitted_at, RequestRow.request_id)).all()
        request_ids = list(dict.fromkeys(row.request_id for row in rows))
        taken_down = {row.request_id: row.reason_code for chunk in in_chunks(request_ids) for row in
                      session.scalars(select(TakedownRow).where(TakedownRow.request_id.in_(chunk)))}
    paths = request_paths(sessions, request_ids)  # one read for the listing, not one per video
    listing: dict[str, dict] = {}
    for request_id, requester, prompt, submitted_at, cameo_id in rows:
        if request_id in listing:
            listing[request_id]["cameos"] += f",{cameo_id}"
            continue
        path = paths.get(request_id)
        outcome = path.final_outcome if path else "not seen by any stage"
        listing[request_id] = {"request_id": request_id, "requester": requester, "cameos": cameo_id,
                               "prompt": prompt[:80], "submitted_at": submitted_at.isoformat(),
                               "outcome": outcome, "taken_down": taken_down.get(request_id) or ""}
    return list(listing.values())


def remove_video(sessions: sessionmaker, takedowns: TakedownService, owner: str, request_id: str,
                 by: str | None = None, note: str = "", now: datetime | None = None) -> list[OutgoingMessage]:
    """The takedown to send for the owner's choice (none when it was sent before)."""
    now = now or datetime.now(timezone.utc)
    with sessions() as session:
        cameos = list(session.scalars(
            select(RequestCameoRow.cameo_id).join(CameoRow, CameoRow.cameo_id == RequestCameoRow.cameo_id)
            .where(RequestCameoRow.request_id == request_id, CameoRow.owner_account == owner)))
        existing = session.get(TakedownRow, request_id)
    if not cameos:
        raise OwnerRemovalError(f"request {request_id} used no cameo owned by {owner}")
    path = request_path(sessions, request_id)
    if existing is None and (path is None or path.final_outcome != "published"):
        raise OwnerRemovalError(f"request {request_id} is not on the feed "
                                f"({path.final_outcome if path else 'unknown'}); there is nothing to remove")
    cause = TakedownCause(kind="owner_removed", event_id=f"owner:{owner}:{request_id}", cameo_id=cameos[0],
                          account=owner, decided_by=by)
    reason = Reason(code="owner_removed",
                    message=f"The owner of cameo {cameos[0]} removed this video" + (f": {note}" if note else "."))
    messages = takedowns.take_down(request_id, cause, reason)
    with sessions.begin() as session:
        session.add(StaffActionRow(actor=by or owner, action="owner_removed_video", target=request_id,
                                   note=f"for owner {owner}" + (f": {note}" if note else ""), at=now))
    return messages

"""One request's whole story, as a reviewer needs it on one page.

    request        prompt, requester, cameos, input media
    decisions      every stage's outcome, reasons, policy id and version, when, and its details
    evidence       face matches (gallery entry, distance, threshold, verdict) from the likeness stages,
                   content signals, hash-bank matches, the C2PA / watermark summary of provenance
    media          the input media and the generated (or published) video, each as a MediaReference the
                   console serves hash-checked from the asset store
    open work      the pending review or appeal, the report case and its reports, the takedown
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import sessionmaker

from pipeline.audit.db import DecisionRow, ReportCaseRow, ReportRow, RequestRow, ReviewRow, TakedownRow
from schemas.models import GenerationRequest, MediaReference, ReviewRequest

EVIDENCE_KEYS = {"faces": "Face matches", "voices": "Voices", "signals": "Content signals",
                 "matches": "Hash-bank matches", "rights": "Rights holders", "names": "Names in the prompt",
                 "manifest": "C2PA manifest", "watermark": "Watermark", "standing": "Requester's standing"}


@dataclass
class CaseView:
    request_id: str
    requester: str
    prompt: str
    cameos: list[str]
    decisions: list[dict[str, Any]] = field(default_factory=list)
    media: list[tuple[str, MediaReference]] = field(default_factory=list)  # (role, reference)
    open_review: dict[str, Any] | None = None
    report_case: dict[str, Any] | None = None
    reports: list[dict[str, Any]] = field(default_factory=list)
    takedown: dict[str, Any] | None = None


def case_view(sessions: sessionmaker, request_id: str) -> CaseView | None:
    with sessions() as session:
        request = session.get(RequestRow, request_id)
        if request is None:
            return None
        decisions = session.scalars(select(DecisionRow).where(DecisionRow.request_id == request_id)
                                    .order_by(DecisionRow.decided_at, DecisionRow.id)).all()
        review = session.scalar(select(ReviewRow).where(ReviewRow.request_id == request_id)
                                .order_by(ReviewRow.status != "pending", ReviewRow.created_at.desc()))
        case = session.get(ReportCaseRow, request_id)
        reports = session.scalars(select(ReportRow).where(ReportRow.request_id == request_id)
                                  .order_by(ReportRow.received_at)).all()
        takedown = session.get(TakedownRow, request_id)
    view = CaseView(request_id, request.requester_account, request.prompt, list(request.cameo_ids))
    view.decisions = [_decision(row) for row in decisions]
    original = GenerationRequest.model_validate_json(request.original) if request.original else None
    view.media = [(f"input {index + 1}", reference)
                  for index, reference in enumerate(original.input_media if original else [])]
    view.media += [(role, reference) for role, reference in _latest_assets(review, decisions).items()
                   if reference.media_type.startswith(("video/", "image/", "audio/"))]
    if review is not None:
        view.open_review = {"stage": review.stage, "kind": review.kind, "status": review.status,
                            "reasons": review.reasons, "reviewer": review.reviewer, "note": review.note,
                            "created_at": review.created_at, "escalated_by": review.escalated_by}
    if case is not None:
        view.report_case = {"status": case.status, "score": case.score, "reviewer": case.reviewer,
                            "note": case.note, "opened_at": case.opened_at, "policy_version": case.policy_version}
    view.reports = [{"reporter": row.reporter, "category": row.category, "text": row.text, "weight": row.weight,
                     "reported_at": row.reported_at} for row in reports]
    if takedown is not None:
        view.takedown = {"reason_code": takedown.reason_code, "created_at": takedown.created_at,
                         "sent_at": takedown.sent_at, "event": json.loads(takedown.payload)}
    return view


def _decision(row: DecisionRow) -> dict[str, Any]:
    details = dict(row.details or {})
    evidence = {EVIDENCE_KEYS[key]: details.pop(key) for key in list(details) if key in EVIDENCE_KEYS
                and details[key]}
    return {"stage": row.stage, "outcome": row.outcome, "reasons": row.reasons, "policy_id": row.policy_id,
            "policy_version": row.policy_version, "decided_at": row.decided_at, "duration_ms": row.duration_ms,
            "evidence": {title: json.dumps(value, indent=2, default=str) for title, value in evidence.items()},
            "faces": _faces(evidence.get("Face matches")),
            "details": json.dumps(details, indent=2, default=str) if details else ""}


def _faces(findings: Any) -> list[dict[str, Any]]:
    """Face findings flattened for a table: which gallery entry, how far, against which threshold, verdict."""
    rows = []
    for finding in findings or []:
        own, public, nearest = finding.get("own_cameo"), finding.get("public_figure"), finding.get("any_cameo")
        rows.append({"frame": finding.get("frame"), "verdict": finding.get("verdict"),
                     "threshold": finding.get("threshold"),
                     "own_cameo": f"{own.get('name')} at {own.get('distance')}" if own else "-",
                     "public_figure": f"{public['name']} at {public['distance']}" if public else "-",
                     "nearest_cameo": f"{nearest['name']} at {nearest['distance']}" if nearest else "-"})
    return rows


def _latest_assets(review: ReviewRow | None, decisions: list[DecisionRow]) -> dict[str, MediaReference]:
    """The media as they stand: the parked item's under review, else the last recorded output's (an item
    handed on, or the published item)."""
    if review is not None and review.status == "pending":
        return dict(ReviewRequest.model_validate_json(review.payload).item.assets)
    for row in reversed(decisions):
        try:
            payload = json.loads(row.output_payload) if row.output_payload else None
        except ValueError:
            continue
        assets = payload.get("assets") if isinstance(payload, dict) else None
        if assets:
            return {role: MediaReference.model_validate(reference) for role, reference in assets.items()}
    return {}

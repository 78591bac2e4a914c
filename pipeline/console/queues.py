"""The console's work queues, each oldest first, with counts and filters.

    reviews           requests a stage parked for a person (gen.review)
    appeals           requesters' appeals of rejections                                  (senior)
    takedown-appeals  appeals of takedowns                                               (senior)
    reports           published videos whose reports passed the threshold (confirm: senior)
    sanctions         accounts' appeals of their sanction                                (senior)

Filters: stage, reason code, policy version (prefix), and "waiting at least N hours".
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from sqlalchemy import and_, func, select
from sqlalchemy.orm import sessionmaker

from pipeline.audit.db import DecisionRow, ReportCaseRow, RequestRow, ReviewRow, StandingAppealRow
from pipeline.cases.reviews import TAKEDOWN
from pipeline.enforcement.appeals import pending_appeals
from pipeline.enforcement.reports import report_cases

QUEUES = {"reviews": "Parked reviews", "appeals": "Appeals", "takedown-appeals": "Takedown appeals",
          "reports": "User reports", "sanctions": "Sanction appeals"}
LIMIT = 500


@dataclass(frozen=True)
class Filters:
    stage: str = ""
    reason: str = ""
    policy_version: str = ""
    min_age_hours: float = 0.0

    @classmethod
    def from_query(cls, query) -> "Filters":
        try:
            age = max(0.0, float(query.get("min_age_hours") or 0))
        except ValueError:
            age = 0.0
        return cls(query.get("stage", "").strip(), query.get("reason", "").strip(),
                   query.get("policy_version", "").strip(), age)


def _review_rows(queue: str):
    pending = ReviewRow.status == "pending"
    if queue == "reviews":
        return and_(pending, ReviewRow.kind == "review")
    if queue == "appeals":
        return and_(pending, ReviewRow.kind == "appeal", ReviewRow.stage != TAKEDOWN)
    return and_(pending, ReviewRow.kind == "appeal", ReviewRow.stage == TAKEDOWN)


def queue_counts(sessions: sessionmaker) -> dict[str, int]:
    """Counted in the database (every page shows them): the same rows the queues list."""
    with sessions() as session:
        counts = {queue: session.scalar(select(func.count()).select_from(ReviewRow).where(_review_rows(queue)))
                  for queue in ("reviews", "appeals", "takedown-appeals")}
        counts["reports"] = session.scalar(
            select(func.count()).select_from(ReportCaseRow)
            .join(RequestRow, RequestRow.request_id == ReportCaseRow.request_id)  # as report_cases lists them
            .where(ReportCaseRow.status == "pending"))
        counts["sanctions"] = session.scalar(select(func.count()).select_from(StandingAppealRow)
                                             .where(StandingAppealRow.status == "pending"))
    return counts


def queue_items(sessions: sessionmaker, queue: str, filters: Filters, now: datetime | None = None) -> list[dict]:
    now = now or datetime.now(timezone.utc)
    if queue == "reports":
        items = [{**case, "waiting_since": case["opened_at"], "stage": "feed",
                  "reasons": ",".join(case["reports"]),
                  "counts": ", ".join(f"{category} x{count}" for category, count in case["reports"].items())}
                 for case in report_cases(sessions)]
    elif queue == "sanctions":
        items = [{**appeal, "request_id": "", "stage": "standing", "reasons": "sanction_appeal"}
                 for appeal in pending_appeals(sessions)]
    else:
        with sessions() as session:
            rows = session.execute(
                select(ReviewRow, DecisionRow.policy_version)
                .outerjoin(DecisionRow, and_(DecisionRow.request_id == ReviewRow.request_id,
                                             DecisionRow.stage == ReviewRow.stage))
                .where(_review_rows(queue)).order_by(ReviewRow.created_at, ReviewRow.id).limit(LIMIT)).all()
        items = [{"request_id": row.request_id, "stage": row.stage, "kind": row.kind,
                  "reasons": ",".join(reason["code"] for reason in row.reasons),
                  "policy_version": version or "", "waiting_since": row.created_at.isoformat(),
                  "escalated_by": row.escalated_by or ""} for row, version in rows]
    return [{**ROW_DEFAULTS, **item} for item in items if _passes(item, filters, now)]


ROW_DEFAULTS = {"request_id": "", "account": "", "stage": "", "kind": "", "reasons": "", "counts": "",
                "score": "", "policy_version": "", "escalated_by": "", "note": "", "appeal": ""}
"""Every queue's rows carry the same keys, so one table template shows them all."""


def _passes(item: dict, filters: Filters, now: datetime) -> bool:
    if filters.stage and item.get("stage") != filters.stage:
        return False
    if filters.reason and filters.reason not in item.get("reasons", "").split(","):
        return False
    if filters.policy_version and not item.get("policy_version", "").startswith(filters.policy_version):
        return False
    if filters.min_age_hours:
        since = datetime.fromisoformat(item["waiting_since"])
        if now - since < timedelta(hours=filters.min_age_hours):
            return False
    return True

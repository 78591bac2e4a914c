"""Read-side queries of the audit database, for people (tables) and tools (JSON)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, case, func, or_, select

from sqlalchemy.orm import sessionmaker

from pipeline.audit.db import DeadLetterRow, DecisionRow, RequestCameoRow, RequestRow, TakedownRow, in_chunks


@dataclass(frozen=True)
class PathStep:
    stage: str
    outcome: str
    reasons: list[dict[str, Any]]
    policy_id: str
    policy_version: str
    decided_at: datetime
    duration_ms: float
    output_topic: str


@dataclass(frozen=True)
class RequestPath:
    request_id: str
    requester_account: str | None
    prompt: str | None
    cameo_ids: list[str]
    steps: list[PathStep]
    dead_letters: list[dict[str, Any]]

    @property
    def final_outcome(self) -> str:
        """published / rejected at <stage> / waiting for review at <stage> / dead letter / in flight after <stage>.

        The last decision tells: an approved review or appeal lets a request go on after a stage said no or
        asked for a person.
        """
        last = self.steps[-1] if self.steps else None
        if last is not None and last.output_topic.endswith("feed.published"):
            return "published"
        if last is not None and last.outcome == "rejected":
            return f"rejected at {last.stage}"
        if last is not None and last.outcome == "review":
            return f"waiting for review at {last.stage}"
        if self.dead_letters:
            return "dead letter"
        return f"in flight after {self.steps[-1].stage}" if self.steps else "not seen by any stage"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {"final_outcome": self.final_outcome}

    def render(self) -> str:
        lines = [f"request {self.request_id}  requester={self.requester_account}  cameos={','.join(self.cameo_ids) or '-'}"]
        for step in self.steps:
            reasons = "; ".join(r["message"] for r in step.reasons)
            lines.append(f"  {step.decided_at:%H:%M:%S} {step.stage:<10} {step.outcome:<9} "
                         f"policy={step.policy_id}@{step.policy_version[:12]} -> {step.output_topic}"
                         + (f"  ({reasons})" if reasons else ""))
        for letter in self.dead_letters:
            lines.append(f"  dead letter at {letter['stage']}: {letter['error_code']}: {letter['error']}")
        lines.append(f"  outcome: {self.final_outcome}")
        return "\n".join(lines)


def request_path(sessions: sessionmaker, request_id: str) -> RequestPath | None:
    """Everything the audit database knows about one request, in decision order."""
    return request_paths(sessions, [request_id]).get(request_id)


def request_paths(sessions: sessionmaker, request_ids: list[str]) -> dict[str, RequestPath]:
    """`request_path` for many requests in three queries per few hundred (a listing, not one read each)."""
    paths: dict[str, RequestPath] = {}
    with sessions() as session:
        for chunk in in_chunks(list(dict.fromkeys(request_ids))):
            requests = {row.request_id: row for row in session.scalars(
                select(RequestRow).where(RequestRow.request_id.in_(chunk)))}
            decisions: dict[str, list[DecisionRow]] = {}
            for row in session.scalars(select(DecisionRow).where(DecisionRow.request_id.in_(chunk))
                                       .order_by(DecisionRow.decided_at, DecisionRow.id)):
                decisions.setdefault(row.request_id, []).append(row)
            letters: dict[str, list[DeadLetterRow]] = {}
            for row in session.scalars(select(DeadLetterRow).where(DeadLetterRow.request_id.in_(chunk))
                                       .order_by(DeadLetterRow.id)):
                letters.setdefault(row.request_id, []).append(row)
            for request_id in chunk:
                request = requests.get(request_id)
                if request is None and request_id not in letters:
                    continue
                paths[request_id] = RequestPath(
                    request_id=request_id,
                    requester_account=request.requester_account if request else None,
                    prompt=request.prompt if request else None,
                    cameo_ids=list(request.cameo_ids) if request else [],
                    steps=[PathStep(d.stage, d.outcome, list(d.reasons), d.policy_id, d.policy_version, d.decided_at,
                                    d.duration_ms, d.output_topic) for d in decisions.get(request_id, [])],
                    dead_letters=[{"stage": l.stage, "error_code": l.error_code, "error": l.error,
                                   "source": f"{l.source_topic}/{l.source_partition}/{l.source_offset}"}
                                  for l in letters.get(request_id, [])],
                )
    return paths


# ---- Auditor queries: each is one indexed range scan (see tests/test_audit_queries.py for the plans) ----

DecisionListing = list[dict[str, Any]]


def _decision_dict(row: DecisionRow, requester: str | None = None) -> dict[str, Any]:
    return {"request_id": row.request_id, "stage": row.stage, "outcome": row.outcome,
            "reasons": ",".join(reason["code"] for reason in row.reasons), "policy_id": row.policy_id,
            "policy_version": row.policy_version[:12], "decided_at": row.decided_at.isoformat(),
            **({"requester_account": requester} if requester is not None else {})}


def decisions_for(sessions: sessionmaker, account: str | None = None, cameo: str | None = None,
                  limit: int = 10_000) -> DecisionListing:
    """All decisions on requests by an account, or on requests that used a cameo."""
    if (account is None) == (cameo is None):
        raise ValueError("give exactly one of account or cameo")
    query = select(DecisionRow, RequestRow.requester_account).join(RequestRow,
                                                                    RequestRow.request_id == DecisionRow.request_id)
    if account is not None:
        query = query.where(RequestRow.requester_account == account)
    else:
        query = query.join(RequestCameoRow, RequestCameoRow.request_id == DecisionRow.request_id).where(
            RequestCameoRow.cameo_id == cameo)
    with sessions() as session:
        rows = session.execute(query.order_by(DecisionRow.decided_at, DecisionRow.id).limit(limit)).all()
        return [_decision_dict(row, requester) for row, requester in rows]


def rejections(sessions: sessionmaker, since: datetime, until: datetime, stage: str | None = None,
               reason: str | None = None, policy_version: str | None = None) -> DecisionListing:
    """Rejections in [since, until), optionally of one stage, reason code or policy version (prefix)."""
    query = select(DecisionRow).where(DecisionRow.outcome == "rejected", DecisionRow.decided_at >= since,
                                      DecisionRow.decided_at < until)
    if stage is not None:
        query = query.where(DecisionRow.stage == stage)
    if policy_version is not None:
        query = query.where(DecisionRow.policy_version.startswith(policy_version))
    with sessions() as session:
        rows = session.scalars(query.order_by(DecisionRow.decided_at, DecisionRow.id)).all()
        return [_decision_dict(row) for row in rows
                if reason is None or any(item["code"] == reason for item in row.reasons)]


def published_with_cameo(sessions: sessionmaker, cameo: str, publish_stage: str = "publish") -> DecisionListing:
    """Published items that used a cameo (what a takedown for it must cover)."""
    query = (select(DecisionRow, RequestRow.requester_account)
             .join(RequestCameoRow, RequestCameoRow.request_id == DecisionRow.request_id)
             .join(RequestRow, RequestRow.request_id == DecisionRow.request_id)
             .where(RequestCameoRow.cameo_id == cameo, DecisionRow.stage == publish_stage,
                    DecisionRow.outcome == "approved")
             .order_by(DecisionRow.decided_at))
    with sessions() as session:
        taken_down = {row.request_id: row.reason_code for row in session.scalars(
            select(TakedownRow).join(RequestCameoRow, RequestCameoRow.request_id == TakedownRow.request_id)
            .where(RequestCameoRow.cameo_id == cameo))}
        return [_decision_dict(row, requester) | {"taken_down": taken_down.get(row.request_id, "")}
                for row, requester in session.execute(query).all()]


def outcome_counts_per_hour(sessions: sessionmaker, since: datetime, until: datetime,
                            publish_stage: str = "publish") -> DecisionListing:
    """Terminal outcomes per hour: published (publish approved) and rejected (per stage)."""
    with sessions() as session:
        dialect = session.get_bind().dialect.name
        hour = (func.date_trunc("hour", DecisionRow.decided_at) if dialect == "postgresql"
                else func.strftime("%Y-%m-%d %H:00", DecisionRow.decided_at))
        terminal = case((DecisionRow.outcome == "rejected", "rejected at " + DecisionRow.stage), else_="published")
        query = (select(hour.label("hour"), terminal.label("outcome"), func.count().label("requests"))
                 .where(DecisionRow.decided_at >= since, DecisionRow.decided_at < until,
                        or_(DecisionRow.outcome == "rejected",
                            and_(DecisionRow.stage == publish_stage, DecisionRow.outcome == "approved")))
                 .group_by(hour, terminal).order_by(hour, terminal))
        return [{"hour": str(hour_value)[:16], "outcome": outcome, "requests": count}
                for hour_value, outcome, count in session.execute(query).all()]

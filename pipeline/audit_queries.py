"""Read-side queries of the audit database, for people (tables) and tools (JSON)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select

from sqlalchemy.orm import sessionmaker

from pipeline.db import DeadLetterRow, DecisionRow, RequestRow


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
        """published / rejected at <stage> / dead letter / in flight after <stage>."""
        if any(step.outcome == "rejected" for step in self.steps):
            return f"rejected at {next(s.stage for s in self.steps if s.outcome == 'rejected')}"
        if self.steps and self.steps[-1].output_topic.endswith("feed.published"):
            return "published"
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
    with sessions() as session:
        request = session.get(RequestRow, request_id)
        decisions = session.scalars(select(DecisionRow).where(DecisionRow.request_id == request_id)
                                    .order_by(DecisionRow.decided_at, DecisionRow.id)).all()
        letters = session.scalars(select(DeadLetterRow).where(DeadLetterRow.request_id == request_id)
                                  .order_by(DeadLetterRow.id)).all()
        if request is None and not letters:
            return None
        return RequestPath(
            request_id=request_id,
            requester_account=request.requester_account if request else None,
            prompt=request.prompt if request else None,
            cameo_ids=list(request.cameo_ids) if request else [],
            steps=[PathStep(d.stage, d.outcome, list(d.reasons), d.policy_id, d.policy_version, d.decided_at,
                            d.duration_ms, d.output_topic) for d in decisions],
            dead_letters=[{"stage": l.stage, "error_code": l.error_code, "error": l.error,
                           "source": f"{l.source_topic}/{l.source_partition}/{l.source_offset}"}
                          for l in letters],
        )

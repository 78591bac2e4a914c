"""Publish's decisions on in-memory stores: a batch decided together equals each item decided alone."""

from __future__ import annotations

from datetime import datetime, timezone

from consumers.publish import PublishStage, Recheck
from pipeline.audit.store import DecisionRecord, InMemoryAuditStore
from pipeline.runtime.stage import Verdict
from pipeline.transport.transactions import OutgoingMessage
from policies.loader import LoadedPolicy
from schemas.models import DeadLetterSource, GenerationRequest, Outcome, PipelineItem, Reason, StageDecision

T0 = datetime(2026, 11, 26, 12, 0, tzinfo=timezone.utc)
POLICY = LoadedPolicy(policy_id="publish-test", stage="publish", version="v" * 64, path=None, rules=None)


def item(request_id: str, requester: str = "bob") -> PipelineItem:
    return PipelineItem(request=GenerationRequest(request_id=request_id, requester_account=requester, prompt="a cat",
                                                  submitted_at=T0))


def record(store: InMemoryAuditStore, request_id: str, stage: str, outcome: Outcome) -> None:
    decision = StageDecision(request_id=request_id, stage=stage, outcome=outcome, policy_id="p",
                             policy_version="a" * 64, decided_at=T0)
    store.record_decision(item(request_id).request,
                          DecisionRecord(decision=decision, duration_ms=1.0, worker="w",
                                         source=DeadLetterSource(topic="t", partition=0, offset=0)),
                          OutgoingMessage("out", request_id.encode(), b""))


def consent_recheck(checked: PipelineItem) -> Verdict:
    if checked.request.requester_account == "revoked":
        return Verdict.reject([Reason(code="consent_revoked", message="The cameo's consent was revoked.")])
    if checked.request.requester_account == "registry-down":
        raise ConnectionError("consent registry unreachable")
    return Verdict.approve()


def test_a_batch_decided_together_equals_each_item_alone() -> None:
    store = InMemoryAuditStore()
    for request_id in ("all", "revoked", "registry-down"):
        record(store, request_id, "consent", Outcome.APPROVED)
        record(store, request_id, "age", Outcome.APPROVED)
    record(store, "age-rejected", "consent", Outcome.APPROVED)
    record(store, "age-rejected", "age", Outcome.REJECTED)
    record(store, "reviewed", "consent", Outcome.APPROVED)
    record(store, "reviewed", "age", Outcome.REVIEW)
    record(store, "reviewed", "review-age", Outcome.APPROVED)
    stage = PublishStage(POLICY, store, ("consent", "age"), [Recheck("consent", "c" * 64, consent_recheck)])
    items = [item("all"), item("age-rejected"), item("revoked", "revoked"), item("reviewed"),
             item("registry-down", "registry-down"), item("unknown")]

    together = stage.decide_many(items)

    assert isinstance(together[4], ConnectionError), "a failing re-check leaves that item to the runtime's retry"
    alone = [stage.decide(each) for index, each in enumerate(items) if index != 4]
    decided = [verdict for index, verdict in enumerate(together) if index != 4]
    assert [(v.outcome, [r.code for r in v.reasons], v.details) for v in decided] == \
           [(v.outcome, [r.code for r in v.reasons], v.details) for v in alone]
    assert [v.outcome for v in decided] == [Outcome.APPROVED, Outcome.REJECTED, Outcome.REJECTED, Outcome.APPROVED,
                                            Outcome.REJECTED]
    assert decided[1].details["missing_approvals"] == ["age"] and decided[4].details["missing_approvals"] == ["consent", "age"]

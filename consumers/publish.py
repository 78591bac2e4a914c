"""Publish stage: the last gate before feed.published.

    every earlier stage approved (audit database, not the message's word)?  -no-> reject
    consent still holds for every cameo (revocable while in flight)?        -no-> reject
    -> approve: the runtime emits the PublishedItem to feed.published
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from consumers.consent import ConsentRules, check_cameos
from pipeline.audit import AuditStore
from pipeline.consent_registry import ConsentRegistry
from pipeline.stage import Clock, Verdict
from policies.loader import LoadedPolicy
from schemas.models import PipelineItem, Reason


class PublishRules(BaseModel):
    """Nothing to tune yet: the checks above are not optional. Present so the file is validated."""

    model_config = ConfigDict(extra="forbid")


class PublishStage:
    name = "publish"

    def __init__(self, policy: LoadedPolicy[PublishRules], consent_policy: LoadedPolicy[ConsentRules],
                 registry: ConsentRegistry, audit: AuditStore, earlier_stages: tuple[str, ...],
                 clock: Clock) -> None:
        self.policy = policy
        self._consent_policy = consent_policy
        self._registry = registry
        self._audit = audit
        self._earlier_stages = earlier_stages
        self._clock = clock

    def decide(self, item: PipelineItem) -> Verdict:
        request_id = item.request.request_id
        approved = self._audit.approved_stages(request_id)
        missing = [stage for stage in self._earlier_stages if stage not in approved]
        if missing:
            return Verdict.reject([Reason(code="stage_not_approved",
                                          message=f"Not every check approved this video: no approval recorded "
                                                  f"for {', '.join(missing)}.")],
                                  missing_approvals=missing)
        recheck = check_cameos(item, self._registry, self._consent_policy.rules, self._clock)
        if recheck.reasons:
            return Verdict.reject(list(recheck.reasons), consent_policy_version=self._consent_policy.version,
                                  **recheck.details)
        return Verdict.approve(checked_stages=list(self._earlier_stages),
                               consent_policy_version=self._consent_policy.version, **recheck.details)

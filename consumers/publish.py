"""Publish stage: the last gate before feed.published.

    every earlier stage approved (audit database, not the message's word)?  -no-> reject
    every media reference still matches its hash in the asset store?        -no-> reject
    each re-check still passes (consent always; age controls when age runs)? -no-> reject
      (on registries that have applied every consent/account record produced before the batch began)
    -> approve: the runtime emits the PublishedItem to feed.published

Consent and parental controls can change while a video is being made, so the stages
that own them hand publish a `Recheck` to run again at the last moment.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from pydantic import BaseModel, ConfigDict

from pipeline.audit.store import AuditStore
from pipeline.media.assets import AssetIntegrityError, AssetStore
from pipeline.runtime.stage import Verdict
from pipeline.transport.feed_freshness import FeedFreshness
from policies.loader import LoadedPolicy
from schemas.models import Outcome, PipelineItem, Reason


class PublishRules(BaseModel):
    """Nothing to tune yet: the checks above are not optional. Present so the file is validated."""

    model_config = ConfigDict(extra="forbid")


@dataclass(frozen=True)
class Recheck:
    stage: str
    policy_version: str
    check: Callable[[PipelineItem], Verdict]


class PublishStage:
    name = "publish"

    def __init__(self, policy: LoadedPolicy[PublishRules], audit: AuditStore, earlier_stages: tuple[str, ...],
                 rechecks: list[Recheck], assets: AssetStore | None = None,
                 feeds: FeedFreshness | None = None) -> None:
        self.policy = policy
        self._assets = assets
        self._feeds = feeds
        self._audit = audit
        self._earlier_stages = earlier_stages
        self._rechecks = rechecks

    def prepare_batch(self) -> None:
        """Before a batch: wait until the consent and account registries hold everything produced so
        far, so a revocation sent before this moment is never missed (pipeline.transport.feed_freshness)."""
        if self._feeds is not None:
            self._feeds.wait_until_current()

    def decide(self, item: PipelineItem) -> Verdict:
        return self._decide(item, self._audit.approved_stages(item.request.request_id))

    def decide_many(self, items: list[PipelineItem]) -> list[Verdict | Exception]:
        """`decide` for a batch, the earlier stages' approvals of every item read in one query (one query
        per request was 6% of a worker's time). An item whose checks fail leaves the others decided."""
        approvals = self._audit.approved_stages_of([item.request.request_id for item in items])
        outcomes: list[Verdict | Exception] = []
        for item in items:
            try:
                outcomes.append(self._decide(item, approvals[item.request.request_id]))
            except Exception as exc:  # the runtime retries this item alone
                outcomes.append(exc)
        return outcomes

    def _decide(self, item: PipelineItem, approved: set[str]) -> Verdict:
        missing = [stage for stage in self._earlier_stages if stage not in approved]
        if missing:
            return Verdict.reject([Reason(code="stage_not_approved",
                                          message=f"Not every check approved this video: no approval recorded "
                                                  f"for {', '.join(missing)}.")],
                                  missing_approvals=missing)
        if self._assets is not None:
            for role, reference in item.assets.items():
                try:
                    self._assets.get(reference)
                except AssetIntegrityError as problem:
                    return Verdict.reject([Reason(code="asset_integrity",
                                                  message=f"The {role} to publish failed its integrity check "
                                                          f"({problem}).")], asset=role)
        versions = {recheck.stage: recheck.policy_version for recheck in self._rechecks}
        for recheck in self._rechecks:
            verdict = recheck.check(item)
            if verdict.outcome is Outcome.REJECTED:
                return Verdict.reject(list(verdict.reasons), recheck=recheck.stage, recheck_policy_versions=versions,
                                      **verdict.details)
        return Verdict.approve(checked_stages=list(self._earlier_stages), recheck_policy_versions=versions)

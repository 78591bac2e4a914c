"""Consent stage: every cameo in a request must be usable by this requester.

A cameo is usable when it is registered to an owner, verified by an accepted
method within the validity window, its verified reference media enrolled (one clear
face per reference image: pipeline.state.enrollment), not withdrawn, and its owner's
settings admit the requester:

    requester is owner ............................ allowed
    on the owner's deny list ...................... refused
    audience everyone ............................. allowed
    audience approved / mutuals + on allow list ... allowed
    anything else ................................. refused (fail closed)

The app has no follower graph here, so "mutuals" is honoured only through explicit
grants the app sends when two accounts become mutuals.

Before each batch the stage waits until the consent registry has applied every consent record produced
so far, so a cameo registered just before its first request is known. The wait is bounded
(TRUSTREEL_CONSENT_FEED_WAIT_SECONDS): behind a flood of consent records the registry cannot apply in that
time, requests that use cameos are refused with a reason that says to send them again
(consent_registry_behind) until it catches up, never decided on stale consent.

The requester's standing is checked as well (pipeline.enforcement.standing), its refusal named first:
an account under a cooldown or suspension is refused, a restricted one may use only its own cameos. Publish re-runs
this whole stage, so a sanction that starts while a video is being made also stops its publication.
"""

from __future__ import annotations

import time
from datetime import timedelta

from pydantic import BaseModel, ConfigDict, Field

from pipeline.enforcement.standing import StandingBook, refusal
from pipeline.runtime.stage import Clock, Verdict
from pipeline.transport.feed_freshness import FeedBehind, FeedFreshness
from pipeline.state.consent_registry import CameoState, ConsentRegistry
from policies.loader import LoadedPolicy
from schemas.models import AccessLevel, Audience, PipelineItem, Reason


class ConsentRules(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_cameos_per_request: int = Field(default=4, ge=0, le=16)
    accepted_verification_methods: list[str] = Field(default_factory=lambda: ["liveness"], min_length=1)
    verification_valid_days: int | None = Field(default=365, ge=1)


def cameo_problem(cameo_id: str, state: CameoState | None, requester: str, rules: ConsentRules,
                  clock: Clock) -> Reason | None:
    """Why this requester may not use this cameo, or None when they may."""
    if state is None:
        return Reason(code="cameo_unknown", message=f"Cameo {cameo_id} does not exist.")
    if state.revoked_at is not None:
        return Reason(code="cameo_revoked", message=f"The owner of cameo {cameo_id} has withdrawn it.")
    if state.verified_at is None:
        return Reason(code="cameo_unverified", message=f"Cameo {cameo_id} has not been verified by its owner yet.")
    if state.verification_method not in rules.accepted_verification_methods:
        return Reason(code="cameo_verification_method",
                      message=f"Cameo {cameo_id} was verified by '{state.verification_method}', which this "
                              f"policy does not accept.")
    if rules.verification_valid_days is not None and \
            clock() - state.verified_at > timedelta(days=rules.verification_valid_days):
        return Reason(code="cameo_verification_expired",
                      message=f"The verification of cameo {cameo_id} is older than "
                              f"{rules.verification_valid_days} days; its owner must verify again.")
    if state.reference_media and state.enrollment_status != "enrolled":
        if state.enrollment_status == "failed":
            return Reason(code="cameo_enrollment_failed",
                          message=f"The verification of cameo {cameo_id} could not be used: "
                                  f"{state.enrollment_error}. Its owner must verify again.")
        return Reason(code="cameo_enrollment_pending",
                      message=f"The verified reference media of cameo {cameo_id} are not enrolled yet.")
    if requester == state.owner_account:
        return None
    access = state.access.get(requester, AccessLevel.NONE)
    if access is AccessLevel.DENY:
        return Reason(code="cameo_requester_denied",
                      message=f"The owner of cameo {cameo_id} does not allow this account to use it.")
    if state.audience is Audience.EVERYONE:
        return None
    if state.audience in (Audience.APPROVED, Audience.MUTUALS) and access is AccessLevel.ALLOW:
        return None
    return Reason(code="cameo_not_allowed",
                  message=f"The owner of cameo {cameo_id} has not allowed this account to use it "
                          f"(audience: {state.audience.value if state.audience else 'unset'}).")


def check_cameos(item: PipelineItem, registry: ConsentRegistry, rules: ConsentRules, clock: Clock) -> Verdict:
    request = item.request
    cameo_ids = list(dict.fromkeys(request.cameo_ids))
    if len(cameo_ids) > rules.max_cameos_per_request:
        return Verdict.reject([Reason(code="too_many_cameos",
                                      message=f"A video may use at most {rules.max_cameos_per_request} cameos; "
                                              f"this request names {len(cameo_ids)}.")])
    problems = []
    owners = {}
    for cameo_id in cameo_ids:
        state = registry.get(cameo_id)
        problem = cameo_problem(cameo_id, state, request.requester_account, rules, clock)
        if problem is not None:
            problems.append(problem)
        else:
            owners[cameo_id] = state.owner_account
    if problems:
        return Verdict.reject(problems, checked_cameos=cameo_ids)
    return Verdict.approve(checked_cameos=cameo_ids, cameo_owners=owners)


PATIENCE_PER_TRY_SECONDS = 10.0
"""How long one try waits for the consent feed before the runtime tries the batch again."""


class ConsentStage:
    """Stage 'consent': the first gate; also reused by publish for the final re-check."""

    name = "consent"

    def __init__(self, policy: LoadedPolicy[ConsentRules], registry: ConsentRegistry, clock: Clock,
                 standing: StandingBook | None = None, feeds: FeedFreshness | None = None,
                 feed_wait_seconds: float = 60.0) -> None:
        self.policy = policy
        self._registry = registry
        self._clock = clock
        self._standing = standing  # None: unit tests of the cameo rules alone
        self._feeds = feeds  # None: no broker feeds the registry (unit tests), or publish's re-check
        self._feed_wait_seconds = feed_wait_seconds
        self._behind_since: float | None = None  # monotonic time the registry was first seen behind
        self._registry_behind: str | None = None  # behind for longer than the wait: refuse cameo requests

    def prepare_batch(self) -> None:
        """Wait until the consent feed is applied to its end. While the registry is behind, the batch is
        tried again (an infrastructure wait: workers starting, a rebalance); once it has been behind for the
        whole wait, batches are decided at once and requests with cameos refused, until it catches up."""
        if self._feeds is None:
            return
        now = time.monotonic()
        since = self._behind_since if self._behind_since is not None else now
        left = self._feed_wait_seconds - (now - since)
        try:
            self._feeds.wait_until_current(max(0.0, min(left, PATIENCE_PER_TRY_SECONDS)))
        except FeedBehind as behind:
            self._behind_since = since
            if time.monotonic() - since < self._feed_wait_seconds:
                raise
            self._registry_behind = str(behind)
            return
        self._behind_since = self._registry_behind = None

    def decide(self, item: PipelineItem) -> Verdict:
        if self._registry_behind is not None and item.request.cameo_ids:
            return Verdict.reject([Reason(code="consent_registry_behind",
                                          message="Recent consent changes were still being applied when this "
                                                  "request was checked, so its cameos could not be checked "
                                                  "against them. Send it again in a minute.")],
                                  registry=self._registry_behind)
        verdict = check_cameos(item, self._registry, self.policy.rules, self._clock)
        if self._standing is None:
            return verdict
        requester = item.request.requester_account
        standing = self._standing.standing(requester, self._clock())
        # a restriction needs the cameos' owners, which the cameo check found; when it refused, it says why
        refused = refusal(standing, requester, verdict.details.get("cameo_owners", {}))
        if refused is None:
            return Verdict(verdict.outcome, verdict.reasons, {**verdict.details, "standing": standing.record()})
        return Verdict.reject([refused, *verdict.reasons], **verdict.details, standing=standing.record())

"""What a stage is: a named decision function over a request in flight.

The shared runtime (pipeline.runtime.runner) does everything else: reading, validating,
de-duplicating, recording, routing and committing. A stage module only decides.

    PipelineItem --stage.decide()--> Verdict(approved | rejected, reasons, details, new assets)

A BatchStage (generation) is handed several undecided items at once and decides them together.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Protocol, runtime_checkable

from policies.loader import LoadedPolicy
from schemas.models import MediaReference, Outcome, PipelineItem, Reason

Clock = Callable[[], datetime]


def system_clock() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class Verdict:
    outcome: Outcome
    reasons: tuple[Reason, ...] = ()
    details: dict[str, Any] = field(default_factory=dict)
    assets: dict[str, MediaReference] = field(default_factory=dict)
    """Media this stage made (claim-check references), added to the item for later stages."""

    @classmethod
    def approve(cls, **details: Any) -> "Verdict":
        return cls(Outcome.APPROVED, (), details)

    @classmethod
    def review(cls, reasons: list[Reason], **details: Any) -> "Verdict":
        """Neither yes nor no: a person decides (the policy routes borderline cases here)."""
        if not reasons:
            raise ValueError("a review needs at least one reason")
        return cls(Outcome.REVIEW, tuple(reasons), details)

    @classmethod
    def reject(cls, reasons: list[Reason], **details: Any) -> "Verdict":
        if not reasons:
            raise ValueError("a rejection needs at least one reason")
        return cls(Outcome.REJECTED, tuple(reasons), details)


def no_generated_video() -> Verdict:
    """What a post-generation check says when the item carries no generated video: it fails closed."""
    return Verdict.reject([Reason(code="no_generated_video",
                                  message="There is no generated video to check, so it cannot be published.")])


def media_unreadable(problem: Exception | str) -> Reason:
    """Media a check could not read (missing, altered, undecodable): never a pass."""
    return Reason(code="media_unreadable", message=f"A media file could not be checked ({problem}), so it cannot "
                                                   f"be used.")


class Stage(Protocol):
    name: str
    policy: LoadedPolicy

    def decide(self, item: PipelineItem) -> Verdict:
        """Judge one request. Must be deterministic for the same inputs and registry state."""
        ...

    # Optional: `prepare_batch(self) -> None`, run once before each batch's decisions (in the same
    # thread and registry snapshot); publish uses it to wait for the state feeds. Raising an
    # infrastructure error (ConnectionError) makes the runtime try the batch again later.
    # Optional: `decide_many(self, items) -> list[Verdict | Exception]`, a batch's decisions in one go
    # (age charges the batch's caps in one transaction); it may raise only having changed nothing, and
    # the runtime then calls decide() on each item.


@runtime_checkable
class BatchStage(Protocol):
    """A stage that decides many items in one go (e.g. one GPU batch); the runtime groups its input."""

    name: str
    policy: LoadedPolicy
    batch_size: int
    batch_wait_seconds: float

    def decide(self, item: PipelineItem) -> Verdict: ...

    def decide_batch(self, items: list[PipelineItem]) -> list[Verdict]:
        """One verdict per item, in order."""
        ...

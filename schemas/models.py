"""Message models for every trustreel topic.

These are the wire contract between request producers, stage workers and feed
consumers. Every model forbids unknown fields so that a typo in a producer is a
dead letter with a clear reason, not a silently ignored field.

    producer --GenerationRequest--> gen.requests
    stage N  --PipelineItem-------> gen.passed.<stage N>   (next stage's input)
    any stage --Rejection---------> gen.rejected
    any stage --ReviewRequest-----> gen.review   (a person resumes or ends it: trustreel review)
    any stage --DeadLetter--------> gen.deadletter
    publish  --PublishedItem------> feed.published
    owner app --ConsentEvent------> cameo.consents (compacted)
    account service --AccountEvent-> accounts.events (compacted)
    takedown watcher --TakedownEvent--> feed.takedowns (a published item must come down)
    rights desk --RightsEvent-------> rights.registry (compacted; a rights holder's protected work)
    feed app --UserReport-----------> feed.reports (a viewer reports a published item: trustreel report)
"""

from __future__ import annotations

import enum
from datetime import date, datetime, timezone
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

SCHEMA_VERSION = 1
"""The message schema version this code writes and accepts."""

Identifier = Annotated[
    str,
    StringConstraints(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._:@-]*$"),
]
"""Ids travel into Kafka keys, database keys and log lines: keep them plain."""


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def require_fields(event: BaseModel, kind: enum.Enum, required: tuple[str, ...]) -> None:
    """Raise the error a producer needs when an event of this kind lacks fields it must carry."""
    missing = [name for name in required if getattr(event, name) is None]
    if missing:
        raise ValueError(f"a {kind.value} event needs {', '.join(missing)}")


class MediaReference(StrictModel):
    """A claim-check pointer to media in the asset store; bytes never travel on Kafka."""

    uri: Annotated[str, StringConstraints(min_length=1, max_length=2048)]
    sha256: Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
    media_type: Annotated[str, StringConstraints(min_length=3, max_length=100)]


class Resolution(StrictModel):
    width: int = Field(ge=16, le=7680)
    height: int = Field(ge=16, le=7680)


class GenerationRequest(StrictModel):
    """What a client service asks for: one video from a prompt, maybe with cameos."""

    schema_version: Literal[1] = SCHEMA_VERSION
    request_id: Identifier
    requester_account: Identifier
    prompt: Annotated[str, StringConstraints(min_length=1, max_length=4000)]
    cameo_ids: list[Identifier] = Field(default_factory=list, max_length=16)
    input_media: list[MediaReference] = Field(default_factory=list, max_length=8)
    duration_seconds: float = Field(default=5.0, gt=0, le=120)
    resolution: Resolution = Field(default_factory=lambda: Resolution(width=720, height=1280))
    content_labels: list[Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_-]{0,39}$")]] = Field(
        default_factory=list, max_length=16,
        description="Content classes the client declares (empty means general); checked against age policy")
    client_metadata: dict[str, str] = Field(
        default_factory=dict, max_length=32,
        description="Opaque client data; never trusted for decisions (age comes from the account registry)")
    submitted_at: datetime = Field(default_factory=utc_now)


class Outcome(str, enum.Enum):
    APPROVED = "approved"
    REJECTED = "rejected"
    REVIEW = "review"  # a person decides (trustreel review); the request waits, it never publishes by itself
    DEAD_LETTER = "dead_letter"


class Reason(StrictModel):
    """A machine code plus a sentence a support agent can read to the user."""

    code: Annotated[str, StringConstraints(min_length=1, max_length=100)]
    message: Annotated[str, StringConstraints(min_length=1, max_length=2000)]


class StageDecision(StrictModel):
    """One stage's verdict on one request, as recorded and carried downstream."""

    request_id: Identifier
    stage: Identifier
    outcome: Outcome
    reasons: list[Reason] = Field(default_factory=list)
    policy_id: str
    policy_version: str
    decided_at: datetime
    details: dict[str, Any] = Field(default_factory=dict)


class PipelineItem(StrictModel):
    """A request in flight between stages, with the decisions made so far."""

    schema_version: Literal[1] = SCHEMA_VERSION
    request: GenerationRequest
    decisions: list[StageDecision] = Field(default_factory=list)
    assets: dict[str, MediaReference] = Field(default_factory=dict)


class Rejection(StrictModel):
    schema_version: Literal[1] = SCHEMA_VERSION
    request_id: Identifier
    requester_account: Identifier
    stage: Identifier
    reasons: list[Reason]
    decision: StageDecision
    rejected_at: datetime


class ReviewRequest(StrictModel):
    """A request parked for a person: the item as it stood and the decision that asked for review."""

    schema_version: Literal[1] = SCHEMA_VERSION
    request_id: Identifier
    stage: Identifier
    kind: Literal["review", "appeal"] = "review"
    reasons: list[Reason]
    item: PipelineItem
    requested_at: datetime


class DeadLetterSource(StrictModel):
    topic: str
    partition: int
    offset: int


class DeadLetter(StrictModel):
    """Input a stage could not read. The original bytes are kept, base64, untouched."""

    schema_version: Literal[1] = SCHEMA_VERSION
    stage: str
    source: DeadLetterSource
    error_code: str
    error: str
    request_id: str | None = None
    original_base64: str
    original_sha256: str
    original_size: int
    received_at: datetime


class PublishedItem(StrictModel):
    schema_version: Literal[1] = SCHEMA_VERSION
    request_id: Identifier
    requester_account: Identifier
    prompt: str
    cameo_ids: list[Identifier]
    assets: dict[str, MediaReference] = Field(default_factory=dict)
    decisions: list[StageDecision]
    published_at: datetime


class TakedownCause(StrictModel):
    kind: Literal["consent_revoked", "public_figure_added", "report_confirmed", "owner_removed"]
    event_id: Annotated[str, StringConstraints(min_length=1, max_length=300)]
    cameo_id: Identifier | None = Field(default=None, description="consent_revoked: the cameo")
    account: Identifier | None = Field(default=None, description="Set when only this account's access was revoked")
    identity: Annotated[str, StringConstraints(max_length=200)] | None = Field(
        default=None, description="public_figure_added: the gallery identity the video matched")
    match_distance: float | None = None
    decided_by: Identifier | None = Field(
        default=None, description="report_confirmed / owner_removed: the staff member who acted")
    report_score: float | None = Field(default=None, description="report_confirmed: the weighted report score")


class TakedownEvent(StrictModel):
    """A published item that must come off the feed, why, and the decision that had published it."""

    schema_version: Literal[1] = SCHEMA_VERSION
    request_id: Identifier
    requester_account: Identifier
    cameo_ids: list[Identifier]
    reason: Reason
    cause: TakedownCause
    original_decision: StageDecision
    taken_down_at: datetime


class Audience(str, enum.Enum):
    """Who, besides the owner, may use a cameo."""

    ONLY_ME = "only_me"
    APPROVED = "approved"
    MUTUALS = "mutuals"
    EVERYONE = "everyone"


class AccessLevel(str, enum.Enum):
    ALLOW = "allow"
    DENY = "deny"
    NONE = "none"


class ConsentKind(str, enum.Enum):
    REGISTER = "register"
    VERIFY = "verify"
    GRANT = "grant"
    REVOKE = "revoke"


class ConsentEvent(StrictModel):
    """A change to one cameo's consent.

    register: owner + audience. verify: who verified, how, when (liveness runs upstream), and
    the owner's verified reference media (what generation conditions the cameo on).
    grant: put `account` on the allow (or deny) list. revoke: with `account`, take that
    account off the lists; without, withdraw the whole cameo for good.
    """

    schema_version: Literal[1] = SCHEMA_VERSION
    event_id: Identifier
    cameo_id: Identifier
    kind: ConsentKind
    occurred_at: datetime = Field(default_factory=utc_now)
    owner_account: Identifier | None = None
    audience: Audience | None = None
    verified_by: Identifier | None = None
    verification_method: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = None
    reference_media: list[MediaReference] = Field(
        default_factory=list, max_length=8,
        description="verify: the owner's likeness as captured by verification; the only media a cameo is "
                    "ever generated from (never what a requester uploads)")
    account: Identifier | None = None
    access: AccessLevel | None = None
    reason: Annotated[str, StringConstraints(max_length=500)] | None = None

    @model_validator(mode="after")
    def _fields_match_kind(self) -> "ConsentEvent":
        require_fields(self, self.kind, {
            ConsentKind.REGISTER: ("owner_account", "audience"),
            ConsentKind.VERIFY: ("verified_by", "verification_method"),
            ConsentKind.GRANT: ("account", "access"),
            ConsentKind.REVOKE: (),
        }[self.kind])
        if self.kind is ConsentKind.GRANT and self.access is AccessLevel.NONE:
            raise ValueError("a grant puts an account on the allow or deny list; use revoke to clear it")
        return self

    def aspect(self) -> str:
        """The slot of the cameo's state this event replaces (see consent topic keys)."""
        if self.kind is ConsentKind.REGISTER:
            return "registration"
        if self.kind is ConsentKind.VERIFY:
            return "verification"
        if self.account is not None:
            return f"access:{self.account}"
        return "revocation"


class AgeAssurance(str, enum.Enum):
    """How sure the platform is of a birth date, weakest first."""

    SELF_DECLARED = "self_declared"
    ESTIMATED = "estimated"
    VERIFIED_DOCUMENT = "verified_document"


class AccountKind(str, enum.Enum):
    PROFILE = "profile"
    PARENTAL_LINK = "parental_link"
    PARENTAL_CONTROLS = "parental_controls"


class AccountEvent(StrictModel):
    """A change to one account's age data, from the account service.

    profile: birth date and how it was assured. parental_link: the parent account of a
    minor (None clears it). parental_controls: what the linked parent switched off.
    """

    schema_version: Literal[1] = SCHEMA_VERSION
    event_id: Identifier
    account_id: Identifier
    kind: AccountKind
    occurred_at: datetime = Field(default_factory=utc_now)
    birth_date: date | None = None
    assurance: AgeAssurance | None = None
    parent_account: Identifier | None = None
    generation_disabled: bool | None = None
    cameo_use_disabled: bool | None = None

    @model_validator(mode="after")
    def _fields_match_kind(self) -> "AccountEvent":
        require_fields(self, self.kind, {
            AccountKind.PROFILE: ("birth_date", "assurance"),
            AccountKind.PARENTAL_LINK: (),
            AccountKind.PARENTAL_CONTROLS: ("generation_disabled", "cameo_use_disabled"),
        }[self.kind])
        return self

    def aspect(self) -> str:
        return self.kind.value


class WorkKind(str, enum.Enum):
    CHARACTER = "character"
    WORK = "work"
    BRAND = "brand"
    VOICE = "voice"  # a performer's voice


class RightsChoice(str, enum.Enum):
    BLOCKED = "blocked"  # opted out: never in a video
    ALLOWED = "allowed"  # opted in: allowed, and the video's manifest names the work and its holder
    REVIEW = "review"  # a person decides each use


class RightsEvent(StrictModel):
    """A rights holder's protected work and their choice about it; the latest event per work_id holds.

    Names and aliases are matched in prompts; reference images (hashed into the rights_references
    bank) are matched against input media and generated frames. `removed` takes the work off the list.
    """

    schema_version: Literal[1] = SCHEMA_VERSION
    event_id: Identifier
    work_id: Identifier
    holder_id: Identifier
    holder_name: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    kind: WorkKind
    name: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    aliases: list[Annotated[str, StringConstraints(min_length=1, max_length=200)]] = Field(default_factory=list,
                                                                                          max_length=50)
    choice: RightsChoice
    reference_media: list[MediaReference] = Field(default_factory=list, max_length=16)
    removed: bool = False
    occurred_at: datetime = Field(default_factory=utc_now)


class ReportCategory(str, enum.Enum):
    """What a viewer says is wrong with a published video; the enforcement policy weighs each."""

    SEXUAL = "sexual"
    CHILD_SAFETY = "child_safety"
    VIOLENCE = "violence"
    HATE = "hate"
    HARASSMENT = "harassment"
    IMPERSONATION = "impersonation"
    COPYRIGHT = "copyright"
    SPAM = "spam"
    OTHER = "other"


class UserReport(StrictModel):
    """A viewer's report on a published item. One per (item, reporter) counts; repeats are absorbed."""

    schema_version: Literal[1] = SCHEMA_VERSION
    report_id: Identifier
    request_id: Identifier = Field(description="The published item's request id")
    reporter: Identifier = Field(description="The reporting account")
    category: ReportCategory
    text: Annotated[str, StringConstraints(max_length=2000)] = ""
    reported_at: datetime = Field(default_factory=utc_now)


ALL_MODELS: dict[str, type[BaseModel]] = {
    "generation_request": GenerationRequest,
    "pipeline_item": PipelineItem,
    "stage_decision": StageDecision,
    "rejection": Rejection,
    "dead_letter": DeadLetter,
    "published_item": PublishedItem,
    "review_request": ReviewRequest,
    "takedown_event": TakedownEvent,
    "consent_event": ConsentEvent,
    "account_event": AccountEvent,
    "rights_event": RightsEvent,
    "user_report": UserReport,
}

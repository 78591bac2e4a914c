"""Age stage: server-side age bands and what each band may do.

The band comes from the account registry at decision time, never from the request:

    birth date + assurance (registry) + today (policy time zone) -> under_13 | 13_15 | 16_17 | adult | unknown
    unknown (no record, or assurance too weak for adult) -> the policy's stand-in band (default under_13)

Checks, in order, each with its own reason:
    band blocked -> parental controls -> content classes -> cameo rules -> daily cap (charged last,
    so a request refused for another reason never uses up the allowance)

Content classes are the client's declared labels joined with the labels the content stages derived
("violence:medium"): a band allows a label when its list names it, its category (any severity), or the
same category at an equal or higher severity. Declared labels can only add restrictions. Where a content
stage runs before age and the request carries no content decision, it is refused (fail closed).

Publish calls `recheck()` (everything but the cap), so a parental control switched on
while a video was being made still stops it.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from datetime import date, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from consumers.content import derived_labels
from pipeline.content.signals import Severity
from pipeline.runtime.stage import Clock, Verdict
from pipeline.state.account_registry import AccountRegistry, AccountState, age_on
from pipeline.state.consent_registry import ConsentRegistry
from pipeline.state.generation_caps import CapLedger, ChargeOutcome, ChargeResult
from policies.loader import LoadedPolicy
from schemas.models import AccessLevel, AgeAssurance, PipelineItem, Reason


class Band(str, enum.Enum):
    UNDER_13 = "under_13"
    TEEN_13_15 = "13_15"
    TEEN_16_17 = "16_17"
    ADULT = "adult"
    UNKNOWN = "unknown"


MINOR_BANDS = frozenset({Band.UNDER_13, Band.TEEN_13_15, Band.TEEN_16_17})
ASSURANCE_ORDER = [AgeAssurance.SELF_DECLARED, AgeAssurance.ESTIMATED, AgeAssurance.VERIFIED_DOCUMENT]


class BandRules(BaseModel):
    model_config = ConfigDict(extra="forbid")

    blocked: bool = False
    daily_generation_cap: int | None = Field(default=None, ge=0, description="None: no cap")
    allowed_content_classes: list[str] = Field(
        default_factory=lambda: ["general"],
        description="Declared labels (general, mild, mature) and content categories: 'violence' (any "
                    "severity) or 'violence:medium' (up to medium)")
    may_use_minor_cameos: bool = Field(default=False, description="Only meaningful for adults")


class AgeRules(BaseModel):
    model_config = ConfigDict(extra="forbid")

    timezone: str = "UTC"
    unknown_age_band: Band = Band.UNDER_13
    adult_requires_assurance: AgeAssurance = AgeAssurance.SELF_DECLARED
    bands: dict[Band, BandRules]

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value

    @model_validator(mode="after")
    def _every_band_has_rules(self) -> "AgeRules":
        missing = [band.value for band in Band if band is not Band.UNKNOWN and band not in self.bands]
        if missing:
            raise ValueError(f"bands needs rules for {', '.join(missing)}")
        if Band.UNKNOWN in self.bands:
            raise ValueError("'unknown' takes the rules of unknown_age_band; do not list it under bands")
        if self.unknown_age_band is Band.UNKNOWN:
            raise ValueError("unknown_age_band must name a real band")
        return self


def band_of(account: AccountState | None, today: date, rules: AgeRules) -> Band:
    if account is None or account.birth_date is None or account.assurance is None:
        return Band.UNKNOWN
    age = age_on(account.birth_date, today)
    if age < 0:
        return Band.UNKNOWN
    if age < 13:
        return Band.UNDER_13
    if age < 16:
        return Band.TEEN_13_15
    if age < 18:
        return Band.TEEN_16_17
    if ASSURANCE_ORDER.index(account.assurance) < ASSURANCE_ORDER.index(rules.adult_requires_assurance):
        return Band.UNKNOWN
    return Band.ADULT


def _effective(band: Band, rules: AgeRules) -> tuple[Band, BandRules]:
    """The band whose rules apply: unknown borrows the policy's stand-in band."""
    applied = rules.unknown_age_band if band is Band.UNKNOWN else band
    return applied, rules.bands[applied]


def not_allowed_labels(labels: Iterable[str], band_rules: BandRules) -> list[str]:
    """The labels a band's `allowed_content_classes` do not admit, in the order given."""
    return [label for label in labels if not allowed_label(label, band_rules.allowed_content_classes)]


def allowed_label(label: str, allowed: list[str]) -> bool:
    """Whether a band's list admits a label: by name, by its category, or the category up to a severity."""
    if label in allowed:
        return True
    category, _, severity = label.partition(":")
    if not severity:
        return False
    if category in allowed:
        return True
    rank = Severity(severity).rank
    for entry in allowed:
        entry_category, _, up_to = entry.partition(":")
        if entry_category == category and up_to and Severity(up_to).rank >= rank:
            return True
    return False


class AgeStage:
    name = "age"

    def __init__(self, policy: LoadedPolicy[AgeRules], accounts: AccountRegistry, cameos: ConsentRegistry,
                 caps: CapLedger, clock: Clock, requires_content: bool = False) -> None:
        self.policy = policy
        self._accounts = accounts
        self._cameos = cameos
        self._caps = caps
        self._clock = clock
        self._requires_content = requires_content  # a content stage runs before age: its labels must be there

    def _today(self) -> tuple[datetime, date]:
        now = self._clock()
        return now, now.astimezone(ZoneInfo(self.policy.rules.timezone)).date()

    def decide(self, item: PipelineItem) -> Verdict:
        now, today = self._today()
        verdict, band, band_rules = self._live_checks(item, today)
        if verdict is not None:
            return verdict
        cap = band_rules.daily_generation_cap
        if cap is None:
            return _uncapped(band)
        charge = self._caps.charge(item.request.request_id, item.request.requester_account, today, cap, now)
        return self._charged(charge, band, cap, today)

    def decide_many(self, items: list[PipelineItem]) -> list[Verdict | Exception]:
        """`decide` for a batch, with every cap charge of the batch in one transaction (the cap charge was
        this stage's largest cost, one commit per request). The checks of one item failing leave the others
        decided; the charges failing (a conflict with another worker) raise, and nothing was charged."""
        now, today = self._today()
        outcomes: list[Verdict | Exception | None] = []  # None: decided by its charge, below
        to_charge: list[tuple[int, Band, int]] = []
        for index, item in enumerate(items):
            try:
                verdict, band, band_rules = self._live_checks(item, today)
            except Exception as exc:  # the runtime retries this item alone
                outcomes.append(exc)
                continue
            cap = band_rules.daily_generation_cap
            if verdict is None and cap is not None:
                to_charge.append((index, band, cap))
                outcomes.append(None)
            else:
                outcomes.append(verdict if verdict is not None else _uncapped(band))
        charges = self._caps.charge_many([(items[index].request.request_id, items[index].request.requester_account,
                                           today, cap) for index, _, cap in to_charge], now) if to_charge else []
        for (index, band, cap), charge in zip(to_charge, charges, strict=True):
            outcomes[index] = self._charged(charge, band, cap, today)
        if any(outcome is None for outcome in outcomes):
            raise AssertionError("an item was left without its charge's verdict")
        return outcomes  # type: ignore[return-value]

    def _charged(self, charge: ChargeResult, band: Band, cap: int, today: date) -> Verdict:
        if charge.outcome is ChargeOutcome.CAP_REACHED:
            return Verdict.reject([Reason(
                code="daily_cap_reached",
                message=f"This account has already made its {cap} videos for today; the limit resets at "
                        f"midnight ({self.policy.rules.timezone}).")],
                band=band.value, rule="daily_generation_cap", daily_cap=cap, used=charge.used, day=today.isoformat())
        return Verdict.approve(band=band.value, rule="allowed", daily_cap=cap, used=charge.used,
                               day=today.isoformat(), charge=charge.outcome.value)

    def recheck(self, item: PipelineItem) -> Verdict:
        """Everything but the cap, for the publish stage's final look."""
        _, today = self._today()
        verdict, band, _ = self._live_checks(item, today)
        return verdict if verdict is not None else Verdict.approve(band=band.value)

    def _live_checks(self, item: PipelineItem, today: date) -> tuple[Verdict | None, Band, BandRules]:
        rules = self.policy.rules
        request = item.request
        account = self._accounts.get(request.requester_account)
        band = band_of(account, today, rules)
        applied, band_rules = _effective(band, rules)

        def refuse(code: str, message: str, rule: str, **details: object) -> tuple[Verdict, Band, BandRules]:
            return (Verdict.reject([Reason(code=code, message=message)], band=band.value, applied_band=applied.value,
                                   rule=rule, **details), band, band_rules)

        if band_rules.blocked:
            if band is Band.UNKNOWN:
                return refuse("age_unknown", "We could not confirm this account's age, so it cannot make videos "
                                             "yet. Confirming a birth date in settings fixes this.", "unknown_age")
            return refuse("age_blocked", "Video generation is not available for accounts under 13.",
                          "band_blocked")
        if account is not None and account.generation_disabled:
            return refuse("parental_generation_disabled",
                          "A parent or guardian has turned off video generation for this account.",
                          "parental_controls")
        derived = derived_labels(item)
        if derived is None and self._requires_content:
            return refuse("content_unchecked", "The request's content was not checked, so its age rules cannot "
                                               "be applied.", "content_classes")
        labels = sorted(set(request.content_labels or ["general"]) | set(derived or ()))
        not_allowed = not_allowed_labels(labels, band_rules)
        if not_allowed:
            categories = sorted({label.split(":")[0] for label in not_allowed})
            return refuse("content_class_not_allowed",
                          f"This account cannot make videos with {', '.join(categories)}.",
                          "content_classes", labels=labels, not_allowed=not_allowed)
        for cameo_id in dict.fromkeys(request.cameo_ids):
            problem = self._cameo_problem(cameo_id, account, applied, band_rules, today)
            if problem is not None:
                return refuse(problem[0], problem[1], "cameo_rules", cameo_id=cameo_id)
        return None, band, band_rules

    def _cameo_problem(self, cameo_id: str, requester: AccountState | None, requester_band: Band,
                       requester_rules: BandRules, today: date) -> tuple[str, str] | None:
        if requester is not None and requester.cameo_use_disabled:
            return ("parental_cameo_disabled",
                    "A parent or guardian has turned off cameos for this account.")
        cameo = self._cameos.get(cameo_id)
        if cameo is None or cameo.owner_account is None:
            return ("cameo_unknown", f"Cameo {cameo_id} does not exist.")
        requester_id = requester.account_id if requester else None
        owner = self._accounts.get(cameo.owner_account)
        owner_band, _ = _effective(band_of(owner, today, self.policy.rules), self.policy.rules)
        if owner_band not in MINOR_BANDS:
            return None
        if owner is not None and owner.cameo_use_disabled:
            return ("cameo_owner_parental_block",
                    f"A parent or guardian of the owner of cameo {cameo_id} has turned off its use.")
        if cameo.owner_account == requester_id:
            return None
        if requester_band not in MINOR_BANDS and not requester_rules.may_use_minor_cameos:
            return ("adult_using_minor_cameo", f"Cameo {cameo_id} belongs to a minor and cannot be used by adults.")
        if cameo.access.get(requester_id or "", AccessLevel.NONE) is not AccessLevel.ALLOW:
            return ("minor_cameo_not_approved",
                    f"Cameo {cameo_id} belongs to a minor; only accounts its owner approved may use it.")
        return None


def _uncapped(band: Band) -> Verdict:
    """Every live check passed and the band has no daily cap: nothing to charge."""
    return Verdict.approve(band=band.value, rule="allowed", daily_cap=None)

"""Unit tests of age bands and per-band rules (in-memory registries and an injected clock)."""

from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy.exc import OperationalError

from consumers.age import AgeRules, AgeStage, Band, band_of
from pipeline.audit.db import make_engine, make_sessionmaker, upgrade
from pipeline.state.account_registry import AccountState, InMemoryAccountRegistry, age_on
from pipeline.state.consent_registry import InMemoryConsentRegistry
from pipeline.state.generation_caps import CapConflict, InMemoryCapLedger, SqlCapLedger
from policies.loader import PolicyError, load_policy, policy_path
from schemas.models import AccountEvent, ConsentEvent, GenerationRequest, Outcome, PipelineItem
from tests.test_audit_database import db_url  # noqa: F401 (the SQLite + PostgreSQL fixture)

POLICY = load_policy(policy_path("age"), AgeRules, expected_stage="age")


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def years_before(day: date, years: int) -> date:
    return day.replace(year=day.year - years)


class World:
    """Accounts, cameos and a clock, fed through the registries' apply() like the topics would."""

    def __init__(self, now: datetime, caps=None) -> None:
        self.clock = Clock(now)
        self.accounts = InMemoryAccountRegistry()
        self.cameos = InMemoryConsentRegistry()
        self.caps = caps or InMemoryCapLedger()
        self.offset = 0
        self.count = 0

    def _next(self) -> int:
        self.offset += 1
        return self.offset

    def person(self, account: str, age_years: int, assurance: str = "self_declared", days_extra: int = 0) -> None:
        birth = years_before(self.clock.now.date(), age_years) - timedelta(days=days_extra)
        self.accounts.apply(AccountEvent(event_id=f"a{self.offset}", account_id=account, kind="profile",
                                         birth_date=birth, assurance=assurance), self._next())

    def controls(self, account: str, generation: bool = True, cameos: bool = True) -> None:
        self.accounts.apply(AccountEvent(event_id=f"a{self.offset}", account_id=account, kind="parental_controls",
                                         generation_disabled=not generation, cameo_use_disabled=not cameos),
                            self._next())

    def cameo(self, cameo: str, owner: str, *allowed: str) -> None:
        events = [ConsentEvent(event_id="e", cameo_id=cameo, kind="register", owner_account=owner,
                               audience="everyone"),
                  *[ConsentEvent(event_id="e", cameo_id=cameo, kind="grant", account=a, access="allow")
                    for a in allowed]]
        for event in events:
            self.cameos.apply(event, self._next())

    def decide(self, requester: str, *cameos: str, labels: tuple[str, ...] = (), metadata=None, policy=POLICY):
        self.count += 1
        item = PipelineItem(request=GenerationRequest(
            request_id=f"r{self.count}", requester_account=requester, prompt="p", cameo_ids=list(cameos),
            content_labels=list(labels), client_metadata=metadata or {}))
        return AgeStage(policy, self.accounts, self.cameos, self.caps, self.clock).decide(item)


NOON = datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc)


def codes(verdict) -> list[str]:
    return [reason.code for reason in verdict.reasons]


@pytest.mark.parametrize(("age", "band"), [(5, Band.UNDER_13), (12, Band.UNDER_13), (13, Band.TEEN_13_15),
                                           (15, Band.TEEN_13_15), (16, Band.TEEN_16_17), (17, Band.TEEN_16_17),
                                           (18, Band.ADULT), (70, Band.ADULT)])
def test_bands_follow_the_birth_date(age: int, band: Band) -> None:
    account = AccountState("a", birth_date=years_before(NOON.date(), age), assurance="self_declared")
    assert band_of(account, NOON.date(), POLICY.rules) is band


def test_unknown_age_and_weak_assurance() -> None:
    assert band_of(None, NOON.date(), POLICY.rules) is Band.UNKNOWN
    rules = POLICY.rules.model_copy(update={"adult_requires_assurance": "verified_document"})
    adult = AccountState("a", birth_date=date(1990, 1, 1), assurance="estimated")
    teen = AccountState("t", birth_date=years_before(NOON.date(), 14), assurance="self_declared")
    assert band_of(adult, NOON.date(), rules) is Band.UNKNOWN, "adult needs a verified document under this policy"
    assert band_of(teen, NOON.date(), rules) is Band.TEEN_13_15, "claiming to be younger needs no proof"


def test_birthday_crossing_a_band_boundary_changes_the_band_that_day() -> None:
    world = World(NOON)
    world.person("turning-16", 16, days_extra=-1)  # 16th birthday is tomorrow
    assert world.decide("turning-16", labels=("mild",)).outcome is Outcome.REJECTED  # 13_15: general only
    world.clock.now += timedelta(days=1)
    assert world.decide("turning-16", labels=("mild",)).outcome is Outcome.APPROVED
    assert age_on(date(2008, 2, 29), date(2026, 2, 28)) == 17 and age_on(date(2008, 2, 29), date(2026, 3, 1)) == 18


def test_under_13_and_unknown_are_blocked_with_different_reasons() -> None:
    world = World(NOON)
    world.person("kid", 11)
    assert codes(world.decide("kid")) == ["age_blocked"]
    unknown = world.decide("stranger")
    assert codes(unknown) == ["age_unknown"] and unknown.details["applied_band"] == "under_13"


def test_the_payload_never_decides_the_band() -> None:
    world = World(NOON)
    world.person("teen", 14)
    verdict = world.decide("teen", labels=("mature",), metadata={"age": "35", "age_band": "adult"})
    assert codes(verdict) == ["content_class_not_allowed"] and verdict.details["band"] == "13_15"


def test_content_classes_per_band() -> None:
    world = World(NOON)
    world.person("adult", 30)
    world.person("older-teen", 17)
    assert world.decide("adult", labels=("mature",)).outcome is Outcome.APPROVED
    assert world.decide("older-teen", labels=("mild",)).outcome is Outcome.APPROVED
    assert codes(world.decide("older-teen", labels=("mature",))) == ["content_class_not_allowed"]
    assert codes(world.decide("adult", labels=("gore",))) == ["content_class_not_allowed"]


def test_daily_cap_rejects_then_resets_on_the_next_day_in_the_policy_time_zone() -> None:
    world = World(NOON)
    world.person("teen", 14)
    results = [world.decide("teen") for _ in range(12)]
    assert [r.outcome for r in results].count(Outcome.APPROVED) == 10
    assert codes(results[-1]) == ["daily_cap_reached"] and "10 videos" in results[-1].reasons[0].message
    world.clock.now = NOON.replace(hour=23, minute=59)
    assert codes(world.decide("teen")) == ["daily_cap_reached"]
    world.clock.now = NOON + timedelta(hours=12, minutes=1)
    assert world.decide("teen").outcome is Outcome.APPROVED


def test_refused_requests_do_not_use_up_the_cap() -> None:
    world = World(NOON)
    world.person("teen", 14)
    for _ in range(5):
        assert codes(world.decide("teen", labels=("mature",))) == ["content_class_not_allowed"]
    assert world.decide("teen").details["used"] == 1


def test_cameo_rules_between_adults_and_minors() -> None:
    world = World(NOON)
    world.person("adult", 30)
    world.person("teen", 14)
    world.person("friend", 15)
    world.person("other-teen", 15)
    world.cameo("teen-cam", "teen", "friend", "adult")
    world.cameo("adult-cam", "adult")
    assert codes(world.decide("adult", "teen-cam")) == ["adult_using_minor_cameo"], "even when allow-listed"
    assert world.decide("friend", "teen-cam").outcome is Outcome.APPROVED
    assert codes(world.decide("other-teen", "teen-cam")) == ["minor_cameo_not_approved"]
    assert world.decide("teen", "teen-cam").outcome is Outcome.APPROVED, "the owner may use their own cameo"
    assert world.decide("teen", "adult-cam").outcome is Outcome.APPROVED


def test_parental_controls() -> None:
    world = World(NOON)
    world.person("teen", 14)
    world.person("friend", 15)
    world.cameo("teen-cam", "teen", "friend")
    world.controls("teen", generation=True, cameos=False)
    assert codes(world.decide("friend", "teen-cam")) == ["cameo_owner_parental_block"]
    assert codes(world.decide("teen", "teen-cam")) == ["parental_cameo_disabled"]
    assert world.decide("teen").outcome is Outcome.APPROVED
    world.controls("teen", generation=False, cameos=True)
    assert codes(world.decide("teen")) == ["parental_generation_disabled"]


def test_cap_on_the_real_database_survives_a_new_ledger_and_absorbs_redelivery(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    upgrade(url)
    day = NOON.date()
    first = SqlCapLedger(make_sessionmaker(make_engine(url)))
    assert [first.charge(f"r{n}", "acct", day, 2, NOON).outcome.value for n in range(3)] == [
        "charged", "charged", "cap_reached"]
    restarted = SqlCapLedger(make_sessionmaker(make_engine(url)))  # a worker restart
    assert restarted.charge("r1", "acct", day, 2, NOON).outcome.value == "already_charged"
    assert restarted.charge("r9", "acct", day, 2, NOON).outcome.value == "cap_reached"
    assert restarted.charge("r9", "acct", day + timedelta(days=1), 2, NOON).outcome.value == "charged"


def _mixed_batch(world: "World") -> list[PipelineItem]:
    """Two under-cap adults, a teen reaching the cap inside the batch, a refused request, one copy again."""
    world.person("ann", 30)
    world.person("ben", 40)
    world.person("teen", 14)
    world.person("kid", 10)
    requests = [("a1", "ann"), ("t1", "teen"), ("b1", "ben"), ("k1", "kid"), ("t2", "teen"), ("t3", "teen"),
                ("a2", "ann"), ("t1", "teen")]
    return [PipelineItem(request=GenerationRequest(request_id=rid, requester_account=who, prompt="p"))
            for rid, who in requests]


def _summary(verdicts) -> list[tuple[str, list[str], object]]:
    return [(v.outcome.value, codes(v), v.details.get("used")) for v in verdicts]


@pytest.mark.parametrize("ledger", ["memory", "sqlite"])
def test_a_batch_charged_together_decides_as_one_by_one(tmp_path: Path, ledger: str) -> None:
    def fresh(name: str):
        if ledger == "memory":
            return InMemoryCapLedger()
        url = f"sqlite:///{tmp_path / name}"
        upgrade(url)
        return SqlCapLedger(make_sessionmaker(make_engine(url)))

    policy = replace(POLICY, rules=POLICY.rules.model_copy(update={"bands": {
        **POLICY.rules.bands, Band.TEEN_13_15: POLICY.rules.bands[Band.TEEN_13_15].model_copy(
            update={"daily_generation_cap": 2})}}))
    alone, together = World(NOON, fresh("alone.db")), World(NOON, fresh("together.db"))
    items = _mixed_batch(alone)
    _mixed_batch(together)
    one_by_one = [AgeStage(policy, alone.accounts, alone.cameos, alone.caps, alone.clock).decide(i) for i in items]
    batched = AgeStage(policy, together.accounts, together.cameos, together.caps, together.clock).decide_many(items)
    assert _summary(batched) == _summary(one_by_one)
    assert _summary(batched)[1:6] == [("approved", [], 1), ("approved", [], 1), ("rejected", ["age_blocked"], None),
                                      ("approved", [], 2), ("rejected", ["daily_cap_reached"], 2)]
    assert _summary(batched)[7] == ("approved", [], 2)  # t1 again: already charged, the count unchanged
    assert together.caps.charge("t9", "teen", NOON.date(), 2, NOON).outcome.value == "cap_reached"


def test_charges_of_a_batch_that_another_worker_moved_are_a_conflict_and_write_nothing(db_url: str) -> None:  # noqa: F811
    upgrade(db_url)
    sessions = make_sessionmaker(make_engine(db_url))
    ledger, other_worker = SqlCapLedger(sessions), SqlCapLedger(sessions)
    day = NOON.date()
    ledger.charge("r0", "acct", day, 5, NOON)
    reading = ledger._counts_of

    def read_then_another_worker_charges(session, pairs):
        counts = reading(session, pairs)
        other_worker.charge("r-other", "acct", day, 5, NOON)  # commits between this batch's read and write
        return counts

    ledger._counts_of = read_then_another_worker_charges  # type: ignore[method-assign]
    # PostgreSQL: the guarded UPDATE finds the count moved; SQLite: the write lock is refused to a batch that
    # read before another writer's commit. Either way the batch is not charged and says so.
    expected = CapConflict if db_url.startswith("postgresql") else (CapConflict, OperationalError)
    with pytest.raises(expected):
        ledger.charge_many([("r1", "acct", day, 5), ("r2", "fresh", day, 5)], NOON)
    ledger._counts_of = reading  # type: ignore[method-assign]
    assert ledger.charge("r1", "acct", day, 5, NOON).used == 3  # r0, r-other, then r1: nothing of the batch stuck
    assert ledger.charge("r2", "fresh", day, 5, NOON).used == 1


@pytest.mark.parametrize(("edit", "message"), [
    (("  timezone: UTC", "  timezone: Mars/Olympus"), "unknown time zone"),
    (("    under_13:\n      blocked: true\n", ""), "bands needs rules for under_13"),
    (("unknown_age_band: under_13", "unknown_age_band: unknown"), "must name a real band"),
])
def test_bad_age_policies_are_refused(tmp_path: Path, edit: tuple[str, str], message: str) -> None:
    text = policy_path("age").read_text()
    assert edit[0] in text
    path = tmp_path / "age.yaml"
    path.write_text(text.replace(*edit))
    with pytest.raises(PolicyError, match=message):
        load_policy(path, AgeRules, expected_stage="age")

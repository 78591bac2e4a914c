"""The sanction ladder over strikes, and what each sanction refuses (pure decision code)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from pipeline.enforcement.rules import EnforcementRules, SanctionLevel, parse_duration
from pipeline.enforcement.standing import Standing, Strike, refusal, sanction_of

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=timezone.utc)
RULES = EnforcementRules.model_validate({
    "strikes": {"window": "30d", "rejection_reasons": {"public_figure_named": 1}},
    "sanctions": [{"level": "cooldown", "points": 2, "duration": "1d"},
                  {"level": "restriction", "points": 3, "duration": "7d"},
                  {"level": "suspension", "points": 5, "duration": "30d"}]})


def strike(days: float, weight: float = 1, voided_by: str | None = None, ref: str = "") -> Strike:
    return Strike("rejection", ref or f"r{days}", "public_figure_named", weight, T0 + timedelta(days=days), voided_by)


def test_the_ladder_climbs_with_points_and_each_sanction_runs_out() -> None:
    assert sanction_of([strike(0)], RULES, T0) is None  # one point: a warning only
    two = [strike(0), strike(1)]
    cooldown = sanction_of(two, RULES, T0 + timedelta(days=1, hours=1))
    assert (cooldown.level, cooldown.until) == (SanctionLevel.COOLDOWN, T0 + timedelta(days=2))
    assert sanction_of(two, RULES, T0 + timedelta(days=2, seconds=1)) is None  # expiry restores the account
    three = two + [strike(2)]
    assert sanction_of(three, RULES, T0 + timedelta(days=3)).level is SanctionLevel.RESTRICTION
    assert sanction_of(three, RULES, T0 + timedelta(days=10)) is None


def test_strikes_outside_the_window_do_not_add_up_and_voided_ones_do_not_count() -> None:
    spread = [strike(0), strike(40)]  # 40 days apart in a 30-day window: never two points at once
    assert sanction_of(spread, RULES, T0 + timedelta(days=40, hours=1)) is None
    voided = [strike(0), strike(1, voided_by="sam")]
    assert sanction_of(voided, RULES, T0 + timedelta(days=1, hours=1)) is None


def test_the_harshest_running_sanction_wins() -> None:
    heavy = [strike(0, weight=5), strike(20)]  # suspension for 30 days; later points add nothing milder
    found = sanction_of(heavy, RULES, T0 + timedelta(days=21))
    assert found.level is SanctionLevel.SUSPENSION and found.until == T0 + timedelta(days=50)


def standing_with(level: SanctionLevel) -> Standing:
    rules = EnforcementRules.model_validate({"sanctions": [{"level": level.value, "points": 1, "duration": "1d"}]})
    strikes = [strike(0)]
    return Standing("bob", "v1", T0, T0 - timedelta(days=90), strikes, sanction_of(strikes, rules, T0))


def test_a_restriction_refuses_only_other_peoples_cameos() -> None:
    restricted = standing_with(SanctionLevel.RESTRICTION)
    assert refusal(restricted, "bob", {"cam-bob": "bob"}) is None
    assert refusal(restricted, "bob", {}) is None
    reason = refusal(restricted, "bob", {"cam-bob": "bob", "cam-alice": "alice"})
    assert reason.code == "account_restricted" and "cam-alice" in reason.message
    assert refusal(standing_with(SanctionLevel.SUSPENSION), "bob", {}).code == "account_suspension"
    assert refusal(standing_with(SanctionLevel.COOLDOWN), "bob", {"cam-bob": "bob"}).code == "account_cooldown"


def test_policy_durations_and_ladders_are_validated() -> None:
    assert parse_duration("90d") == timedelta(days=90) and parse_duration("20s") == timedelta(seconds=20)
    with pytest.raises(ValueError):
        parse_duration("ninety days")
    with pytest.raises(ValueError, match="increasing points"):
        EnforcementRules.model_validate({"sanctions": [{"level": "suspension", "points": 5, "duration": "1d"},
                                                       {"level": "cooldown", "points": 2, "duration": "1d"}]})

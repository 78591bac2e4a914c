"""An account's standing: its strikes, the sanction they add up to, and what that sanction refuses.

    strikes (derived, never stored: the audit database already holds every fact they come from)
        rejection  a request of the account rejected for a reason the policy weighs (one per request)
        takedown   a published video of the account taken down for a reason the policy weighs
        - struck out when a person reversed it (an approved appeal of the rejection or the takedown)
          or a senior reviewer voided it on the account's appeal (strike_voids)
    sanction: at each strike, the points of the strikes within the window pick the harshest step the
        points reach; it lasts the step's duration from that strike. The harshest sanction still running
        is the account's; when it runs out, the account is restored with nobody having to act.

Derived on every read, so a policy change applies to everyone at once and there is nothing to keep
in step. The consent stage reads it once per account per batch (pipeline.runtime.batch_snapshot).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Callable, Protocol

from sqlalchemy import select
from sqlalchemy.orm import sessionmaker

from pipeline.audit.db import DecisionRow, RequestRow, ReviewRow, StrikeVoidRow, TakedownRow
from pipeline.audit.store import REVIEW_PREFIX
from pipeline.enforcement.rules import EnforcementRules, SanctionLevel
from pipeline.runtime.batch_snapshot import batch_requesters, remember, remembered
from policies.loader import LoadedPolicy
from schemas.models import Outcome, Reason

REJECTION = "rejection"
TAKEDOWN = "takedown"


@dataclass(frozen=True)
class Strike:
    source: str  # rejection | takedown
    source_ref: str  # the request id
    reason_code: str
    weight: float
    at: datetime
    voided_by: str | None = None


@dataclass(frozen=True)
class Sanction:
    level: SanctionLevel
    since: datetime
    until: datetime
    points: float


@dataclass(frozen=True)
class Standing:
    account: str
    policy_version: str
    checked_at: datetime
    window_start: datetime
    strikes: list[Strike] = field(default_factory=list)  # every one that can still matter, voided ones included
    sanction: Sanction | None = None

    @property
    def points(self) -> float:
        """Strike points counted now (within the window, not voided)."""
        return sum(strike.weight for strike in self.strikes
                   if strike.voided_by is None and strike.at > self.window_start)

    def record(self) -> dict:
        """For a decision's details: enough to explain a refusal without another query."""
        return {"account": self.account, "points": self.points, "policy_version": self.policy_version,
                "sanction": None if self.sanction is None else {
                    "level": self.sanction.level.value, "until": self.sanction.until.isoformat()}}


def sanction_of(strikes: list[Strike], rules: EnforcementRules, now: datetime) -> Sanction | None:
    """The harshest sanction still running at `now` (pure: the policy's ladder over the strikes)."""
    counted = sorted((strike for strike in strikes if strike.voided_by is None), key=lambda strike: strike.at)
    window = rules.strikes.window
    running: list[Sanction] = []
    for index, strike in enumerate(counted):
        points = sum(earlier.weight for earlier in counted[: index + 1] if earlier.at > strike.at - window)
        reached = [step for step in rules.sanctions if points >= step.points]
        if reached:
            step = reached[-1]
            sanction = Sanction(step.level, strike.at, strike.at + step.duration, points)
            if sanction.until > now:
                running.append(sanction)
    if not running:
        return None
    return max(running, key=lambda sanction: (sanction.level.rank, sanction.until))


def refusal(standing: Standing, requester: str, cameo_owners: dict[str, str | None]) -> Reason | None:
    """Why the account's sanction refuses this request, or None when it does not cover it."""
    sanction = standing.sanction
    if sanction is None:
        return None
    until = f"{sanction.until:%Y-%m-%d %H:%M} UTC"
    if sanction.level is SanctionLevel.RESTRICTION:
        others = sorted(cameo for cameo, owner in cameo_owners.items() if owner != requester)
        if not others:
            return None
        return Reason(code="account_restricted",
                      message=f"Account {requester} may not use other people's cameos ({', '.join(others)}) "
                              f"until {until}: its violations reached {sanction.points:g} strike points. "
                              f"The account can appeal.")
    return Reason(code=f"account_{sanction.level.value}",
                  message=f"Account {requester} is under a {sanction.level.value} until {until}: its violations "
                          f"reached {sanction.points:g} strike points. The account can appeal.")


class StandingBook(Protocol):
    """Where standings come from. Real: SqlStandingBook. Unit tests: a function over fixed strikes."""

    def standing(self, account: str, now: datetime) -> Standing: ...


class SqlStandingBook:
    def __init__(self, sessions: sessionmaker, policy: Callable[[], LoadedPolicy[EnforcementRules]]) -> None:
        self._sessions = sessions
        self._policy = policy

    def standing(self, account: str, now: datetime) -> Standing:
        """Within a batch, the first miss loads every requester of the batch in one set of queries."""
        def load_the_batch() -> Standing:
            loaded = self.standings(sorted(batch_requesters() | {account}), now)
            for other, standing in loaded.items():
                remember(("standing", other), standing)
            return loaded[account]

        return remembered(("standing", account), load_the_batch)

    def standings(self, accounts: list[str], now: datetime) -> dict[str, Standing]:
        policy = self._policy()
        rules = policy.rules
        longest = max((step.duration for step in rules.sanctions), default=timedelta(0))
        strikes = self.strikes(accounts, rules, since=now - rules.strikes.window - longest)
        return {account: Standing(account, policy.version, now, now - rules.strikes.window, strikes[account],
                                  sanction_of(strikes[account], rules, now)) for account in accounts}

    def strikes(self, accounts: list[str], rules: EnforcementRules, since: datetime) -> dict[str, list[Strike]]:
        """Each account's strikes since `since`, oldest first: its rejections (not reversed by a review) and
        takedowns (not reinstated), each with its void if a senior reviewer struck it out."""
        with self._sessions() as session:
            voids = {(row.account, row.source, row.source_ref): row.voided_by for row in session.scalars(
                select(StrikeVoidRow).where(StrikeVoidRow.account.in_(accounts)))}
            rejected = session.execute(
                select(RequestRow.requester_account, DecisionRow.request_id, DecisionRow.reasons,
                       DecisionRow.decided_at)
                .join(RequestRow, RequestRow.request_id == DecisionRow.request_id)
                .where(RequestRow.requester_account.in_(accounts), DecisionRow.outcome == Outcome.REJECTED.value,
                       DecisionRow.decided_at >= since)).all()
            taken_down = session.execute(
                select(RequestRow.requester_account, TakedownRow.request_id, TakedownRow.reason_code,
                       TakedownRow.created_at)
                .join(RequestRow, RequestRow.request_id == TakedownRow.request_id)
                .where(RequestRow.requester_account.in_(accounts), TakedownRow.created_at >= since,
                       TakedownRow.reason_code.in_(list(rules.strikes.takedown_reasons)))).all()
            request_ids = [row.request_id for row in rejected] + [row.request_id for row in taken_down]
            reversed_rejections = set(session.scalars(select(DecisionRow.request_id).where(
                DecisionRow.request_id.in_(request_ids), DecisionRow.stage.startswith(REVIEW_PREFIX),
                DecisionRow.outcome == Outcome.APPROVED.value))) if request_ids else set()
            reinstated = set(session.scalars(select(ReviewRow.request_id).where(
                ReviewRow.request_id.in_(request_ids), ReviewRow.stage == "takedown",
                ReviewRow.status == "approved"))) if request_ids else set()
        strikes: dict[str, dict[tuple[str, str], Strike]] = {account: {} for account in accounts}
        for account, request_id, reasons, decided_at in rejected:
            if request_id in reversed_rejections:
                continue
            weighed = [(rules.strikes.rejection_reasons[reason["code"]], reason["code"]) for reason in reasons or []
                       if reason.get("code") in rules.strikes.rejection_reasons]
            if weighed:
                weight, code = max(weighed)
                strikes[account][(REJECTION, request_id)] = Strike(REJECTION, request_id, code, weight, decided_at,
                                                                   voids.get((account, REJECTION, request_id)))
        for account, request_id, reason_code, created_at in taken_down:
            if request_id not in reinstated:
                strikes[account][(TAKEDOWN, request_id)] = Strike(
                    TAKEDOWN, request_id, reason_code, rules.strikes.takedown_reasons[reason_code], created_at,
                    voids.get((account, TAKEDOWN, request_id)))
        return {account: sorted(found.values(), key=lambda strike: strike.at) for account, found in strikes.items()}


def explain(standing: Standing) -> str:
    """`trustreel account standing`: the sanction and every strike behind it, for the account or support staff."""
    lines = [f"account {standing.account}: " + (
        "in good standing" if standing.sanction is None else
        f"{standing.sanction.level.value} until {standing.sanction.until:%Y-%m-%d %H:%M} UTC "
        f"(reached {standing.sanction.points:g} points on {standing.sanction.since:%Y-%m-%d %H:%M} UTC)"),
        f"strike points counted now: {standing.points:g} (since {standing.window_start:%Y-%m-%d}; policy "
        f"{standing.policy_version[:12]})"]
    for strike in standing.strikes:
        lines.append(f"  {strike.at:%Y-%m-%d %H:%M} {strike.source:<9} {strike.source_ref:<24} "
                     f"{strike.reason_code:<28} {strike.weight:g}"
                     + (f"  (voided by {strike.voided_by})" if strike.voided_by else ""))
    return "\n".join(lines)

"""Daily generation caps that hold across restarts and across several workers.

    charge(request, account, day, cap):
      request already charged?            -> ALREADY_CHARGED (a redelivery: approve again, count unchanged)
      UPDATE count = count + 1 WHERE count < cap   (one atomic statement, row-locked)
        1 row  -> CHARGED
        0 rows -> CAP_REACHED (nothing written)

The charge row and the counter change commit in one database transaction, so two
workers racing for the last slot cannot both win.

    charge_many([(request, account, day, cap), ...]):   a batch's charges in ONE transaction
      read the batch's charges and counters, decide each in order as charge() would,
      then write: UPDATE count = <new> WHERE count = <read> (a counter another worker moved
      meanwhile, or a row or charge it inserted, is a CapConflict: nothing is written and the
      caller charges one at a time instead)
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import date, datetime
from typing import Protocol

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import sessionmaker

from pipeline.audit.db import GenerationChargeRow, GenerationCountRow, in_chunks


class ChargeOutcome(str, enum.Enum):
    CHARGED = "charged"
    ALREADY_CHARGED = "already_charged"
    CAP_REACHED = "cap_reached"


@dataclass(frozen=True)
class ChargeResult:
    outcome: ChargeOutcome
    used: int


Charge = tuple[str, str, date, int]
"""One charge to make: request id, account, day (in the policy's time zone), that day's cap."""


class CapConflict(Exception):
    """Another worker charged one of the batch's accounts or requests meanwhile: nothing of the batch was
    written; charge one at a time (each is then atomic against the others)."""


class CapLedger(Protocol):
    def charge(self, request_id: str, account_id: str, day: date, cap: int, now: datetime) -> ChargeResult: ...

    def charge_many(self, charges: list[Charge], now: datetime) -> list[ChargeResult]:
        """The same results as charge() on each in order; all of them are made, or none (and it raises)."""
        ...


class ReadOnlyCapLedger:
    """What a charge *would* do, writing nothing: shadow policies must not use up anyone's quota."""

    def __init__(self, sessions: sessionmaker) -> None:
        self._sessions = sessions

    def charge(self, request_id: str, account_id: str, day: date, cap: int, now: datetime) -> ChargeResult:
        with self._sessions() as session:
            used = session.scalar(select(GenerationCountRow.count).where(
                GenerationCountRow.account_id == account_id, GenerationCountRow.day == day)) or 0
            if session.get(GenerationChargeRow, request_id) is not None:
                return ChargeResult(ChargeOutcome.ALREADY_CHARGED, used)
        if used >= cap:
            return ChargeResult(ChargeOutcome.CAP_REACHED, cap)
        return ChargeResult(ChargeOutcome.CHARGED, used + 1)

    def charge_many(self, charges: list[Charge], now: datetime) -> list[ChargeResult]:
        return [self.charge(*charge, now) for charge in charges]  # each alone: nothing is written to share


class InMemoryCapLedger:
    def __init__(self) -> None:
        self.counts: dict[tuple[str, date], int] = {}
        self.charges: dict[str, tuple[str, date]] = {}

    def charge(self, request_id: str, account_id: str, day: date, cap: int, now: datetime) -> ChargeResult:
        if request_id in self.charges:
            return ChargeResult(ChargeOutcome.ALREADY_CHARGED, self.counts[self.charges[request_id]])
        used = self.counts.get((account_id, day), 0)
        if used >= cap:
            return ChargeResult(ChargeOutcome.CAP_REACHED, used)
        self.counts[(account_id, day)] = used + 1
        self.charges[request_id] = (account_id, day)
        return ChargeResult(ChargeOutcome.CHARGED, used + 1)

    def charge_many(self, charges: list[Charge], now: datetime) -> list[ChargeResult]:
        return [self.charge(*charge, now) for charge in charges]


class SqlCapLedger:
    def __init__(self, sessions: sessionmaker) -> None:
        self._sessions = sessions

    def charge(self, request_id: str, account_id: str, day: date, cap: int, now: datetime) -> ChargeResult:
        for _ in range(5):
            try:
                return self._charge_once(request_id, account_id, day, cap, now)
            except IntegrityError:
                continue  # another worker inserted the same counter row or charge first; look again
        raise RuntimeError(f"could not charge {request_id} to {account_id} after 5 conflicts")

    def _charge_once(self, request_id: str, account_id: str, day: date, cap: int, now: datetime) -> ChargeResult:
        # Core statements, not ORM objects: this runs once per request in the age stage and was its
        # largest cost (bench/pipeline.py).
        counts, charges = GenerationCountRow.__table__, GenerationChargeRow.__table__
        with self._sessions.begin() as session:
            existing = session.execute(select(charges.c.account_id, charges.c.day)
                                       .where(charges.c.request_id == request_id)).first()
            if existing is not None:
                used = session.scalar(select(counts.c.count).where(counts.c.account_id == existing.account_id,
                                                                   counts.c.day == existing.day))
                return ChargeResult(ChargeOutcome.ALREADY_CHARGED, used or 0)
            bumped = session.execute(
                update(counts).where(counts.c.account_id == account_id, counts.c.day == day, counts.c.count < cap)
                .values(count=counts.c.count + 1).returning(counts.c.count)).scalar()
            if bumped is None:
                if session.scalar(select(counts.c.count).where(counts.c.account_id == account_id,
                                                               counts.c.day == day)) is not None:
                    return ChargeResult(ChargeOutcome.CAP_REACHED, cap)
                if cap < 1:
                    return ChargeResult(ChargeOutcome.CAP_REACHED, cap)
                session.execute(insert(counts).values(account_id=account_id, day=day, count=1))  # first today
                bumped = 1
            session.execute(insert(charges).values(request_id=request_id, account_id=account_id, day=day,
                                                   charged_at=now))
            return ChargeResult(ChargeOutcome.CHARGED, bumped)

    def charge_many(self, charges: list[Charge], now: datetime) -> list[ChargeResult]:
        """A batch's charges in one transaction: one commit for the batch instead of one per request."""
        counts, charged = GenerationCountRow.__table__, GenerationChargeRow.__table__
        try:
            with self._sessions.begin() as session:
                earlier = self._charges_of(session, [request_id for request_id, _, _, _ in charges])
                read = self._counts_of(session, {(account, day) for _, account, day, _ in charges}
                                       | set(earlier.values()))
                used = dict(read)
                results, new_charges = [], []
                for request_id, account, day, cap in charges:
                    if request_id in earlier:
                        results.append(ChargeResult(ChargeOutcome.ALREADY_CHARGED, used.get(earlier[request_id], 0)))
                        continue
                    current = used.get((account, day))
                    if current is not None and current >= cap or cap < 1:
                        results.append(ChargeResult(ChargeOutcome.CAP_REACHED, cap))
                        continue
                    used[(account, day)] = (current or 0) + 1
                    earlier[request_id] = (account, day)  # a second copy in the batch is a redelivery
                    new_charges.append({"request_id": request_id, "account_id": account, "day": day,
                                        "charged_at": now})
                    results.append(ChargeResult(ChargeOutcome.CHARGED, used[(account, day)]))
                for (account, day), count in sorted(used.items()):  # one order for every worker: no deadlock
                    before = read.get((account, day))
                    if before is None:
                        session.execute(insert(counts).values(account_id=account, day=day, count=count))
                    elif count != before:
                        moved = session.execute(update(counts).where(
                            counts.c.account_id == account, counts.c.day == day, counts.c.count == before)
                            .values(count=count)).rowcount
                        if moved != 1:
                            raise CapConflict(f"{account}'s count for {day} moved while the batch was charged")
                if new_charges:
                    session.execute(insert(charged), new_charges)
                return results
        except IntegrityError as exc:  # a counter row or a charge another worker inserted meanwhile
            raise CapConflict(str(exc.orig)) from exc

    @staticmethod
    def _charges_of(session, request_ids: list[str]) -> dict[str, tuple[str, date]]:
        charged = GenerationChargeRow.__table__
        return {row.request_id: (row.account_id, row.day) for chunk in in_chunks(request_ids)
                for row in session.execute(select(charged.c.request_id, charged.c.account_id, charged.c.day)
                                           .where(charged.c.request_id.in_(chunk)))}

    @staticmethod
    def _counts_of(session, pairs: set[tuple[str, date]]) -> dict[tuple[str, date], int]:
        counts = GenerationCountRow.__table__
        found: dict[tuple[str, date], int] = {}
        for day in {day for _, day in pairs}:
            accounts = sorted(account for account, other in pairs if other == day)
            for chunk in in_chunks(accounts):
                for row in session.execute(select(counts.c.account_id, counts.c.count)
                                           .where(counts.c.day == day, counts.c.account_id.in_(chunk))):
                    found[(row.account_id, day)] = row.count
        return found

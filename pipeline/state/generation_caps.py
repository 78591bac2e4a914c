"""Daily generation caps that hold across restarts and across several workers.

    charge(request, account, day, cap):
      request already charged?            -> ALREADY_CHARGED (a redelivery: approve again, count unchanged)
      UPDATE count = count + 1 WHERE count < cap   (one atomic statement, row-locked)
        1 row  -> CHARGED
        0 rows -> CAP_REACHED (nothing written)

The charge row and the counter change commit in one database transaction, so two
workers racing for the last slot cannot both win.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import date, datetime
from typing import Protocol

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import sessionmaker

from pipeline.audit.db import GenerationChargeRow, GenerationCountRow


class ChargeOutcome(str, enum.Enum):
    CHARGED = "charged"
    ALREADY_CHARGED = "already_charged"
    CAP_REACHED = "cap_reached"


@dataclass(frozen=True)
class ChargeResult:
    outcome: ChargeOutcome
    used: int


class CapLedger(Protocol):
    def charge(self, request_id: str, account_id: str, day: date, cap: int, now: datetime) -> ChargeResult: ...


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

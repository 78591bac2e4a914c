"""An account appeals its sanction; a senior reviewer decides.

    trustreel account appeal ACCOUNT --note N    -> standing_appeals row, pending (one open appeal per account)
    senior approves -> every strike counted at that moment is voided (strike_voids, with who and why): the
                       sanction they made ends at once
    senior rejects  -> the sanction stands; the account may appeal again later
"""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import sessionmaker

from pipeline.audit.db import StaffActionRow, StandingAppealRow, StrikeVoidRow
from pipeline.enforcement.standing import StandingBook


class StandingAppealError(Exception):
    """Nothing to appeal or decide; says why."""


def open_appeal(sessions: sessionmaker, book: StandingBook, account: str, note: str,
                now: datetime | None = None) -> int:
    now = now or datetime.now(timezone.utc)
    if book.standing(account, now).sanction is None:
        raise StandingAppealError(f"account {account} is not under any sanction; there is nothing to appeal")
    with sessions.begin() as session:
        pending = session.scalar(select(StandingAppealRow.id).where(StandingAppealRow.account == account,
                                                                    StandingAppealRow.status == "pending"))
        if pending is not None:
            raise StandingAppealError(f"account {account} already has an appeal waiting (#{pending})")
        row = StandingAppealRow(account=account, note=note or "The account appealed its sanction.",
                                status="pending", created_at=now)
        session.add(row)
        session.flush()
        return row.id


def pending_appeals(sessions: sessionmaker) -> list[dict]:
    with sessions() as session:
        rows = session.scalars(select(StandingAppealRow).where(StandingAppealRow.status == "pending")
                               .order_by(StandingAppealRow.created_at)).all()
    return [{"appeal": row.id, "account": row.account, "note": row.note, "waiting_since": row.created_at.isoformat()}
            for row in rows]


def decide_appeal(sessions: sessionmaker, book: StandingBook, appeal_id: int, approve: bool, reviewer: str,
                  note: str, now: datetime | None = None) -> str:
    """Approve (void the counted strikes) or reject; the first senior reviewer to decide wins."""
    now = now or datetime.now(timezone.utc)
    status = "approved" if approve else "rejected"
    with sessions.begin() as session:
        row = session.get(StandingAppealRow, appeal_id)
        if row is None:
            raise StandingAppealError(f"there is no standing appeal #{appeal_id}")
        claimed = session.execute(update(StandingAppealRow).where(StandingAppealRow.id == appeal_id,
                                                                  StandingAppealRow.status == "pending")
                                  .values(status=status, reviewer=reviewer, decision_note=note,
                                          resolved_at=now)).rowcount
        if not claimed:
            session.refresh(row)
            raise StandingAppealError(f"appeal #{appeal_id} was already {row.status} by {row.reviewer} "
                                      f"at {row.resolved_at}")
        account = row.account
        session.add(StaffActionRow(actor=reviewer, action=f"standing_appeal_{status}", target=account,
                                   note=note, at=now))
    if approve:
        for strike in book.standing(account, now).strikes:
            if strike.voided_by is not None:
                continue
            try:
                with sessions.begin() as session:
                    session.add(StrikeVoidRow(account=account, source=strike.source, source_ref=strike.source_ref,
                                              voided_by=reviewer, note=note or f"appeal #{appeal_id}",
                                              voided_at=now))
            except IntegrityError:
                pass  # voided already
    return f"appeal #{appeal_id} of account {account}: {status}"

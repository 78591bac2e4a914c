"""Reviewer accounts of the console: a role each, passwords kept only as argon2id hashes.

    reviewer   decides parked reviews and dismisses reports
    senior     also appeals (of rejections, takedowns and sanctions), confirms reports (a takedown) and
               removes videos for cameo owners
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, timezone

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import sessionmaker

from pipeline.audit.db import ReviewerRow

_HASHER = PasswordHasher()  # argon2id with the library's current recommended cost
_DUMMY_HASH = _HASHER.hash("not a password anyone has")


class Role(str, enum.Enum):
    REVIEWER = "reviewer"
    SENIOR = "senior"

    def allows(self, needed: "Role") -> bool:
        return needed is Role.REVIEWER or self is Role.SENIOR


@dataclass(frozen=True)
class Reviewer:
    username: str
    role: Role


class ReviewerAccountError(Exception):
    pass


def add_reviewer(sessions: sessionmaker, username: str, role: Role, password: str | None) -> None:
    """password None: an account that can only come in through the trusted proxy header."""
    if password is not None and len(password) < 12:
        raise ReviewerAccountError("a console password must be at least 12 characters")
    try:
        with sessions.begin() as session:
            session.add(ReviewerRow(username=username, role=role.value,
                                    password_hash=_HASHER.hash(password) if password is not None else None,
                                    created_at=datetime.now(timezone.utc)))
    except IntegrityError:
        raise ReviewerAccountError(f"reviewer {username} exists already") from None


def set_password(sessions: sessionmaker, username: str, password: str) -> None:
    if len(password) < 12:
        raise ReviewerAccountError("a console password must be at least 12 characters")
    with sessions.begin() as session:
        row = session.get(ReviewerRow, username)
        if row is None:
            raise ReviewerAccountError(f"there is no reviewer {username}")
        row.password_hash = _HASHER.hash(password)


def disable_reviewer(sessions: sessionmaker, username: str) -> None:
    with sessions.begin() as session:
        row = session.get(ReviewerRow, username)
        if row is None:
            raise ReviewerAccountError(f"there is no reviewer {username}")
        row.disabled_at = row.disabled_at or datetime.now(timezone.utc)


def list_reviewers(sessions: sessionmaker) -> list[dict]:
    with sessions() as session:
        rows = session.scalars(select(ReviewerRow).order_by(ReviewerRow.username)).all()
    return [{"username": row.username, "role": row.role, "login": "password" if row.password_hash else "proxy only",
             "disabled": row.disabled_at.isoformat() if row.disabled_at else ""} for row in rows]


def active_reviewer(sessions: sessionmaker, username: str) -> Reviewer | None:
    """The reviewer as they are now (a disabled account or a changed role takes effect at the next request)."""
    with sessions() as session:
        row = session.get(ReviewerRow, username)
    if row is None or row.disabled_at is not None:
        return None
    return Reviewer(row.username, Role(row.role))


def check_password(sessions: sessionmaker, username: str, password: str) -> Reviewer | None:
    """The reviewer when the password is theirs; the same work is done for an unknown name (no timing hint)."""
    with sessions() as session:
        row = session.get(ReviewerRow, username)
    stored = row.password_hash if row is not None and row.disabled_at is None and row.password_hash else None
    try:
        _HASHER.verify(stored or _DUMMY_HASH, password)
    except (VerificationError, InvalidHashError):
        return None
    if stored is None:
        return None
    return Reviewer(row.username, Role(row.role))

"""The cameo consent registry: state materialized from the cameo.consents topic.

    cameo app --ConsentEvent--> cameo.consents (compacted) --apply()--> registry (table)
                                         \\--StateFeed.replay() at worker start / `cameo rebuild`

Each record's key is one slot of a cameo's state (pipeline.state.keys): registration,
verification, revocation or access:<account>. A slot only moves forward (an older
offset never overwrites a newer one), which makes replays harmless.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import Row, select
from sqlalchemy.orm import sessionmaker

from pipeline.audit.db import CameoAccessRow, CameoEnrollmentRow, CameoRow, in_chunks
from pipeline.runtime.batch_snapshot import ACCOUNT, CAMEO, batch_cameos, expect_reads, remembered_with_batch
from pipeline.state.keys import SlotOffsets
from schemas.models import AccessLevel, Audience, ConsentEvent, ConsentKind, MediaReference


@dataclass(frozen=True)
class CameoState:
    cameo_id: str
    owner_account: str | None = None
    audience: Audience | None = None
    registered_at: datetime | None = None
    verified_by: str | None = None
    verification_method: str | None = None
    verified_at: datetime | None = None
    reference_media: tuple[MediaReference, ...] = ()
    revoked_at: datetime | None = None
    revoked_reason: str | None = None
    access: dict[str, AccessLevel] = field(default_factory=dict)
    enrollment_status: str | None = None  # of this verification's references (pipeline.state.enrollment)
    enrollment_error: str | None = None


class ConsentRegistry(Protocol):
    """Storage for cameo consent state. Real: SqlConsentRegistry. Tests: InMemoryConsentRegistry."""

    def get(self, cameo_id: str) -> CameoState | None: ...

    def apply(self, event: ConsentEvent, offset: int) -> bool:
        """Apply one event read at `offset`; False when a newer event already set that slot."""
        ...


class InMemoryConsentRegistry:
    """Dict-backed registry for unit tests of decision code."""

    def __init__(self) -> None:
        self._states: dict[str, CameoState] = {}
        self._slots = SlotOffsets()
        self._enrollments: dict[str, tuple[str, str | None]] = {}

    def get(self, cameo_id: str) -> CameoState | None:
        state = self._states.get(cameo_id)
        if state is None or state.owner_account is None:
            return None
        status, error = self._enrollments.get(cameo_id, (None, None))
        return replace(state, enrollment_status=status, enrollment_error=error)

    def record_enrollment(self, cameo_id: str, status: str, error: str | None = None) -> None:
        """What enrollment made of the current verification (SqlConsentRegistry reads it from its table)."""
        self._enrollments[cameo_id] = (status, error)

    def apply(self, event: ConsentEvent, offset: int) -> bool:
        if not self._slots.advance(event.cameo_id, event.aspect(), offset):
            return False
        state = self._states.get(event.cameo_id, CameoState(cameo_id=event.cameo_id))
        self._states[event.cameo_id] = _applied(state, event)
        return True


def _applied(state: CameoState, event: ConsentEvent) -> CameoState:
    if event.kind is ConsentKind.REGISTER:
        return replace(state, owner_account=event.owner_account, audience=event.audience,
                       registered_at=event.occurred_at)
    if event.kind is ConsentKind.VERIFY:
        return replace(state, verified_by=event.verified_by, verification_method=event.verification_method,
                       verified_at=event.occurred_at, reference_media=tuple(event.reference_media))
    if event.account is not None:
        access = dict(state.access)
        access[event.account] = event.access if event.kind is ConsentKind.GRANT else AccessLevel.NONE
        return replace(state, access=access)
    return replace(state, revoked_at=event.occurred_at, revoked_reason=event.reason)


class SqlConsentRegistry:
    """Registry in the audit database (tables cameos, cameo_access)."""

    def __init__(self, sessions: sessionmaker) -> None:
        self._sessions = sessions

    def get(self, cameo_id: str) -> CameoState | None:
        """In a batch, the first read loads every cameo the batch names (three queries, not three per cameo),
        and their owners' accounts are read together when one is (the age checks read each owner)."""
        return remembered_with_batch(CAMEO, cameo_id, batch_cameos(), self._states_and_their_owners)

    def _states_and_their_owners(self, cameo_ids: list[str]) -> dict[str, CameoState]:
        states = self.states(cameo_ids)
        expect_reads(ACCOUNT, {state.owner_account for state in states.values() if state.owner_account})
        return states

    def states(self, cameo_ids: list[str]) -> dict[str, CameoState]:
        """The registered cameos among `cameo_ids`."""
        states: dict[str, CameoState] = {}
        with self._sessions() as session:
            for ids in in_chunks(cameo_ids):  # plain rows, not ORM objects, as in the account registry
                rows = [row for row in session.execute(select(CameoRow.__table__).where(CameoRow.cameo_id.in_(ids)))
                        if row.owner_account is not None]
                found = [row.cameo_id for row in rows]
                if not found:
                    continue
                access: dict[str, dict[str, AccessLevel]] = {}
                for entry in session.execute(select(CameoAccessRow.cameo_id, CameoAccessRow.account, CameoAccessRow.access)
                                             .where(CameoAccessRow.cameo_id.in_(found))):
                    access.setdefault(entry.cameo_id, {})[entry.account] = AccessLevel(entry.access)
                enrollments = {entry.cameo_id: entry for entry in session.execute(
                    select(CameoEnrollmentRow.__table__).where(CameoEnrollmentRow.cameo_id.in_(found)))}
                for row in rows:
                    states[row.cameo_id] = _state_of(row, access.get(row.cameo_id, {}), enrollments.get(row.cameo_id))
        return states

    def apply(self, event: ConsentEvent, offset: int) -> bool:
        with self._sessions.begin() as session:
            return _apply_in(session, event, offset)

    def apply_many(self, records: list[tuple[ConsentEvent, int]]) -> list[bool]:
        """`apply` for each (event, offset) in order, in one database transaction (a feed batch)."""
        with self._sessions.begin() as session:
            return [_apply_in(session, event, offset) for event, offset in records]


def _apply_in(session, event: ConsentEvent, offset: int) -> bool:
    row = session.get(CameoRow, event.cameo_id, with_for_update=True)
    if row is None:
        row = CameoRow(cameo_id=event.cameo_id, registration_offset=-1, verification_offset=-1,
                       revocation_offset=-1)
        session.add(row)
        session.flush()
    if event.kind is ConsentKind.REGISTER:
        if row.registration_offset >= offset:
            return False
        row.owner_account, row.audience = event.owner_account, event.audience.value
        row.registered_at, row.registration_offset = event.occurred_at, offset
    elif event.kind is ConsentKind.VERIFY:
        if row.verification_offset >= offset:
            return False
        row.verified_by, row.verification_method = event.verified_by, event.verification_method
        row.verified_at, row.verification_offset = event.occurred_at, offset
        row.reference_media = json.dumps([media.model_dump() for media in event.reference_media])
    elif event.account is not None:
        entry = session.get(CameoAccessRow, (event.cameo_id, event.account))
        if entry is not None and entry.source_offset >= offset:
            return False
        level = event.access if event.kind is ConsentKind.GRANT else AccessLevel.NONE
        if entry is None:
            session.add(CameoAccessRow(cameo_id=event.cameo_id, account=event.account, access=level.value,
                                       updated_at=event.occurred_at, source_offset=offset))
            session.flush()  # a later record of the same batch for this account finds it
        else:
            entry.access, entry.updated_at, entry.source_offset = level.value, event.occurred_at, offset
    else:
        if row.revocation_offset >= offset:
            return False
        row.revoked_at, row.revoked_reason, row.revocation_offset = event.occurred_at, event.reason, offset
    return True


def _state_of(row: CameoRow | Row[Any], access: dict[str, AccessLevel],
              enrollment: CameoEnrollmentRow | Row[Any] | None) -> CameoState:
    if enrollment is not None and enrollment.verification_offset != row.verification_offset:
        enrollment = None  # it enrolled another verification than the one the registry shows
    return CameoState(
        cameo_id=row.cameo_id,
        owner_account=row.owner_account,
        audience=Audience(row.audience) if row.audience else None,
        registered_at=row.registered_at,
        verified_by=row.verified_by,
        verification_method=row.verification_method,
        verified_at=row.verified_at,
        reference_media=tuple(MediaReference.model_validate(entry)
                              for entry in json.loads(row.reference_media or "[]")),
        revoked_at=row.revoked_at,
        revoked_reason=row.revoked_reason,
        access=access,
        enrollment_status=enrollment.status if enrollment else None,
        enrollment_error=enrollment.error if enrollment else None,
    )

"""Where signed videos are recorded, so a watermark read off any copy leads back to its request.

    provenance stage --record(ProvenanceMark)--> provenance_marks (one row per request; a redo keeps the first)
    trustreel verify --find(watermark id | signed sha256)--> marks -> request path in the audit database
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import sessionmaker

from pipeline.audit.db import ProvenanceMarkRow


@dataclass(frozen=True)
class ProvenanceMark:
    request_id: str
    watermark_id: str
    signed_sha256: str
    source_sha256: str
    manifest_label: str
    signed_at: datetime


class ProvenanceLedger(Protocol):
    def record(self, mark: ProvenanceMark) -> ProvenanceMark:
        """Store the mark unless the request already has one; returns the stored mark."""
        ...

    def find(self, watermark_id: str | None = None, signed_sha256: str | None = None) -> list[ProvenanceMark]: ...


class InMemoryProvenanceLedger:
    def __init__(self) -> None:
        self.marks: dict[str, ProvenanceMark] = {}

    def record(self, mark: ProvenanceMark) -> ProvenanceMark:
        return self.marks.setdefault(mark.request_id, mark)

    def find(self, watermark_id: str | None = None, signed_sha256: str | None = None) -> list[ProvenanceMark]:
        return [mark for mark in self.marks.values()
                if (watermark_id and mark.watermark_id == watermark_id)
                or (signed_sha256 and mark.signed_sha256 == signed_sha256)]


class SqlProvenanceLedger:
    def __init__(self, sessions: sessionmaker) -> None:
        self._sessions = sessions

    def record(self, mark: ProvenanceMark) -> ProvenanceMark:
        try:
            with self._sessions.begin() as session:
                session.add(ProvenanceMarkRow(**vars(mark)))
            return mark
        except IntegrityError:
            with self._sessions() as session:
                return _mark(session.get(ProvenanceMarkRow, mark.request_id))

    def find(self, watermark_id: str | None = None, signed_sha256: str | None = None) -> list[ProvenanceMark]:
        conditions = []
        if watermark_id:
            conditions.append(ProvenanceMarkRow.watermark_id == watermark_id)
        if signed_sha256:
            conditions.append(ProvenanceMarkRow.signed_sha256 == signed_sha256)
        if not conditions:
            return []
        with self._sessions() as session:
            rows = session.scalars(select(ProvenanceMarkRow).where(or_(*conditions))
                                   .order_by(ProvenanceMarkRow.signed_at)).all()
            return [_mark(row) for row in rows]


def _mark(row: ProvenanceMarkRow) -> ProvenanceMark:
    return ProvenanceMark(request_id=row.request_id, watermark_id=row.watermark_id, signed_sha256=row.signed_sha256,
                          source_sha256=row.source_sha256, manifest_label=row.manifest_label, signed_at=row.signed_at)

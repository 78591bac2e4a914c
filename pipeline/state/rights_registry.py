"""The rights registry: rights holders' protected works, materialized from the rights.registry topic.

    rights desk --RightsEvent (key: work_id)--> rights.registry (compacted) --apply()--> rights_works
        reference images (and videos) --PDQ per frame--> bank "rights_references", content id = work id,
        replaced as a whole each time the work changes (a removed work leaves no hashes behind)
    the known-media stages: names and aliases in prompts (RightsNames), references through the bank;
        the holder's choice decides: blocked (opt-out), allowed (opt-in: attribution in the manifest), review

A work's row only moves forward (an older offset never overwrites a newer one), so a replay is harmless
and an empty database rebuilt from the topic and the asset store ends in the same state.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime, timezone

from sqlalchemy import func, select
from sqlalchemy.orm import sessionmaker

from pipeline.audit.db import RightsWorkRow
from pipeline.hashing.banking import MediaBanker
from pipeline.hashing.banks import RIGHTS_REFERENCES
from pipeline.likeness.names import LexiconEntry, NameMatch, NameMatcher
from schemas.models import RightsEvent


@dataclass(frozen=True)
class ProtectedWork:
    work_id: str
    holder_id: str
    holder_name: str
    kind: str
    name: str
    aliases: tuple[str, ...]
    choice: str
    references_hashed: int

    def record(self) -> dict:
        return {"work_id": self.work_id, "name": self.name, "kind": self.kind, "holder_id": self.holder_id,
                "holder": self.holder_name, "choice": self.choice}


class SqlRightsRegistry:
    """rights.registry applied to rights_works and the rights_references bank (an `Applies` for its feed)."""

    def __init__(self, sessions: sessionmaker, banker: MediaBanker) -> None:
        self._sessions = sessions
        self._banker = banker

    def apply(self, event: RightsEvent, offset: int) -> bool:
        with self._sessions() as session:
            existing = session.get(RightsWorkRow, event.work_id)
            if existing is not None and existing.source_offset >= offset:
                return False
        # Hashing reads files: done before the transaction, which then replaces the work's entries at once.
        hashed = (self._banker.hash_references(RIGHTS_REFERENCES, list(event.reference_media), event.work_id,
                                               f"rights.registry:{offset}", event.holder_id, note=event.name)
                  if not event.removed else None)
        with self._sessions.begin() as session:
            row = session.get(RightsWorkRow, event.work_id, with_for_update=True)
            if row is not None and row.source_offset >= offset:
                return False
            if row is None:
                row = RightsWorkRow(work_id=event.work_id)
                session.add(row)
            row.holder_id, row.holder_name, row.kind = event.holder_id, event.holder_name, event.kind.value
            row.name, row.aliases, row.choice = event.name, list(event.aliases), event.choice.value
            row.reference_media = [media.model_dump() for media in event.reference_media]
            row.references_hashed = hashed.files if hashed else 0
            row.reference_problems = hashed.problems if hashed else None
            row.removed, row.source_offset, row.updated_at = event.removed, offset, datetime.now(timezone.utc)
            self._banker.replace(session, RIGHTS_REFERENCES, event.work_id, hashed.rows if hashed else [])
        return True

    def works(self) -> list[ProtectedWork]:
        with self._sessions() as session:
            rows = session.scalars(select(RightsWorkRow).where(RightsWorkRow.removed.is_(False))
                                   .order_by(RightsWorkRow.holder_id, RightsWorkRow.work_id)).all()
        return [_work(row) for row in rows]

    def get(self, work_id: str) -> ProtectedWork | None:
        with self._sessions() as session:
            row = session.get(RightsWorkRow, work_id)
        return None if row is None or row.removed else _work(row)

    def listing(self) -> list[dict]:
        with self._sessions() as session:
            rows = session.scalars(select(RightsWorkRow).order_by(RightsWorkRow.holder_id,
                                                                  RightsWorkRow.work_id)).all()
        return [{"work_id": r.work_id, "holder": r.holder_name, "kind": r.kind, "name": r.name,
                 "aliases": ", ".join(r.aliases), "choice": "removed" if r.removed else r.choice,
                 "references": f"{r.references_hashed}/{len(r.reference_media)}",
                 "problems": "; ".join(r.reference_problems or [])} for r in rows]

    def version(self) -> tuple[int, int]:
        """Changes whenever any work does (how many, and the newest offset applied)."""
        with self._sessions() as session:
            count, newest = session.execute(select(func.count(RightsWorkRow.work_id),
                                                   func.max(RightsWorkRow.source_offset))).one()
        return count, newest if newest is not None else -1


def _work(row: RightsWorkRow) -> ProtectedWork:
    return ProtectedWork(row.work_id, row.holder_id, row.holder_name, row.kind, row.name, tuple(row.aliases),
                         row.choice, row.references_hashed)


class RightsNames:
    """Protected works' names and aliases in prompts, with the name matcher's folding; rebuilt on change."""

    def __init__(self, registry: SqlRightsRegistry, allow_list: list[str] = (), min_alias_length: int = 3) -> None:
        self._registry = registry
        self._allow_list = list(allow_list)
        self._min_alias_length = min_alias_length
        self._lock = threading.Lock()
        self._version: tuple[int, int] | None = None
        self._matcher = NameMatcher([])
        self._works: dict[str, ProtectedWork] = {}

    def refresh(self) -> None:
        version = self._registry.version()
        with self._lock:
            if version == self._version:
                return
            works = self._registry.works()
            self._works = {work.work_id: work for work in works}
            self._matcher = NameMatcher([LexiconEntry(work.work_id, (work.name, *work.aliases)) for work in works],
                                        self._allow_list, self._min_alias_length)
            self._version = version

    def find(self, text: str) -> list[tuple[ProtectedWork, NameMatch]]:
        with self._lock:
            matcher, works = self._matcher, self._works
        return [(works[match.name], match) for match in matcher.find(text) if match.name in works]

    def work(self, work_id: str) -> ProtectedWork | None:
        with self._lock:
            return self._works.get(work_id)

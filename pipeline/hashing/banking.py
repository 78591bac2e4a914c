"""Putting media into a bank: read each file, hash its frames (video.py), one entry row per kept hash.

Used by takedowns (the taken-down video's frames), the rights registry (reference images) and
`trustreel bank add --media`. A file that cannot be read is reported, never half-added.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy.orm import Session

from pipeline.hashing.banks import BankStore, entry_row
from pipeline.hashing.signals import PDQ, signal_type
from pipeline.hashing.video import Sampling, media_hashes
from pipeline.media.assets import AssetIntegrityError, AssetStore
from pipeline.media.frames import UnreadableMedia
from schemas.models import MediaReference


@dataclass
class Hashed:
    rows: list[dict] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    files: int = 0


@dataclass(frozen=True)
class MediaBanker:
    store: BankStore
    assets: AssetStore
    sampling: Sampling = Sampling()
    signal: str = PDQ

    def hash_references(self, bank: str, references: list[MediaReference], content_id: str, source: str,
                        added_by: str, note: str = "") -> Hashed:
        """Entry rows for every kept frame of every readable file (nothing is written yet)."""
        hashed = Hashed()
        for reference in references:
            try:
                data = self.assets.get(reference)
            except AssetIntegrityError as problem:
                hashed.problems.append(f"{reference.uri}: {problem}")
                continue
            self._hash_bytes(hashed, bank, data, reference.media_type, reference.sha256[:16], content_id, source,
                             added_by, note)
        return hashed

    def hash_bytes(self, bank: str, data: bytes, media_type: str, label: str, content_id: str, source: str,
                   added_by: str, note: str = "") -> Hashed:
        hashed = Hashed()
        self._hash_bytes(hashed, bank, data, media_type, label, content_id, source, added_by, note)
        return hashed

    def _hash_bytes(self, hashed: Hashed, bank: str, data: bytes, media_type: str, label: str, content_id: str,
                    source: str, added_by: str, note: str) -> None:
        try:
            found = media_hashes(signal_type(self.signal), data, media_type, self.sampling)
        except UnreadableMedia as problem:
            hashed.problems.append(f"{label}: {problem}")
            return
        if not found.kept:
            hashed.problems.append(f"{label}: no frame is detailed enough to hash (quality below "
                                   f"{self.sampling.min_quality})")
            return
        hashed.files += 1
        hashed.rows.extend(entry_row(bank, self.signal, item.hash.hex, content_id, item.hash.quality,
                                     note or f"{label} frame {item.frame}", source, added_by)
                           for item in found.kept)

    def replace(self, session: Session, bank: str, content_id: str, rows: list[dict]) -> int:
        """In the caller's transaction: `content_id`'s entries in the bank become these rows."""
        self.store.ensure_system_bank(session, bank)
        self.store.remove(bank, content_id=content_id, session=session)
        return self.store.insert(session, rows)

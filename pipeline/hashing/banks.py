"""Hash banks: lists of known media, stored in the audit database, searched fast.

    trustreel bank create NAME --action block|review|attribute --distance 31
    trustreel bank add | import  -> hash_bank_entries (bank, signal type, hash, what it is of, who, when)
    takedowns  -> bank "taken_down" (a taken-down video's frames; an appeal that restores it removes them)
    rights.registry references -> bank "rights_references" (action "rights": the holder's choice decides)
    worker: BankSearch.search(hashes) -> every entry within its bank's distance, nearest first
      indexes rebuilt from the tables whenever hash_bank_versions moves (one row read per check)
      exact (faiss IndexBinaryFlat) up to `exact_up_to` hashes per bank; beyond, a multi-index hash
      (IndexBinaryMultiHash, 16 tables of 16 bits): with nflip = distance // 16, any hash within the
      distance shares at most nflip differing bits with the query in some table, so it is still exact
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Iterable

import faiss
import numpy as np
from sqlalchemy import delete, func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from pipeline.audit.db import HashBankEntryRow, HashBankRow, HashBankVersionRow, bump_version, read_version
from pipeline.hashing.signals import PDQ, signal_type

ACTIONS = ("block", "review", "attribute", "rights")
TAKEN_DOWN = "taken_down"
RIGHTS_REFERENCES = "rights_references"
DEFAULT_DISTANCE = 31
_ROWS_PER_INSERT = 2000  # 10 columns each: below SQLite's (32,766) and PostgreSQL's (65,535) bound-parameter limits
SYSTEM_BANKS = {
    TAKEN_DOWN: ("block", "Frames of videos taken off the feed; an appeal that restores a video removes its own."),
    RIGHTS_REFERENCES: ("rights", "Rights holders' reference images (rights.registry); the holder's choice decides."),
}


class BankError(ValueError):
    """A bank operation that cannot be done; the message says why."""


@dataclass(frozen=True)
class Bank:
    name: str
    action: str
    distance: int
    source: str
    description: str


@dataclass(frozen=True)
class NewEntry:
    hash: str  # as exchanged (PDQ: 64 hex digits)
    content_id: str
    quality: int | None = None
    note: str = ""


@dataclass(frozen=True)
class BankMatch:
    bank: str
    action: str
    entry_id: int
    content_id: str
    note: str
    distance: int
    query: int  # which query hash matched

    def record(self) -> dict:
        return {"bank": self.bank, "action": self.action, "entry": self.entry_id, "content_id": self.content_id,
                "distance": self.distance}


class BankStore:
    def __init__(self, sessions: sessionmaker) -> None:
        self._sessions = sessions

    def create(self, name: str, action: str, distance: int = DEFAULT_DISTANCE, source: str = "manual",
               description: str = "", created_by: str = "operator") -> Bank:
        if action not in ACTIONS:
            raise BankError(f"action must be one of {', '.join(ACTIONS)}, not {action!r}")
        if not 0 <= distance <= 128:
            raise BankError(f"distance {distance} is outside 0..128 bits")
        with self._sessions.begin() as session:
            if session.get(HashBankRow, name) is not None:
                raise BankError(f"bank {name} already exists")
            session.add(HashBankRow(name=name, action=action, distance=distance, source=source[:300],
                                    description=description, created_by=created_by[:128],
                                    created_at=datetime.now(timezone.utc)))
        return Bank(name, action, distance, source, description)

    def ensure_system_bank(self, session: Session, name: str) -> None:
        """In the caller's transaction: the taken_down and rights_references banks exist (made on first use)."""
        if session.get(HashBankRow, name) is None:
            action, description = SYSTEM_BANKS[name]
            session.add(HashBankRow(name=name, action=action, distance=DEFAULT_DISTANCE, source="trustreel",
                                    description=description, created_by="trustreel",
                                    created_at=datetime.now(timezone.utc)))
            session.flush()

    def banks(self) -> list[tuple[Bank, int]]:
        """Every bank with its number of entries."""
        with self._sessions() as session:
            counts = dict(session.execute(select(HashBankEntryRow.bank, func.count(HashBankEntryRow.id))
                                          .group_by(HashBankEntryRow.bank)).all())
            return [(_bank(row), counts.get(row.name, 0))
                    for row in session.scalars(select(HashBankRow).order_by(HashBankRow.name))]

    def get(self, name: str) -> Bank:
        with self._sessions() as session:
            row = session.get(HashBankRow, name)
        if row is None:
            raise BankError(f"there is no bank {name} (trustreel bank list shows them)")
        return _bank(row)

    def add(self, bank: str, entries: Iterable[NewEntry], source: str, added_by: str,
            signal: str = PDQ) -> tuple[int, int]:
        """Validate and store entries; returns (added, already there). An invalid hash stops the whole add."""
        parse = signal_type(signal).parse
        with self._sessions.begin() as session:
            if session.get(HashBankRow, bank) is None:
                raise BankError(f"there is no bank {bank} (create it first: trustreel bank create)")
            rows = []
            for number, entry in enumerate(entries, start=1):
                try:
                    value = parse(entry.hash).hex()
                except ValueError as problem:
                    raise BankError(f"entry {number}: {problem}") from None
                rows.append(_entry_row(bank, signal, value, entry, source, added_by))
            added = self.insert(session, rows)
        return added, len(rows) - added

    def insert(self, session: Session, rows: list[dict]) -> int:
        """In the caller's transaction: insert entry rows, skipping ones the bank already has; bumps the version."""
        if not rows:
            return 0
        unique = list({(r["bank"], r["signal_type"], r["hash"], r["content_id"]): r for r in rows}.values())
        dialect = session.get_bind().dialect.name
        insert = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}.get(dialect)
        added = 0
        for start in range(0, len(unique), _ROWS_PER_INSERT):
            chunk = unique[start:start + _ROWS_PER_INSERT]
            if insert is not None:
                result = session.execute(insert(HashBankEntryRow).values(chunk).on_conflict_do_nothing())
                added += result.rowcount
            else:  # another database: one at a time
                for row in chunk:
                    exists = session.scalar(select(HashBankEntryRow.id).filter_by(
                        bank=row["bank"], signal_type=row["signal_type"], hash=row["hash"],
                        content_id=row["content_id"]))
                    if exists is None:
                        session.add(HashBankEntryRow(**row))
                        added += 1
        for signal in {r["signal_type"] for r in unique}:
            _bump(session, signal)
        return added

    def remove(self, bank: str, content_id: str | None = None, entry_ids: list[int] | None = None,
               session: Session | None = None) -> int:
        """Remove a content id's entries, or entries by id, or (neither given) the whole bank."""
        if session is None:
            with self._sessions.begin() as own:
                return self.remove(bank, content_id, entry_ids, own)
        query = delete(HashBankEntryRow).where(HashBankEntryRow.bank == bank)
        if content_id is not None:
            query = query.where(HashBankEntryRow.content_id == content_id)
        if entry_ids is not None:
            query = query.where(HashBankEntryRow.id.in_(entry_ids))
        signals = set(session.scalars(select(HashBankEntryRow.signal_type).where(HashBankEntryRow.bank == bank)
                                      .distinct()))
        removed = session.execute(query).rowcount
        if content_id is None and entry_ids is None:
            session.execute(delete(HashBankRow).where(HashBankRow.name == bank))
        for signal in signals:
            _bump(session, signal)
        return removed

    def entries(self, bank: str) -> list[HashBankEntryRow]:
        with self._sessions() as session:
            return list(session.scalars(select(HashBankEntryRow).where(HashBankEntryRow.bank == bank)
                                        .order_by(HashBankEntryRow.id)))

    def version(self, signal: str) -> int:
        return read_version(self._sessions, HashBankVersionRow, signal)

    def snapshot(self, signal: str) -> tuple[dict[str, Bank], dict[str, tuple[np.ndarray, list[tuple]]]]:
        """Every bank, and per bank its hashes (n x bytes) with (entry id, content id, note) per row."""
        with self._sessions() as session:
            banks = {row.name: _bank(row) for row in session.scalars(select(HashBankRow))}
            rows = session.execute(select(HashBankEntryRow.bank, HashBankEntryRow.hash, HashBankEntryRow.id,
                                          HashBankEntryRow.content_id, HashBankEntryRow.note)
                                   .where(HashBankEntryRow.signal_type == signal)
                                   .order_by(HashBankEntryRow.id)).all()
        grouped: dict[str, list] = {}
        for bank, value, entry_id, content_id, note in rows:
            grouped.setdefault(bank, []).append((value, (entry_id, content_id, note)))
        return banks, {bank: (np.frombuffer(bytes.fromhex("".join(v for v, _ in items)), np.uint8)
                              .reshape(len(items), -1), [label for _, label in items])
                       for bank, items in grouped.items()}


def entry_row(bank: str, signal: str, value: str, content_id: str, quality: int | None, note: str, source: str,
              added_by: str) -> dict:
    return _entry_row(bank, signal, value, NewEntry(value, content_id, quality, note), source, added_by)


def _entry_row(bank: str, signal: str, value: str, entry: NewEntry, source: str, added_by: str) -> dict:
    return {"bank": bank, "signal_type": signal, "hash": value, "quality": entry.quality,
            "content_id": (entry.content_id or value)[:200], "note": entry.note[:2000], "source": source[:300],
            "added_by": added_by[:128], "added_at": datetime.now(timezone.utc)}


def _bank(row: HashBankRow) -> Bank:
    return Bank(row.name, row.action, row.distance, row.source, row.description)


def _bump(session: Session, signal: str) -> None:
    bump_version(session, HashBankVersionRow, signal)


class HashIndex:
    """Range search over packed binary hashes: everything within `distance` bits of a query."""

    def __init__(self, hashes: np.ndarray, exact_up_to: int = 200_000, tables: int = 16) -> None:
        hashes = np.ascontiguousarray(hashes, dtype=np.uint8)
        bits = hashes.shape[1] * 8
        if len(hashes) > exact_up_to:
            self.index = faiss.IndexBinaryMultiHash(bits, tables, bits // tables)
            self._tables = tables
            self.kind = "multi-index hash"
        else:
            self.index = faiss.IndexBinaryFlat(bits)
            self._tables = 0
            self.kind = "flat"
        self.index.add(hashes)

    def within(self, queries: np.ndarray, distance: int) -> list[list[tuple[int, int]]]:
        """Per query: (row, distance) of every hash within `distance` bits, nearest first."""
        if self._tables:
            self.index.nflip = distance // self._tables
        limits, distances, rows = self.index.range_search(np.ascontiguousarray(queries, dtype=np.uint8),
                                                          distance + 1)
        found = []
        for q in range(len(queries)):
            start, end = int(limits[q]), int(limits[q + 1])
            pairs = sorted(zip(distances[start:end].astype(int).tolist(), rows[start:end].tolist()))
            found.append([(row, dist) for dist, row in pairs])
        return found


class BankSearch:
    """One signal type's banks as indexes, reloaded by refresh() when the tables change."""

    def __init__(self, store: BankStore, signal: str = PDQ, exact_up_to: int = 200_000) -> None:
        self._store = store
        self._signal = signal
        self._exact_up_to = exact_up_to
        self._lock = threading.Lock()
        self._version = -1
        self._banks: dict[str, Bank] = {}
        self._indexes: dict[str, tuple[HashIndex, list[tuple]]] = {}

    def refresh(self) -> None:
        version = self._store.version(self._signal)
        with self._lock:
            if version == self._version:
                return
            banks, hashes = self._store.snapshot(self._signal)
            self._banks = banks
            self._indexes = {bank: (HashIndex(matrix, self._exact_up_to), labels)
                             for bank, (matrix, labels) in hashes.items()}
            self._version = version

    def search(self, hashes: list[bytes]) -> list[BankMatch]:
        """Every bank entry within its bank's distance of any of the hashes, nearest first."""
        if not hashes:
            return []
        queries = np.frombuffer(b"".join(hashes), np.uint8).reshape(len(hashes), -1)
        matches = []
        with self._lock:
            indexes, banks = self._indexes, self._banks
        for bank_name, (index, labels) in indexes.items():
            bank = banks.get(bank_name)
            if bank is None:
                continue
            for query, found in enumerate(index.within(queries, bank.distance)):
                for row, distance in found:
                    entry_id, content_id, note = labels[row]
                    matches.append(BankMatch(bank.name, bank.action, entry_id, content_id, note, distance, query))
        return sorted(matches, key=lambda m: (m.distance, m.bank, m.entry_id))

    def bank(self, name: str) -> Bank | None:
        return self._banks.get(name)

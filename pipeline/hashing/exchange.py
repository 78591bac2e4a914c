"""Hash lists in and out, in the formats other systems already use.

    te    ThreatExchange's signal file, which HMA's and the threatexchange CLI's "local file" exchange
          read: one "<signal type> <hash>" per line (a bare hash is taken as the bank's signal type).
          Read with threatexchange's own LocalFileSignalExchangeAPI, so what it accepts, we accept.
    csv   what PDQ's reference hashers print and spreadsheets keep: hash,quality,filename (a header row
          naming hash / quality / content_id|filename|label / note columns is recognised).

Lines of other signal types are counted and skipped, never guessed at.
"""

from __future__ import annotations

import csv
import io
import tempfile
from dataclasses import dataclass
from pathlib import Path

from pipeline.hashing.banks import NewEntry
from pipeline.hashing.signals import PDQ

FORMATS = ("te", "csv")
_ID_COLUMNS = ("content_id", "filename", "label", "id", "name")


@dataclass(frozen=True)
class ReadList:
    entries: list[NewEntry]
    skipped: dict[str, int]  # other signal type -> how many lines


def read_hash_list(path: Path, file_format: str, signal: str = PDQ) -> ReadList:
    if file_format == "te":
        return _read_te(path, signal)
    if file_format == "csv":
        return ReadList(_read_csv(path.read_text(encoding="utf-8")), {})
    raise ValueError(f"format must be one of {', '.join(FORMATS)}")


def _read_te(path: Path, signal: str) -> ReadList:
    from threatexchange.exchanges.impl.file_api import FileCollaborationConfig, LocalFileSignalExchangeAPI

    # A bare hash has no type on its line; the file API then splits it at the first space and gets nothing.
    text = path.read_text(encoding="utf-8")
    typed = "\n".join(line if " " in line.strip() else f"{signal} {line.strip()}"
                      for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#"))
    with tempfile.TemporaryDirectory() as folder:
        staged = Path(folder) / path.name
        staged.write_text(typed + "\n", encoding="utf-8")
        api = LocalFileSignalExchangeAPI(FileCollaborationConfig(name=path.name, filename=str(staged)))
        entries, skipped = [], {}
        for delta in api.fetch_iter([], None):
            for (kind, value) in delta.updates:
                if kind == signal:
                    entries.append(NewEntry(hash=value, content_id=value))
                else:
                    skipped[kind] = skipped.get(kind, 0) + 1
    return ReadList(entries, skipped)


def _read_csv(text: str) -> list[NewEntry]:
    rows = [row for row in csv.reader(io.StringIO(text)) if row and any(cell.strip() for cell in row)]
    if not rows:
        return []
    header = [cell.strip().lower() for cell in rows[0]]
    if {"hash", "pdq", "signal"} & set(header):
        column = {name: header.index(name) for name in header}
        hash_at = next(column[name] for name in ("hash", "pdq", "signal") if name in column)
        quality_at = column.get("quality")
        id_at = next((column[name] for name in _ID_COLUMNS if name in column), None)
        note_at = column.get("note")
        rows = rows[1:]
    else:
        hash_at, quality_at, id_at, note_at = 0, 1, 2, 3
    entries = []
    for row in rows:
        cell = lambda at: row[at].strip() if at is not None and at < len(row) else ""  # noqa: E731
        quality = cell(quality_at)
        entries.append(NewEntry(hash=cell(hash_at), content_id=cell(id_at) or cell(hash_at).lower(),
                                quality=int(quality) if quality.isdigit() else None, note=cell(note_at)))
    return entries


def write_hash_list(rows: list, file_format: str, signal: str = PDQ) -> str:
    """Entries (hash_bank_entries rows) as text in the format asked for."""
    if file_format == "te":
        return "".join(f"{signal} {row.hash}\n" for row in rows if row.signal_type == signal)
    if file_format == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(["hash", "quality", "content_id", "note", "added_by", "added_at", "source"])
        for row in rows:
            if row.signal_type == signal:
                writer.writerow([row.hash, "" if row.quality is None else row.quality, row.content_id, row.note,
                                 row.added_by, row.added_at.isoformat(), row.source])
        return buffer.getvalue()
    raise ValueError(f"format must be one of {', '.join(FORMATS)}")

"""Retention: prompts and media references expire; the decision skeleton stays.

    trustreel audit expire [--older-than-days N]   (default TRUSTREEL_RETENTION_DAYS; run it from cron)
      requests first seen before the cutoff, not yet expired:
        requests.prompt -> "", requests.original -> NULL, expired_at set
        decisions: output_payload emptied (it repeats the prompt and media), media/prompt keys dropped
                   from details; stage, outcome, reasons, policy id + version and times are kept
        resolved reviews: payload emptied
      dead letters received before the cutoff: original bytes emptied (code, error and hash stay)
    Provenance marks and takedowns are kept: they are how a video in the wild is traced and answered for.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from sqlalchemy import select, update
from sqlalchemy.orm import sessionmaker

from pipeline.audit.db import DeadLetterRow, DecisionRow, RequestRow, ReviewRow

PERSONAL_DETAIL_KEYS = frozenset({"conditioning", "video", "faces", "names", "signed_sha256", "source_sha256",
                                  "watermark_id", "prompt"})
"""Decision detail keys that carry prompt text or media references."""


@dataclass(frozen=True)
class RetentionResult:
    requests: int
    decisions: int
    dead_letters: int


def expire(sessions: sessionmaker, older_than: timedelta, now: datetime | None = None,
           batch_size: int = 500) -> RetentionResult:
    now = now or datetime.now(timezone.utc)
    cutoff = now - older_than
    requests = decisions = 0
    while True:  # in batches, so a first run over millions of rows never holds one huge transaction
        with sessions.begin() as session:
            ids = list(session.scalars(select(RequestRow.request_id).where(
                RequestRow.first_seen_at < cutoff, RequestRow.expired_at.is_(None)).limit(batch_size)))
            if not ids:
                break
            session.execute(update(RequestRow).where(RequestRow.request_id.in_(ids))
                            .values(prompt="", original=None, expired_at=now))
            for row in session.scalars(select(DecisionRow).where(DecisionRow.request_id.in_(ids))):
                row.output_payload = b""
                row.details = {key: value for key, value in (row.details or {}).items()
                               if key not in PERSONAL_DETAIL_KEYS}
                decisions += 1
            session.execute(update(ReviewRow).where(ReviewRow.request_id.in_(ids), ReviewRow.status != "pending")
                            .values(payload=b""))
            requests += len(ids)
    with sessions.begin() as session:
        letters = session.execute(update(DeadLetterRow).where(DeadLetterRow.received_at < cutoff,
                                                               DeadLetterRow.original != b"")
                                  .values(original=b"")).rowcount
    return RetentionResult(requests=requests, decisions=decisions, dead_letters=letters)

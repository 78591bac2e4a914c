"""Send a message the audit database recorded exactly once, from tools that are not stage workers.

Reviews resolved by people (CLI, console) and takedowns sent by sweeps, confirmed reports and owners'
removals are recorded first, then sent outside any Kafka transaction. Two things could send one twice:
two processes at once (a double click, a sweep run twice), and a crash after the send but before
"sent" was written. So the row carries a send claim:

    claim   UPDATE row SET send_claimed_at = now, send_partition = P, send_after = end offset of P
            WHERE sent_at IS NULL AND send_claimed_at IS <what this process read>   (compare and set)
            -> exactly one process holds it; another one, while it is fresh, sends nothing ("being sent")
    send    to partition P (the key's own partition), waiting for the broker's ack
    mark    sent_at = now
    a claim older than the lease was left by a process that died: the next claimant first reads P from the
    dead claim's send_after; if the record is there the dead process did send it, and it is only marked.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

from sqlalchemy import select, update
from sqlalchemy.orm import sessionmaker

from pipeline.transport.positions import KafkaPositions
from pipeline.transport.transactions import OutgoingMessage

Send = Callable[[OutgoingMessage, int], None]  # (message, partition): sends and waits for the ack
DEFAULT_LEASE = timedelta(seconds=60)


class SendResult(str, enum.Enum):
    SENT = "sent"
    SENT_BEFORE = "sent before"
    FOUND_ON_TOPIC = "found on the topic (sent before a crash), marked sent"
    BEING_SENT = "being sent by another process"


def send_once(sessions: sessionmaker, table: type, where: tuple[Any, ...], message: OutgoingMessage, send: Send,
              positions: KafkaPositions, lease: timedelta = DEFAULT_LEASE,
              now: Callable[[], datetime] = lambda: datetime.now(timezone.utc)) -> SendResult:
    """Send `message`, recorded in the one row of `table` matching `where`, unless it was or is being sent."""
    with sessions() as session:
        row = session.scalar(select(table).where(*where))
        if row is None:
            raise LookupError(f"no {table.__tablename__} row to send from")
        if row.sent_at is not None:
            return SendResult.SENT_BEFORE
        previous = (row.send_claimed_at, row.send_partition, row.send_after)
    started = now()
    if previous[0] is not None and previous[0] > started - lease:
        return SendResult.BEING_SENT
    partition = positions.partition_for(message.topic, message.key)
    after = positions.end_of(message.topic, partition)
    same_claim = table.send_claimed_at.is_(None) if previous[0] is None else table.send_claimed_at == previous[0]
    with sessions.begin() as session:
        claimed = session.execute(update(table).where(*where, table.sent_at.is_(None), same_claim)
                                  .values(send_claimed_at=started, send_partition=partition,
                                          send_after=after)).rowcount
    if not claimed:
        return SendResult.BEING_SENT
    if previous[0] is not None and previous[1] is not None and previous[2] is not None and \
            positions.contains(message.topic, previous[1], previous[2], message.key, message.value):
        _mark(sessions, table, where, now())
        return SendResult.FOUND_ON_TOPIC
    send(message, partition)
    _mark(sessions, table, where, now())
    return SendResult.SENT


def _mark(sessions: sessionmaker, table: type, where: tuple[Any, ...], at: datetime) -> None:
    with sessions.begin() as session:
        session.execute(update(table).where(*where).values(sent_at=at))


@dataclass(frozen=True)
class OnceSender:
    """What a tool needs to send recorded rows once: its producer's send, the positions reader, the lease."""

    send: Send
    positions: KafkaPositions
    lease: timedelta = DEFAULT_LEASE
    now: Callable[[], datetime] = field(default=lambda: datetime.now(timezone.utc))

    def __call__(self, sessions: sessionmaker, table: type, where: tuple[Any, ...],
                 message: OutgoingMessage) -> SendResult:
        return send_once(sessions, table, where, message, self.send, self.positions, self.lease, self.now)

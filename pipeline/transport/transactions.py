"""Exactly-once hand-off: a stage's output and its input offset commit in one Kafka transaction.

    input record (topic T, partition P, offset O)
      -> producer "<group>:<T>:<P>" begins a transaction
      -> send outputs (next topic / gen.rejected / feed.published / gen.deadletter)
      -> add offset O+1 for the consumer group to the same transaction
      -> commit: outputs and progress become visible together, or neither does

One transactional id per input partition means the worker that takes over a partition
after a crash or rebalance fences the old one (its late commits fail), so a stalled
"zombie" cannot publish a second copy. A worker closes its producers when partitions are
revoked, so one it gets back starts a new epoch rather than reusing a fenced producer.
The runtime sends one transaction per input partition per batch (pipeline.runtime.runner). Readers must use isolation_level=read_committed;
the stage workers do (see pipeline.transport.faust_transport).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from dataclasses import dataclass
from typing import Callable

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError, ProducerFenced
from aiokafka.structs import TopicPartition

from pipeline.transport.security import KafkaConnection
from schemas.models import DeadLetterSource

log = logging.getLogger("trustreel.transactions")


@dataclass(frozen=True)
class OutgoingMessage:
    topic: str
    key: bytes
    value: bytes
    headers: tuple[tuple[str, bytes], ...] = ()  # trace context (pipeline.observability.tracing)


class FencedOut(Exception):
    """Another worker now owns this input partition; this worker must not write for it."""


Entry = tuple[DeadLetterSource, list[OutgoingMessage]]
"""An input position and the messages its processing sends."""


class TransactionalSender:
    def __init__(self, connection: KafkaConnection, group_id: str, max_request_size: int,
                 transaction_timeout_ms: int = 60000, owns: Callable[[str, int], bool] | None = None) -> None:
        self._connection = connection
        self._group_id = group_id
        self._max_request_size = max_request_size
        self._transaction_timeout_ms = transaction_timeout_ms
        self._owns = owns
        self._producers: dict[tuple[str, int], AIOKafkaProducer] = {}
        self._locks: dict[tuple[str, int], asyncio.Lock] = {}
        self._next_offsets: dict[tuple[str, int], int] = {}
        self._offsets_reader = CommittedOffsets(connection, group_id)

    async def _producer_for(self, topic: str, partition: int) -> AIOKafkaProducer:
        producer = self._producers.get((topic, partition))
        if producer is None:
            producer = AIOKafkaProducer(
                **self._connection.client_options(),
                transactional_id=f"{self._group_id}:{topic}:{partition}",
                enable_idempotence=True,
                acks="all",
                max_request_size=self._max_request_size,
                transaction_timeout_ms=self._transaction_timeout_ms,
                client_id=f"{self._group_id}-tx",
            )
            await producer.start()  # init_transactions: aborts whatever a dead predecessor left open
            self._producers[(topic, partition)] = producer
        return producer

    async def send_atomically(self, source: DeadLetterSource, messages: list[OutgoingMessage]) -> bool:
        """Commit `messages` and the input position after `source` together, or raise and commit nothing.
        False: an earlier transaction already committed this position, so nothing was sent again."""
        return (await self.send_batch([(source, messages)]))[0]

    async def send_batch(self, entries: list[Entry]) -> list[bool]:
        """One transaction for positions of one partition (in order): their messages plus the offset after
        the last. Positions the group has already committed past are skipped (False for them).

        Why skip: a worker that lost the partition in a rebalance it had not noticed yet (a "zombie")
        can commit after the new owner read the committed offset; the new owner then meets
        positions whose output is already out. After this worker's producer has started (which
        fences the zombie), the committed offset is final, so it is read then and tracked from there.
        """
        source = entries[0][0]
        slot = (source.topic, source.partition)
        if any((entry.topic, entry.partition) != slot for entry, _ in entries):
            raise ValueError("a transaction covers positions of one input partition")
        async with self._locks.setdefault(slot, asyncio.Lock()):
            if self._owns is not None and not self._owns(*slot):
                raise FencedOut(f"{source.topic}[{source.partition}] is no longer assigned to this worker")
            try:
                producer = await self._producer_for(*slot)
                start = self._next_offsets.get(slot)
                if start is None:
                    start = await asyncio.to_thread(self._offsets_reader.committed, *slot)
                    self._next_offsets[slot] = start
                fresh = [(position, messages) for position, messages in entries if position.offset >= start]
                if fresh:
                    async with producer.transaction():
                        for _, messages in fresh:
                            for message in messages:
                                await producer.send(message.topic, value=message.value, key=message.key,
                                                    headers=list(message.headers) or None)
                        await producer.send_offsets_to_transaction(
                            {TopicPartition(*slot): fresh[-1][0].offset + 1}, self._group_id)
                    self._next_offsets[slot] = fresh[-1][0].offset + 1
                return [position.offset >= start for position, _ in entries]
            except ProducerFenced as exc:
                await self._discard(slot)
                raise FencedOut(f"{source.topic}[{source.partition}] moved to another worker") from exc
            except (KafkaError, OffsetsUnreadable) as exc:
                await self._discard(slot)  # a fresh producer re-initialises the transaction state
                raise ConnectionError(f"transaction for {source.topic}[{source.partition}] failed: {exc!r}") from exc

    async def forget(self, slots: set[tuple[str, int]]) -> None:
        """Close the producers of partitions this worker no longer owns (called on revocation).

        A producer kept for a partition that went to another worker was fenced by that worker's
        producer; if the partition came back, reusing it would fail with ProducerFenced although this
        worker is the owner again, and its records would sit unprocessed. A fresh producer starts a
        new epoch instead (and fences whatever a previous owner left open).
        """
        for slot in slots:
            async with self._locks.setdefault(slot, asyncio.Lock()):
                await self._discard(slot)

    async def _discard(self, slot: tuple[str, int]) -> None:
        self._next_offsets.pop(slot, None)  # read again from the group after the next producer starts
        producer = self._producers.pop(slot, None)
        if producer is not None:
            try:
                await producer.stop()
            except KafkaError:
                log.warning("closing the producer for %s failed", slot, exc_info=True)

    async def close(self) -> None:
        for slot in list(self._producers):
            await self._discard(slot)
        await asyncio.to_thread(self._offsets_reader.close)


class OffsetsUnreadable(Exception):
    """The group's committed offset could not be read (broker unreachable): retried like an outage."""


class CommittedOffsets:
    """Reads the group's committed offset of a partition (a kafka-python consumer that never joins)."""

    def __init__(self, connection: KafkaConnection, group_id: str) -> None:
        self._connection = connection
        self._group_id = group_id
        self._consumer = None
        self._lock = threading.Lock()

    def committed(self, topic: str, partition: int) -> int:
        from kafka import KafkaConsumer
        from kafka import TopicPartition as SyncTopicPartition

        with self._lock:
            try:
                if self._consumer is None:
                    self._consumer = KafkaConsumer(**self._connection.client_options(), group_id=self._group_id,
                                                   enable_auto_commit=False, client_id=f"{self._group_id}-offsets")
                return self._consumer.committed(SyncTopicPartition(topic, partition)) or 0
            except Exception as exc:
                self._close()
                raise OffsetsUnreadable(f"committed offset of {topic}[{partition}]: {exc!r}") from exc

    def _close(self) -> None:
        if self._consumer is not None:
            try:
                self._consumer.close(autocommit=False)
            except Exception:  # closing a broken client must not hide why it broke
                log.debug("closing the offsets reader failed", exc_info=True)
        self._consumer = None

    def close(self) -> None:
        with self._lock:
            self._close()

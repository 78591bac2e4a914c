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
The runtime sends one transaction per input partition per batch (pipeline.runtime). Readers must use isolation_level=read_committed;
the stage workers do (see pipeline.faust_transport).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError, ProducerFenced
from aiokafka.structs import TopicPartition

from schemas.models import DeadLetterSource

log = logging.getLogger("trustreel.transactions")


@dataclass(frozen=True)
class OutgoingMessage:
    topic: str
    key: bytes
    value: bytes


class FencedOut(Exception):
    """Another worker now owns this input partition; this worker must not write for it."""


class TransactionalSender:
    def __init__(self, bootstrap: str, group_id: str, max_request_size: int,
                 transaction_timeout_ms: int = 60000) -> None:
        self._bootstrap = bootstrap
        self._group_id = group_id
        self._max_request_size = max_request_size
        self._transaction_timeout_ms = transaction_timeout_ms
        self._producers: dict[tuple[str, int], AIOKafkaProducer] = {}
        self._locks: dict[tuple[str, int], asyncio.Lock] = {}

    async def _producer_for(self, topic: str, partition: int) -> AIOKafkaProducer:
        producer = self._producers.get((topic, partition))
        if producer is None:
            producer = AIOKafkaProducer(
                bootstrap_servers=self._bootstrap,
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

    async def send_atomically(self, source: DeadLetterSource, messages: list[OutgoingMessage]) -> None:
        """Commit `messages` and the input position after `source` together, or raise and commit nothing."""
        slot = (source.topic, source.partition)
        lock = self._locks.setdefault(slot, asyncio.Lock())
        async with lock:
            try:
                producer = await self._producer_for(*slot)
                async with producer.transaction():
                    for message in messages:
                        await producer.send(message.topic, value=message.value, key=message.key)
                    await producer.send_offsets_to_transaction(
                        {TopicPartition(source.topic, source.partition): source.offset + 1}, self._group_id)
            except ProducerFenced as exc:
                await self._discard(slot)
                raise FencedOut(f"{source.topic}[{source.partition}] moved to another worker") from exc
            except KafkaError as exc:
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
        producer = self._producers.pop(slot, None)
        if producer is not None:
            try:
                await producer.stop()
            except KafkaError:
                log.warning("closing the producer for %s failed", slot, exc_info=True)

    async def close(self) -> None:
        for slot in list(self._producers):
            await self._discard(slot)

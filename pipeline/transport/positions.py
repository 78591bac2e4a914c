"""Where a keyed record lands on a topic, and whether it is there: what sending once needs (audit.send_once).

A record's partition is the one kafka-python's default partitioner picks for its key (murmur2, as the Java
client), so a record sent here keeps its key's order with the same key's records sent by any client.
"""

from __future__ import annotations

import threading
import time

from kafka.partitioner.default import murmur2

from pipeline.transport.security import KafkaConnection


class KafkaPositions:
    def __init__(self, connection: KafkaConnection, read_timeout_seconds: float = 30.0) -> None:
        self._connection = connection
        self._read_timeout_seconds = read_timeout_seconds
        self._lock = threading.Lock()  # kafka-python clients are not for concurrent use
        self._consumer = None

    def partition_for(self, topic: str, key: bytes) -> int:
        partitions = sorted(self._partitions(topic))
        return partitions[(murmur2(key) & 0x7FFFFFFF) % len(partitions)]

    def end_of(self, topic: str, partition: int) -> int:
        from kafka import TopicPartition

        with self._lock:
            where = TopicPartition(topic, partition)
            return self._client().end_offsets([where])[where]

    def contains(self, topic: str, partition: int, start: int, key: bytes, value: bytes) -> bool:
        """Is this exact record (committed) in the partition at or after `start`? Reads up to the current end."""
        from kafka import TopicPartition

        with self._lock:
            consumer = self._client()
            where = TopicPartition(topic, partition)
            end = consumer.end_offsets([where])[where]
            if end <= start:
                return False
            consumer.assign([where])
            consumer.seek(where, start)
            deadline = time.monotonic() + self._read_timeout_seconds
            while consumer.position(where) < end:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"could not read {topic}[{partition}] from {start} to {end} in time")
                for record in consumer.poll(timeout_ms=500).get(where, []):
                    if record.key == key and record.value == value:
                        return True
            return False

    def _partitions(self, topic: str) -> set[int]:
        with self._lock:
            found = self._client().partitions_for_topic(topic)
        if not found:
            raise ConnectionError(f"topic {topic} has no partitions the broker knows of")
        return found

    def _client(self):
        from kafka import KafkaConsumer

        if self._consumer is None:
            self._consumer = KafkaConsumer(**self._connection.client_options(), group_id=None,
                                           enable_auto_commit=False, isolation_level="read_committed",
                                           client_id="trustreel-positions")
        return self._consumer

    def close(self) -> None:
        with self._lock:
            if self._consumer is not None:
                self._consumer.close()
                self._consumer = None

"""Keys for compacted state topics (cameo.consents, accounts.events).

Compaction keeps the newest record per key, so a key names one *slot* of an entity's
state, "<entity id>|<slot>", and the topic alone can rebuild the whole state. Every
slot of an entity goes to the partition Kafka's default partitioner would give the
entity id, so one partition holds the entity's history in order and offsets order it.
"""

from __future__ import annotations


def slot_key(entity_id: str, slot: str) -> bytes:
    return f"{entity_id}|{slot}".encode()


def entity_partition(entity_id: str, partitions: int) -> int:
    """murmur2 like Kafka's default partitioner, so producers in other languages can match it."""
    from kafka.partitioner.default import murmur2

    return (murmur2(entity_id.encode()) & 0x7FFFFFFF) % partitions


class SlotOffsets:
    """Remembers the offset that last set each (entity, slot), so an older record never wins."""

    def __init__(self) -> None:
        self._offsets: dict[tuple[str, str], int] = {}

    def advance(self, entity_id: str, slot: str, offset: int) -> bool:
        if self._offsets.get((entity_id, slot), -1) >= offset:
            return False
        self._offsets[(entity_id, slot)] = offset
        return True

"""Consent and publish decide only on registries that have caught up with their topics.

The consent and account registries are filled by the workers' feed agents, asynchronously:
a revocation can already be on cameo.consents while the registry table does not show it yet.
Before each publish batch:

    end offsets of cameo.consents + accounts.events      (what has been produced so far)
      -> poll the shared group's committed offsets for them (a feed agent commits a record's
         offset in the same transaction that follows applying it to the registry)
      -> every partition committed up to its end?  yes -> decide the batch
                                                   not within the wait -> FeedBehind (retried;
                                                   the batch waits: nothing is published on stale consent)

So a revocation produced before a publish batch starts is always seen by that batch. Consent waits the
same way, for a shorter time (TRUSTREEL_CONSENT_FEED_WAIT_SECONDS): a cameo registered before a request was
sent is known when the request is decided, and a flood of consent records that the registry cannot apply in
that time turns into retryable rejections (consent_registry_behind) instead of a stalled pipeline.
Real: KafkaFeedFreshness. Unit tests of decision code pass none.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Protocol

from pipeline.transport.security import KafkaConnection

log = logging.getLogger("trustreel.freshness")


class FeedBehind(ConnectionError):
    """A registry has not applied everything produced to its topic yet (an infrastructure wait, not a verdict)."""


class FeedUnknown(ConnectionError):
    """How far the registries are could not be found out (broker unreachable, topic not visible): a wait."""


class FeedFreshness(Protocol):
    def wait_until_current(self, wait_seconds: float | None = None) -> None:
        """Return once every record produced so far is applied; raise FeedBehind after the wait (the
        configured one, or `wait_seconds`)."""
        ...


class KafkaFeedFreshness:
    def __init__(self, connection: KafkaConnection, group_id: str, topics: list[str], wait_seconds: float = 20.0,
                 poll_seconds: float = 0.02) -> None:
        self._connection = connection
        self._group_id = group_id
        self._topics = topics
        self._wait_seconds = wait_seconds
        self._poll_seconds = poll_seconds
        self._lock = threading.Lock()  # kafka-python clients are not for concurrent use
        self._consumer = None

    def wait_until_current(self, wait_seconds: float | None = None) -> None:
        with self._lock:
            try:
                self._wait(self._wait_seconds if wait_seconds is None else wait_seconds)
            except (FeedBehind, FeedUnknown):
                raise
            except Exception as exc:  # a broken client: start afresh next time
                self._close()
                raise FeedUnknown(f"could not compare the state feeds with their topics: {exc!r}") from exc

    def _wait(self, wait_seconds: float) -> None:
        consumer = self._client()
        partitions = [tp for topic in self._topics for tp in self._partitions(consumer, topic)]
        behind = {tp: end for tp, end in consumer.end_offsets(partitions).items() if end > 0}
        deadline = time.monotonic() + wait_seconds
        while behind:
            # committed() asks the group coordinator; this consumer never joins the group
            behind = {tp: end for tp, end in behind.items() if (consumer.committed(tp) or 0) < end}
            if not behind:
                return
            if time.monotonic() > deadline:
                listing = ", ".join(f"{tp.topic}[{tp.partition}] at {consumer.committed(tp) or 0} of {end}"
                                    for tp, end in sorted(behind.items()))
                raise FeedBehind(f"state feeds not applied after {wait_seconds:g}s: {listing}")
            time.sleep(self._poll_seconds)

    @staticmethod
    def _partitions(consumer, topic: str) -> list:
        from kafka import TopicPartition

        found = consumer.partitions_for_topic(topic)
        if not found:
            raise FeedUnknown(f"topic {topic} has no partitions the broker knows of")
        return [TopicPartition(topic, partition) for partition in sorted(found)]

    def _client(self):
        from kafka import KafkaConsumer

        if self._consumer is None:
            self._consumer = KafkaConsumer(**self._connection.client_options(), group_id=self._group_id,
                                           enable_auto_commit=False, isolation_level="read_committed",
                                           client_id="trustreel-freshness")
        return self._consumer

    def _close(self) -> None:
        if self._consumer is not None:
            try:
                self._consumer.close(autocommit=False)
            except Exception:  # closing a broken client must not hide why it broke
                log.debug("closing the freshness consumer failed", exc_info=True)
        self._consumer = None

    def close(self) -> None:
        with self._lock:
            self._close()

"""How far behind the group is, per input partition: metrics, and whether this worker is stuck.

    every `interval` seconds (a daemon thread; kafka-python admin + consumer, never joining the group):
      end offsets of the worker's input and state topics  vs  the group's committed offsets
        -> trustreel_consumer_lag{topic,partition}; state topics summed -> trustreel_registry_lag{registry}
      for the partitions this worker holds: lag > 1 and the committed offset unchanged for `stall_seconds`
        -> a /healthz problem ("not moving"); no partition held after the start grace -> "subscribed to nothing";
      offsets unreadable for `stall_seconds` (a coordinator moving is retried quietly) -> "cannot read"
      no partition held while a partition of a topic it consumes has waiting work that nobody has moved for
        `stall_seconds` -> "stranded": /healthz, and `on_stranded` once (the worker exits non-zero so its
        supervisor starts it again: a consumer that subscribed while the broker restarted can stay idle)

Stage topics are written in transactions, whose commit markers take an offset each: a partition that
is fully processed still shows a lag of 1, so only more than that counts as waiting work.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable

from pipeline.observability import metrics
from pipeline.transport.security import KafkaConnection

log = logging.getLogger("trustreel.lag")


class LagMonitor:
    def __init__(self, connection: KafkaConnection, group_id: str, topics: list[str], registries: dict[str, str],
                 assigned: Callable[[], set[tuple[str, int]]], interval_seconds: float = 10.0,
                 stall_seconds: float = 120.0, start_grace_seconds: float = 60.0,
                 consumed: list[str] | None = None, on_stranded: Callable[[str], None] | None = None) -> None:
        self._connection = connection
        self._group_id = group_id
        self._topics = topics
        self._registries = registries  # registry name -> its state topic
        self._assigned = assigned
        self._consumed = set(topics if consumed is None else consumed)  # not the feeds another worker applies
        self._on_stranded = on_stranded
        self._stranded_told = False
        self._interval = interval_seconds
        self._stall = stall_seconds
        self._grace = start_grace_seconds
        self._started = time.monotonic()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._progress: dict[tuple[str, int], tuple[int, float]] = {}  # committed offset, when it last moved
        self._lag: dict[tuple[str, int], int] = {}
        self._error: str | None = None
        self._last_read = self._started  # a failed read only counts once it has lasted `stall_seconds`
        self._admin = None
        self._consumer = None

    def start(self) -> "LagMonitor":
        threading.Thread(target=self._run, name="trustreel-lag", daemon=True).start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        # the first sample one interval after start: a worker starting on a busy machine (a dozen at once in
        # `demo --secure`) has its own consumer and producer to connect first
        while not self._stop.wait(self._interval):
            try:
                self.sample()
            except Exception as exc:  # the broker may be restarting: keep the last figures, say why
                with self._lock:
                    self._error = f"{type(exc).__name__}: {exc}".strip()
                self._close()
            stranded = self.stranded()
            if stranded and self._on_stranded is not None and not self._stranded_told:
                self._stranded_told = True
                self._on_stranded(stranded)
        self._close()

    def sample(self) -> dict[tuple[str, int], int]:
        from kafka import KafkaConsumer, TopicPartition
        from kafka.admin import KafkaAdminClient

        if self._admin is None:
            self._admin = KafkaAdminClient(**self._connection.client_options(), client_id="trustreel-lag")
            self._consumer = KafkaConsumer(**self._connection.client_options(), enable_auto_commit=False,
                                           group_id=None, client_id="trustreel-lag")
        partitions = [TopicPartition(topic, p) for topic in self._topics
                      for p in sorted(self._consumer.partitions_for_topic(topic) or [])]
        ends = {(tp.topic, tp.partition): end for tp, end in self._consumer.end_offsets(partitions).items()}
        committed = {(tp.topic, tp.partition): meta.offset for tp, meta in self._group_offsets().items()}
        return self.update(ends, committed, time.monotonic())

    def _group_offsets(self) -> dict:
        """The group's committed offsets in one request (kafka-python renamed the call in 2.3)."""
        fetch = getattr(self._admin, "list_group_offsets", None)
        if fetch is not None:
            return fetch({self._group_id: None}).get(self._group_id, {})
        return self._admin.list_consumer_group_offsets(self._group_id)

    def update(self, ends: dict[tuple[str, int], int], committed: dict[tuple[str, int], int],
               now: float) -> dict[tuple[str, int], int]:
        """One sample's bookkeeping: lag per partition (metrics), and when each committed offset last moved."""
        lag: dict[tuple[str, int], int] = {}
        with self._lock:
            for key, end in ends.items():
                done = max(committed.get(key, 0), 0)
                lag[key] = max(end - done, 0)
                metrics.CONSUMER_LAG.labels(key[0], str(key[1])).set(lag[key])
                before = self._progress.get(key)
                if before is None or before[0] != done:
                    self._progress[key] = (done, now)
            for registry, topic in self._registries.items():
                metrics.REGISTRY_LAG.labels(registry).set(sum(n for (t, _), n in lag.items() if t == topic))
            self._lag, self._error, self._last_read = lag, None, now
        metrics.ASSIGNED_PARTITIONS.set(len(self._assigned()))
        return lag

    def problems(self, now: float | None = None) -> list[str]:
        """What /healthz reports; empty when this worker is consuming."""
        now = time.monotonic() if now is None else now
        found = []
        assigned = self._assigned()
        with self._lock:
            if self._error is not None and now - self._last_read > self._stall:
                found.append(f"cannot read the group's offsets for {now - self._last_read:.0f}s: {self._error}")
            if not assigned and now - self._started > self._grace:
                found.append("subscribed to nothing: this worker holds no input partition")
            for key in sorted(assigned):
                done, since = self._progress.get(key, (0, now))
                if self._lag.get(key, 0) > 1 and now - since > self._stall:
                    found.append(f"not moving: {key[0]}[{key[1]}] committed at {done}, {self._lag[key]} behind, "
                                 f"for {now - since:.0f}s")
        stranded = self.stranded(now, assigned)
        return found + ([stranded] if stranded else [])

    def stranded(self, now: float | None = None, assigned: set[tuple[str, int]] | None = None) -> str | None:
        """Why this worker should be started again, or None: it holds no partition while work waits, unmoved,
        in a partition of a topic it consumes. (Holding nothing while the others keep up is a standby.)"""
        now = time.monotonic() if now is None else now
        if (self._assigned() if assigned is None else assigned) or now - self._started <= self._grace:
            return None
        with self._lock:
            waiting = sorted(key for key, lag in self._lag.items() if key[0] in self._consumed and lag > 1
                             and now - self._progress.get(key, (0, now))[1] > self._stall)
            if not waiting:
                return None
            topic, partition = waiting[0]
            return (f"stranded: this worker holds no partition while {len(waiting)} partition(s) it consumes have "
                    f"waiting work nobody has moved for over {self._stall:.0f}s (e.g. {topic}[{partition}], "
                    f"{self._lag[waiting[0]]} behind)")

    def _close(self) -> None:
        for client in (self._consumer, self._admin):
            try:
                if client is not None:
                    client.close()
            except Exception:  # closing a broken client must not hide why it broke
                log.debug("closing a lag client failed", exc_info=True)
        self._admin = self._consumer = None

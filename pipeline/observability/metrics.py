"""The metric families a worker exports (prometheus-client, the process's default registry).

    trustreel_decisions_total{stage,outcome,reason}   one per decision recorded (reason: the first code)
    trustreel_dead_letters_total{stage,code}          one per dead letter recorded
    trustreel_decision_seconds{stage}                 time a stage spent deciding one request
    trustreel_end_to_end_seconds                      submitted_at -> published, per published request
    trustreel_batch_size{stage}                       messages handed to a stage at once
    trustreel_consumer_lag{topic,partition}           records produced but not yet committed by the group
    trustreel_registry_lag{registry}                  state-topic records not yet applied to a registry
    trustreel_generation_seconds / _gpu_busy_ratio    time per generation batch, busy share of the last minute
    trustreel_worker_assigned_partitions              input partitions this worker holds now
    trustreel_policy_changed_timestamp_seconds{stage} when the stage's current policy version was first used

Counters count what this worker recorded in the audit database, so summed over workers they agree
with the decisions table (the metrics test checks this).
"""

from __future__ import annotations

import threading
import time
from collections import deque

from prometheus_client import Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
END_TO_END_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)

DECISIONS = Counter("trustreel_decisions", "Stage decisions recorded", ["stage", "outcome", "reason"])
DEAD_LETTERS = Counter("trustreel_dead_letters", "Messages a stage or state feed dead-lettered", ["stage", "code"])
DECISION_SECONDS = Histogram("trustreel_decision_seconds", "Time a stage spent deciding one request", ["stage"],
                             buckets=LATENCY_BUCKETS)
END_TO_END_SECONDS = Histogram("trustreel_end_to_end_seconds", "From a request's submitted_at to its publication",
                               buckets=END_TO_END_BUCKETS)
BATCH_SIZE = Histogram("trustreel_batch_size", "Messages handed to a stage at once", ["stage"],
                       buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512))
CONSUMER_LAG = Gauge("trustreel_consumer_lag", "Records produced to an input topic and not yet committed by the "
                                               "group", ["topic", "partition"])
REGISTRY_LAG = Gauge("trustreel_registry_lag", "State-topic records not yet applied to a registry", ["registry"])
GENERATION_SECONDS = Histogram("trustreel_generation_seconds", "Time to generate one batch of videos",
                               buckets=LATENCY_BUCKETS)
GPU_BUSY_RATIO = Gauge("trustreel_gpu_busy_ratio", "Share of the last minute the generator was generating")
POLICY_CHANGED = Gauge("trustreel_policy_changed_timestamp_seconds",
                       "When this worker first decided with the stage's current policy version", ["stage"])
ASSIGNED_PARTITIONS = Gauge("trustreel_worker_assigned_partitions", "Input partitions this worker holds")


def count_decision(stage: str, outcome: str, reason: str | None, seconds: float | None) -> None:
    DECISIONS.labels(stage, outcome, reason or "").inc()
    if seconds is not None:
        DECISION_SECONDS.labels(stage).observe(seconds)


class BusyWindow:
    """Busy share of a sliding window: generation intervals in, trustreel_gpu_busy_ratio out."""

    def __init__(self, window_seconds: float = 60.0, clock=time.monotonic) -> None:
        self._window = window_seconds
        self._clock = clock
        self._spans: deque[tuple[float, float]] = deque()
        self._lock = threading.Lock()

    def record(self, started: float, ended: float) -> float:
        with self._lock:
            self._spans.append((started, ended))
            ratio = self._ratio(ended)
        GPU_BUSY_RATIO.set(ratio)
        GENERATION_SECONDS.observe(ended - started)
        return ratio

    def _ratio(self, now: float) -> float:
        start = now - self._window
        while self._spans and self._spans[0][1] < start:
            self._spans.popleft()
        busy = sum(min(end, now) - max(begin, start) for begin, end in self._spans if end > start)
        return max(0.0, min(1.0, busy / self._window))


GENERATION_BUSY = BusyWindow(clock=time.perf_counter)
"""The generate stage's batches (the runtime records each BatchStage batch here)."""

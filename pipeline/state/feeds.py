"""State feeds: compacted topics materialized into registries (consents, accounts, rights).

    topic record --parse (model)--> registry.apply(event, offset)      # idempotent, slot by slot
    cameo.consents: enrollment (faces of verified references -> gallery) first, then the registry
    replay(): from the beginning to the current end, before a worker starts deciding
    live: a faust agent applies new records in batches and commits each batch's progress (one Kafka
          transaction per partition, as the stages do); a registry with apply_many takes a batch in one
          database transaction

An unreadable record changes nothing (the producer validates what it sends, so this is a
foreign writer; the topic stays the source of truth and nothing is invented); the live agent
dead-letters it with the reason, like a stage's unreadable input.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel, ValidationError
from sqlalchemy.exc import IntegrityError

from pipeline.runtime.runner import describe_validation_error
from pipeline.settings import Settings
from pipeline.transport.security import KafkaConnection

log = logging.getLogger("trustreel.state")


class RecordRefused(Exception):
    """A readable record its registry will not take (e.g. a report on an item never published): dead-lettered
    with `code` and the message, which says what to fix."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class Applies(Protocol):
    def apply(self, event, offset: int) -> bool: ...


@runtime_checkable
class AppliesMany(Protocol):
    """A registry that can apply a batch of records in one database transaction (the live agent's batches)."""

    def apply_many(self, records: list[tuple[Any, int]]) -> list[bool]: ...


@dataclass(frozen=True)
class InOrder:
    """Several materializations of one topic, each applied in turn; the record changed state if any did.

    The consents feed enrolls a verification's faces before the registry shows the verification, so a
    cameo the registry calls verified always has its enrollment recorded (or its failure).
    """

    steps: tuple[Applies, ...]

    def apply(self, event, offset: int) -> bool:
        changed = False
        for step in self.steps:
            changed = step.apply(event, offset) or changed
        return changed

    def apply_many(self, records: list[tuple[Any, int]]) -> list[bool]:
        """Each step over the whole batch before the next (in one transaction where the step can): every
        record's earlier steps are still durable before its later ones."""
        changed = [False] * len(records)
        for step in self.steps:
            if isinstance(step, AppliesMany):
                results = step.apply_many(records)
            else:
                results = [step.apply(event, offset) for event, offset in records]
            changed = [before or now for before, now in zip(changed, results)]
        return changed


@dataclass(frozen=True)
class FeedOutcome:
    label: str  # applied | stale | tombstone | unreadable | refused
    problem: str | None = None  # why an unreadable record could not be read, or was refused
    error_code: str = "invalid_state_record"  # the dead letter's code when there is a problem


@dataclass(frozen=True)
class StateFeed:
    name: str
    topic: str
    model: type[BaseModel]
    registry: Applies

    def apply_records(self, records: list[tuple[bytes | None, int]]) -> list["FeedOutcome"]:
        """What happened to each (value, offset), in order, its state change durable. A registry that applies
        many at once gets the readable ones in one database transaction; if that transaction fails (another
        worker created the same row), nothing of it was written and each record is applied on its own."""
        read = [(self._read(raw, offset), offset) for raw, offset in records]
        events = [(event, offset) for event, offset in read if not isinstance(event, FeedOutcome)]
        if isinstance(self.registry, AppliesMany) and events:
            try:
                changed = iter(self.registry.apply_many(events))
            except IntegrityError:
                changed = None
            if changed is not None:
                return [event if isinstance(event, FeedOutcome) else
                        FeedOutcome("applied" if next(changed) else "stale") for event, _ in read]
        return [event if isinstance(event, FeedOutcome) else self._apply(event, offset) for event, offset in read]

    def _read(self, raw: bytes | None, offset: int) -> "BaseModel | FeedOutcome":
        if raw is None:
            return FeedOutcome("tombstone")
        try:
            return self.model.model_validate_json(raw)
        except ValidationError as exc:
            problem = describe_validation_error(exc)
            log.error("unreadable %s record at offset %d: %s", self.name, offset, problem)
            return FeedOutcome("unreadable", problem)

    def _apply(self, event: BaseModel, offset: int) -> "FeedOutcome":
        for _ in range(3):
            try:
                return FeedOutcome("applied" if self.registry.apply(event, offset) else "stale")
            except RecordRefused as refused:
                log.error("%s record at offset %d refused: %s", self.name, offset, refused)
                return FeedOutcome("refused", str(refused), refused.code)
            except IntegrityError:
                continue  # another worker created the same row at the same moment; read it and retry
        raise RuntimeError(f"could not apply {self.name} record at offset {offset}")

    def replay(self, settings: Settings, timeout_seconds: float = 60.0) -> int:
        """Apply every record from the beginning to the topic's current end; returns how many changed state."""
        from kafka import KafkaConsumer, TopicPartition

        consumer = KafkaConsumer(**KafkaConnection.from_settings(settings).client_options(), enable_auto_commit=False, group_id=None,
                                 client_id=f"trustreel-{self.name}-replay")
        try:
            partitions = [TopicPartition(self.topic, p) for p in (consumer.partitions_for_topic(self.topic) or [])]
            if not partitions:
                return 0
            consumer.assign(partitions)
            consumer.seek_to_beginning(*partitions)
            end = consumer.end_offsets(partitions)
            applied = 0
            deadline = time.monotonic() + timeout_seconds
            while any(consumer.position(tp) < end[tp] for tp in partitions):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"replaying {self.topic} took longer than {timeout_seconds}s")
                for records in consumer.poll(timeout_ms=500).values():
                    outcomes = self.apply_records([(r.value, r.offset) for r in records])
                    applied += sum(outcome.label == "applied" for outcome in outcomes)
            return applied
        finally:
            consumer.close()


def state_feeds(settings: Settings, sessions) -> list[StateFeed]:
    from pipeline.state.account_registry import SqlAccountRegistry
    from pipeline.state.consent_registry import SqlConsentRegistry
    from pipeline.state.enrollment import cameo_enrollment
    from pipeline.transport.topics import TopicMap
    from schemas.models import AccountEvent, ConsentEvent, RightsEvent

    topics = TopicMap.from_settings(settings)
    consents = InOrder((cameo_enrollment(settings, sessions), SqlConsentRegistry(sessions)))
    return [StateFeed("consents", topics.consents, ConsentEvent, consents),
            StateFeed("accounts", topics.accounts, AccountEvent, SqlAccountRegistry(sessions)),
            StateFeed("rights", topics.rights, RightsEvent, rights_registry(settings, sessions))]


def rights_registry(settings: Settings, sessions):
    from pipeline.hashing.banking import MediaBanker
    from pipeline.hashing.banks import BankStore
    from pipeline.media.assets import asset_store
    from pipeline.state.rights_registry import SqlRightsRegistry

    return SqlRightsRegistry(sessions, MediaBanker(BankStore(sessions), asset_store(settings.asset_dir,
                                                                                    settings.asset_url)))

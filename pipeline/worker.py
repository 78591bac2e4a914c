"""Stage workers on faust-streaming: wiring, not logic.

    trustreel worker --stage consent --stage publish
      -> ensure topics, upgrade the audit database
      -> replay cameo.consents into the registry (so decisions never see a stale registry at start)
      -> faust app "<group_prefix>-<stages>": one agent per stage + the consent registry agent
      -> run until SIGTERM / SIGINT (faust stops agents and commits acked offsets)

Workers started with the same stage list form one consumer group and share partitions.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import tempfile
import time
from dataclasses import dataclass

import faust
from pydantic import ValidationError
from sqlalchemy.exc import IntegrityError

from pipeline import stages as stage_catalog
from pipeline.audit import SqlAuditStore
from pipeline.consent_registry import ConsentRegistry, SqlConsentRegistry
from pipeline.db import make_engine, make_sessionmaker, upgrade
from pipeline.faust_transport import StageApp
from pipeline.runtime import RuntimeConfig, StageRunner, describe_validation_error
from pipeline.settings import Settings
from pipeline.stage import system_clock
from pipeline.topics import TopicMap, ensure_topics
from pipeline.transactions import TransactionalSender
from schemas.models import ConsentEvent, DeadLetterSource

log = logging.getLogger("trustreel.worker")


def apply_consent(registry: ConsentRegistry, raw: bytes | None, offset: int) -> str:
    """Apply one cameo.consents record; unreadable records are logged and skipped (the topic is the truth)."""
    if raw is None:
        return "tombstone"
    try:
        event = ConsentEvent.model_validate_json(raw)
    except ValidationError as exc:
        log.error("unreadable consent event at offset %d: %s", offset, describe_validation_error(exc))
        return "unreadable"
    for _ in range(3):
        try:
            return "applied" if registry.apply(event, offset) else "stale"
        except IntegrityError:
            continue  # another worker created the cameo row at the same moment; read it and retry
    raise RuntimeError(f"could not apply consent event {event.event_id}")


def replay_consents(settings: Settings, registry: ConsentRegistry, timeout_seconds: float = 60.0) -> int:
    """Read cameo.consents from the beginning to its current end and apply every record."""
    from kafka import KafkaConsumer, TopicPartition

    topic = TopicMap.from_settings(settings).consents
    consumer = KafkaConsumer(bootstrap_servers=settings.bootstrap, enable_auto_commit=False, group_id=None,
                             client_id="trustreel-consent-replay")
    try:
        partitions = [TopicPartition(topic, p) for p in (consumer.partitions_for_topic(topic) or [])]
        if not partitions:
            return 0
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        end = consumer.end_offsets(partitions)
        applied = 0
        deadline = time.monotonic() + timeout_seconds
        while any(consumer.position(tp) < end[tp] for tp in partitions):
            if time.monotonic() > deadline:
                raise TimeoutError(f"replaying {topic} took longer than {timeout_seconds}s")
            for records in consumer.poll(timeout_ms=500).values():
                for record in records:
                    if apply_consent(registry, record.value, record.offset) == "applied":
                        applied += 1
        return applied
    finally:
        consumer.close()


@dataclass
class WorkerParts:
    app: faust.App
    runners: dict[str, StageRunner]


def build_worker(settings: Settings, stage_names: list[str]) -> WorkerParts:
    unknown = [name for name in stage_names if name not in settings.stages]
    if unknown:
        raise ValueError(f"stage(s) {', '.join(unknown)} are not in the configured stage list "
                         f"{', '.join(settings.stages)}")
    topics = TopicMap.from_settings(settings)
    ensure_topics(settings)
    upgrade(settings.db_url)
    engine = make_engine(settings.db_url)
    sessions = make_sessionmaker(engine)
    audit = SqlAuditStore(sessions)
    registry = SqlConsentRegistry(sessions)
    replayed = replay_consents(settings, registry)
    log.info("consent registry caught up (%d events applied)", replayed)

    group = f"{settings.group_prefix}-{settings.topic_prefix}{'-'.join(stage_names)}".replace(".", "-")
    app = StageApp(
        group,
        broker=f"kafka://{settings.bootstrap.split(',')[0]}",
        store="memory://",
        datadir=tempfile.mkdtemp(prefix=f"{group}-"),  # memory store: faust keeps only bookkeeping here
        value_serializer="raw",
        key_serializer="raw",
        web_enabled=False,
        topic_disable_leader=True,
        topic_allow_declare=False,
        topic_partitions=settings.partitions,
        consumer_auto_offset_reset="earliest",
        broker_commit_livelock_soft_timeout=10**6,  # faust commits nothing itself (see faust_transport)
        producer_acks=-1,
        broker_session_timeout=settings.session_timeout_seconds,
        broker_heartbeat_interval=min(3.0, settings.session_timeout_seconds / 3),
        producer_max_request_size=settings.deadletter_max_message_bytes + 65536,
        consumer_max_fetch_size=settings.deadletter_max_message_bytes + 65536,
    )
    sender = TransactionalSender(settings.bootstrap, group, settings.deadletter_max_message_bytes + 65536)
    app.on_stop_callbacks.append(sender.close)
    config = RuntimeConfig(worker_id=f"{socket.gethostname()}:{os.getpid()}",
                           max_message_bytes=settings.max_message_bytes,
                           stage_error_retries=settings.stage_error_retries)
    services = stage_catalog.StageServices(settings=settings, audit=audit, registry=registry, clock=system_clock)
    runners: dict[str, StageRunner] = {}
    for name in stage_names:
        stage = stage_catalog.build_stage(name, services)
        runner = StageRunner(stage, topics, audit, sender, config, system_clock)
        runners[name] = runner
        app.agent(app.topic(topics.input_of(name)), name=f"stage-{name}")(_stage_agent(runner))
    if any(stage_catalog.needs_consent_registry(name) for name in stage_names):
        app.agent(app.topic(topics.consents), name="consent-registry")(_registry_agent(registry, sender))
    return WorkerParts(app=app, runners=runners)


def _stage_agent(runner: StageRunner):
    async def process(stream: faust.StreamT) -> None:
        async for event in stream.events():
            message = event.message
            outcome = await runner.handle(
                message.value, DeadLetterSource(topic=message.topic, partition=message.partition,
                                                offset=message.offset))
            log.info("%s %s@%d/%d -> %s", runner.stage.name, message.topic, message.partition, message.offset,
                     outcome)

    process.__name__ = f"stage_{runner.stage.name}"
    return process


def _registry_agent(registry: ConsentRegistry, sender: TransactionalSender):
    async def process(stream: faust.StreamT) -> None:
        async for event in stream.events():
            message = event.message
            outcome = await asyncio.to_thread(apply_consent, registry, message.value, message.offset)
            await sender.send_atomically(
                DeadLetterSource(topic=message.topic, partition=message.partition, offset=message.offset), [])
            log.info("consent registry %s@%d/%d -> %s", message.topic, message.partition, message.offset, outcome)

    return process


def run_worker(settings: Settings, stage_names: list[str], loglevel: str = "info") -> None:
    """Run until stopped; faust handles SIGTERM/SIGINT and commits acked offsets on the way out."""
    parts = build_worker(settings, stage_names)
    worker = faust.Worker(parts.app, loglevel=loglevel, quiet=True, redirect_stdouts=False)
    worker.execute_from_commandline()

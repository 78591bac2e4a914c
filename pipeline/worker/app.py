"""Stage workers on faust-streaming: wiring, not logic.

    trustreel worker --stage consent --stage publish
      -> ensure topics, upgrade the audit database
      -> replay cameo.consents, accounts.events and rights.registry into their registries (no decision on
         stale state at start)
      -> faust app in the shared consumer group: one agent per stage + one per state feed
           (--no-state-feeds: none; a stage's own Kafka principal may not read them, one
            --state-feeds-only worker as the registries principal applies them: transport/acl_plan.py;
            instead of replaying, such a worker waits at start until that one has caught up)
           a stage is hot-reloaded from its policy files (with its shadow twin, if any)
           publish waits, before each batch, until the state feeds are applied up to their end
           each stage takes up to a batch of messages: one DB write + one transaction per partition
           (generate: its policy's batch size, the number of videos made at once)
           with TRUSTREEL_METRICS_PORT: /metrics and /healthz on that port, consumer lag sampled
           the consents agent sends the takedowns a revocation causes with its own offset commit (and banks
           the taken-down videos' frames); the reports agent (with the state feeds) turns viewers' reports
           into report cases (pipeline.enforcement.reports)
      -> run until SIGTERM / SIGINT; each stage commits its progress in its own transactions

All workers share one consumer group, whatever stages they run: each topic's partitions are
spread over the workers that consume it (round robin), and changing a worker's stage list never
makes a new group that would re-read old topics from the beginning.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import tempfile
import threading
from typing import Callable

import faust

from pipeline.audit.db import make_engine, make_sessionmaker, upgrade
from pipeline.audit.store import SqlAuditStore
from pipeline.cases.takedowns import TakedownService
from pipeline.enforcement.reports import ReportDesk
from pipeline.enforcement.rules import latest_enforcement
from pipeline.enforcement.standing import SqlStandingBook
from pipeline.hashing.banks import BankStore
from pipeline.likeness.galleries import GalleryStore
from pipeline.observability import metrics
from pipeline.observability.logs import logging_config
from pipeline.observability.server import serve
from pipeline.observability.tracing import configure_tracing
from pipeline.media.assets import asset_store
from pipeline.provenance.ledger import SqlProvenanceLedger
from pipeline.runtime.runner import RuntimeConfig, StageRunner, dead_letter, until_infrastructure_answers
from pipeline.runtime.stage import BatchStage, system_clock
from pipeline.settings import Settings
from pipeline.state.account_registry import SqlAccountRegistry
from pipeline.state.consent_registry import SqlConsentRegistry
from pipeline.state.feeds import FeedOutcome, StateFeed, rights_registry, state_feeds
from pipeline.state.generation_caps import ReadOnlyCapLedger, SqlCapLedger
from pipeline.transport.consumer_lag import LagMonitor
from pipeline.transport.faust_transport import StageApp
from pipeline.transport.feed_freshness import FeedBehind, FeedUnknown, KafkaFeedFreshness
from pipeline.transport.security import KafkaConnection
from pipeline.transport.topics import TopicMap, ensure_topics
from pipeline.transport.transactions import FencedOut, OutgoingMessage, TransactionalSender
from pipeline.worker import catalog as stage_catalog
from schemas.models import ConsentEvent, DeadLetterSource, UserReport

log = logging.getLogger("trustreel.worker")


def build_worker(settings: Settings, stage_names: list[str], apply_state_feeds: bool = True) -> StageApp:
    """Agents for `stage_names`, and for the state feeds unless `apply_state_feeds` is False (under least-privilege
    principals one `registries` worker applies them; see pipeline.transport.acl_plan)."""
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
    feeds = state_feeds(settings, sessions)
    group = settings.consumer_group
    connection = KafkaConnection.from_settings(settings)
    feeds_freshness = KafkaFeedFreshness(connection, group, [feed.topic for feed in feeds])
    if apply_state_feeds:
        for feed in feeds:
            log.info("%s registry caught up (%d records applied)", feed.name, feed.replay(settings))
    else:
        _wait_for_the_registries(feeds_freshness)
    app, sender = stage_app(settings, connection)
    config = RuntimeConfig(worker_id=f"{socket.gethostname()}:{os.getpid()}",
                           max_message_bytes=settings.max_message_bytes,
                           stage_error_retries=settings.stage_error_retries)
    app.on_stop_callbacks.append(lambda: asyncio.to_thread(feeds_freshness.close))
    enforcement = latest_enforcement(settings.policy_dir)
    services = stage_catalog.StageServices(settings=settings, audit=audit, cameos=SqlConsentRegistry(sessions),
                                           accounts=SqlAccountRegistry(sessions), caps=SqlCapLedger(sessions),
                                           clock=system_clock,
                                           assets=asset_store(settings.asset_dir, settings.asset_url),
                                           galleries=GalleryStore(sessions),
                                           provenance=SqlProvenanceLedger(sessions),
                                           banks=BankStore(sessions), rights=rights_registry(settings, sessions),
                                           read_only_caps=ReadOnlyCapLedger(sessions),
                                           feeds=feeds_freshness,
                                           standing=SqlStandingBook(sessions, enforcement))
    for name in stage_names:
        stage = stage_catalog.build_reloading_stage(name, services, settings.policy_check_seconds)
        runner = StageRunner(stage, topics, audit, sender, config, system_clock)
        app.agent(app.topic(topics.input_of(name)), name=f"stage-{name}")(stage_agent(runner, settings))
    inputs = [topics.input_of(name) for name in stage_names]
    consumed = inputs + ([feed.topic for feed in feeds] + [topics.reports] if apply_state_feeds else [])
    _observe(app, settings, group, inputs, feeds, connection, consumed)
    takedowns = TakedownService(sessions, topics.takedowns, publish_stage=settings.stages[-1],
                                banker=stage_catalog.takedown_banker(services))
    for feed in feeds if apply_state_feeds else []:
        reactions = _takedowns_for(takedowns) if feed.name == "consents" else None
        app.agent(app.topic(feed.topic), name=f"{feed.name}-registry")(
            _feed_agent(feed, sender, audit, topics.deadletter, settings, reactions))
    if apply_state_feeds:
        reports = StateFeed("reports", topics.reports, UserReport,
                            ReportDesk(sessions, enforcement, publish_stage=settings.stages[-1]))
        app.agent(app.topic(reports.topic), name="reports-intake")(
            _feed_agent(reports, sender, audit, topics.deadletter, settings))
    duties = stage_names + (["state feeds", "reports"] if apply_state_feeds else [])
    log.info("worker for %s joining group %s as %s", ", ".join(duties), group, connection.principal)
    return app


def stage_app(settings: Settings, connection: KafkaConnection) -> tuple[StageApp, TransactionalSender]:
    """The faust app of the worker's consumer group and the sender whose transactions carry each batch's
    outputs with its input offsets: what every stage runs on (bench/runtime_floor.py measures it bare)."""
    group = settings.consumer_group
    app = StageApp(
        group,
        broker=connection.faust_broker_urls(),
        broker_credentials=connection.faust_credentials(),
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
    sender = TransactionalSender(connection, group, settings.deadletter_max_message_bytes + 65536,
                                 owns=lambda topic, partition: _assigned(app, topic, partition))
    app.on_stop_callbacks.append(sender.close)

    @app.on_partitions_revoked.connect
    async def _forget_revoked(_app: faust.App, revoked: set, **_: object) -> None:
        await sender.forget({(tp.topic, tp.partition) for tp in revoked})

    return app, sender


def _wait_for_the_registries(freshness: KafkaFeedFreshness, attempts: int = 30, quiet_attempts: int = 6) -> None:
    """A worker that does not apply the state feeds decides nothing until the worker that does has applied
    everything produced to them so far (the same check publish makes before each batch). It reads only the
    group's progress, not the records: a stage's principal may not read consents or birth dates."""
    for attempt in range(1, attempts + 1):
        try:
            freshness.wait_until_current()
            log.info("state feeds applied up to their ends by the registries worker")
            return
        except (FeedBehind, FeedUnknown) as exc:  # starting together: the registries worker may still be loading
            log.log(logging.INFO if attempt <= quiet_attempts else logging.WARNING,
                    "waiting for the registries worker (trustreel worker --state-feeds-only) to apply the "
                    "state feeds, %d/%d: %s", attempt, attempts, exc)
    raise FeedBehind("the state feeds were not applied: is a --state-feeds-only worker running?")


STRANDED_EXIT_CODE = 75
"""EX_TEMPFAIL: this worker was stranded (holding nothing while its work waited) and wants to be started again."""
_stranded = threading.Event()


def _observe(app: StageApp, settings: Settings, group: str, inputs: list[str], feeds: list[StateFeed],
             connection: KafkaConnection, consumed: list[str]) -> None:
    """Lag sampled for metrics and /healthz (on the worker's port, when one is set), and the stranded check
    that ends a worker holding nothing while its work waits, so its supervisor starts it again."""
    monitor = LagMonitor(connection, group, inputs + [feed.topic for feed in feeds],
                         {feed.name: feed.topic for feed in feeds}, assigned=lambda: _assignment(app),
                         stall_seconds=settings.worker_stall_seconds,
                         start_grace_seconds=min(60.0, settings.worker_stall_seconds), consumed=consumed,
                         on_stranded=_exit_to_be_restarted).start()
    server = serve(settings.metrics_port, monitor.problems) if settings.metrics_port is not None else None
    app.on_stop_callbacks.append(lambda: asyncio.to_thread(_stop_observing, monitor, server))


def _exit_to_be_restarted(reason: str) -> None:
    log.error("%s; stopping with exit code %d so that the supervisor starts this worker again", reason,
              STRANDED_EXIT_CODE)
    _stranded.set()
    os.kill(os.getpid(), signal.SIGTERM)  # the worker's own clean shutdown; run_worker turns it into the code


def _stop_observing(monitor: LagMonitor, server) -> None:
    monitor.stop()
    if server is not None:
        server.shutdown()


def _assignment(app: StageApp) -> set[tuple[str, int]]:
    """The partitions this worker holds, read from the lag monitor's thread.

    `app.consumer` would create the consumer on first use, and created on this thread its futures belong
    to no loop of the worker's (mode: "future attached to a different loop" at start, seen with a dozen
    workers starting at once): until the worker has made its own consumer, it holds nothing.
    """
    consumer = app._consumer  # what faust's `consumer` property would otherwise create
    if consumer is None:
        return set()
    try:
        return {(tp.topic, tp.partition) for tp in consumer.assignment()}
    except Exception:  # the consumer is not started yet, or stopping
        return set()


def _assigned(app: StageApp, topic: str, partition: int) -> bool:
    """Whether the group currently gives this worker the partition (not during a rebalance)."""
    return any(tp.topic == topic and tp.partition == partition for tp in app.consumer.assignment())


def stage_agent(runner: StageRunner, settings: Settings):
    """Hand the stage up to a batch of messages at once, waiting at most the batch wait to fill it.

    Moderation stages batch to share one database write and one transaction per partition;
    a BatchStage (generate) batches by its own policy, which is how many videos the GPU makes at once.
    """
    if isinstance(runner.stage, BatchStage):
        batch_size, wait_seconds = runner.stage.batch_size, runner.stage.batch_wait_seconds
    else:
        batch_size, wait_seconds = settings.stage_batch_size, settings.stage_batch_wait_seconds

    async def process(stream: faust.StreamT) -> None:
        async for events in stream.take_events(batch_size, within=max(wait_seconds, 0.01)):
            messages = [(event.message.value, DeadLetterSource(topic=event.message.topic,
                                                               partition=event.message.partition,
                                                               offset=event.message.offset)) for event in events]
            await runner.handle_batch(messages, [event.message.headers for event in events])  # it logs each

    process.__name__ = f"stage_{runner.stage.name}"
    return process


def _takedowns_for(service: TakedownService):
    """Consent records -> takedown messages (revocations only; unreadable records cause none)."""

    def react(raw: bytes | None) -> list[OutgoingMessage]:
        try:
            event = ConsentEvent.model_validate_json(raw) if raw else None
        except ValueError:
            return []
        return service.on_consent_event(event) if event is not None else []

    return react


def _feed_agent(feed: StateFeed, sender: TransactionalSender, audit: SqlAuditStore, deadletter_topic: str,
                settings: Settings, reactions: Callable[[bytes | None], list[OutgoingMessage]] | None = None):
    """Apply each state record, then commit the offsets with what they cause (takedowns for a revocation, a
    dead letter for a record that cannot be read): a batch of records, like a stage's, shares one Kafka
    transaction per partition. Applying is idempotent by offset, so a batch redelivered after a crash
    applies as "stale" and re-sends only what the database says it causes."""

    async def process(stream: faust.StreamT) -> None:
        async for events in stream.take_events(settings.stage_batch_size,
                                               within=max(settings.stage_batch_wait_seconds, 0.01)):
            messages = [event.message for event in events]
            results = await until_infrastructure_answers(asyncio.to_thread, feed.apply_records,
                                                         [(message.value, message.offset) for message in messages])
            reacted = await until_infrastructure_answers(asyncio.to_thread, _reactions_to, reactions, messages,
                                                         results)
            applied = [await _what_it_causes(feed, audit, deadletter_topic, message, result, reaction)
                       for message, result, reaction in zip(messages, results, reacted)]
            by_partition: dict[tuple[str, int], list[tuple[DeadLetterSource, list[OutgoingMessage], str]]] = {}
            for entry in applied:
                by_partition.setdefault((entry[0].topic, entry[0].partition), []).append(entry)
            for entries in by_partition.values():
                try:
                    await until_infrastructure_answers(sender.send_batch,
                                                       [(position, caused) for position, caused, _ in entries])
                    moved = ""
                except FencedOut:
                    moved = " (partition moved to another worker)"
                for position, _, outcome in entries:
                    log.info("%s registry %s@%d/%d -> %s%s (batch of %d)", feed.name, position.topic,
                             position.partition, position.offset, outcome, moved, len(events))

    return process


def _reactions_to(reactions: Callable[[bytes | None], list[OutgoingMessage]] | None, messages,
                  results: list[FeedOutcome]) -> list[list[OutgoingMessage]]:
    """What each applied record causes (takedowns for a revocation), for a whole batch in one thread. Computed
    from the database every time, so a redelivered batch, or this call repeated, re-sends the same."""
    return [reactions(message.value) if reactions is not None and result.problem is None else []
            for message, result in zip(messages, results)]


async def _what_it_causes(feed: StateFeed, audit: SqlAuditStore, deadletter_topic: str, message,
                          result: FeedOutcome, reaction: list[OutgoingMessage]
                          ) -> tuple[DeadLetterSource, list[OutgoingMessage], str]:
    """(position, what the record causes, what happened) for one record whose state change is durable."""
    position = DeadLetterSource(topic=message.topic, partition=message.partition, offset=message.offset)
    outcome = result.label
    caused: list[OutgoingMessage] = list(reaction)
    if result.problem is not None:
        letter, record = dead_letter(f"{feed.name}-registry", deadletter_topic, position, message.value or b"",
                                     result.error_code, result.problem, None, system_clock())
        await until_infrastructure_answers(asyncio.to_thread, audit.record_dead_letter, record)
        metrics.DEAD_LETTERS.labels(f"{feed.name}-registry", result.error_code).inc()
        caused.append(letter)
    elif caused:
        outcome += f", {len(caused)} takedown(s)"
    return position, caused, outcome


def run_worker(settings: Settings, stage_names: list[str], loglevel: str = "info",
               apply_state_feeds: bool = True) -> None:
    """Run until stopped; faust handles SIGTERM/SIGINT (progress is committed by each stage's transactions)."""
    configure_tracing(f"trustreel-{'-'.join(stage_names or ['registries']) if len(stage_names) < 4 else 'worker'}",
                      str(settings.trace_file) if settings.trace_file else None)
    worker = faust.Worker(build_worker(settings, stage_names, apply_state_feeds), loglevel=loglevel, quiet=True,
                          redirect_stdouts=False,
                          logging_config=logging_config(loglevel.upper(), settings.log_format))
    worker.spinner = None  # its terminal escape codes are noise in logs; "Ready" is logged instead
    try:
        worker.execute_from_commandline()
    except SystemExit:
        if _stranded.is_set():
            raise SystemExit(STRANDED_EXIT_CODE) from None
        raise

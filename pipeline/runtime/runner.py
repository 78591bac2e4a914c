"""The shared stage runtime: everything a stage does except deciding.

For each input message (the faust agent in pipeline.worker.app feeds them in order):

    raw bytes --too big / not JSON / wrong schema--> record dead letter -> [send letter + commit offset]
        |
    already decided for (request, stage)?  --from this very position--> [re-send stored output + commit]
        |                                  --from another copy-------> [commit offset only] (duplicate)
    stage.decide(item)                      (stage bug: retried, then dead letter)
      or, for a BatchStage, decide_batch() over the batch's undecided items together
      or a stage's decide_many(items): one go for the batch (age's cap charges), one by one if it fails
        |
    record decision + output in the audit store (unique per request+stage)
    [send output (next stage / gen.rejected / feed.published) + commit offset]

[...] is one Kafka transaction (pipeline.transport.transactions): the output and the input's
progress become visible together, so a crash anywhere leaves either nothing (the
record is redelivered and the stored decision re-sent) or everything. A position the group
has already committed past (a worker that lost the partition without noticing committed it
late) is skipped, never re-sent. Infrastructure failures (database down, broker unreachable) are retried without
end and commit nothing, so nothing is lost and the message is redone after recovery.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import time
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Awaitable, Callable, Mapping, Protocol

from pydantic import ValidationError
from sqlalchemy.exc import InterfaceError, OperationalError

from pipeline.audit.store import AuditStore, DeadLetterRecord, DecisionEntry, DecisionRecord, StoredDecision
from pipeline.observability import metrics, tracing
from pipeline.observability.logs import decision_context
from pipeline.runtime.batch_snapshot import batch_snapshot
from pipeline.runtime.stage import BatchStage, Clock, Stage, Verdict
from pipeline.transport.topics import TopicMap
from pipeline.transport.transactions import FencedOut, OutgoingMessage
from schemas.models import (
    SCHEMA_VERSION,
    DeadLetter,
    DeadLetterSource,
    GenerationRequest,
    MediaReference,
    Outcome,
    PipelineItem,
    PublishedItem,
    Rejection,
    ReviewRequest,
    StageDecision,
)

log = logging.getLogger("trustreel.runtime")


class AtomicSender(Protocol):
    async def send_batch(self, entries: list[tuple[DeadLetterSource, list[OutgoingMessage]]]) -> list[bool]:
        """For positions of one partition, in order: make their messages visible and mark them consumed,
        all or nothing. False for a position already committed by an earlier transaction (not re-sent)."""
        ...


class UnreadableMessage(Exception):
    def __init__(self, code: str, message: str, request_id: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.request_id = request_id


INFRASTRUCTURE_ERRORS: tuple[type[BaseException], ...] = (OperationalError, InterfaceError, ConnectionError, OSError)
"""Worth waiting out. Integrity or programming errors are bugs: they must not stall a partition forever."""


def describe_validation_error(error: ValidationError) -> str:
    """One line per problem, naming the field path: what a human fixing the producer needs."""
    parts = []
    for item in error.errors()[:10]:
        where = ".".join(str(part) for part in item["loc"]) or "(message)"
        parts.append(f"{where}: {item['msg']}")
    more = len(error.errors()) - 10
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


def read_message(raw: bytes | None, expects_request: bool, max_bytes: int) -> PipelineItem:
    """Parse a stage's input or raise UnreadableMessage with a reason a person can act on."""
    if raw is None or len(raw) == 0:
        raise UnreadableMessage("empty_message", "the message has no value")
    if len(raw) > max_bytes:
        raise UnreadableMessage("oversize_message", f"the message is {len(raw)} bytes; the limit is {max_bytes}")
    try:
        document = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise UnreadableMessage("malformed_json", f"the message is not UTF-8 text ({exc.reason} at byte {exc.start})")
    except json.JSONDecodeError as exc:
        raise UnreadableMessage("malformed_json", f"the message is not valid JSON: {exc.msg} at line {exc.lineno} "
                                                  f"column {exc.colno}")
    except RecursionError:
        raise UnreadableMessage("malformed_json", "the message nests JSON too deeply")
    if not isinstance(document, dict):
        raise UnreadableMessage("invalid_message", f"the message must be a JSON object, not {type(document).__name__}")
    request_part = document if expects_request else document.get("request")
    request_id = _peek_request_id(request_part)
    version = document.get("schema_version")
    if version is None:
        raise UnreadableMessage("invalid_message", "schema_version: Field required", request_id)
    if version != SCHEMA_VERSION:
        raise UnreadableMessage("unsupported_schema_version",
                                f"schema_version {version!r} is not supported; this worker reads version "
                                f"{SCHEMA_VERSION}", request_id)
    try:
        if expects_request:
            return PipelineItem(request=GenerationRequest.model_validate(document))
        return PipelineItem.model_validate(document)
    except ValidationError as exc:
        raise UnreadableMessage("invalid_message", describe_validation_error(exc), request_id)


def _peek_request_id(part: Any) -> str | None:
    if isinstance(part, dict) and isinstance(part.get("request_id"), str):
        return part["request_id"][:128]
    return None


@dataclass(frozen=True)
class RuntimeConfig:
    worker_id: str
    max_message_bytes: int
    stage_error_retries: int = 3
    infrastructure_backoff_seconds: float = 1.0
    infrastructure_backoff_max_seconds: float = 30.0


class StageRunner:
    """Runs one stage over its input topic's messages; see the module docstring for the lifecycle."""

    def __init__(self, stage: Stage, topics: TopicMap, audit: AuditStore, sender: AtomicSender,
                 config: RuntimeConfig, clock: Clock) -> None:
        self.stage = stage
        self.topics = topics
        self.audit = audit
        self.sender = sender
        self.config = config
        self.clock = clock
        self.is_first = topics.stages[0] == stage.name
        self.is_last = topics.stages[-1] == stage.name
        self._policy_seen: str | None = None

    async def handle(self, raw: bytes | None, source: DeadLetterSource) -> str:
        """Process one message until its effect is committed; returns what happened (for logs and tests)."""
        return (await self.handle_batch([(raw, source)]))[0]

    async def handle_batch(self, messages: list[tuple[bytes | None, DeadLetterSource]],
                           headers: list[Any] | None = None) -> list[str]:
        """Process messages in arrival order, with one database write and one Kafka transaction per
        input partition for the whole batch (a BatchStage also decides the undecided items together).

        Nothing is committed until every message of the batch is decided and recorded, and each
        partition's transaction commits the offset after its last message, so a partition's offset
        never moves past a message still in progress. `headers` (per message) carry the trace context.
        """
        started_ns = time.time_ns()
        steps = [self._read(raw, source) for raw, source in messages]
        for step, record_headers in zip(steps, headers or []):
            step.headers = record_headers
        readable = [step for step in steps if step.item is not None]
        if readable:
            stored = await self._durably(self.audit.stored_decisions,
                                         [step.item.request.request_id for step in readable], self.stage.name)
            for step in readable:
                step.stored = stored.get(step.item.request.request_id)
        await self._decide_steps([step for step in steps if step.needs_decision])
        await self._record(steps)
        self._observe(steps, started_ns)
        for partition_steps in _by_partition(steps).values():
            await self._commit_partition(partition_steps)
        for step in steps:
            self._report(step, len(steps))
        return [step.label for step in steps]

    def _observe(self, steps: list["_Step"], started_ns: int) -> None:
        """Count what this batch recorded (metrics) and open each message's span, whose context the
        outputs carry on to the next stage (they are ended once the batch is committed)."""
        metrics.BATCH_SIZE.labels(self.stage.name).observe(len(steps))
        if self.stage.policy.version != self._policy_seen:
            self._policy_seen = self.stage.policy.version
            metrics.POLICY_CHANGED.labels(self.stage.name).set_to_current_time()
        for step in steps:
            request_id = step.item.request.request_id if step.item is not None else (
                step.problem.request_id if step.problem is not None else None)
            step.span = tracing.tracer().start_span(
                f"{self.stage.name} decide", context=tracing.context_from(step.headers), start_time=started_ns,
                attributes={"trustreel.stage": self.stage.name, "trustreel.request_id": request_id or "",
                            "messaging.source.name": step.source.topic,
                            "messaging.kafka.offset": step.source.offset})
            if step.output is not None:
                step.output = replace(step.output, headers=tracing.headers_for(step.span))
            if step.label == Outcome.DEAD_LETTER.value and step.letter_code is not None:
                metrics.DEAD_LETTERS.labels(self.stage.name, step.letter_code).inc()
                step.span.set_attribute("trustreel.dead_letter", step.letter_code)
            elif isinstance(step.outcome, Verdict) and step.label == step.outcome.outcome.value:
                verdict = step.outcome
                reason = verdict.reasons[0].code if verdict.reasons else None
                metrics.count_decision(self.stage.name, verdict.outcome.value, reason, step.duration_ms / 1000)
                step.span.set_attribute("trustreel.outcome", verdict.outcome.value)
                if reason:
                    step.span.set_attribute("trustreel.reason", reason)
                if self.is_last and verdict.outcome is Outcome.APPROVED:
                    waited = (self.clock() - step.item.request.submitted_at).total_seconds()
                    metrics.END_TO_END_SECONDS.observe(max(waited, 0.0))

    def _report(self, step: "_Step", batch: int) -> None:
        request_id = step.item.request.request_id if step.item is not None else None
        log.info("%s@%d/%d -> %s (batch of %d)", step.source.topic, step.source.partition, step.source.offset,
                 step.label, batch, extra={"stage": self.stage.name, "request_id": request_id})
        if step.span is not None:
            step.span.set_attribute("trustreel.delivery", step.label)
            step.span.end()

    def _read(self, raw: bytes | None, source: DeadLetterSource) -> "_Step":
        try:
            return _Step(raw or b"", source, item=read_message(raw, self.is_first, self.config.max_message_bytes))
        except UnreadableMessage as problem:
            return _Step(raw or b"", source, problem=problem)

    async def _decide_steps(self, steps: list["_Step"]) -> None:
        """Fill in each step's verdict (or failure); copies of one request in a batch are decided once."""
        firsts: dict[str, _Step] = {}
        for step in steps:
            firsts.setdefault(step.item.request.request_id, step)
        unique = list(firsts.values())
        if not unique:
            return
        if isinstance(self.stage, BatchStage):
            started = time.perf_counter()
            outcomes = await self._decide_batch([step.item for step in unique])
            metrics.GENERATION_BUSY.record(started, time.perf_counter())  # the batch stage is generation
            duration_ms = (time.perf_counter() - started) * 1000 / len(unique)
            for step, outcome in zip(unique, outcomes):
                step.outcome, step.duration_ms = outcome, duration_ms
        else:
            first_tries = await self._durably(self._try_each, [step.item for step in unique])
            for step, (outcome, duration_ms) in zip(unique, first_tries):
                if isinstance(outcome, Exception):
                    started = time.perf_counter()
                    outcome = await self._retry_after(step.item, outcome)
                    duration_ms += (time.perf_counter() - started) * 1000
                step.outcome, step.duration_ms = outcome, duration_ms
        for step in steps:
            first = firsts[step.item.request.request_id]
            step.outcome, step.duration_ms = first.outcome, first.duration_ms

    async def _record(self, steps: list["_Step"]) -> None:
        """Make every decision and dead letter of the batch durable (two writes at most), and set
        each step's output: its stored decision's output if this position made it, else nothing."""
        letters: list[DeadLetterRecord] = []
        entries: list[DecisionEntry] = []
        deciding: list[_Step] = []
        firsts: dict[str, _Step] = {}
        for step in steps:
            failure = self._failure_of(step)
            if failure is not None:
                code, error = failure
                letters.append(self._dead_letter_record(step, code, error))
            elif step.stored is None and firsts.setdefault(step.item.request.request_id, step) is step:
                entries.append(self._decision_entry(step))
                deciding.append(step)
        await self._durably(self.audit.record_dead_letters, letters)
        for step, stored in zip(deciding, await self._durably(self.audit.record_decisions, entries)):
            step.stored = stored
        for step in steps:
            if step.letter is not None:
                step.label = Outcome.DEAD_LETTER.value
                continue
            if step.stored is None:  # a copy of a request decided earlier in this batch
                step.stored = firsts[step.item.request.request_id].stored
            if step.stored.source != step.source:
                step.label = "duplicate"
            else:
                step.output = step.stored.output
                step.label = step.outcome.outcome.value if isinstance(step.outcome, Verdict) else "resent"

    def _failure_of(self, step: "_Step") -> tuple[str, str] | None:
        if step.problem is not None:
            return step.problem.code, str(step.problem)
        if step.stored is None and isinstance(step.outcome, StageFailed):
            return "stage_error", str(step.outcome)
        return None

    def _decision_entry(self, step: "_Step") -> DecisionEntry:
        item, verdict = step.item, step.outcome
        decision = StageDecision(
            request_id=item.request.request_id, stage=self.stage.name, outcome=verdict.outcome,
            reasons=list(verdict.reasons), policy_id=self.stage.policy.policy_id,
            policy_version=self.stage.policy.version, decided_at=self.clock(), details=verdict.details,
        )
        record = DecisionRecord(decision=decision, duration_ms=step.duration_ms, source=step.source,
                                worker=self.config.worker_id)
        return item.request, record, self._output_for(item, decision, verdict.assets)

    def _dead_letter_record(self, step: "_Step", code: str, error: str) -> DeadLetterRecord:
        """Also sets the letter the step will send (and its code, for the metrics)."""
        request_id = step.problem.request_id if step.problem is not None else step.item.request.request_id
        step.letter_code = code
        step.letter, record = dead_letter(self.stage.name, self.topics.deadletter, step.source, step.raw, code, error,
                                          request_id, self.clock())
        return record

    async def _commit_partition(self, steps: list["_Step"]) -> None:
        """One transaction: every output of this partition's steps, in order, plus the offset after the last."""
        entries = [(step.source, [message for message in (step.letter, step.output) if message is not None])
                   for step in steps]
        try:
            sent = await self._durably_async(self.sender.send_batch, entries)
        except FencedOut as fenced:
            log.warning("%s: %s; leaving the records to their new owner", self.stage.name, fenced)
            for step in steps:
                step.label = "fenced"
            return
        for step, was_sent in zip(steps, sent):
            if not was_sent:
                step.label = "already delivered"

    def _try_each(self, items: list[PipelineItem]) -> list[tuple["Verdict | Exception", float]]:
        """Decide items in order in one worker thread (one hand-off per batch, not per message), over
        one registry snapshot (pipeline.runtime.batch_snapshot). The stage's prepare_batch runs first; if it
        cannot (infrastructure), the whole batch is tried again later."""
        results: list[tuple[Verdict | Exception, float]] = []
        with batch_snapshot(frozenset(item.request.requester_account for item in items),
                            frozenset(cameo for item in items for cameo in item.request.cameo_ids)):
            self._prepare_batch()
            together = self._decide_together(items)
            if together is not None:
                return together
            for item in items:
                started = time.perf_counter()
                try:
                    with decision_context(self.stage.name, item.request.request_id):
                        outcome: Verdict | Exception = self.stage.decide(item)
                except Exception as exc:  # handled by _retry_after, back on the event loop
                    outcome = exc
                results.append((outcome, (time.perf_counter() - started) * 1000))
        return results

    def _decide_together(self, items: list[PipelineItem]) -> list[tuple["Verdict | Exception", float]] | None:
        """A stage's own `decide_many` (age: the batch's cap charges in one transaction), or None to decide one
        by one: also when it fails, which a stage must only do having changed nothing (a conflict with
        another worker, the database away): each item is then decided alone, as without it."""
        decide_many = getattr(self.stage, "decide_many", None)
        if decide_many is None or len(items) < 2:
            return None
        started = time.perf_counter()
        try:
            outcomes = decide_many(items)
        except Exception as exc:
            log.info("stage %s could not decide a batch of %d together (%s: %s); deciding one by one",
                     self.stage.name, len(items), type(exc).__name__, exc)
            return None
        each_ms = (time.perf_counter() - started) * 1000 / len(items)
        return [(outcome, each_ms) for outcome in outcomes]

    def _prepare_batch(self) -> None:
        prepare = getattr(self.stage, "prepare_batch", None)
        if prepare is not None:
            prepare()

    def _decide_alone(self, item: PipelineItem) -> Verdict:
        """A retry: the item as a batch of one, so it gets the same preparation as in a batch."""
        with batch_snapshot(frozenset({item.request.requester_account}), frozenset(item.request.cameo_ids)), \
                decision_context(self.stage.name, item.request.request_id):
            self._prepare_batch()
            return self.stage.decide(item)

    async def _retry_after(self, item: PipelineItem, error: Exception) -> "Verdict | StageFailed":
        """The first try (in _try_each) failed: wait out infrastructure, or retry a stage error the
        remaining number of times."""
        if isinstance(error, INFRASTRUCTURE_ERRORS):
            log.warning("infrastructure unavailable while %s decided %s (%s: %s); retrying", self.stage.name,
                        item.request.request_id, type(error).__name__, error)
            return await self._decide_one(item)
        attempts = self.config.stage_error_retries + 1
        log.error("stage %s failed on %s (attempt 1/%d)", self.stage.name, item.request.request_id, attempts,
                  exc_info=error)
        if attempts == 1:
            return StageFailed(f"stage {self.stage.name} failed 1 time: {type(error).__name__}: {error}")
        await asyncio.sleep(0.2)
        return await self._with_retries(item.request.request_id, self._decide_alone, item, first_attempt=2)

    async def _decide_one(self, item: PipelineItem) -> "Verdict | StageFailed":
        return await self._with_retries(item.request.request_id, self._decide_alone, item)

    async def _decide_batch(self, items: list[PipelineItem]) -> "list[Verdict | StageFailed]":
        what = ", ".join(item.request.request_id for item in items)
        verdicts = await self._with_retries(what, self.stage.decide_batch, items)
        if isinstance(verdicts, StageFailed):
            return [verdicts] * len(items)
        if len(verdicts) != len(items):
            raise AssertionError(f"stage {self.stage.name} returned {len(verdicts)} verdicts for {len(items)} items")
        return verdicts

    async def _with_retries(self, what: str, decide: Callable[..., Any], argument: Any, first_attempt: int = 1) -> Any:
        """Run a stage's decision; a bug or bad data is retried a few times, then becomes StageFailed."""
        attempts = self.config.stage_error_retries + 1
        for attempt in range(first_attempt, attempts + 1):
            try:
                return await self._durably(decide, argument)
            except Exception as exc:  # a bug or bad data in the stage, not infrastructure
                log.exception("stage %s failed on %s (attempt %d/%d)", self.stage.name, what, attempt, attempts)
                if attempt == attempts:
                    return StageFailed(f"stage {self.stage.name} failed {attempts} times: "
                                       f"{type(exc).__name__}: {exc}")
                await asyncio.sleep(min(0.2 * attempt, 2.0))
        raise AssertionError("unreachable")

    def _output_for(self, item: PipelineItem, decision: StageDecision,
                    new_assets: Mapping[str, MediaReference]) -> OutgoingMessage:
        return output_message(self.topics, self.stage.name, item, decision, publishes=self.is_last,
                              new_assets=new_assets)

    async def _durably(self, function: Callable[..., Any], *args: Any) -> Any:
        """Run blocking storage work off the event loop, retrying infrastructure failures until they pass."""
        return await self._durably_async(asyncio.to_thread, function, *args)

    async def _durably_async(self, function: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        return await until_infrastructure_answers(function, *args, first_delay=self.config.infrastructure_backoff_seconds,
                                                  max_delay=self.config.infrastructure_backoff_max_seconds)


def output_message(topics: TopicMap, stage: str, item: PipelineItem, decision: StageDecision, publishes: bool,
                   new_assets: Mapping[str, MediaReference] | None = None) -> OutgoingMessage:
    """What a decision sends: a rejection, a review request, the published item, or the item for the stage after `stage`.

    Shared by the stage runtime and by people's review decisions (pipeline.cases.reviews), which resume a
    request exactly where the reviewed stage would have sent it.
    """
    request = item.request
    decisions = [*item.decisions, decision]
    assets = {**item.assets, **(new_assets or {})}
    if decision.outcome is Outcome.REJECTED:
        message: Any = Rejection(request_id=request.request_id, requester_account=request.requester_account,
                                 stage=decision.stage, reasons=decision.reasons, decision=decision,
                                 rejected_at=decision.decided_at)
        topic = topics.rejected
    elif decision.outcome is Outcome.REVIEW:
        message = ReviewRequest(request_id=request.request_id, stage=stage, reasons=decision.reasons,
                                item=PipelineItem(request=request, decisions=decisions, assets=assets),
                                requested_at=decision.decided_at)
        topic = topics.review
    elif publishes:
        message = PublishedItem(request_id=request.request_id, requester_account=request.requester_account,
                                prompt=request.prompt, cameo_ids=request.cameo_ids, assets=assets,
                                decisions=decisions, published_at=decision.decided_at)
        topic = topics.published
    else:
        message = PipelineItem(request=request, decisions=decisions, assets=assets)
        topic = topics.output_of(stage)
    return OutgoingMessage(topic=topic, key=request.request_id.encode(), value=message.model_dump_json().encode())


def dead_letter(stage: str, topic: str, source: DeadLetterSource, raw: bytes, code: str, error: str,
                request_id: str | None, received_at: datetime) -> tuple[OutgoingMessage, DeadLetterRecord]:
    """The dead-letter message and its audit row, which say the same (used by stages and state feeds)."""
    letter = DeadLetter(stage=stage, source=source, error_code=code, error=error, request_id=request_id,
                        original_base64=base64.b64encode(raw).decode(), original_sha256=hashlib.sha256(raw).hexdigest(),
                        original_size=len(raw), received_at=received_at)
    key = request_id or f"{source.topic}/{source.partition}/{source.offset}"
    # INFO, not WARNING: hostile input is expected traffic, counted in trustreel_dead_letters_total and
    # kept in gen.deadletter and the audit database; thousands of warnings would bury real ones.
    log.info("dead letter from %s: %s: %s", stage, code, error, extra={"stage": stage, "request_id": request_id})
    return (OutgoingMessage(topic=topic, key=key.encode(), value=letter.model_dump_json().encode()),
            DeadLetterRecord(stage=stage, source=source, request_id=request_id, error_code=code, error=error,
                             original=raw, received_at=received_at))


async def until_infrastructure_answers(function: Callable[..., Awaitable[Any]], *args: Any, first_delay: float = 1.0,
                                       max_delay: float = 30.0) -> Any:
    """Await `function(*args)`, retrying database and broker outages with backoff until it succeeds."""
    delay = first_delay
    while True:
        try:
            return await function(*args)
        except INFRASTRUCTURE_ERRORS as exc:
            log.warning("infrastructure unavailable (%s: %s); retrying in %.1fs", type(exc).__name__, exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, max_delay)


class StageFailed(Exception):
    pass


def _by_partition(steps: list["_Step"]) -> dict[tuple[str, int], list["_Step"]]:
    """Steps grouped by input partition, arrival order kept within each group."""
    groups: dict[tuple[str, int], list[_Step]] = {}
    for step in steps:
        groups.setdefault((step.source.topic, step.source.partition), []).append(step)
    return groups


@dataclass
class _Step:
    """One message on its way through handle_batch."""

    raw: bytes
    source: DeadLetterSource
    item: PipelineItem | None = None
    problem: UnreadableMessage | None = None
    stored: StoredDecision | None = None
    outcome: "Verdict | StageFailed | None" = None
    duration_ms: float = 0.0
    letter: OutgoingMessage | None = None
    output: OutgoingMessage | None = None
    label: str = ""
    letter_code: str | None = None
    headers: Any = None  # the input record's headers (trace context)
    span: Any = None

    @property
    def needs_decision(self) -> bool:
        return self.item is not None and self.stored is None

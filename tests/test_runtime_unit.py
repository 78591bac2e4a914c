"""Unit tests of the shared runtime with in-memory storage and emitter (no broker).

The same behaviours are tested against the real broker in test_pipeline_broker.py;
these pin down the edge cases that are hard to time on a live system.
"""

from __future__ import annotations

import asyncio
import base64
import json
from datetime import datetime, timezone

import pytest

from pipeline.audit.store import InMemoryAuditStore
from pipeline.runtime.runner import RuntimeConfig, StageRunner, UnreadableMessage, read_message
from pipeline.runtime.stage import Verdict
from pipeline.transport.topics import TopicMap
from pipeline.transport.transactions import FencedOut, OutgoingMessage
from policies.loader import LoadedPolicy
from schemas.models import DeadLetterSource, GenerationRequest, MediaReference, Outcome, PipelineItem, Reason

TOPICS = TopicMap(prefix="", stages=("consent", "publish"))
CLOCK = lambda: datetime(2026, 11, 25, tzinfo=timezone.utc)  # noqa: E731


class RecordingSender:
    """Stands in for the Kafka transaction: records what became visible and which offsets were committed."""

    def __init__(self, fail_times: int = 0) -> None:
        self.sent: list[tuple[str, bytes, bytes]] = []
        self.committed: list[int] = []
        self.fail_times = fail_times

    async def send_batch(self, entries: list[tuple[DeadLetterSource, list[OutgoingMessage]]]) -> list[bool]:
        if self.fail_times:
            self.fail_times -= 1
            raise ConnectionError("broker unreachable")
        self.sent.extend((m.topic, m.key, m.value) for _, messages in entries for m in messages)
        self.committed.append(entries[-1][0].offset + 1)
        return [True] * len(entries)


class ScriptedStage:
    name = "consent"
    policy = LoadedPolicy(policy_id="p", stage="consent", version="v" * 64, path=None, rules=None)

    def __init__(self, *verdicts_or_errors) -> None:
        self.script = list(verdicts_or_errors)
        self.calls = 0

    def decide(self, item: PipelineItem) -> Verdict:
        self.calls += 1
        step = self.script[min(self.calls, len(self.script)) - 1]
        if isinstance(step, Exception):
            raise step
        return step


def runner(stage, emitter, audit=None) -> StageRunner:
    config = RuntimeConfig(worker_id="test", max_message_bytes=4096, stage_error_retries=2,
                           infrastructure_backoff_seconds=0.01)
    return StageRunner(stage, TOPICS, audit or InMemoryAuditStore(), emitter, config, CLOCK)


def request_bytes(request_id: str = "r1") -> bytes:
    return GenerationRequest(request_id=request_id, requester_account="bob", prompt="a cat").model_dump_json().encode()


def source(offset: int = 0) -> DeadLetterSource:
    return DeadLetterSource(topic="gen.requests", partition=0, offset=offset)


def test_a_second_copy_of_a_request_gives_one_decision_and_one_output() -> None:
    emitter, stage, audit = RecordingSender(), ScriptedStage(Verdict.approve()), InMemoryAuditStore()
    run = runner(stage, emitter, audit)
    assert asyncio.run(run.handle(request_bytes(), source(0))) == "approved"
    assert asyncio.run(run.handle(request_bytes(), source(7))) == "duplicate"
    assert stage.calls == 1 and len(audit.decisions) == 1
    assert [topic for topic, _, _ in emitter.sent] == ["gen.passed.consent"]
    assert emitter.committed == [1, 8], "the copy's offset is committed too, with nothing sent"


def test_redelivery_after_a_crash_resends_the_recorded_decision() -> None:
    audit, raw = InMemoryAuditStore(), request_bytes()
    failing = runner(ScriptedStage(Verdict.approve()), RecordingSender(fail_times=10**6), audit)
    with pytest.raises(asyncio.TimeoutError):  # the worker dies before its transaction commits
        asyncio.run(asyncio.wait_for(failing.handle(raw, source(4)), timeout=0.3))
    assert len(audit.decisions) == 1
    emitter, stage = RecordingSender(), ScriptedStage(Verdict.reject([Reason(code="x", message="changed")]))
    restarted = runner(stage, emitter, audit)
    assert asyncio.run(restarted.handle(raw, source(4))) == "resent"
    assert stage.calls == 0, "the recorded decision is replayed, never re-decided"
    assert len(emitter.sent) == 1 and emitter.sent[0][0] == "gen.passed.consent"
    assert emitter.committed == [5]


def test_broker_outage_is_retried_not_dead_lettered() -> None:
    emitter = RecordingSender(fail_times=3)
    assert asyncio.run(runner(ScriptedStage(Verdict.approve()), emitter).handle(request_bytes(), source())) == "approved"
    assert len(emitter.sent) == 1


def test_a_failing_stage_is_retried_then_dead_lettered_with_the_error() -> None:
    emitter, audit = RecordingSender(), InMemoryAuditStore()
    stage, raw = ScriptedStage(KeyError("boom")), request_bytes()
    assert asyncio.run(runner(stage, emitter, audit).handle(raw, source())) == "dead_letter"
    assert stage.calls == 3
    topic, key, value = emitter.sent[0]
    letter = json.loads(value)
    assert (topic, key, letter["error_code"], letter["request_id"]) == ("gen.deadletter", b"r1", "stage_error", "r1")
    assert "KeyError" in letter["error"]
    assert base64.b64decode(letter["original_base64"]) == raw


def test_a_flaky_stage_that_recovers_is_not_dead_lettered() -> None:
    emitter = RecordingSender()
    stage = ScriptedStage(RuntimeError("once"), Verdict.approve())
    assert asyncio.run(runner(stage, emitter).handle(request_bytes(), source())) == "approved"


def test_rejection_goes_to_the_rejected_topic_with_reasons() -> None:
    emitter = RecordingSender()
    stage = ScriptedStage(Verdict.reject([Reason(code="cameo_unknown", message="Cameo c does not exist.")]))
    assert asyncio.run(runner(stage, emitter).handle(request_bytes(), source())) == "rejected"
    topic, _, value = emitter.sent[0]
    assert topic == "gen.rejected"
    assert json.loads(value)["reasons"] == [{"code": "cameo_unknown", "message": "Cameo c does not exist."}]


@pytest.mark.parametrize(
    ("raw", "code", "fragment"),
    [
        (b"", "empty_message", "no value"),
        (b"x" * 5000, "oversize_message", "5000 bytes; the limit is 4096"),
        (b"\xff\xfe{}", "malformed_json", "not UTF-8"),
        (b'{"a": ', "malformed_json", "not valid JSON"),
        (b"[1, 2]", "invalid_message", "must be a JSON object, not list"),
        (b'{"request_id": "r9"}', "invalid_message", "schema_version: Field required"),
        (b'{"schema_version": 2, "request_id": "r9"}', "unsupported_schema_version", "schema_version 2"),
        (b'{"schema_version": 1, "request_id": "r9", "prompt": "p"}', "invalid_message",
         "requester_account: Field required"),
        (b"[" * 3000 + b"]" * 3000, "malformed_json", "nests JSON too deeply"),
    ],
)
def test_unreadable_input_is_explained(raw: bytes, code: str, fragment: str) -> None:
    with pytest.raises(UnreadableMessage) as problem:
        read_message(raw, expects_request=True, max_bytes=4096 if code == "oversize_message" else 10**6)
    assert problem.value.code == code
    assert fragment in str(problem.value)


def test_dead_letter_of_the_same_input_position_is_written_once() -> None:
    emitter, audit = RecordingSender(), InMemoryAuditStore()
    run = runner(ScriptedStage(Verdict.approve()), emitter, audit)
    assert asyncio.run(run.handle(b"not json", source(3))) == "dead_letter"
    assert asyncio.run(run.handle(b"not json", source(3))) == "dead_letter"  # redelivered: the transaction failed
    assert len(audit.dead_letters) == 1


class BatchingStage:
    """A BatchStage that approves everything, attaching a made-up asset, and records its batches."""

    name = "consent"
    policy = ScriptedStage.policy
    batch_size = 8
    batch_wait_seconds = 0.1

    def __init__(self) -> None:
        self.batches: list[list[str]] = []

    def decide(self, item: PipelineItem) -> Verdict:
        return self.decide_batch([item])[0]

    def decide_batch(self, items: list[PipelineItem]) -> list[Verdict]:
        self.batches.append([item.request.request_id for item in items])
        video = MediaReference(uri="asset://sha256/" + "a" * 64, sha256="a" * 64, media_type="video/mp4")
        return [Verdict(Outcome.APPROVED, (), {"n": index}, {"video": video}) for index, _ in enumerate(items)]


def test_a_batch_is_decided_together_and_committed_in_arrival_order() -> None:
    emitter, stage = RecordingSender(), BatchingStage()
    run = runner(stage, emitter)
    outcomes = asyncio.run(run.handle_batch([(request_bytes("b1"), source(0)), (b"{broken", source(1)),
                                             (request_bytes("b2"), source(2)), (request_bytes("b1"), source(3))]))
    assert outcomes == ["approved", "dead_letter", "approved", "duplicate"]
    assert stage.batches == [["b1", "b2"]]  # the copy of b1 is not generated twice
    assert emitter.committed == [4]  # one transaction for the partition, ending after its last message
    assert [topic for topic, _, _ in emitter.sent] == ["gen.passed.consent", "gen.deadletter", "gen.passed.consent"]
    passed = [json.loads(value) for topic, _, value in emitter.sent if topic == "gen.passed.consent"]
    assert [item["assets"]["video"]["sha256"] for item in passed] == ["a" * 64] * 2


class PartitionSender(RecordingSender):
    """Records one transaction per call; partitions in `fenced` belong to another worker now."""

    def __init__(self, fenced: set[int]) -> None:
        super().__init__()
        self.fenced = fenced
        self.transactions: list[tuple[int, int, list[str]]] = []

    async def send_batch(self, entries: list[tuple[DeadLetterSource, list[OutgoingMessage]]]) -> list[bool]:
        last = entries[-1][0]
        if last.partition in self.fenced:
            raise FencedOut(f"partition {last.partition} moved")
        self.transactions.append((last.partition, last.offset + 1,
                                  [m.key.decode() for _, messages in entries for m in messages]))
        return [True] * len(entries)


def test_a_batch_over_several_partitions_commits_each_partition_alone() -> None:
    emitter = PartitionSender(fenced={1})
    audit = InMemoryAuditStore()
    run = runner(ScriptedStage(Verdict.approve()), emitter, audit)
    at = lambda partition, offset: DeadLetterSource(topic="gen.requests", partition=partition, offset=offset)  # noqa: E731
    outcomes = asyncio.run(run.handle_batch([(request_bytes("a"), at(0, 5)), (request_bytes("b"), at(1, 9)),
                                             (request_bytes("c"), at(0, 6)), (request_bytes("d"), at(2, 0))]))
    assert outcomes == ["approved", "fenced", "approved", "approved"]
    assert emitter.transactions == [(0, 7, ["a", "c"]), (2, 1, ["d"])]
    # the fenced partition's decision is stored; its new owner re-sends it from the same position
    assert audit.stored_decision("b", "consent").source == at(1, 9)


class PreparingStage(ScriptedStage):
    """Counts prepare_batch calls; the first `failures` of them find the state feeds behind."""

    def __init__(self, failures: int = 0) -> None:
        super().__init__(Verdict.approve())
        self.prepared = 0
        self.failures = failures
        self.prepared_before_decide: list[bool] = []

    def prepare_batch(self) -> None:
        self.prepared += 1
        if self.prepared <= self.failures:
            raise ConnectionError("state feeds behind")

    def decide(self, item: PipelineItem) -> Verdict:
        self.prepared_before_decide.append(self.prepared > self.failures)
        return super().decide(item)


def test_prepare_batch_runs_once_before_the_batch_and_an_outage_there_is_waited_out() -> None:
    stage, emitter = PreparingStage(failures=1), RecordingSender()
    run = StageRunner(stage, TOPICS, InMemoryAuditStore(), emitter,
                      RuntimeConfig(worker_id="w", max_message_bytes=65536, infrastructure_backoff_seconds=0.01),
                      CLOCK)
    outcomes = asyncio.run(run.handle_batch([(request_bytes(f"p{n}"), source(n)) for n in range(3)]))
    assert outcomes == ["approved"] * 3
    assert stage.prepared == 2 and stage.prepared_before_decide == [True] * 3


class TogetherStage(ScriptedStage):
    """Decides a batch in one go (as age charges caps), or fails doing so, having changed nothing."""

    def __init__(self, fails: bool) -> None:
        super().__init__(Verdict.approve(how="alone"))
        self.fails = fails
        self.batches: list[int] = []

    def decide_many(self, items: list[PipelineItem]) -> list[Verdict | Exception]:
        self.batches.append(len(items))
        if self.fails:
            raise RuntimeError("another worker charged meanwhile")
        return [ValueError("bad item") if item.request.request_id == "p1" else Verdict.approve(how="together")
                for item in items]


@pytest.mark.parametrize("fails", [False, True])
def test_a_stage_deciding_a_batch_together_or_one_by_one_when_that_fails(fails: bool) -> None:
    stage, emitter = TogetherStage(fails), RecordingSender()
    run = runner(stage, emitter)
    outcomes = asyncio.run(run.handle_batch([(request_bytes(f"p{n}"), source(n)) for n in range(3)]))
    assert outcomes == ["approved"] * 3 and stage.batches == [3]
    hows = [json.loads(value)["decisions"][-1]["details"]["how"] for _, _, value in emitter.sent]
    # p1's own error is retried alone; a failed batch decision leaves every item to decide() alone
    assert hows == (["alone"] * 3 if fails else ["together", "alone", "together"])


def test_registry_reads_are_remembered_within_a_batch_only() -> None:
    from pipeline.runtime.batch_snapshot import batch_snapshot, remembered

    loads: list[str] = []

    def load() -> str:
        loads.append("cam-1")
        return f"state {len(loads)}"

    with batch_snapshot():
        assert remembered(("cameo", "cam-1"), load) == remembered(("cameo", "cam-1"), load) == "state 1"
    assert remembered(("cameo", "cam-1"), load) == "state 2"  # outside a batch: read every time
    with batch_snapshot():
        assert remembered(("cameo", "cam-1"), load) == "state 3"  # a new batch sees new state


class CommittedPastSender(RecordingSender):
    """The group's offset is already past `committed`: those positions were delivered by a lost owner."""

    def __init__(self, committed: int) -> None:
        super().__init__()
        self.committed_offset = committed

    async def send_batch(self, entries: list[tuple[DeadLetterSource, list[OutgoingMessage]]]) -> list[bool]:
        fresh = [(position, messages) for position, messages in entries if position.offset >= self.committed_offset]
        if fresh:
            await super().send_batch(fresh)
        return [position.offset >= self.committed_offset for position, _ in entries]


def test_positions_committed_by_a_lost_owner_are_not_sent_again() -> None:
    audit = InMemoryAuditStore()
    first = runner(ScriptedStage(Verdict.approve()), RecordingSender(), audit)
    asyncio.run(first.handle_batch([(request_bytes("z1"), source(3)), (request_bytes("z2"), source(4))]))
    emitter = CommittedPastSender(committed=4)  # the lost owner's transaction for offset 3 did commit
    again = runner(ScriptedStage(Verdict.approve()), emitter, audit)
    outcomes = asyncio.run(again.handle_batch([(request_bytes("z1"), source(3)), (request_bytes("z2"), source(4))]))
    assert outcomes == ["already delivered", "resent"]
    assert [key for _, key, _ in emitter.sent] == [b"z2"] and emitter.committed == [5]

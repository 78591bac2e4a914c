"""Faults repeated during a steady stream of requests through every moderation stage.

Each test has a short run (in the default suite) and a long one behind the `soak` marker:

    make soak        # = pytest -m soak: thousands of requests, many kills / restarts

    producer thread: requests at a steady rate (mixed: published, rejected at consent, at age,
                     dead letters) while the fault loop strikes again and again
      -> after the last fault: wait until every request has its terminal state
      -> check: exactly one terminal state each, no duplicates on feed.published or gen.rejected,
                and the audit database says what the topics say

Bounded in count and time; everything is on localhost.
"""

from __future__ import annotations

import json
import random
import threading
import time
import zlib
from dataclasses import dataclass

import pytest
from sqlalchemy import select

from pipeline.audit.db import DeadLetterRow, DecisionRow
from pipeline.audit.queries import request_path
from schemas.models import AccountEvent, ConsentEvent, GenerationRequest
from tests.conftest import wait_for

pytestmark = [pytest.mark.broker, pytest.mark.stages("consent", "likeness", "age", "publish")]


@dataclass(frozen=True)
class Scale:
    requests: int
    faults: int
    seconds_between_faults: float


SHORT = Scale(requests=150, faults=3, seconds_between_faults=3.0)
LONG = Scale(requests=3000, faults=15, seconds_between_faults=6.0)
SCALES = [pytest.param(SHORT, id="short"), pytest.param(LONG, id="long", marks=[pytest.mark.soak,
                                                                                 pytest.mark.timeout(3600)])]


ADULTS = 40
"""Requesters the published requests are spread over, each well under the adult daily cap (100)."""


def expected_outcomes(count: int) -> dict[str, str]:
    """Request id -> the terminal state it must reach, a mix that exercises every route."""
    kinds = ["published"] * 6 + ["rejected at consent", "rejected at age", "dead letter"]
    return {f"chaos-{n:05d}": kinds[n % len(kinds)] for n in range(count)}


def message_for(request_id: str, expected: str) -> bytes:
    if expected == "dead letter":
        return json.dumps({"schema_version": 1, "request_id": request_id, "prompt": 42}).encode()
    requester = "kid" if expected == "rejected at age" else f"adult-{zlib.crc32(request_id.encode()) % ADULTS}"
    cameo = "cam-nobody" if expected == "rejected at consent" else "cam-chaos"
    return GenerationRequest(request_id=request_id, requester_account=requester, prompt=f"a kite, {request_id}",
                             cameo_ids=[cameo]).model_dump_json().encode()


def prepare_state(producer) -> None:
    from datetime import date

    for n in range(ADULTS):
        producer.send_account_event(AccountEvent(event_id=f"adult-{n}", account_id=f"adult-{n}", kind="profile",
                                                 birth_date=date(1990, 1, 1), assurance="verified_document"))
    producer.send_account_event(AccountEvent(event_id="kid", account_id="kid", kind="profile",
                                             birth_date=date(2016, 1, 1), assurance="self_declared"))
    producer.send_consent(ConsentEvent(event_id="c1", cameo_id="cam-chaos", kind="register", owner_account="adult-0",
                                       audience="everyone"))
    producer.send_consent(ConsentEvent(event_id="c2", cameo_id="cam-chaos", kind="verify", verified_by="svc",
                                       verification_method="liveness"))


def wait_until_running(producer, read_topic) -> None:
    """One request all the way through before the first fault. (A worker that starts while the broker
    restarts can see its topics as missing and subscribe to nothing: a start-up fault, not tested here.)"""
    producer.send_raw("gen.requests", message_for("chaos-warm", "published"), key=b"chaos-warm")
    reader = read_topic("feed.published")
    wait_for(lambda: any(json.loads(r.value)["request_id"] == "chaos-warm" for r in reader.poll()), 120,
             what="the first request to be published")


class SteadyProducer(threading.Thread):
    """Sends the requests at a steady pace over `seconds`, so faults land while traffic flows."""

    def __init__(self, producer, expected: dict[str, str], seconds: float) -> None:
        super().__init__(daemon=True)
        self.producer, self.expected, self.seconds = producer, expected, seconds
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            items = list(self.expected.items())
            chunks = max(1, int(self.seconds / 0.25))
            size = max(1, -(-len(items) // chunks))
            for start in range(0, len(items), size):
                for request_id, expected in items[start:start + size]:
                    self.producer.send_raw("gen.requests", message_for(request_id, expected),
                                           key=request_id.encode())
                time.sleep(0.25)
        except BaseException as exc:  # reported by the test thread
            self.error = exc


def assert_exactly_one_outcome_each(settings, read_topic, sessions, expected: dict[str, str],
                                    timeout: float) -> None:
    """Every request at its terminal state once, and the audit database agreeing with the topics."""
    published_reader, rejected_reader, letters_reader = (read_topic("feed.published"), read_topic("gen.rejected"),
                                                         read_topic("gen.deadletter"))

    def seen() -> int:
        return (len(published_reader.poll()) + len(rejected_reader.poll()) + len(letters_reader.poll()))

    wait_for(lambda: seen() >= len(expected) + 1, timeout, interval=1.0, what=f"{len(expected)} terminal messages")
    published = [item["request_id"] for item in published_reader.settle(3.0) if item["request_id"] != "chaos-warm"]
    rejected = [(item["request_id"], item["stage"]) for item in rejected_reader.settle(1.0)]
    letters = [item["request_id"] for item in letters_reader.settle(1.0)]
    assert len(published) == len(set(published)), "feed.published has no duplicates"
    assert len(rejected) == len(set(rejected)), "gen.rejected has no duplicates"
    assert len(letters) == len(set(letters)), "gen.deadletter has no duplicates"
    from_topics = {request_id: "published" for request_id in published}
    for request_id, stage in rejected:
        assert request_id not in from_topics, f"{request_id} has two terminal states"
        from_topics[request_id] = f"rejected at {stage}"
    for request_id in letters:
        assert request_id not in from_topics, f"{request_id} has two terminal states"
        from_topics[request_id] = "dead letter"
    assert from_topics == expected
    with sessions() as session:
        decided = {(row.request_id, row.stage, row.outcome) for row in session.scalars(select(DecisionRow))}
        dead = [row.request_id for row in session.scalars(select(DeadLetterRow))]
    assert {rid for rid, stage, outcome in decided
            if stage == "publish" and outcome == "approved" and rid != "chaos-warm"} == set(published)
    assert {(rid, stage) for rid, stage, outcome in decided if outcome == "rejected"} == set(rejected)
    assert sorted(dead) == sorted(letters), "one dead-letter row per dead letter"
    sample = random.Random(5).sample(sorted(expected), min(20, len(expected)))
    for request_id in sample:  # what an auditor reads agrees too
        path = request_path(sessions, request_id)
        assert path is not None and path.final_outcome == expected[request_id], request_id


@pytest.mark.parametrize("scale", SCALES)
def test_workers_killed_again_and_again(settings, producer, start_worker, read_topic, sessions,
                                        scale: Scale) -> None:
    prepare_state(producer)
    workers = [start_worker(), start_worker()]
    wait_until_running(producer, read_topic)
    expected = expected_outcomes(scale.requests)
    sender = SteadyProducer(producer, expected, scale.faults * scale.seconds_between_faults)
    sender.start()
    chaos = random.Random(7)
    for _ in range(scale.faults):
        time.sleep(scale.seconds_between_faults)
        victim = chaos.randrange(len(workers))
        workers[victim].kill()  # SIGKILL: no chance to commit, flush or leave the group
        workers[victim] = start_worker()
    sender.join()
    assert sender.error is None, sender.error
    assert_exactly_one_outcome_each(settings, read_topic, sessions, expected, timeout=120 + scale.requests / 5)
    assert all(worker.alive for worker in workers)


@pytest.mark.parametrize("scale", SCALES)
def test_broker_restarted_again_and_again(settings, broker, producer, start_worker, read_topic, sessions,
                                          scale: Scale) -> None:
    from pipeline.producer import PipelineProducer

    prepare_state(producer)
    worker = start_worker()
    wait_until_running(producer, read_topic)  # faults start once the worker is in the group
    expected = expected_outcomes(scale.requests)
    items = list(expected.items())
    per_round = -(-len(items) // (scale.faults + 1))
    for round_number in range(scale.faults + 1):
        with PipelineProducer(settings) as fresh:  # each restart drops every client connection
            for request_id, outcome in items[round_number * per_round:(round_number + 1) * per_round]:
                fresh.send_raw("gen.requests", message_for(request_id, outcome), key=request_id.encode())
        if round_number < scale.faults:
            time.sleep(scale.seconds_between_faults)
            broker.stop()
            time.sleep(2)
            broker.start()
    assert_exactly_one_outcome_each(settings, read_topic, sessions, expected, timeout=180 + scale.requests / 5)
    assert worker.alive, worker.output()

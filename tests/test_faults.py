"""Short fault runs on the real broker: the database goes away, the broker restarts, hostile input floods in.

After each, every submitted request has exactly one terminal state and feed.published has no duplicates.
Bounded in count and time; everything is on localhost.
"""

from __future__ import annotations

import json
import random
import time
import uuid

import pytest
from sqlalchemy import func, select

from pipeline.audit.db import DeadLetterRow, DecisionRow, make_engine, make_sessionmaker, upgrade
from pipeline.settings import Settings
from pipeline.state.consent_registry import SqlConsentRegistry
from pipeline.transport.topics import ensure_topics
from schemas.models import ConsentEvent, GenerationRequest
from tests.conftest import wait_for

pytestmark = [pytest.mark.broker, pytest.mark.stages("consent", "publish")]


def request(request_id: str) -> GenerationRequest:
    return GenerationRequest(request_id=request_id, requester_account="carol", prompt=f"a paper boat {request_id}")


def assert_published_exactly_once(read_topic, ids: list[str], timeout: float = 120) -> None:
    reader = read_topic("feed.published")
    wait_for(lambda: {json.loads(r.value)["request_id"] for r in reader.poll()} >= set(ids), timeout,
             interval=0.5, what=f"{len(ids)} requests on feed.published")
    published = [item["request_id"] for item in reader.settle(3.0)]
    assert sorted(published) == sorted(set(published)), "no request is published twice"
    assert set(published) == set(ids)


def test_database_outage_is_waited_out(settings: Settings, postgres_server, producer, start_worker,
                                       read_topic) -> None:
    url = postgres_server.create_database(f"outage_{uuid.uuid4().hex[:8]}")
    on_postgres = settings.model_copy(update={"db_url": url})
    upgrade(url)
    worker = start_worker(settings_override=on_postgres)
    ids = [f"db-{n:02d}" for n in range(40)]
    for request_id in ids[:20]:
        producer.submit(request(request_id))
    wait_for(lambda: len(read_topic("feed.published").poll()) >= 5, 60, what="traffic before the outage")
    postgres_server.stop()
    try:
        for request_id in ids[20:]:
            producer.submit(request(request_id))
        for event in [ConsentEvent(event_id="late-1", cameo_id="cam-late", kind="register", owner_account="carol",
                                   audience="everyone"),
                      ConsentEvent(event_id="late-2", cameo_id="cam-late", kind="verify", verified_by="svc",
                                   verification_method="liveness")]:
            producer.send_consent(event)  # the registry must apply these once the database is back
        time.sleep(6)
        assert worker.alive, worker.output()
    finally:
        postgres_server.start()
    registry_engine = make_engine(url)
    registry = SqlConsentRegistry(make_sessionmaker(registry_engine))
    wait_for(lambda: (state := registry.get("cam-late")) is not None and state.verified_at is not None, 90,
             what="the consent registry to apply what arrived during the outage")
    registry_engine.dispose()
    producer.submit(GenerationRequest(request_id="db-cameo", requester_account="dave", prompt="with carol",
                                      cameo_ids=["cam-late"]))
    ids.append("db-cameo")
    assert_published_exactly_once(read_topic, ids)
    engine = make_engine(url)
    with make_sessionmaker(engine)() as session:
        assert session.scalar(select(func.count()).select_from(DecisionRow)) == 2 * len(ids)
    engine.dispose()
    assert "infrastructure unavailable" in worker.output()


def test_broker_restart_mid_run(settings: Settings, broker, producer, start_worker, read_topic) -> None:
    worker = start_worker()
    ids = [f"restart-{n:02d}" for n in range(40)]
    for request_id in ids[:20]:
        producer.submit(request(request_id))
    wait_for(lambda: len(read_topic("feed.published").poll()) >= 5, 60, what="traffic before the restart")
    broker.stop()
    time.sleep(2)
    broker.start()
    ensure_topics(settings)
    from pipeline.producer import PipelineProducer

    with PipelineProducer(settings) as fresh:  # the old producer's connections died with the broker
        for request_id in ids[20:]:
            fresh.submit(request(request_id))
    assert_published_exactly_once(read_topic, ids, timeout=180)
    assert worker.alive, worker.output()


def test_a_worker_that_joins_while_the_broker_restarts_consumes_or_asks_to_be_restarted(
        settings: Settings, broker, producer, start_worker, read_topic) -> None:
    """The broker restarts just as a worker joins its group (how a worker once ended up subscribed to nothing,
    idle for good). Its requests are published exactly once: the worker consumes them, or finds itself
    stranded (holding nothing while they wait) and exits with code 75, and the supervisor here starts it again."""
    from pipeline.producer import PipelineProducer
    from pipeline.worker.app import STRANDED_EXIT_CODE

    quick = settings.model_copy(update={"worker_stall_seconds": 8.0})
    worker = start_worker(settings_override=quick)
    wait_for(lambda: "ReadCommittedConsumerThread]: Starting" in worker.output() or not worker.alive, 120,
             what="the worker's consumer to start")
    assert worker.alive, worker.output()
    time.sleep(0.5)  # this moment reproduced it: faust's assignor found the topics missing and assigned nothing
    broker.stop()
    time.sleep(2)
    broker.start()
    ensure_topics(settings)
    ids = [f"joining-{n:02d}" for n in range(20)]
    with PipelineProducer(settings) as fresh:
        for request_id in ids:
            fresh.submit(request(request_id))
    reader = read_topic("feed.published")
    restarts, deadline = 0, time.monotonic() + 240
    while {json.loads(r.value)["request_id"] for r in reader.poll()} < set(ids) and time.monotonic() < deadline:
        if not worker.alive:  # the supervisor's part
            assert worker.process.returncode == STRANDED_EXIT_CODE, worker.output()[-3000:]
            assert "stranded: this worker holds no partition" in worker.output()
            restarts += 1
            worker = start_worker(settings_override=quick)
        time.sleep(0.5)
    print(f"worker restarts after being stranded: {restarts}")
    assert_published_exactly_once(read_topic, ids, timeout=30)
    assert worker.alive, worker.output()


def hostile_messages(count: int, seed: int = 11) -> list[bytes]:
    """Malformed, truncated, oversized, wrong-type and hostile messages, each unreadable for the stage."""
    rng = random.Random(seed)
    good = request("template").model_dump(mode="json")
    hostile_values = ["'; DROP TABLE decisions; --", "../../../../etc/passwd", "\u0000\u202e", "A" * 5000,
                      "${jndi:ldap://x}", "<script>alert(1)</script>", "\udcff"]
    makers = [
        lambda: bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 300))),
        lambda: json.dumps(good).encode()[: rng.randint(1, 60)],
        lambda: ("[" * 5000 + "]" * 5000).encode(),
        lambda: json.dumps({**good, "request_id": rng.choice(hostile_values)}, ensure_ascii=False)
        .encode("utf-8", "surrogatepass"),
        lambda: json.dumps({**good, "requester_account": rng.choice(hostile_values)}).encode(),
        lambda: json.dumps({**good, "cameo_ids": rng.choice(hostile_values)}).encode(),
        lambda: json.dumps({**good, "schema_version": rng.choice(["1", 1.5, None, [], 2])}).encode(),
        lambda: json.dumps({**good, "duration_seconds": rng.choice(["long", -1, 10**9, {}])}).encode(),
        lambda: json.dumps({**good, "prompt": "x" * 70_000}).encode(),
        lambda: b"\xc3\x28" + json.dumps(good).encode(),
        lambda: json.dumps(rng.choice([[], "text", 42, None, True])).encode(),
    ]
    return [makers[n % len(makers)]() for n in range(count)]


INPUT_TOPICS = ("gen.requests", "gen.passed.consent", "cameo.consents", "accounts.events")
"""Every topic a consent + publish pipeline reads: both stages' inputs and both state feeds."""


def flood(producer, count: int, good: list[str], seed: int = 11) -> list[bytes]:
    """`count` hostile messages spread over every input topic, a good request after every 11th."""
    bad = hostile_messages(count, seed)
    for index, raw in enumerate(bad):
        producer.send_raw(INPUT_TOPICS[index % len(INPUT_TOPICS)], raw, key=f"fuzz-{index}".encode())
        if index % 11 == 0 and index // 11 < len(good):
            producer.submit(request(good[index // 11]))
    return bad


@pytest.mark.parametrize("count", [pytest.param(220, id="short"),
                                   pytest.param(5000, id="long", marks=[pytest.mark.soak, pytest.mark.timeout(1800)])])
def test_hostile_input_is_dead_lettered_while_good_traffic_flows(settings: Settings, producer, start_worker,
                                                                 read_topic, sessions, count: int) -> None:
    worker = start_worker()
    good = [f"good-{n:03d}" for n in range(count // 11)]
    bad = flood(producer, count, good)
    producer.send_consent(ConsentEvent(event_id="fuzz-cam-1", cameo_id="cam-fuzz", kind="register",
                                       owner_account="carol", audience="everyone"))
    producer.send_consent(ConsentEvent(event_id="fuzz-cam-2", cameo_id="cam-fuzz", kind="verify", verified_by="svc",
                                       verification_method="liveness"))
    registry = SqlConsentRegistry(sessions)  # the state feeds still apply good records amid the flood
    wait_for(lambda: (state := registry.get("cam-fuzz")) is not None and state.verified_at is not None,
             60 + count / 20, what="the consent registry to apply the good records")
    producer.submit(GenerationRequest(request_id="good-cameo", requester_account="dave", prompt="with carol",
                                      cameo_ids=["cam-fuzz"]))
    letters = read_topic("gen.deadletter").wait_for_count(len(bad), timeout=180 + count / 10)
    assert all(letter["error"] and letter["error_code"] for letter in letters)
    assert {letter["error_code"] for letter in letters} <= {
        "malformed_json", "invalid_message", "unsupported_schema_version", "oversize_message", "empty_message",
        "invalid_state_record"}
    assert {letter["source"]["topic"] for letter in letters} == {settings.topic_prefix + t for t in INPUT_TOPICS}
    assert_published_exactly_once(read_topic, [*good, "good-cameo"], timeout=120 + count / 20)
    positions = [(letter["source"]["topic"], letter["source"]["partition"], letter["source"]["offset"])
                 for letter in read_topic("gen.deadletter").settle(2.0)]
    assert len(positions) == len(set(positions)) == len(bad), "each bad message is dead-lettered once"
    assert worker.alive, worker.output()
    with sessions() as session:  # the hostile values were data, never SQL; every letter has its audit row
        assert session.scalar(select(func.count()).select_from(DecisionRow)) == 2 * (len(good) + 1)
        assert session.scalar(select(func.count()).select_from(DeadLetterRow)) == len(bad)


def test_three_workers_share_the_load_and_survive_one_dying(settings: Settings, producer, start_worker,
                                                            read_topic, sessions) -> None:
    workers = [start_worker() for _ in range(3)]
    before: list[str] = []

    def deciders(request_ids: list[str]) -> set[str]:
        with sessions() as session:
            return set(session.scalars(select(DecisionRow.worker).where(DecisionRow.request_id.in_(request_ids))))

    def trickle_until_all_three_decide() -> bool:  # the first worker up could take a whole burst alone
        batch = [f"scale-a{len(before) + n:03d}" for n in range(3)]
        producer.submit_many([request(request_id) for request_id in batch])
        before.extend(batch)
        return len(deciders(before)) == 3

    wait_for(trickle_until_all_three_decide, 120, interval=0.5, what="all three workers to take a share")
    workers[0].kill()
    after = [f"scale-b{n:03d}" for n in range(60)]
    producer.submit_many([request(request_id) for request_id in after])
    assert_published_exactly_once(read_topic, before + after, timeout=180)
    assert workers[1].alive and workers[2].alive
    assert len(deciders(after)) == 2, "both survivors took work after the rebalance"


@pytest.mark.stages("likeness", "publish")
def test_a_revocation_sent_before_publish_decides_is_never_missed(settings: Settings, producer, start_worker,
                                                                 read_topic) -> None:
    """The consent registry is filled asynchronously; publish waits until it has applied every consent
    record produced before its batch (pipeline.transport.feed_freshness), so a backlog cannot hide a revocation.
    Publish alone is tested here: the consent stage waits the same way (tests/test_consent_freshness_broker.py),
    so in a full pipeline it would catch these first."""
    for event in [ConsentEvent(event_id="order-1", cameo_id="cam-order", kind="register", owner_account="dave",
                               audience="everyone"),
                  ConsentEvent(event_id="order-2", cameo_id="cam-order", kind="verify", verified_by="svc",
                               verification_method="liveness")]:
        producer.send_consent(event)
    start_worker()
    producer.submit(GenerationRequest(request_id="order-warm", requester_account="carol", prompt="warm up",
                                      cameo_ids=["cam-order"]))
    read_topic("feed.published").wait_for_count(1)
    for n in range(1500):  # a backlog the registry takes several seconds to apply, revocation last
        producer.send_consent(ConsentEvent(event_id=f"fill-{n}", cameo_id=f"cam-fill-{n % 40}", kind="grant",
                                           account=f"acct-{n}", access="allow"))
    producer.send_consent(ConsentEvent(event_id="order-revoke", cameo_id="cam-order", kind="revoke",
                                       reason="owner withdrew"))
    ids = [f"order-{n:02d}" for n in range(20)]
    producer.submit_many([GenerationRequest(request_id=request_id, requester_account="carol", prompt="after",
                                            cameo_ids=["cam-order"]) for request_id in ids])
    rejected = {item["request_id"]: item for item in read_topic("gen.rejected").wait_for_count(20, timeout=180)}
    assert set(rejected) == set(ids)
    assert {reason["code"] for item in rejected.values() for reason in item["reasons"]} == {"cameo_revoked"}
    assert {item["stage"] for item in rejected.values()} == {"publish"}
    assert [item["request_id"] for item in read_topic("feed.published").settle(2.0)] == ["order-warm"]


def test_feed_freshness_waits_until_the_group_has_applied_the_state_topics(settings: Settings, producer) -> None:
    from kafka import KafkaConsumer, TopicPartition

    from pipeline.transport.feed_freshness import FeedBehind, KafkaFeedFreshness
    from pipeline.transport.security import KafkaConnection
    from pipeline.transport.topics import TopicMap

    producer.send_consent(ConsentEvent(event_id="fresh-1", cameo_id="cam-fresh", kind="register",
                                       owner_account="dave", audience="everyone"))
    consents = TopicMap.from_settings(settings).consents
    freshness = KafkaFeedFreshness(KafkaConnection.from_settings(settings), settings.consumer_group, [consents], wait_seconds=1.0)
    try:
        with pytest.raises(FeedBehind, match=r"cameo\.consents\[\d\] at 0 of 1"):
            freshness.wait_until_current()  # no worker has applied (and committed) the record
        consumer = KafkaConsumer(bootstrap_servers=settings.bootstrap, group_id=settings.consumer_group,
                                 enable_auto_commit=False)
        partitions = [TopicPartition(consents, p) for p in consumer.partitions_for_topic(consents)]
        consumer.assign(partitions)
        consumer.seek_to_end(*partitions)
        for partition in partitions:
            consumer.position(partition)
        consumer.commit()  # what a feed agent's transaction does once the record is applied
        consumer.close(autocommit=False)
        freshness.wait_until_current()
    finally:
        freshness.close()

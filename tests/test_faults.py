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

from pipeline.consent_registry import SqlConsentRegistry
from pipeline.db import DecisionRow, make_engine, make_sessionmaker, upgrade
from pipeline.settings import Settings
from pipeline.topics import ensure_topics
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


def test_hostile_input_is_dead_lettered_while_good_traffic_flows(settings: Settings, producer, start_worker,
                                                                 read_topic, sessions) -> None:
    worker = start_worker()
    bad = hostile_messages(220)
    good = [f"good-{n:02d}" for n in range(20)]
    for index, raw in enumerate(bad):
        producer.send_raw("gen.requests", raw, key=f"fuzz-{index}".encode())
        if index % 11 == 0:
            producer.submit(request(good[index // 11]))
    letters = read_topic("gen.deadletter").wait_for_count(len(bad), timeout=180)
    assert all(letter["error"] and letter["error_code"] for letter in letters)
    assert {letter["error_code"] for letter in letters} <= {
        "malformed_json", "invalid_message", "unsupported_schema_version", "oversize_message", "empty_message"}
    assert_published_exactly_once(read_topic, good)
    positions = [(letter["source"]["partition"], letter["source"]["offset"]) for letter in
                 read_topic("gen.deadletter").settle(2.0)]
    assert len(positions) == len(set(positions)) == len(bad), "each bad message is dead-lettered once"
    assert worker.alive, worker.output()
    with sessions() as session:  # the hostile values were data, never SQL
        assert session.scalar(select(func.count()).select_from(DecisionRow)) == 2 * len(good)


def test_three_workers_share_the_load_and_survive_one_dying(settings: Settings, producer, start_worker,
                                                            read_topic, sessions) -> None:
    workers = [start_worker() for _ in range(3)]
    ids = [f"scale-{n:03d}" for n in range(120)]
    producer.submit_many([request(request_id) for request_id in ids[:60]])
    wait_for(lambda: len(read_topic("feed.published").poll()) >= 10, 90, what="the three workers to get going")
    workers[0].kill()
    producer.submit_many([request(request_id) for request_id in ids[60:]])
    assert_published_exactly_once(read_topic, ids, timeout=180)
    assert workers[1].alive and workers[2].alive
    with sessions() as session:
        deciders = set(session.scalars(select(DecisionRow.worker).where(DecisionRow.request_id.in_(ids[60:]))))
    assert len(deciders) == 2, "both survivors took work after the rebalance"

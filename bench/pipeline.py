"""Benchmark: requests through every moderation stage vs raw Kafka hops, on the same local broker.

    python bench/pipeline.py --requests 20000 [--workers 2] [--batch-size 1]

1. trustreel: N valid requests (adult requesters under their daily cap, each with one of many
   verified cameos, prompt-only so likeness runs its name check) through consent -> likeness ->
   age -> publish, with real worker processes, real transactions and the audit database (SQLite
   file). Generation is not part of this run.
2. baseline: the same N messages through the same number of topic hops with plain aiokafka
   consume -> produce loops and no processing, on the same broker in the same run.

Prints requests/s for both and their ratio, and per stage p50/p99 of the time it adds per request
(between decision times in the audit database; queueing included, as all N are sent at once) and
of the time it spends deciding (the decision rows' duration).

Recorded results (2 cores): bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import func, select  # noqa: E402

from pipeline.audit.db import DecisionRow, RequestRow, make_engine, make_sessionmaker, upgrade  # noqa: E402
from pipeline.broker import LocalBroker  # noqa: E402
from pipeline.producer import PipelineProducer  # noqa: E402
from pipeline.settings import Settings  # noqa: E402
from pipeline.transport.security import KafkaConnection  # noqa: E402
from pipeline.transport.topics import ensure_topics  # noqa: E402
from schemas.models import AccountEvent, ConsentEvent, GenerationRequest  # noqa: E402

STAGES = ("consent", "likeness", "age", "publish")


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def run_pipeline(settings: Settings, count: int,
                 workers: int) -> tuple[float, dict[str, list[float]], dict[str, list[float]]]:
    """Seconds for all requests, then per stage: time added per request, and time spent deciding it."""
    env = os.environ | {"TRUSTREEL_BOOTSTRAP": settings.bootstrap, "TRUSTREEL_DB_URL": settings.db_url,
                        "TRUSTREEL_TOPIC_PREFIX": settings.topic_prefix, "TRUSTREEL_STAGES": ",".join(STAGES),
                        "TRUSTREEL_ASSET_DIR": str(settings.asset_dir),
                        "TRUSTREEL_STAGE_BATCH_SIZE": str(settings.stage_batch_size)}
    accounts = [f"bench-user-{n:04d}" for n in range(max(1, count // 50))]  # stay under the daily cap
    cameos = [f"bench-cam-{n:04d}" for n in range(max(1, len(accounts) // 2))]  # one per two accounts
    with PipelineProducer(settings) as producer:
        for account in accounts:
            producer.send_account_event(AccountEvent(event_id=account, account_id=account, kind="profile",
                                                     birth_date=date(1990, 1, 1), assurance="verified_document"))
        for index, cameo in enumerate(cameos):
            for kind, extra in [("register", {"owner_account": accounts[index], "audience": "everyone"}),
                                ("verify", {"verified_by": "bench", "verification_method": "liveness"})]:
                producer.send_consent(ConsentEvent(event_id=f"{cameo}-{kind}", cameo_id=cameo, kind=kind, **extra))
        logs = [open(Path(settings.asset_dir).parent / f"worker-{n}.log", "wb") for n in range(workers)]
        processes = [subprocess.Popen([sys.executable, "-m", "pipeline.cli", "worker"], env=env,
                                      stdout=log, stderr=subprocess.STDOUT) for log in logs]
        engine = make_engine(settings.db_url)
        sessions = make_sessionmaker(engine)
        try:
            time.sleep(8)  # workers replay the state topics and join the group before the clock starts
            requests = [GenerationRequest(request_id=f"bench-{n:06d}", requester_account=accounts[n % len(accounts)],
                                          prompt=f"a lighthouse in a storm, take {n}",
                                          cameo_ids=[cameos[n % len(cameos)]])
                        for n in range(count)]
            start = time.perf_counter()
            producer.submit_many(requests)
            while True:
                with sessions() as session:
                    finished = session.scalar(select(func.count()).select_from(DecisionRow)
                                              .where(DecisionRow.stage == "publish"))
                if finished >= count:
                    break
                time.sleep(0.5)
            elapsed = time.perf_counter() - start
            added: dict[str, list[float]] = {stage: [] for stage in STAGES}
            deciding: dict[str, list[float]] = {stage: [] for stage in STAGES}
            with sessions() as session:
                submitted = {row.request_id: row.submitted_at for row in session.scalars(select(RequestRow))}
                by_request: dict[str, dict[str, object]] = {}
                for row in session.scalars(select(DecisionRow)):
                    by_request.setdefault(row.request_id, {})[row.stage] = row.decided_at
                    deciding[row.stage].append(row.duration_ms)
            for request_id, decided in by_request.items():
                previous = submitted[request_id]
                for stage in STAGES:
                    added[stage].append((decided[stage] - previous).total_seconds() * 1000)
                    previous = decided[stage]
            return elapsed, added, deciding
        finally:
            for process in processes:
                process.terminate()
            for process in processes:
                process.wait(timeout=60)
            for log in logs:
                log.close()
            engine.dispose()


async def run_raw(settings: Settings, count: int, hops: int) -> float:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    topics = [f"{settings.topic_prefix}raw.{n}" for n in range(hops + 1)]
    from kafka.admin import KafkaAdminClient, NewTopic

    connection = KafkaConnection.from_settings(settings)
    admin = KafkaAdminClient(**connection.client_options())
    admin.create_topics([NewTopic(t, settings.partitions, 1) for t in topics])
    admin.close()
    producer = AIOKafkaProducer(**connection.client_options(), acks="all", enable_idempotence=True)
    await producer.start()
    payloads = [GenerationRequest(request_id=f"raw-{n:06d}", requester_account="bench-user", prompt="x",
                                  cameo_ids=["bench-cam"]).model_dump_json().encode() for n in range(count)]
    finished = asyncio.Event()
    received = 0

    async def hop(source: str, target: str | None) -> None:
        nonlocal received
        consumer = AIOKafkaConsumer(source, **connection.client_options(), group_id=f"raw-{uuid.uuid4()}",
                                    auto_offset_reset="earliest", enable_auto_commit=True)
        await consumer.start()
        try:
            while not finished.is_set():
                batches = await consumer.getmany(timeout_ms=200)
                for records in batches.values():
                    for record in records:
                        if target is None:
                            received += 1
                            if received >= count:
                                finished.set()
                        else:
                            await producer.send(target, value=record.value, key=record.key)
        finally:
            await consumer.stop()

    tasks = [asyncio.create_task(hop(topics[n], topics[n + 1] if n < hops else None)) for n in range(hops + 1)]
    await asyncio.sleep(3)  # consumers join before the clock starts
    start = time.perf_counter()
    for n, payload in enumerate(payloads):
        await producer.send(topics[0], value=payload, key=f"raw-{n}".encode())
    await asyncio.wait_for(finished.wait(), timeout=600)
    elapsed = time.perf_counter() - start
    await asyncio.gather(*tasks)
    await producer.stop()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=Settings().stage_batch_size,
                        help="messages per stage batch (1 = one transaction per message, as before batching)")
    parser.add_argument("--port", type=int, default=19292, help="local broker port for the benchmark")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="trustreel-bench-"))
    broker = LocalBroker(home=Settings().broker_home, port=args.port)
    started_here = broker.running_pid() is None
    bootstrap = broker.start()
    settings = Settings(bootstrap=bootstrap, db_url=f"sqlite:///{workdir / 'audit.db'}", stages=STAGES,
                        topic_prefix=f"bench{uuid.uuid4().hex[:6]}.", asset_dir=workdir / "assets",
                        stage_batch_size=args.batch_size)
    try:
        ensure_topics(settings)
        upgrade(settings.db_url)
        raw_seconds = asyncio.run(run_raw(settings, args.requests, hops=len(STAGES)))
        pipeline_seconds, added, deciding = run_pipeline(settings, args.requests, args.workers)
    finally:
        if started_here:
            broker.stop()
    raw_rate, pipeline_rate = args.requests / raw_seconds, args.requests / pipeline_seconds
    print(f"{args.requests} requests, {len(STAGES)} stages, {args.workers} worker(s), {settings.partitions} partitions, "
          f"stage batches of up to {args.batch_size}; worker logs and audit database in {workdir}")
    print(f"raw kafka hops : {raw_rate:10.1f} requests/s ({raw_seconds:.1f}s)")
    print(f"trustreel      : {pipeline_rate:10.1f} requests/s ({pipeline_seconds:.1f}s)")
    print(f"ratio          : {pipeline_rate / raw_rate:10.3f} (trustreel / raw)")
    print("per stage        added (queueing included: all requests are sent at once)   deciding (in the stage)")
    for stage, values in added.items():
        spent = deciding[stage]
        print(f"  {stage:<9}: p50 {statistics.median(values):9.1f} ms  p99 {percentile(values, 0.99):9.1f} ms"
              f"        p50 {statistics.median(spent):7.2f} ms  p99 {percentile(spent, 0.99):7.2f} ms")


if __name__ == "__main__":
    main()

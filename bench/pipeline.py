"""Benchmark: requests through every moderation stage vs raw Kafka hops, on the same local broker.

    python bench/pipeline.py --requests 20000 [--workers 2] [--batch-size 1]
    python bench/pipeline.py --requests 5000 --postgres --workers 1,2,4   # scale-out on PostgreSQL

1. trustreel: N valid requests (adult requesters under their daily cap, each with one of many
   verified cameos, prompt-only so likeness runs its name check) through consent -> likeness ->
   age -> publish, with real worker processes, real transactions and the audit database (SQLite
   file). Generation is not part of this run.
2. baseline: the same N messages through the same number of topic hops with plain aiokafka
   consume -> produce loops and no processing, on the same broker in the same run.

Prints requests/s for both and their ratio, and per stage p50/p99 of the time it adds per request
(between decision times in the audit database; queueing included, as all N are sent at once) and
of the time it spends deciding (the decision rows' duration).

--postgres: the audit database is a throwaway PostgreSQL server (Debian's package), a fresh database
and fresh topics for each worker count in --workers (e.g. 1,2,4), the raw baseline once for all.
Per count it prints requests/s and what each worker cost: CPU seconds per request and peak memory.

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
                 workers: int) -> tuple[float, dict[str, list[float]], dict[str, list[float]], list[dict], dict]:
    """Seconds until every request was published or rejected; per stage: time added per published request,
    and time spent deciding it; per worker process its CPU seconds and peak memory; rejections by reason."""
    env = worker_environment(settings)
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
            warm_up(producer, sessions, accounts[0], cameos[0], settings.partitions * 2)
            requests = [GenerationRequest(request_id=f"bench-{n:06d}", requester_account=accounts[n % len(accounts)],
                                          prompt=f"a lighthouse in a storm, take {n}",
                                          cameo_ids=[cameos[n % len(cameos)]])
                        for n in range(count)]
            before = [process_cost(process.pid) for process in processes]  # start-up and warm-up left out
            start = time.perf_counter()
            producer.submit_many(requests)
            while terminal_count(sessions, "bench-") < count:
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
                if not request_id.startswith("bench-") or "publish" not in decided:
                    continue  # warm-up requests, and rejections (counted apart)
                previous = submitted[request_id]
                for stage in STAGES:
                    added[stage].append((decided[stage] - previous).total_seconds() * 1000)
                    previous = decided[stage]
            after = [process_cost(process.pid) for process in processes]
            costs = [{"cpu_seconds": end["cpu_seconds"] - begin["cpu_seconds"], "peak_mib": end["peak_mib"]}
                     for begin, end in zip(before, after)]
            return elapsed, added, deciding, costs, rejections(sessions, "bench-")
        finally:
            for process in processes:
                process.terminate()
            for process in processes:
                process.wait(timeout=60)
            for log in logs:
                log.close()
            engine.dispose()


def worker_environment(settings: Settings) -> dict[str, str]:
    """This process's environment with the benchmark's settings, for a worker process it starts."""
    return os.environ | {"TRUSTREEL_BOOTSTRAP": settings.bootstrap, "TRUSTREEL_DB_URL": settings.db_url,
                         "TRUSTREEL_TOPIC_PREFIX": settings.topic_prefix, "TRUSTREEL_STAGES": ",".join(STAGES),
                         "TRUSTREEL_ASSET_DIR": str(settings.asset_dir),
                         "TRUSTREEL_STAGE_BATCH_SIZE": str(settings.stage_batch_size),
                         "TRUSTREEL_PARTITIONS": str(settings.partitions)}


def terminal_count(sessions, prefix: str) -> int:
    """Requests whose id starts with `prefix` that were published or rejected at some stage."""
    with sessions() as session:
        return session.scalar(select(func.count(func.distinct(DecisionRow.request_id)))
                              .where(DecisionRow.request_id.startswith(prefix))
                              .where((DecisionRow.stage == "publish") | (DecisionRow.outcome == "rejected")))


def rejections(sessions, prefix: str) -> dict[str, int]:
    """Rejected requests by reason code (a loaded 2-core machine can leave consent waiting for its feed)."""
    counts: dict[str, int] = {}
    with sessions() as session:
        for row in session.scalars(select(DecisionRow).where(DecisionRow.request_id.startswith(prefix))
                                   .where(DecisionRow.outcome == "rejected")):
            code = row.reasons[0]["code"] if row.reasons else "?"
            counts[code] = counts.get(code, 0) + 1
    return counts


def warm_up(producer: PipelineProducer, sessions, account: str, cameo: str, size: int, tries: int = 20) -> None:
    """Send rounds of requests until one round is published whole: every worker has replayed the state
    topics and joined its group before the clock starts."""
    for round_number in range(tries):
        prefix = f"warm-{round_number}-"
        producer.submit_many([GenerationRequest(request_id=f"{prefix}{n}", requester_account=account,
                                                prompt="a warm-up", cameo_ids=[cameo]) for n in range(size)])
        deadline = time.monotonic() + 120
        while terminal_count(sessions, prefix) < size and time.monotonic() < deadline:
            time.sleep(0.5)
        if not rejections(sessions, prefix) and terminal_count(sessions, prefix) == size:
            return
    raise SystemExit(f"the workers did not publish a whole warm-up round in {tries} tries")


def process_cost(pid: int) -> dict:
    """CPU seconds (user + system) and peak resident memory of a running process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    peak_kib = next(int(line.split()[1]) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                    if line.startswith("VmHWM:"))
    return {"cpu_seconds": (int(fields[11]) + int(fields[12])) / ticks, "peak_mib": peak_kib / 1024}


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
    parser.add_argument("--workers", default="1", help="worker processes; with --postgres a list, e.g. 1,2,4")
    parser.add_argument("--batch-size", type=int, default=Settings().stage_batch_size,
                        help="messages per stage batch (1 = one transaction per message, as before batching)")
    parser.add_argument("--port", type=int, default=19292, help="local broker port for the benchmark")
    parser.add_argument("--postgres", action="store_true", help="a throwaway PostgreSQL server instead of SQLite")
    args = parser.parse_args()
    counts = [int(part) for part in args.workers.split(",")]
    workdir = Path(tempfile.mkdtemp(prefix="trustreel-bench-"))
    broker = LocalBroker(home=Settings().broker_home, port=args.port)
    started_here = broker.running_pid() is None
    bootstrap = broker.start()
    server = None
    if args.postgres:
        from pipeline.audit.local_postgres import LocalPostgres, postgres_bindir

        bindir = postgres_bindir()
        if bindir is None:
            raise SystemExit("--postgres needs the PostgreSQL server package (initdb, pg_ctl): apt-get install postgresql")
        server = LocalPostgres(bindir)

    def settings_for(label: str, with_database: bool = True) -> Settings:
        """The raw baseline needs topics only: no PostgreSQL database for it (a SQLite URL is just a path)."""
        db_url = (server.create_database(f"bench_{label}") if server and with_database
                  else f"sqlite:///{workdir / label / 'audit.db'}")
        (workdir / label).mkdir(parents=True, exist_ok=True)
        return Settings(bootstrap=bootstrap, db_url=db_url, stages=STAGES, asset_dir=workdir / label / "assets",
                        topic_prefix=f"bench{uuid.uuid4().hex[:6]}.", stage_batch_size=args.batch_size,
                        partitions=max(3, *counts))  # every worker can hold a partition of each topic

    try:
        raw_settings = settings_for("raw", with_database=False)
        ensure_topics(raw_settings)
        raw_seconds = asyncio.run(run_raw(raw_settings, args.requests, hops=len(STAGES)))
        raw_rate = args.requests / raw_seconds
        database = "PostgreSQL" if server else "SQLite"
        print(f"{args.requests} requests, {len(STAGES)} stages, {max(3, *counts)} partitions, {database}, stage "
              f"batches of up to {args.batch_size}; worker logs in {workdir}")
        print(f"raw kafka hops : {raw_rate:10.1f} requests/s ({raw_seconds:.1f}s)", flush=True)
        for workers in counts:
            settings = settings_for(f"workers{workers}")
            ensure_topics(settings)
            upgrade(settings.db_url)
            report(args.requests, raw_rate, workers, *run_pipeline(settings, args.requests, workers))
    finally:
        if started_here:
            broker.stop()
        if server is not None:
            server.remove()


def report(count: int, raw_rate: float, workers: int, seconds: float, added: dict[str, list[float]],
           deciding: dict[str, list[float]], costs: list[dict], rejected: dict[str, int]) -> None:
    rate = count / seconds
    cpu = sum(cost["cpu_seconds"] for cost in costs)
    print(f"trustreel, {workers} worker(s): {rate:10.1f} requests/s ({seconds:.1f}s), ratio {rate / raw_rate:.3f}; "
          f"workers' CPU {cpu / count * 1000:.1f} ms per request, peak memory "
          f"{max(cost['peak_mib'] for cost in costs):.0f} MiB per worker"
          + (f"; rejected: {rejected}" if rejected else ""))
    print("  per stage        added (queueing included: all requests are sent at once)   deciding (in the stage)")
    for stage, values in added.items():
        spent = deciding[stage]
        print(f"    {stage:<9}: p50 {statistics.median(values):9.1f} ms  p99 {percentile(values, 0.99):9.1f} ms"
              f"        p50 {statistics.median(spent):7.2f} ms  p99 {percentile(spent, 0.99):7.2f} ms", flush=True)

if __name__ == "__main__":
    main()

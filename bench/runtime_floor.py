"""Benchmark: how fast the moderation path could be with nothing decided and nothing stored.

    python bench/runtime_floor.py --requests 5000

#19 asks the four moderation stages for a quarter of raw Kafka's rate. This measures, in one run on one
local broker, 1 worker process each time, how much of that the layers under the decisions already take:

1. raw: bench/pipeline.py's baseline (plain aiokafka consume -> produce, 4 hops, no transactions).
2. forward: the worker's own faust app and transactional sender (`pipeline.worker.app.stage_app`), four
   agents that forward each batch unread: one Kafka transaction per input partition per batch carrying
   the outputs and the offsets, as every stage commits. The messaging floor of the design.
3. runtime: the shared stage runtime (`StageRunner` through the worker's `stage_agent`: read and validate,
   look up stored decisions, record, route, trace spans, metrics, the same transactions) with four stages
   that approve everything and an in-memory audit store: the floor of any stage on the shared runtime.
4. trustreel: bench/pipeline.py's run of the real stages with the SQLite audit database.

Prints requests/s, the ratio to raw, and the worker's CPU per request for each (the bench process's own
producing and counting is not in it). Recorded results: bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import faust  # noqa: E402
from aiokafka import AIOKafkaConsumer  # noqa: E402

from pipeline.audit.store import InMemoryAuditStore  # noqa: E402
from pipeline.broker import LocalBroker  # noqa: E402
from pipeline.producer import PipelineProducer  # noqa: E402
from pipeline.runtime.runner import RuntimeConfig, StageRunner  # noqa: E402
from pipeline.runtime.stage import Verdict, system_clock  # noqa: E402
from pipeline.settings import Settings  # noqa: E402
from pipeline.transport.security import KafkaConnection  # noqa: E402
from pipeline.transport.topics import TopicMap, ensure_topics  # noqa: E402
from pipeline.transport.transactions import OutgoingMessage  # noqa: E402
from pipeline.worker.app import stage_app, stage_agent  # noqa: E402
from policies.loader import LoadedPolicy  # noqa: E402
from schemas.models import DeadLetterSource, GenerationRequest, PipelineItem  # noqa: E402

_spec = importlib.util.spec_from_file_location("pipeline_bench", ROOT / "bench" / "pipeline.py")
pipeline_bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(pipeline_bench)

STAGES = pipeline_bench.STAGES
FLOORS = ("forward", "runtime")


class ApproveAll:
    """A stage that decides nothing: what the runtime costs around a decision."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.policy = LoadedPolicy(policy_id=f"{name}-floor", stage=name, version="floor", path=Path("floor"),
                                   rules=None)

    def decide(self, item: PipelineItem) -> Verdict:
        return Verdict.approve()


def forwarding_agent(sender, target: str, settings: Settings):
    """Each batch's messages, unread, to the next topic: one transaction per input partition with its offsets."""

    async def process(stream: faust.StreamT) -> None:
        async for events in stream.take_events(settings.stage_batch_size,
                                               within=max(settings.stage_batch_wait_seconds, 0.01)):
            by_partition: dict[tuple[str, int], list] = {}
            for event in events:
                message = event.message
                by_partition.setdefault((message.topic, message.partition), []).append(
                    (DeadLetterSource(topic=message.topic, partition=message.partition, offset=message.offset),
                     [OutgoingMessage(target, message.key, message.value)]))
            for entries in by_partition.values():
                await sender.send_batch(entries)

    return process


def serve(floor: str) -> None:
    """The floor's worker process (started by this script with --serve): runs until terminated."""
    settings = Settings()
    topics = TopicMap.from_settings(settings)
    app, sender = stage_app(settings, KafkaConnection.from_settings(settings))
    config = RuntimeConfig(worker_id=f"floor:{os.getpid()}", max_message_bytes=settings.max_message_bytes)
    audit = InMemoryAuditStore()
    for name in STAGES:
        if floor == "forward":
            agent = forwarding_agent(sender, topics.output_of(name), settings)
        else:
            agent = stage_agent(StageRunner(ApproveAll(name), topics, audit, sender, config, system_clock), settings)
        app.agent(app.topic(topics.input_of(name)), name=f"stage-{name}")(agent)
    faust.Worker(app, loglevel="warning", quiet=True, redirect_stdouts=False).execute_from_commandline()


async def published(settings: Settings, wanted: dict[str, int], timeout: float = 600.0) -> None:
    """Wait until, for each key prefix, that many committed messages with it are on the published topic."""
    consumer = AIOKafkaConsumer(TopicMap.from_settings(settings).published,
                                **KafkaConnection.from_settings(settings).client_options(),
                                group_id=f"floor-count-{uuid.uuid4()}", auto_offset_reset="earliest",
                                isolation_level="read_committed", enable_auto_commit=False)
    await consumer.start()
    seen = {prefix: 0 for prefix in wanted}
    deadline = time.monotonic() + timeout
    try:
        while any(seen[prefix] < count for prefix, count in wanted.items()):
            if time.monotonic() > deadline:
                raise SystemExit(f"not all published in {timeout:.0f} s: {seen} of {wanted}")
            for records in (await consumer.getmany(timeout_ms=200)).values():
                for record in records:
                    for prefix in seen:
                        if record.key.decode().startswith(prefix):
                            seen[prefix] += 1
    finally:
        await consumer.stop()


def run_floor(floor: str, settings: Settings, count: int, workdir: Path) -> tuple[float, float]:
    """Seconds until `count` requests are on the published topic, and the worker's CPU seconds meanwhile."""
    with open(workdir / f"{floor}.log", "wb") as log:
        worker = subprocess.Popen([sys.executable, __file__, "--serve", floor],
                                  env=pipeline_bench.worker_environment(settings), stdout=log,
                                  stderr=subprocess.STDOUT)
        try:
            with PipelineProducer(settings) as producer:
                warm = [GenerationRequest(request_id=f"warm-{n}", requester_account="floor-user", prompt="a warm-up",
                                          cameo_ids=["floor-cam"]) for n in range(settings.partitions * 4)]
                producer.submit_many(warm)
                asyncio.run(published(settings, {"warm-": len(warm)}, timeout=180))
                requests = [GenerationRequest(request_id=f"bench-{n:06d}", requester_account=f"floor-user-{n % 100}",
                                              prompt=f"a lighthouse in a storm, take {n}", cameo_ids=["floor-cam"])
                            for n in range(count)]
                before = pipeline_bench.process_cost(worker.pid)["cpu_seconds"]
                start = time.perf_counter()
                producer.submit_many(requests)
                asyncio.run(published(settings, {"bench-": count}))
                elapsed = time.perf_counter() - start
                return elapsed, pipeline_bench.process_cost(worker.pid)["cpu_seconds"] - before
        finally:
            worker.terminate()
            worker.wait(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--port", type=int, default=19292, help="local broker port for the benchmark")
    parser.add_argument("--batch-size", type=int, default=Settings().stage_batch_size,
                        help="messages per stage batch (the worker setting TRUSTREEL_STAGE_BATCH_SIZE)")
    parser.add_argument("--serve", choices=FLOORS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return
    workdir = Path(tempfile.mkdtemp(prefix="trustreel-floor-"))
    broker = LocalBroker(home=Settings().broker_home, port=args.port)
    started_here = broker.running_pid() is None
    bootstrap = broker.start()

    def settings_for(label: str) -> Settings:
        (workdir / label).mkdir(parents=True, exist_ok=True)
        settings = Settings(bootstrap=bootstrap, db_url=f"sqlite:///{workdir / label / 'audit.db'}", stages=STAGES,
                            asset_dir=workdir / label / "assets", topic_prefix=f"floor{uuid.uuid4().hex[:6]}.",
                            partitions=3, stage_batch_size=args.batch_size)
        ensure_topics(settings)
        return settings

    try:
        raw_settings = settings_for("raw")
        cpu_before = time.process_time()
        raw_rate = args.requests / asyncio.run(pipeline_bench.run_raw(raw_settings, args.requests, hops=len(STAGES)))
        raw_cpu = time.process_time() - cpu_before  # producing the input and all four hops, in this process
        print(f"{args.requests} requests, {len(STAGES)} hops, 3 partitions, batches of up to {args.batch_size}, "
              f"1 worker; logs in {workdir}")
        print(f"  {'run':<10} {'requests/s':>11} {'ratio':>6} {'worker CPU per request':>23}")
        print(f"  {'raw':<10} {raw_rate:11.1f} {1:6.3f} {raw_cpu / args.requests * 1000:20.2f} ms (producer "
              f"included)", flush=True)
        for floor in FLOORS:
            seconds, cpu = run_floor(floor, settings_for(floor), args.requests, workdir)
            print(f"  {floor:<10} {args.requests / seconds:11.1f} {args.requests / seconds / raw_rate:6.3f} "
                  f"{cpu / args.requests * 1000:20.2f} ms", flush=True)
        settings = settings_for("trustreel")
        pipeline_bench.upgrade(settings.db_url)
        seconds, _, _, costs, rejected = pipeline_bench.run_pipeline(settings, args.requests, 1)
        cpu = sum(cost["cpu_seconds"] for cost in costs)
        print(f"  {'trustreel':<10} {args.requests / seconds:11.1f} {args.requests / seconds / raw_rate:6.3f} "
              f"{cpu / args.requests * 1000:20.2f} ms" + (f"  rejected: {rejected}" if rejected else ""), flush=True)
    finally:
        if started_here:
            broker.stop()


if __name__ == "__main__":
    main()

"""pipeline.transport.faust_transport: what faust keeps per message in a worker that never lets it commit."""

from __future__ import annotations

import asyncio
import importlib.util
import sys
from pathlib import Path

import faust
from faust.types import TP
from faust.types.tuples import ConsumerMessage

from pipeline.producer import PipelineProducer
from pipeline.settings import Settings
from pipeline.transport.faust_transport import StageApp
from pipeline.transport.security import KafkaConnection
from pipeline.transport.topics import TopicMap
from pipeline.worker.app import stage_app
from schemas.models import GenerationRequest
from tests.conftest import TopicReader

_spec = importlib.util.spec_from_file_location("runtime_floor", Path(__file__).resolve().parents[1] / "bench" /
                                               "runtime_floor.py")
runtime_floor = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = runtime_floor
_spec.loader.exec_module(runtime_floor)


async def _ack_three_with_gaps(app: faust.App) -> faust.types.ConsumerT:
    """Ack records at offsets 0, 2 and 4 of one partition (1 and 3: transaction commit markers), as a stage
    reads them; no broker is needed for the consumer's bookkeeping."""
    app.topics.add(app.topic("stage-in", value_serializer="raw"))
    await app.topics._update_indices()
    consumer = app.consumer
    tp = TP("stage-in", 0)
    for offset in (0, 2, 4):
        message = ConsumerMessage(topic=tp.topic, partition=tp.partition, offset=offset, timestamp=0.0,
                                  timestamp_type=0, headers=[], key=None, value=b"{}", checksum=None, tp=tp)
        consumer.track_message(message)
        if offset and app.topics.acks_enabled_for(tp.topic):  # what faust's fetch loop does at a gap
            await consumer._add_gap(tp, offset - 1, offset - 1)
        assert message.ack(consumer)  # the first ack (faust's monitor counts the message out)
        assert message.acked and not message.ack(consumer)
        assert message not in consumer._unacked_messages  # a rebalance does not wait for it
    return consumer


def _app(cls: type[faust.App]) -> faust.App:
    return cls("faust-transport-test", broker="kafka://127.0.0.1:9", store="memory://", web_enabled=False)


def test_a_stage_app_keeps_no_offsets_for_a_commit_that_never_runs() -> None:
    """faust's own App keeps every acked offset and each gap until its commit trims them; the stages commit
    offsets in their transactions and faust's commit never runs, so with acks on this grew for the worker's
    whole life (and re-merging the gap tree took ~13% of its CPU, bench/runtime_floor.py)."""
    plain = asyncio.run(_ack_three_with_gaps(_app(faust.App)))
    assert plain._acked[TP("stage-in", 0)] == [0, 2, 4] and len(plain._gap[TP("stage-in", 0)]) == 2

    stage = asyncio.run(_ack_three_with_gaps(_app(StageApp)))
    assert not any(stage._acked.values()) and not any(stage._gap.values()) and not stage._unacked_messages


def test_the_workers_faust_app_keeps_no_offsets_on_the_real_broker(settings: Settings) -> None:
    """The worker's own faust app and sender (stage_app), two agents in a row that forward each batch unread
    as bench/runtime_floor.py's floor does, one transaction per input partition: the second reads what the first
    wrote in transactions, so its partitions have a commit marker after every batch. Every request comes
    out once, and faust holds no acked offset and no gap for any partition (with acks on, the same run held
    all 600 offsets and the gaps)."""
    topics = TopicMap.from_settings(settings)
    first, second = settings.stages[0], settings.stages[1]
    count = 300

    async def forward_and_look() -> dict[str, int]:
        app, sender = stage_app(settings, KafkaConnection.from_settings(settings))
        app.agent(app.topic(topics.input_of(first)), name="first")(
            runtime_floor.forwarding_agent(sender, topics.output_of(first), settings))
        app.agent(app.topic(topics.input_of(second)), name="second")(
            runtime_floor.forwarding_agent(sender, topics.output_of(second), settings))
        await app.start()
        try:
            with PipelineProducer(settings) as producer:
                producer.submit_many([GenerationRequest(request_id=f"fwd-{n}", requester_account="fwd-user",
                                                        prompt="a forwarded request") for n in range(count)])
            reader = TopicReader(settings, topics.output_of(second))
            try:
                await asyncio.to_thread(reader.wait_for_count, count, 120)
                await asyncio.to_thread(reader.settle)
                keys = sorted(record.key for record in reader.records)
            finally:
                reader.close()
            assert keys == sorted(f"fwd-{n}".encode() for n in range(count))  # each once
            consumer = app.consumer  # read before stopping: a revocation clears faust's bookkeeping anyway
            return {"acked offsets": sum(map(len, consumer._acked.values())),
                    "acked index": sum(map(len, consumer._acked_index.values())),
                    "gaps": sum(map(len, consumer._gap.values())), "unacked": len(consumer._unacked_messages)}
        finally:
            await app.stop()

    assert asyncio.run(forward_and_look()) == {"acked offsets": 0, "acked index": 0, "gaps": 0, "unacked": 0}

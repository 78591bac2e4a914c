"""pipeline.transport.faust_transport: what faust keeps per message in a worker that never lets it commit."""

from __future__ import annotations

import asyncio

import faust
from faust.types import TP
from faust.types.tuples import ConsumerMessage

from pipeline.transport.faust_transport import StageApp


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
        message.ack(consumer)
        assert message.acked
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

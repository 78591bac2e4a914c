"""faust-streaming, adjusted for transactional stage hand-offs.

Three changes to faust's aiokafka transport, all following from pipeline.transport.transactions:
- the consumer reads with isolation_level=read_committed, so a stage never sees the
  output of an aborted transaction (faust only does this in its own exactly-once mode,
  which cannot route outputs to topics the app does not consume);
- faust never commits offsets itself: the stage's transaction commits them together
  with the outputs, and a second, independent committer could move them backwards;
- so faust keeps no acked offsets either (StageApp.topic): they only feed its own commit.
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable

import faust
from faust.transport.drivers import aiokafka as faust_aiokafka
from mode.utils.futures import notify


class _ReadCommittedConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        if not hasattr(consumer, "_isolation_level"):
            raise RuntimeError("this aiokafka version hides the isolation level; update pipeline.transport.faust_transport")
        consumer._isolation_level = "read_committed"
        return consumer


class _TransactionCommittedConsumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> Any:
        return _ReadCommittedConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def commit(self, topics: Any = None, start_new_transaction: bool = True) -> bool:
        return False  # offsets are committed inside each stage transaction

    def ack(self, message: Any) -> bool:
        """With acks off faust only marks the message acked; also drop it from the messages a rebalance
        waits for, wake a waiting rebalance, and say whether this was its first ack (faust's monitor counts
        the message out then), as faust does for a topic with acks on."""
        first = not message.acked
        super().ack(message)
        self._unacked_messages.discard(message)
        notify(self._waiting_for_ack)
        return first


class _Transport(faust_aiokafka.Transport):
    Consumer = _TransactionCommittedConsumer


class StageApp(faust.App):
    """A faust App whose consumer reads committed data and leaves offset commits to the stages."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.on_stop_callbacks: list[Callable[[], Awaitable[None]]] = []

    async def on_stop(self) -> None:
        await super().on_stop()
        for callback in self.on_stop_callbacks:
            await callback()

    def topic(self, *topics: str, **options: Any) -> Any:
        """A topic whose messages faust does not ack. faust keeps every acked offset (a list and a set per
        partition) and every gap between them (an interval tree, re-merged on each new gap; each transaction's
        commit marker leaves one) until its own commit trims them, and that commit never runs here: with acks
        on they grew for the worker's whole life and took ~13% of its CPU (bench/runtime_floor.py). A
        rebalance still waits for the messages in progress (faust marks a message acked either way)."""
        return super().topic(*topics, **{"acks": False, **options})

    def _new_transport(self) -> Any:
        return _Transport(self.conf.broker_consumer, self)

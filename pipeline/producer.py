"""Producer side for client services (kafka-python): validate, then send and wait for the ack.

    service -> PipelineProducer.submit(GenerationRequest) -> gen.requests (key: request id)
    cameo app -> send_consent(ConsentEvent) -> cameo.consents            (slot keys: pipeline.state.keys)
    account service -> send_account_event(AccountEvent) -> accounts.events
    rights desk -> send_rights(RightsEvent) -> rights.registry            (key: work id)

The producer is idempotent (no duplicates from its own retries). Invalid messages are
refused here, before they cost a dead letter downstream.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from kafka import KafkaProducer
from pydantic import ValidationError

from pipeline.audit.send_once import OnceSender
from pipeline.observability import tracing
from pipeline.runtime.runner import describe_validation_error
from pipeline.settings import Settings
from pipeline.state.keys import entity_partition, slot_key
from pipeline.transport.positions import KafkaPositions
from pipeline.transport.security import KafkaConnection
from pipeline.transport.topics import TopicMap
from pipeline.transport.transactions import OutgoingMessage
from schemas.models import AccountEvent, ConsentEvent, GenerationRequest, RightsEvent, UserReport


@dataclass(frozen=True)
class JsonlProblem:
    line: int
    error: str


def read_requests_jsonl(path: Path) -> tuple[list[GenerationRequest], list[JsonlProblem]]:
    """Every valid request in the file, and a line-numbered problem for every invalid one."""
    requests, problems = [], []
    for number, line in enumerate(Path(path).read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            requests.append(GenerationRequest.model_validate_json(line))
        except ValidationError as exc:
            problems.append(JsonlProblem(number, describe_validation_error(exc)))
    return requests, problems


class PipelineProducer:
    def __init__(self, settings: Settings) -> None:
        self._topics = TopicMap.from_settings(settings)
        self._settings = settings
        self._connection = KafkaConnection.from_settings(settings)
        self._producer = KafkaProducer(
            **self._connection.client_options(),
            acks="all",
            enable_idempotence=True,
            max_request_size=settings.deadletter_max_message_bytes,
            client_id="trustreel-producer",
        )

    def __enter__(self) -> "PipelineProducer":
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._producer.flush()
        self._producer.close()

    def submit(self, request: GenerationRequest, timeout: float = 30.0) -> None:
        """Send and wait; with tracing on, the record carries the root span of the request's trace."""
        with tracing.tracer().start_as_current_span("submit", attributes={
                "trustreel.request_id": request.request_id}) as span:
            future = self._producer.send(self._topics.name("gen.requests"), key=request.request_id.encode(),
                                         value=request.model_dump_json().encode(),
                                         headers=list(tracing.headers_for(span)) or None)
            future.get(timeout=timeout)

    def submit_many(self, requests: list[GenerationRequest], timeout: float = 60.0) -> None:
        """Send a batch without waiting for each acknowledgement in turn; raises if any send failed."""
        topic = self._topics.name("gen.requests")
        futures = [self._producer.send(topic, key=r.request_id.encode(), value=r.model_dump_json().encode())
                   for r in requests]
        self._producer.flush(timeout=timeout)
        for future in futures:
            future.get(timeout=timeout)

    def send_consent(self, event: ConsentEvent, timeout: float = 30.0) -> None:
        self._send_slot(self._topics.consents, event.cameo_id, event.aspect(), event.model_dump_json().encode(),
                        timeout)

    def send_account_event(self, event: AccountEvent, timeout: float = 30.0) -> None:
        self._send_slot(self._topics.accounts, event.account_id, event.aspect(), event.model_dump_json().encode(),
                        timeout)

    def send_account_events(self, events: list[AccountEvent], timeout: float = 60.0) -> None:
        """Send a burst (an import) without waiting for each acknowledgement in turn; raises if any failed."""
        self._send_slots([self._slot_record(self._topics.accounts, event.account_id, event.aspect(),
                                            event.model_dump_json().encode()) for event in events], timeout)

    def send_consents(self, events: list[ConsentEvent], timeout: float = 60.0) -> None:
        """Send a burst of consent changes (an import) the same way."""
        self._send_slots([self._slot_record(self._topics.consents, event.cameo_id, event.aspect(),
                                            event.model_dump_json().encode()) for event in events], timeout)

    def _send_slots(self, futures: list, timeout: float) -> None:
        self._producer.flush(timeout=timeout)
        for future in futures:
            future.get(timeout=timeout)

    def send_rights(self, event: RightsEvent, timeout: float = 30.0) -> None:
        """One work per key: compaction keeps each work's latest state."""
        future = self._producer.send(self._topics.rights, key=event.work_id.encode(),
                                     value=event.model_dump_json().encode())
        future.get(timeout=timeout)

    def send_report(self, report: UserReport, timeout: float = 30.0) -> None:
        """Keyed by the reported item, so its reports are taken in the order they were sent."""
        future = self._producer.send(self._topics.reports, key=report.request_id.encode(),
                                     value=report.model_dump_json().encode())
        future.get(timeout=timeout)

    def _send_slot(self, topic: str, entity_id: str, slot: str, value: bytes, timeout: float) -> None:
        self._slot_record(topic, entity_id, slot, value).get(timeout=timeout)

    def _slot_record(self, topic: str, entity_id: str, slot: str, value: bytes):
        """Queue one state record: keyed by its slot, on its entity's partition (all of an entity's slots together)."""
        partitions = self._producer.partitions_for(topic)
        return self._producer.send(topic, key=slot_key(entity_id, slot), value=value,
                                   partition=entity_partition(entity_id, len(partitions)))

    def send_raw(self, logical_topic: str, value: bytes | None, key: bytes | None = None,
                 timeout: float = 30.0) -> None:
        """Send bytes as they are: for replays and for exercising the dead-letter path."""
        future = self._producer.send(self._topics.name(logical_topic), key=key, value=value)
        future.get(timeout=timeout)

    def send_outgoing(self, message: OutgoingMessage, partition: int | None = None, timeout: float = 30.0) -> None:
        """Send a message the audit database recorded (topic already resolved), waiting for the broker's ack."""
        self._producer.send(message.topic, key=message.key, value=message.value, partition=partition,
                            headers=list(message.headers) or None).get(timeout=timeout)

    def once_sender(self) -> OnceSender:
        """For recorded reviews and takedowns: each sent once, however often or concurrently it is tried."""
        return OnceSender(self.send_outgoing, KafkaPositions(self._connection),
                          timedelta(seconds=self._settings.send_claim_lease_seconds))

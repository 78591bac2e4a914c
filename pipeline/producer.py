"""Producer side for client services (kafka-python): validate, then send and wait for the ack.

    service -> RequestProducer.submit(GenerationRequest) -> gen.requests (key: request id)
    cameo app -> RequestProducer.send_consent(ConsentEvent) -> cameo.consents
                 (key: "<cameo>|<slot>", partition chosen by cameo id; see pipeline.consent_registry)

The producer is idempotent (no duplicates from its own retries). Invalid messages are
refused here, before they cost a dead letter downstream.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from kafka import KafkaProducer
from pydantic import ValidationError

from pipeline.consent_registry import consent_key, consent_partition
from pipeline.runtime import describe_validation_error
from pipeline.settings import Settings
from pipeline.topics import TopicMap
from schemas.models import ConsentEvent, GenerationRequest


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
        self._producer = KafkaProducer(
            bootstrap_servers=settings.bootstrap,
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
        future = self._producer.send(self._topics.name("gen.requests"), key=request.request_id.encode(),
                                     value=request.model_dump_json().encode())
        future.get(timeout=timeout)

    def send_consent(self, event: ConsentEvent, timeout: float = 30.0) -> None:
        topic = self._topics.consents
        partitions = self._producer.partitions_for(topic)
        future = self._producer.send(topic, key=consent_key(event), value=event.model_dump_json().encode(),
                                     partition=consent_partition(event.cameo_id, len(partitions)))
        future.get(timeout=timeout)

    def send_raw(self, logical_topic: str, value: bytes | None, key: bytes | None = None,
                 timeout: float = 30.0) -> None:
        """Send bytes as they are: for replays and for exercising the dead-letter path."""
        future = self._producer.send(self._topics.name(logical_topic), key=key, value=value)
        future.get(timeout=timeout)

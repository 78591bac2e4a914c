"""Log lines an on-call engineer can use: every line about a request names it and its stage.

    readable (default): 2026-11-26 07:00:01 INFO trustreel.runtime [likeness r-42] ...: approved
    json (TRUSTREEL_LOG_FORMAT=json): {"time": ..., "level": ..., "logger": ..., "stage": ...,
                                       "request_id": ..., "message": ...}   (python-json-logger)

The request id and stage come from the record's `extra`, else from the context the runtime sets
around a decision (`decision_context`). Library noise is kept to what an operator needs: Kafka
clients at WARNING, and the transient complaints every client makes while a broker or group is
still starting (coordinator not available yet, not enough replicas yet) are dropped; they are retried
and only a lasting failure matters, which surfaces through health and metrics.
"""

from __future__ import annotations

import logging
import logging.config
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Iterator

REQUEST_ID: ContextVar[str | None] = ContextVar("trustreel_request_id", default=None)
STAGE: ContextVar[str | None] = ContextVar("trustreel_stage", default=None)

TRANSIENT_WHILE_STARTING = (
    "GroupCoordinatorNotAvailable", "CoordinatorNotAvailable", "NotEnoughReplicas", "CoordinatorLoadInProgress",
    "NotCoordinator", "LeaderNotAvailable", "UnknownTopicOrPartition",
    "because it is rebalancing",  # a worker joined or left the group: heartbeats resume once it is assigned
    "Metadata refresh: failed Cancelled",  # a client closing while its metadata request was in flight
    "UnstableOffsetCommit",  # the group's offsets are part of a transaction not yet committed: read again
    "It is blocking the event loop",  # kafka-python timing its own I/O thread: SCRAM key derivation and TLS
                                      # handshakes take over its 0.1 s mark on a busy machine, nothing to act on
)
NOISY_LIBRARIES = ("kafka", "aiokafka", "faust", "mode", "asyncio", "urllib3", "httpx", "filelock")


@contextmanager
def decision_context(stage: str, request_id: str) -> Iterator[None]:
    """Lines logged inside (by the stage, its backends, the runtime) name this request and stage."""
    stage_token, request_token = STAGE.set(stage), REQUEST_ID.set(request_id)
    try:
        yield
    finally:
        STAGE.reset(stage_token)
        REQUEST_ID.reset(request_token)


class RequestContext(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = REQUEST_ID.get()
        if getattr(record, "stage", None) is None:
            record.stage = STAGE.get()
        return True


class ReadableFormatter(logging.Formatter):
    """`time LEVEL logger [stage request]: message`, the bracket only when a request is in question."""

    def format(self, record: logging.LogRecord) -> str:
        context = " ".join(part for part in (getattr(record, "stage", None), getattr(record, "request_id", None))
                           if part)
        record.context = f" [{context}]" if context else ""
        return super().format(record)


class TransientNoise(logging.Filter):
    """Drops library lines about a broker or group that is still starting or rebalancing (they are retried),
    and a client library timing itself; a lasting problem shows in /healthz and the metrics."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith(NOISY_LIBRARIES):
            return True
        text = record.getMessage()
        return not any(marker in text for marker in TRANSIENT_WHILE_STARTING)


def logging_config(level: int | str = "WARNING", log_format: str = "text") -> dict[str, Any]:
    """A dictConfig for the CLI and for faust's worker (which replaces the root handlers at start)."""
    if log_format == "json":
        formatter = {"()": "pythonjsonlogger.json.JsonFormatter",
                     "fmt": "%(asctime)s %(levelname)s %(name)s %(stage)s %(request_id)s %(message)s",
                     "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"}}
    else:
        formatter = {"()": ReadableFormatter, "fmt": "%(asctime)s %(levelname)s %(name)s%(context)s: %(message)s",
                     "datefmt": "%Y-%m-%d %H:%M:%S"}
    level_name = logging.getLevelName(level) if isinstance(level, int) else level.upper()
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"context": {"()": RequestContext}, "noise": {"()": TransientNoise}},
        "formatters": {"trustreel": formatter},
        "handlers": {"stderr": {"class": "logging.StreamHandler", "stream": "ext://sys.stderr",
                                "formatter": "trustreel", "filters": ["context", "noise"]}},
        "loggers": {name: {"level": "WARNING" if level_name not in ("DEBUG",) else "INFO"}
                    for name in NOISY_LIBRARIES},
        "root": {"level": level_name, "handlers": ["stderr"]},
    }


def configure_logging(level: int | str = "WARNING", log_format: str = "text") -> None:
    """Like logging.basicConfig: only when nothing configured logging before (a test runner, an embedding app)."""
    if not logging.root.handlers:
        logging.config.dictConfig(logging_config(level, log_format))

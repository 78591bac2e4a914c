"""Metrics, traces, logs and worker health, unit-tested on the shared runtime (no broker)."""

from __future__ import annotations

import asyncio
import json
import logging
import urllib.error
import urllib.request

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import REGISTRY

from pipeline.observability import metrics
from pipeline.observability.logs import RequestContext, decision_context, logging_config
from pipeline.observability.server import serve
from pipeline.runtime.stage import Verdict
from pipeline.transport.consumer_lag import LagMonitor
from pipeline.transport.security import KafkaConnection
from schemas.models import DeadLetterSource, Reason
from tests.test_runtime_unit import RecordingSender, ScriptedStage, request_bytes, runner


@pytest.fixture(scope="module")
def spans() -> InMemorySpanExporter:
    """The SDK's in-memory exporter on the process's tracer provider (installed here if none is)."""
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return exporter


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


class HeaderSender(RecordingSender):
    def __init__(self) -> None:
        super().__init__()
        self.messages = []

    async def send_batch(self, entries):
        self.messages.extend(m for _, messages in entries for m in messages)
        return await super().send_batch(entries)


class Named(ScriptedStage):
    def __init__(self, name: str, *verdicts) -> None:
        super().__init__(*verdicts)
        self.name = name


def test_decisions_are_counted_and_one_requests_stages_form_one_trace(spans) -> None:
    spans.clear()
    approved_before = sample("trustreel_decisions_total", stage="consent", outcome="approved", reason="")
    rejected_before = sample("trustreel_decisions_total", stage="consent", outcome="rejected", reason="too_many")
    letters_before = sample("trustreel_dead_letters_total", stage="consent", code="malformed_json")
    first_sender = HeaderSender()
    first = runner(Named("consent", Verdict.approve(), Verdict.reject([Reason(code="too_many", message="m")])),
                   first_sender)
    source = lambda offset: DeadLetterSource(topic="gen.requests", partition=0, offset=offset)  # noqa: E731
    asyncio.run(first.handle_batch([(request_bytes("t1"), source(0)), (request_bytes("t2"), source(1)),
                                    (b"{oops", source(2))]))
    assert sample("trustreel_decisions_total", stage="consent", outcome="approved", reason="") == approved_before + 1
    assert sample("trustreel_decisions_total", stage="consent", outcome="rejected",
                  reason="too_many") == rejected_before + 1
    assert sample("trustreel_dead_letters_total", stage="consent", code="malformed_json") == letters_before + 1
    assert sample("trustreel_batch_size_count", stage="consent") >= 1

    handed_on = next(m for m in first_sender.messages if m.key == b"t1")
    assert dict(handed_on.headers).keys() >= {"traceparent"}
    second = runner(Named("publish", Verdict.approve()), RecordingSender())
    asyncio.run(second.handle_batch([(handed_on.value, DeadLetterSource(topic="gen.passed.consent", partition=0,
                                                                        offset=0))], [handed_on.headers]))
    finished = {(s.name, s.attributes["trustreel.request_id"]): s for s in spans.get_finished_spans()}
    consent, publish = finished[("consent decide", "t1")], finished[("publish decide", "t1")]
    assert publish.context.trace_id == consent.context.trace_id
    assert publish.parent.span_id == consent.context.span_id
    assert consent.attributes["trustreel.outcome"] == "approved" and consent.attributes["trustreel.delivery"] == \
        "approved"
    assert finished[("consent decide", "t2")].context.trace_id != consent.context.trace_id, "one trace per request"
    assert sample("trustreel_end_to_end_seconds_count") >= 1, "publish observed the request's whole time"


def test_log_lines_name_the_request_and_stage_and_drop_startup_noise(capsys) -> None:
    config = logging_config("INFO", "json")
    handler_filters = [RequestContext()]
    from pythonjsonlogger.json import JsonFormatter

    formatter = JsonFormatter(config["formatters"]["trustreel"]["fmt"],
                              rename_fields=config["formatters"]["trustreel"]["rename_fields"])
    record = logging.LogRecord("trustreel.stage", logging.INFO, __file__, 1, "decided %s", ("x",), None)
    with decision_context("likeness", "r-42"):
        for item in handler_filters:
            item.filter(record)
    line = json.loads(formatter.format(record))
    assert (line["stage"], line["request_id"], line["message"], line["level"]) == ("likeness", "r-42", "decided x",
                                                                                  "INFO")
    noise = logging.LogRecord("aiokafka.consumer.group_coordinator", logging.ERROR, __file__, 1,
                              "Error: GroupCoordinatorNotAvailableError", (), None)
    from pipeline.observability.logs import TransientNoise

    assert not TransientNoise().filter(noise)
    assert TransientNoise().filter(logging.LogRecord("aiokafka", logging.ERROR, __file__, 1, "SASL failed", (), None))
    unstable = ("Unknown error fetching offsets for TopicPartition(topic='cameo.consents', partition=1): "
                "[Error 88] UnstableOffsetCommitError")  # read again by the freshness check
    assert not TransientNoise().filter(logging.LogRecord("kafka.coordinator.consumer", logging.ERROR, __file__, 1,
                                                         unstable, (), None))


def test_health_reports_a_worker_that_holds_nothing_or_stopped_moving() -> None:
    held: set[tuple[str, int]] = set()
    monitor = LagMonitor(KafkaConnection("127.0.0.1:1"), "g", ["gen.requests"], {"consents": "cameo.consents"},
                         assigned=lambda: held, stall_seconds=60, start_grace_seconds=0)
    assert monitor.problems() == ["subscribed to nothing: this worker holds no input partition"]
    held.add(("gen.requests", 0))
    monitor.update({("gen.requests", 0): 10, ("cameo.consents", 0): 5}, {("gen.requests", 0): 4,
                                                                         ("cameo.consents", 0): 2}, now=1000.0)
    assert sample("trustreel_consumer_lag", topic="gen.requests", partition="0") == 6
    assert sample("trustreel_registry_lag", registry="consents") == 3
    assert monitor.problems(now=1030.0) == []
    assert monitor.problems(now=1061.0)[0].startswith("not moving: gen.requests[0] committed at 4, 6 behind")
    monitor.update({("gen.requests", 0): 10}, {("gen.requests", 0): 9}, now=1062.0)
    assert monitor.problems(now=2000.0) == [], "a fully processed partition shows 1 (the commit marker)"


def test_the_worker_port_serves_metrics_and_health() -> None:
    problems: list[str] = []
    server = serve(0, lambda: problems, host="127.0.0.1")
    port = server.server_address[1]
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode()
        assert "trustreel_decisions_total" in text and "trustreel_consumer_lag" in text
        assert urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz").read() == b"ok\n"
        problems.append("subscribed to nothing")
        with pytest.raises(urllib.error.HTTPError) as answer:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz")
        assert answer.value.code == 503 and b"subscribed to nothing" in answer.value.read()
    finally:
        server.shutdown()


def test_busy_window_is_the_generators_share_of_the_last_minute() -> None:
    window = metrics.BusyWindow(window_seconds=60)
    assert window.record(0.0, 15.0) == 0.25
    assert window.record(30.0, 45.0) == 0.5
    assert window.record(100.0, 106.0) == pytest.approx(0.1)


def test_a_worker_holding_nothing_while_its_work_waits_is_stranded_but_a_standby_is_not() -> None:
    import time

    base = time.monotonic()
    held: set[tuple[str, int]] = set()
    told: list[str] = []
    monitor = LagMonitor(KafkaConnection("127.0.0.1:1"), "g", ["gen.requests", "cameo.consents"],
                         {"consents": "cameo.consents"}, assigned=lambda: held, stall_seconds=60,
                         start_grace_seconds=0, consumed=["gen.requests"], on_stranded=told.append)
    monitor.update({("gen.requests", 0): 10, ("cameo.consents", 0): 50}, {("gen.requests", 0): 10,
                                                                          ("cameo.consents", 0): 2}, now=base + 1000)
    assert monitor.stranded(now=base + 2000) is None, "nothing waits in what it consumes: a standby, or no traffic"
    monitor.update({("gen.requests", 0): 30, ("cameo.consents", 0): 50}, {("gen.requests", 0): 12,
                                                                          ("cameo.consents", 0): 2}, now=base + 2000)
    assert monitor.stranded(now=base + 2030) is None, "the others are moving the work"
    problem = monitor.stranded(now=base + 2061)
    assert problem is not None and problem.startswith("stranded: this worker holds no partition while 1 partition")
    assert "gen.requests[0], 18 behind" in problem and problem in monitor.problems(now=base + 2061)
    held.add(("gen.requests", 0))
    assert monitor.stranded(now=base + 2061) is None, "holding a partition: 'not moving' is the check for that"

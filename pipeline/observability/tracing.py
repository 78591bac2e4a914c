"""Traces: one span per stage decision; a request's stages form one trace across Kafka.

    producer.submit: root span "submit"  --traceparent in the record headers-->
    stage 1: span "<stage> decide" (child of the header's context) --its context in the output's headers-->
    stage 2: ... --> publish                       (W3C trace context, OpenTelemetry's default propagator)

Off unless configured (a no-op tracer costs nothing): the standard OTEL_* variables select OTLP over
HTTP (OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, or OTEL_TRACES_EXPORTER=otlp;
OTEL_SERVICE_NAME names the service), and TRUSTREEL_TRACE_FILE writes finished spans as JSON lines
(for tests and a quick look without a collector).
"""

from __future__ import annotations

import json
import os
from typing import Any, Iterable, Mapping

from opentelemetry import propagate, trace
from opentelemetry.context import Context

Headers = tuple[tuple[str, bytes], ...]
_configured = False


def configure_tracing(service_name: str, trace_file: str | None = None) -> bool:
    """Install a tracer provider when an exporter is configured; False (tracing stays off) otherwise."""
    global _configured
    if _configured:
        return True
    otlp = bool(os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
                or os.environ.get("OTEL_TRACES_EXPORTER", "").lower() == "otlp")
    if not (otlp or trace_file) or os.environ.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return False  # the API's no-op tracer stays; the SDK is not even imported
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SimpleSpanProcessor

    processors = []
    if otlp:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        processors.append(BatchSpanProcessor(OTLPSpanExporter()))
    if trace_file:
        stream = open(trace_file, "a", encoding="utf-8", buffering=1)  # noqa: SIM115 (lives as long as the process)
        processors.append(SimpleSpanProcessor(ConsoleSpanExporter(
            out=stream, formatter=lambda span: json.dumps(json.loads(span.to_json())) + "\n")))
    provider = TracerProvider(resource=Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME",
                                                                                       service_name)}))
    for processor in processors:
        provider.add_span_processor(processor)
    trace.set_tracer_provider(provider)
    _configured = True
    return True


def tracer() -> trace.Tracer:
    return trace.get_tracer("trustreel")


def context_from(headers: Iterable[tuple[str, bytes]] | Mapping[str, bytes] | None) -> Context | None:
    """The trace context a Kafka record carries (None: the record starts a new trace)."""
    if not headers:
        return None
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    carrier = {key: value.decode("latin-1") if isinstance(value, bytes) else str(value) for key, value in pairs}
    return propagate.extract(carrier) if "traceparent" in carrier else None


def headers_for(span: trace.Span) -> Headers:
    """Record headers that make the next stage's span a child of `span` (empty when tracing is off)."""
    carrier: dict[str, Any] = {}
    propagate.inject(carrier, context=trace.set_span_in_context(span))
    return tuple((key, str(value).encode("latin-1")) for key, value in carrier.items())

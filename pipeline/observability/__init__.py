"""What an operator sees: Prometheus metrics, OpenTelemetry traces, structured logs.

metrics.py   the metric families every worker exports, and small helpers the runtime calls
server.py    one HTTP port per worker: /metrics (Prometheus text) and /healthz (200 or 503, why)
tracing.py   spans per stage decision, their context carried in Kafka record headers
logs.py      readable or JSON log lines carrying request id and stage; library noise kept out

A leaf: imports no other part of trustreel, so the transport, runtime and stages may all use it.
Exporters are off by default (no port, no tracer) and configured by settings and OTEL_* variables.
"""

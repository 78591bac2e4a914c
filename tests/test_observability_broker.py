"""What an operator sees of a real worker: its metrics agree with the audit database, its health
endpoint answers, and one request's stages form one trace."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections import Counter

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select
from typer.testing import CliRunner

from pipeline.audit.db import DeadLetterRow, DecisionRow
from pipeline.cli import app
from pipeline.settings import MODERATION_ONLY_STAGES, Settings
from pipeline.audit.local_postgres import free_port
from tests.conftest import settings_env, wait_for

pytestmark = [pytest.mark.broker, pytest.mark.stages(*MODERATION_ONLY_STAGES)]


def cli(settings: Settings, *args: str) -> str:
    result = CliRunner().invoke(app, list(args), env=settings_env(settings))
    assert result.exit_code == 0, result.output
    return result.output


def scrape(port: int) -> dict[str, list]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return {family.name: family.samples for family in text_string_to_metric_families(text)}


def health(port: int) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as problem:
        return problem.code, problem.read().decode()


def test_a_workers_metrics_match_the_audit_database_and_its_spans_form_one_trace(
        settings, start_worker, read_topic, producer, sessions, tmp_path) -> None:
    port = free_port()
    live = settings.model_copy(update={"metrics_port": port, "trace_file": tmp_path / "spans.jsonl"})
    cli(live, "account", "profile", "bob", "--birth-date", "1990-01-01")
    start_worker(settings_override=live)
    for request_id in ("walk", "swim"):
        cli(live, "submit", "--requester", "bob", "--prompt", f"a {request_id} by the sea", "--request-id", request_id)
    cli(live, "submit", "--requester", "bob", "--prompt", "who", "--request-id", "nobody", "--cameo", "cam-missing")
    producer.send_raw("gen.requests", b"{not json")
    read_topic("feed.published").wait_for_count(2, timeout=90)
    read_topic("gen.rejected").wait_for_count(1, timeout=30)
    read_topic("gen.deadletter").wait_for_count(1, timeout=30)

    with sessions() as session:
        recorded = Counter({(stage, outcome): count for stage, outcome, count in session.execute(
            select(DecisionRow.stage, DecisionRow.outcome, func.count()).group_by(DecisionRow.stage,
                                                                                  DecisionRow.outcome))})
        letters = session.scalar(select(func.count()).select_from(DeadLetterRow))

    def counted() -> tuple[Counter, float]:
        families = scrape(port)
        decisions = Counter()
        for s in families["trustreel_decisions"]:
            if s.name == "trustreel_decisions_total":
                decisions[(s.labels["stage"], s.labels["outcome"])] += int(s.value)
        return decisions, sum(s.value for s in families["trustreel_dead_letters"]
                              if s.name == "trustreel_dead_letters_total")

    wait_for(lambda: counted() == (recorded, letters), timeout=30)
    assert recorded[("consent", "rejected")] == 1 and recorded[("publish", "approved")] == 2 and letters == 1
    families = scrape(port)
    rejected = [s for s in families["trustreel_decisions"] if s.labels.get("outcome") == "rejected"]
    assert rejected[0].labels["reason"] == "cameo_unknown"
    assert any(s.name == "trustreel_end_to_end_seconds_count" and s.value == 2
               for s in families["trustreel_end_to_end_seconds"])
    wait_for(lambda: health(port) == (200, "ok\n"), timeout=30)  # the lag sampler has read the group once
    wait_for(lambda: any(s.value >= 1 for s in scrape(port)["trustreel_worker_assigned_partitions"]), timeout=30)

    def spans_of(request_id: str) -> list[dict]:
        lines = (tmp_path / "spans.jsonl").read_text().splitlines()
        return [span for span in map(json.loads, lines)
                if span["attributes"].get("trustreel.request_id") == request_id and span["name"].endswith(" decide")]

    wait_for(lambda: len(spans_of("walk")) == len(MODERATION_ONLY_STAGES), timeout=30)
    walk = {span["attributes"]["trustreel.stage"]: span for span in spans_of("walk")}
    assert set(walk) == set(MODERATION_ONLY_STAGES)
    assert len({span["context"]["trace_id"] for span in walk.values()}) == 1, "one trace for the whole request"
    for earlier, later in zip(MODERATION_ONLY_STAGES, MODERATION_ONLY_STAGES[1:]):
        assert walk[later]["parent_id"] == walk[earlier]["context"]["span_id"], f"{later} follows {earlier}"
    swim_trace = {span["context"]["trace_id"] for span in spans_of("swim")}
    assert swim_trace and swim_trace.isdisjoint({walk["consent"]["context"]["trace_id"]})

"""Policy files change under running workers: hot reload, refusal of a broken file, shadow records."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from pipeline.audit.db import DecisionRow, make_engine, make_sessionmaker
from pipeline.cli import app
from pipeline.settings import Settings
from tests.conftest import policies_with, settings_env
from tests.test_policy_reload import write_policy

pytestmark = [pytest.mark.broker, pytest.mark.stages("consent", "publish")]


def cli(settings: Settings, *args: str) -> str:
    result = CliRunner().invoke(app, list(args), env=settings_env(settings))
    assert result.exit_code == 0, result.output
    return result.output


def consent_decision(settings: Settings, request_id: str) -> DecisionRow:
    with make_sessionmaker(make_engine(settings.db_url))() as session:
        return session.scalar(select(DecisionRow).where(DecisionRow.request_id == request_id,
                                                        DecisionRow.stage == "consent"))


def test_workers_reload_refuse_broken_files_and_record_shadow_verdicts(settings, start_worker, read_topic,
                                                                        tmp_path) -> None:
    directory = policies_with(tmp_path / "policies", "consent")
    live = settings.model_copy(update={"policy_dir": directory, "policy_check_seconds": 0.2})
    cli(live, "cameo", "register", "c1", "--owner", "olive", "--audience", "everyone")
    cli(live, "cameo", "verify", "c1", "--verified-by", "liveness")
    worker = start_worker(settings_override=live)

    def submit(request_id: str) -> None:
        cli(live, "submit", "--requester", "bob", "--prompt", "a walk", "--cameo", "c1", "--request-id", request_id)

    submit("before")
    read_topic("feed.published").wait_for_count(1, timeout=90)
    original_version = consent_decision(live, "before").policy_version

    write_policy(directory / "consent.shadow.yaml", mode="shadow", max_cameos_per_request=0)
    time.sleep(1)  # a few check intervals
    submit("shadowed")
    read_topic("feed.published").wait_for_count(2, timeout=60)  # the shadow's "no" changed nothing
    shadowed = consent_decision(live, "shadowed")
    assert shadowed.outcome == "approved" and shadowed.policy_version == original_version
    assert shadowed.details["shadow"]["outcome"] == "rejected" and shadowed.details["shadow"]["differs"] is True

    (directory / "consent.yaml").write_text("policy_id: consent-default\nstage: consent\nrules: {max_cameos: [")
    time.sleep(1)
    submit("while-broken")
    read_topic("feed.published").wait_for_count(3, timeout=60)
    assert consent_decision(live, "while-broken").policy_version == original_version
    assert worker.alive and "refusing the changed policy for stage consent" in worker.output()

    write_policy(directory / "consent.yaml", max_cameos_per_request=0)
    time.sleep(1)
    submit("after")
    rejected = read_topic("gen.rejected").wait_for_count(1, timeout=60)
    assert [(r["request_id"], r["reasons"][0]["code"]) for r in rejected] == [("after", "too_many_cameos")]
    assert consent_decision(live, "after").policy_version != original_version

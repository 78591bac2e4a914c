"""The command line (every command has --help), the broker lifecycle and the producer CLI on the real broker."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.main import get_command
from typer.testing import CliRunner

from pipeline.broker import LocalBroker
from pipeline.cli import app
from pipeline.settings import Settings
from tests.conftest import settings_env


def all_command_paths() -> list[list[str]]:
    paths: list[list[str]] = []

    def walk(command, prefix: list[str]) -> None:
        paths.append(prefix)
        if getattr(command, "commands", None):  # a group (typer may bring its own click)
            for name, sub in command.commands.items():
                walk(sub, [*prefix, name])

    walk(get_command(app), [])
    return paths


@pytest.mark.parametrize("path", all_command_paths(), ids=lambda p: " ".join(p) or "trustreel")
def test_every_command_has_help(path: list[str]) -> None:
    result = CliRunner().invoke(app, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output


def test_the_installed_entry_point_runs() -> None:
    result = subprocess.run([sys.executable, "-m", "pipeline.cli", "broker", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "start" in result.stdout


@pytest.mark.broker
def test_broker_start_reuses_a_running_broker_and_stop_stops_it(broker: LocalBroker) -> None:
    second = LocalBroker(home=broker.home, port=broker.port + 10)
    try:
        assert second.start() == second.bootstrap
        pid = second.running_pid()
        assert pid is not None and second.answers()
        assert second.start() == second.bootstrap and second.running_pid() == pid, "start is idempotent"
        with pytest.raises(Exception, match="did not start"):
            LocalBroker(home=broker.home / "elsewhere", port=second.port).start()  # someone else's broker
    finally:
        assert second.stop() is True
    assert second.running_pid() is None and not second.answers()
    assert second.stop() is False
    second.wipe()


@pytest.mark.broker
def test_submit_from_jsonl_sends_valid_lines_and_names_invalid_ones(
        settings: Settings, tmp_path: Path, read_topic) -> None:
    lines = [
        json.dumps({"request_id": "jl-1", "requester_account": "bob", "prompt": "one"}),
        json.dumps({"request_id": "jl-2", "requester_account": "bob"}),
        "",
        json.dumps({"request_id": "jl-3", "requester_account": "carol", "prompt": "three", "cameo_ids": ["c1"]}),
    ]
    file = tmp_path / "requests.jsonl"
    file.write_text("\n".join(lines) + "\n")
    result = CliRunner().invoke(app, ["submit", "--file", str(file)], env=settings_env(settings))
    assert result.exit_code == 1, "a file with an invalid line exits non-zero"
    assert "requests.jsonl:2: not sent: prompt: Field required" in result.output
    sent = read_topic("gen.requests").wait_for_count(2)
    assert sorted(item["request_id"] for item in sent) == ["jl-1", "jl-3"]
    assert read_topic("gen.requests").settle(1.0) == sent


@pytest.mark.broker
def test_topics_are_created_with_configured_partitions_and_compaction(settings: Settings) -> None:
    from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=settings.bootstrap)
    try:
        prefix = settings.topic_prefix
        names = {f"{prefix}{name}" for name in ["gen.requests", "gen.passed.consent", "feed.published",
                                                "gen.rejected", "gen.deadletter", "cameo.consents"]}
        described = {topic["name"]: topic for topic in admin.describe_topics(list(names))}
        assert set(described) == names
        assert all(len(topic["partitions"]) == settings.partitions for topic in described.values())
        configs = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, f"{prefix}cameo.consents")])
        assert configs["topic"][f"{prefix}cameo.consents"]["cleanup.policy"]["value"] == "compact"
    finally:
        admin.close()


@pytest.mark.broker
def test_health_passes_on_a_ready_pipeline_and_names_what_is_missing(settings: Settings, tmp_path: Path) -> None:
    ready = CliRunner().invoke(app, ["health"], env=settings_env(settings))
    assert ready.exit_code == 0, ready.output
    assert "broker: ok" in ready.output and "database: ok: migration" in ready.output and "assets: ok" in ready.output
    unready = settings_env(settings) | {"TRUSTREEL_DB_URL": f"sqlite:///{tmp_path / 'empty.db'}",
                                        "TRUSTREEL_TOPIC_PREFIX": "never-created."}
    result = CliRunner().invoke(app, ["health"], env=unready)
    assert result.exit_code == 1
    assert ("broker: FAILED: topics missing or not visible to User:ANONYMOUS: never-created.accounts.events, "
            "never-created.cameo.consents") in result.output
    assert "database: FAILED: at migration None" in result.output and "trustreel db upgrade" in result.output

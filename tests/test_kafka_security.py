"""Kafka security without a broker: the ACL plan's promises, client settings, and what public records name."""

from __future__ import annotations

import json
import ssl
from pathlib import Path

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.generation.generator import public_model_name
from pipeline.settings import DEFAULT_STAGES, Settings
from pipeline.transport import acl_plan
from pipeline.transport.security import KafkaConnection, KafkaCredentialsError
from pipeline.transport.topics import TopicMap

SETTINGS = Settings(stages=DEFAULT_STAGES, topic_prefix="p.")
TOPICS = TopicMap.from_settings(SETTINGS)
PLAN = acl_plan.acl_plan(SETTINGS)


def allowed(principal: str, operation: str, resource: str = "TOPIC") -> set[str]:
    return {grant.name for grant in PLAN if grant.principal == principal and grant.operation == operation
            and grant.resource == resource}


def writers_of(topic: str) -> set[str]:
    return {grant.principal for grant in PLAN if grant.resource == "TOPIC" and grant.name == topic
            and grant.operation == "WRITE"}


def test_each_stage_reads_only_its_input_and_writes_only_its_outputs() -> None:
    for stage in SETTINGS.stages:
        principal = acl_plan.stage_principal(stage)
        assert allowed(principal, "READ") == {TOPICS.input_of(stage)}  # no consents, no birth dates
        assert allowed(principal, "WRITE") == {TOPICS.output_of(stage), TOPICS.rejected, TOPICS.review,
                                               TOPICS.deadletter}
        own_prefix = f"{SETTINGS.consumer_group}:{TOPICS.input_of(stage)}:"
        assert allowed(principal, "WRITE", "TRANSACTIONAL_ID") == {own_prefix}
        assert allowed(principal, "READ", "GROUP") == {SETTINGS.consumer_group}


def test_only_the_owner_of_each_topic_writes_it() -> None:
    assert writers_of(TOPICS.consents) == {acl_plan.CAMEO_APP}
    assert writers_of(TOPICS.accounts) == {acl_plan.ACCOUNT_SERVICE}
    assert writers_of(TOPICS.rights) == {acl_plan.RIGHTS_DESK}
    assert writers_of(TOPICS.reports) == {acl_plan.REPORTS_APP}
    report_readers = {grant.principal for grant in PLAN if grant.name == TOPICS.reports and grant.operation == "READ"}
    assert report_readers == {acl_plan.REGISTRIES}
    assert writers_of(TOPICS.name("gen.requests")) == {acl_plan.REQUESTER}
    assert writers_of(TOPICS.published) == {acl_plan.stage_principal("publish"), acl_plan.REVIEWER}
    assert writers_of(TOPICS.takedowns) == {acl_plan.REGISTRIES, acl_plan.REVIEWER}
    readers = {grant.principal for grant in PLAN if grant.name == TOPICS.accounts and grant.operation == "READ"}
    assert readers == {acl_plan.REGISTRIES}
    for stage in SETTINGS.stages[:-1]:
        assert writers_of(TOPICS.output_of(stage)) == {acl_plan.stage_principal(stage), acl_plan.REVIEWER}


def test_feed_readers_read_the_feed_only_and_nobody_gets_blanket_rights() -> None:
    assert allowed(acl_plan.FEED_READER, "READ") == {TOPICS.published, TOPICS.takedowns}
    assert allowed(acl_plan.FEED_READER, "WRITE") == set()
    assert {grant.operation for grant in PLAN} <= {"READ", "WRITE", "DESCRIBE"}
    assert all(grant.pattern == "LITERAL" or grant.resource in ("GROUP", "TRANSACTIONAL_ID") for grant in PLAN)
    assert acl_plan.ADMIN not in {grant.principal for grant in PLAN}  # a super user, never in the plan
    prefixes = [grant.name for grant in PLAN if grant.resource == "TRANSACTIONAL_ID" and grant.operation == "WRITE"]
    assert len(prefixes) == len(set(prefixes))  # no two principals may fence each other's transactions


def test_the_cli_prints_the_plan_as_a_table_and_as_json() -> None:
    env = {"TRUSTREEL_TOPIC_PREFIX": "p.", "TRUSTREEL_STAGES": ",".join(DEFAULT_STAGES)}
    table = CliRunner().invoke(app, ["security", "acl-plan"], env=env)
    assert table.exit_code == 0, table.output
    assert "User:cameo-app" in table.output and "p.cameo.consents" in table.output
    listed = json.loads(CliRunner().invoke(app, ["security", "acl-plan", "--format", "json"], env=env).output)
    assert len(listed) == len(PLAN) and {"principal", "operation", "resource", "name", "pattern"} <= set(listed[0])


def test_sasl_needs_a_user_and_a_password_and_the_password_never_shows(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="TRUSTREEL_KAFKA_USERNAME"):
        Settings(kafka_security_protocol="SASL_SSL")
    secret = tmp_path / "password"
    secret.write_text("s3cret-value\n")
    settings = Settings(kafka_security_protocol="SASL_SSL", kafka_username="stage-consent", kafka_password_file=secret)
    connection = KafkaConnection.from_settings(settings)
    assert connection.password == "s3cret-value" and "s3cret" not in repr(connection)
    assert connection.principal == "User:stage-consent"
    options = connection.client_options()
    assert options["sasl_mechanism"] == "SCRAM-SHA-512" and options["security_protocol"] == "SASL_SSL"
    context = options["ssl_context"]
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert "s3cret" not in repr(Settings(kafka_security_protocol="SASL_SSL", kafka_username="u",
                                         kafka_password="s3cret-value"))
    secret.unlink()
    with pytest.raises(KafkaCredentialsError) as unreadable:
        KafkaConnection.from_settings(settings)
    assert "TRUSTREEL_KAFKA_PASSWORD_FILE" in str(unreadable.value) and "s3cret" not in str(unreadable.value)


def test_plaintext_clients_carry_no_tls_or_sasl_options() -> None:
    options = KafkaConnection.from_settings(Settings()).client_options()
    assert options == {"bootstrap_servers": "127.0.0.1:9092", "security_protocol": "PLAINTEXT"}
    assert KafkaConnection("127.0.0.1:9092").faust_credentials() is None


def test_public_records_name_a_model_never_its_server_directory(tmp_path: Path) -> None:
    local = tmp_path / "models" / "ltx-finetune"
    local.mkdir(parents=True)
    assert public_model_name(str(local)) == "ltx-finetune"
    assert public_model_name("/srv/models/private/ltx") == "ltx"
    assert public_model_name("Lightricks/LTX-Video") == "Lightricks/LTX-Video"
    assert public_model_name(str(local), configured="trustreel-video") == "trustreel-video"


def test_broker_commands_refuse_what_a_plaintext_broker_cannot_do(tmp_path: Path) -> None:
    env = {"TRUSTREEL_BROKER_HOME": str(tmp_path), "TRUSTREEL_BROKER_PORT": "29092"}
    refused = CliRunner().invoke(app, ["broker", "credentials", "stage-consent"], env=env)
    assert refused.exit_code == 1 and "not started with --secure" in refused.output
    wiped = CliRunner().invoke(app, ["broker", "wipe"], env=env)
    assert wiped.exit_code == 0 and "wiped node-29092" in wiped.output

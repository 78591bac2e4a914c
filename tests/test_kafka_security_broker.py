"""Tamper tests on the project's broker in secure mode: TLS + SCRAM-SHA-512, StandardAuthorizer, the ACL plan.

One secure broker for the module (its own port, next to the session's plaintext one); every client here
connects as a named principal of pipeline.transport.acl_plan, exactly as a deployment would.
"""

from __future__ import annotations

import uuid
from datetime import date
from pathlib import Path
from typing import Iterator

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaError, TopicAuthorizationFailedError

from pipeline.audit.db import upgrade
from pipeline.broker import LocalBroker
from pipeline.producer import PipelineProducer
from pipeline.settings import MODERATION_ONLY_STAGES, Settings
from pipeline.transport import acl_plan
from pipeline.transport.security import KafkaConnection
from pipeline.transport.topics import TopicMap, ensure_topics
from schemas.models import AccountEvent, ConsentEvent, GenerationRequest, PipelineItem
from tests.conftest import TEST_BROKER_PORT, TopicReader, WorkerProcess, wait_for

pytestmark = [pytest.mark.broker]


@pytest.fixture(scope="module")
def secure_broker() -> Iterator[LocalBroker]:
    node = LocalBroker(home=Settings().broker_home, port=TEST_BROKER_PORT + 100, secure=True)
    node.wipe()
    node.start()
    yield node
    node.stop()


@pytest.fixture(scope="module")
def pipeline(secure_broker: LocalBroker, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """An isolated moderation pipeline on the secure broker: topics made and the plan applied by the admin."""
    workdir = tmp_path_factory.mktemp("secure")
    admin = secure_broker.client_settings(
        Settings(stages=MODERATION_ONLY_STAGES, db_url=f"sqlite:///{workdir / 'audit.db'}",
                 asset_dir=workdir / "assets", topic_prefix=f"s{uuid.uuid4().hex[:8]}."), acl_plan.ADMIN)
    ensure_topics(admin)
    upgrade(admin.db_url)
    secure_broker.provision(acl_plan.principals(admin), acl_plan.acl_plan(admin))
    return admin


def as_principal(settings: Settings, broker: LocalBroker, principal: str) -> Settings:
    return broker.client_settings(settings, principal)


def send_raw(connection: KafkaConnection, topic: str, value: bytes = b"{}") -> None:
    producer = KafkaProducer(**connection.client_options(), acks="all", request_timeout_ms=10000,
                             max_block_ms=10000, bootstrap_timeout_ms=5000)
    try:
        producer.send(topic, value).get(timeout=15)
    finally:
        producer.close(timeout=5)


def read_all(connection: KafkaConnection, topic: str, group: str | None = None) -> list:
    consumer = KafkaConsumer(**connection.client_options(), group_id=group, enable_auto_commit=False,
                             isolation_level="read_committed", request_timeout_ms=10000)
    try:
        partitions = [TopicPartition(topic, p) for p in range(3)]
        consumer.assign(partitions)
        consumer.end_offsets(partitions)  # a fetch from a topic it may not read only logs; this raises
        consumer.seek_to_beginning(*partitions)
        return [record for batch in consumer.poll(timeout_ms=3000).values() for record in batch]
    finally:
        consumer.close()


def _dead(workers: list[WorkerProcess]) -> bool:
    for worker in workers:
        assert worker.alive, worker.output()[-3000:]
    return False


def test_clients_without_valid_credentials_are_refused(secure_broker, pipeline) -> None:
    topic = TopicMap.from_settings(pipeline).name("gen.requests")
    with pytest.raises(KafkaError):  # no TLS, no SASL: the listener does not speak to it
        send_raw(KafkaConnection(secure_broker.bootstrap), topic)
    password = "not-the-password"
    wrong = KafkaConnection(secure_broker.bootstrap, protocol="SASL_SSL", username=acl_plan.REQUESTER,
                            password=password, ca_file=secure_broker.secrets_dir / "ca.pem")
    with pytest.raises(KafkaError) as refused:
        send_raw(wrong, topic)
    assert password not in str(refused.value) and password not in repr(wrong)
    untrusted = KafkaConnection(secure_broker.bootstrap, protocol="SASL_SSL", username=acl_plan.REQUESTER,
                                password=secure_broker.connection(acl_plan.REQUESTER).password)
    with pytest.raises(KafkaError):  # the right password, but the broker's certificate is not trusted
        send_raw(untrusted, topic)
    send_raw(secure_broker.connection(acl_plan.REQUESTER), topic)  # the same principal, properly configured


def test_a_stage_writes_only_its_own_outputs_and_reads_only_its_input(secure_broker, pipeline) -> None:
    topics = TopicMap.from_settings(pipeline)
    likeness = secure_broker.connection(acl_plan.stage_principal("likeness"))
    with pytest.raises(TopicAuthorizationFailedError):
        send_raw(likeness, topics.published)
    with pytest.raises(TopicAuthorizationFailedError):
        send_raw(likeness, topics.output_of("age"))
    send_raw(likeness, topics.output_of("likeness"))  # its own hand-off topic
    with pytest.raises(TopicAuthorizationFailedError):  # prompts on another stage's input are not its to read
        read_all(likeness, topics.input_of("consent"))
    with pytest.raises(TopicAuthorizationFailedError):  # nor birth dates: registries reach it through the database
        read_all(likeness, topics.accounts)


def test_only_the_cameo_app_writes_consent_events(secure_broker, pipeline) -> None:
    event = ConsentEvent(event_id=uuid.uuid4().hex, cameo_id="cam-forged", kind="register", owner_account="mallory",
                         audience="everyone")
    for principal in (acl_plan.REQUESTER, acl_plan.ACCOUNT_SERVICE, acl_plan.stage_principal("consent"),
                      acl_plan.REVIEWER):
        with PipelineProducer(as_principal(pipeline, secure_broker, principal)) as producer:
            with pytest.raises(TopicAuthorizationFailedError):
                producer.send_consent(event, timeout=15)
    with PipelineProducer(as_principal(pipeline, secure_broker, acl_plan.REQUESTER)) as producer:
        with pytest.raises(TopicAuthorizationFailedError):
            producer.send_account_event(AccountEvent(event_id=uuid.uuid4().hex, account_id="mallory",
                                                     kind="profile", birth_date=date(1990, 1, 1),
                                                     assurance="self_declared"), timeout=15)


def test_feed_readers_read_the_feed_and_nothing_else(secure_broker, pipeline) -> None:
    topics = TopicMap.from_settings(pipeline)
    reader = secure_broker.connection(acl_plan.FEED_READER)
    read_all(reader, topics.published, group="feed-reader-app")
    read_all(reader, topics.takedowns, group="feed-reader-app")
    for private in (topics.name("gen.requests"), topics.rejected, topics.consents):
        with pytest.raises(TopicAuthorizationFailedError):
            read_all(reader, private)
    with pytest.raises(KafkaError):  # and no publishing
        send_raw(reader, topics.published)


def test_every_stage_under_its_own_principal_publishes_and_a_forged_record_is_still_rejected(
        secure_broker, pipeline, tmp_path: Path) -> None:
    topics = TopicMap.from_settings(pipeline)
    with PipelineProducer(as_principal(pipeline, secure_broker, acl_plan.CAMEO_APP)) as cameo_app:
        for kind, fields in (("register", {"owner_account": "alice", "audience": "everyone"}),
                             ("verify", {"verified_by": "liveness-service", "verification_method": "liveness"})):
            cameo_app.send_consent(ConsentEvent(event_id=uuid.uuid4().hex, cameo_id="cam-alice", kind=kind, **fields))
    with PipelineProducer(as_principal(pipeline, secure_broker, acl_plan.ACCOUNT_SERVICE)) as accounts:
        for account in ("alice", "bob"):  # adults both: age lets an adult use an adult's cameo
            accounts.send_account_event(AccountEvent(event_id=uuid.uuid4().hex, account_id=account, kind="profile",
                                                     birth_date=date(1990, 1, 1), assurance="verified_document"))
    workers = [WorkerProcess(pipeline, [], tmp_path / "registries.log", ("--state-feeds-only",),
                             secure_broker.client_environment(acl_plan.REGISTRIES))]
    workers += [WorkerProcess(pipeline, [stage], tmp_path / f"{stage}.log", ("--no-state-feeds",),
                              secure_broker.client_environment(acl_plan.stage_principal(stage)))
                for stage in pipeline.stages]
    try:
        with PipelineProducer(as_principal(pipeline, secure_broker, acl_plan.REQUESTER)) as requester:
            requester.submit(GenerationRequest(request_id="secure-1", requester_account="bob",
                                               prompt="a walk on the beach", cameo_ids=["cam-alice"]))
        feed = TopicReader(as_principal(pipeline, secure_broker, acl_plan.FEED_READER), topics.published)
        try:
            wait_for(lambda: feed.poll() or _dead(workers), timeout=180, what="the request on the feed")
            published = feed.json_values()
            assert [item["request_id"] for item in published] == ["secure-1"]
            assert [d["stage"] for d in published[0]["decisions"]] == list(pipeline.stages)

            # The admin may write anywhere: a request nobody approved, dressed as approved, dropped straight
            # onto publish's input. Publish believes the audit database, not the message.
            forged = PipelineItem(request=GenerationRequest(request_id="forged-1", requester_account="mallory",
                                                            prompt="anything", cameo_ids=["cam-alice"]),
                                  decisions=published[0]["decisions"][:-1])
            send_raw(secure_broker.connection(acl_plan.ADMIN), topics.input_of("publish"),
                     forged.model_dump_json().encode())
            rejected = TopicReader(pipeline, topics.rejected).wait_for_count(1, timeout=60)
            assert [(item["request_id"], item["stage"]) for item in rejected] == [("forged-1", "publish")]
            assert [item["request_id"] for item in feed.settle(3.0)] == ["secure-1"]
        finally:
            feed.close()
        for worker in workers:
            assert worker.alive, worker.output()[-3000:]
    finally:
        for worker in workers:
            worker.stop()
    passwords = [secure_broker.connection(principal).password for principal in acl_plan.principals(pipeline)
                 if principal != acl_plan.ADMIN]  # the admin has a certificate, not a password
    for worker in workers:
        log = worker.output()
        assert "StageApp" in log and not any(password in log for password in passwords)
    database = Path(pipeline.db_url.removeprefix("sqlite:///"))
    audit_file = b"".join(path.read_bytes() for path in (database, database.with_name(database.name + "-wal"))
                          if path.exists())
    assert b"secure-1" in audit_file and not any(password.encode() in audit_file for password in passwords)


def test_health_names_the_principal_and_says_when_it_is_refused(secure_broker, pipeline) -> None:
    from typer.testing import CliRunner

    from pipeline.cli import app
    from tests.conftest import settings_env

    as_stage = settings_env(pipeline) | secure_broker.client_environment(acl_plan.stage_principal("age"))
    healthy = CliRunner().invoke(app, ["health"], env=as_stage)
    assert "broker: ok: 127.0.0.1:" in healthy.output and "as User:stage-age (SASL_SSL)" in healthy.output
    wrong = secure_broker.secrets_dir / "wrong.password"
    wrong.write_text("not-the-password")
    refused = CliRunner().invoke(app, ["health"], env=as_stage | {"TRUSTREEL_KAFKA_PASSWORD_FILE": str(wrong)})
    assert refused.exit_code == 1 and "broker: FAILED: " in refused.output and "as User:stage-age" in refused.output
    assert "not-the-password" not in refused.output


def test_only_the_admin_may_provision_principals_and_acls(secure_broker, pipeline) -> None:
    from typer.testing import CliRunner

    from pipeline.cli import app
    from tests.conftest import settings_env

    passwords = secure_broker.secrets_dir / "credentials"
    as_admin = settings_env(pipeline) | secure_broker.client_environment(acl_plan.ADMIN)
    done = CliRunner().invoke(app, ["security", "provision", "--passwords-dir", str(passwords)], env=as_admin)
    assert done.exit_code == 0, done.output
    assert "ACLs in place (as User:CN=trustreel-admin)" in done.output
    as_stage = settings_env(pipeline) | secure_broker.client_environment(acl_plan.stage_principal("publish"))
    refused = CliRunner().invoke(app, ["security", "acl-plan", "--apply"], env=as_stage)
    assert refused.exit_code == 1 and "as User:stage-publish failed" in refused.output
    assert secure_broker.connection(acl_plan.stage_principal("publish")).password not in refused.output

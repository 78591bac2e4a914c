"""Shared fixtures: one real Kafka broker per test session, an isolated pipeline per test.

    session: LocalBroker on TRUSTREEL_TEST_BROKER_PORT (default 19092), started by the project's own code
    test:    topic prefix t<random>. + a fresh SQLite file -> topics created, database migrated
             WorkerProcess runs `python -m pipeline.cli worker` exactly as an operator would
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Callable, Iterator

import pytest

from pipeline.audit.db import upgrade
from pipeline.audit.local_postgres import LocalPostgres, postgres_bindir
from pipeline.broker import LocalBroker
from pipeline.settings import MODERATION_ONLY_STAGES, Settings
from pipeline.transport.security import KafkaConnection
from pipeline.transport.topics import TopicMap, ensure_topics

TEST_BROKER_PORT = int(os.environ.get("TRUSTREEL_TEST_BROKER_PORT", "19092"))


def wait_for(predicate: Callable[[], object], timeout: float = 60.0, interval: float = 0.25,
             what: str = "condition") -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


@pytest.fixture(scope="session")
def broker() -> Iterator[LocalBroker]:
    external = os.environ.get("TRUSTREEL_TEST_BOOTSTRAP")
    if external:
        raise pytest.UsageError("TRUSTREEL_TEST_BOOTSTRAP is not supported: tests start their own broker")
    node = LocalBroker(home=Settings().broker_home, port=TEST_BROKER_PORT)
    node.wipe()  # stale topics from an earlier run would only slow the broker down
    node.start()
    yield node
    node.stop()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny randomly initialised LTX-Video pipeline, built once per session from configs (no download)."""
    from pipeline.generation.tiny_generator import build_tiny_ltx

    return build_tiny_ltx(tmp_path_factory.mktemp("tiny-ltx"))


FAST_GENERATION_RULES = {"fps": 8, "steps": 2, "batch_wait_seconds": 1.0}
"""Test generation policy: 1 s of video is 9 frames, two denoising steps."""


def policies_with(directory: Path, stage: str, **rules: object) -> Path:
    """A copy of the packaged policies in `directory` with some of one stage's rules changed."""
    import yaml

    from policies.loader import policy_path

    if not directory.exists():
        shutil.copytree(policy_path("consent").parent, directory,
                        ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    path = directory / f"{stage}.yaml"
    document = yaml.safe_load(path.read_text())
    document["rules"] = {**(document.get("rules") or {}), **rules}
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return directory


@pytest.fixture
def settings(broker: LocalBroker, tmp_path: Path, request: pytest.FixtureRequest) -> Settings:
    """Settings of an isolated pipeline; `@pytest.mark.stages(...)` picks the stage list.

    Default: the moderation stages only. With generate in the list, the session's tiny model and
    a fast generation policy (copied policies under tmp_path/policies) are configured.
    """
    marker = request.node.get_closest_marker("stages")
    stages = marker.args if marker else MODERATION_ONLY_STAGES
    generation: dict[str, object] = {}
    if "generate" in stages:
        generation = {"generator_model": str(request.getfixturevalue("tiny_model_dir")),
                      "policy_dir": policies_with(tmp_path / "policies", "generate", **FAST_GENERATION_RULES)}
    if "provenance" in stages:
        from pipeline.provenance.dev_certificates import write_dev_credentials

        credentials = write_dev_credentials(tmp_path / "c2pa")
        generation |= {"c2pa_cert_chain": credentials.cert_chain, "c2pa_private_key": credentials.private_key,
                       "c2pa_trust_anchors": credentials.trust_anchor}
    configured = Settings(
        stages=stages,
        **generation,
        bootstrap=broker.bootstrap,
        db_url=f"sqlite:///{tmp_path / 'audit.db'}",
        asset_dir=tmp_path / "assets",
        topic_prefix=f"t{uuid.uuid4().hex[:10]}.",
        partitions=3,
    )
    ensure_topics(configured)
    upgrade(configured.db_url)
    return configured


def settings_env(settings: Settings) -> dict[str, str]:
    return {
        "TRUSTREEL_BOOTSTRAP": settings.bootstrap,
        "TRUSTREEL_DB_URL": settings.db_url,
        "TRUSTREEL_TOPIC_PREFIX": settings.topic_prefix,
        "TRUSTREEL_PARTITIONS": str(settings.partitions),
        "TRUSTREEL_STAGES": ",".join(settings.stages),
        "TRUSTREEL_ASSET_DIR": str(settings.asset_dir.resolve()),
        "TRUSTREEL_GENERATOR_MODEL": settings.generator_model,
        "TRUSTREEL_POLICY_CHECK_SECONDS": str(settings.policy_check_seconds),
        **{f"TRUSTREEL_{name.upper()}": str(getattr(settings, name))
           for name in ("c2pa_cert_chain", "c2pa_private_key", "c2pa_trust_anchors", "voice_backend",
                        "voice_model_dir", "metrics_port", "trace_file", "generator_model_name",
                        "generator_model_version", "consent_feed_wait_seconds", "send_claim_lease_seconds",
                        "worker_stall_seconds", "stage_batch_size")
           if getattr(settings, name)},
        **({"TRUSTREEL_POLICY_DIR": str(settings.policy_dir)} if settings.policy_dir else {}),
    }


class WorkerProcess:
    """A real worker process (`python -m pipeline.cli worker`), with its output kept for failures."""

    def __init__(self, settings: Settings, stages: list[str], log_path: Path, args: tuple[str, ...] = (),
                 env: dict[str, str] | None = None) -> None:
        self.log_path = log_path
        command = [sys.executable, "-m", "pipeline.cli", "worker", "--loglevel", "info", *args]
        for stage in stages:
            command += ["--stage", stage]
        self._log = open(log_path, "ab")
        self.process = subprocess.Popen(command, env=os.environ | settings_env(settings) | (env or {}),
                                        stdout=self._log,
                                        stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, timeout: float = 30.0) -> int:
        if self.alive:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        return self.process.returncode

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()
        self._log.close()


@pytest.fixture
def start_worker(settings: Settings, tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    started: list[WorkerProcess] = []

    def start(*stages: str, settings_override: Settings | None = None) -> WorkerProcess:
        worker = WorkerProcess(settings_override or settings, list(stages),
                               tmp_path / f"worker-{len(started)}.log")
        started.append(worker)
        return worker

    yield start
    for worker in started:
        if worker.alive:
            worker.stop()


class TopicReader:
    """Reads a whole topic (all partitions, from the beginning), committed transactions only, as a feed reader must."""

    def __init__(self, settings: Settings, topic: str) -> None:
        from kafka import KafkaConsumer, TopicPartition

        self.topic = topic
        self._consumer = KafkaConsumer(**KafkaConnection.from_settings(settings).client_options(), group_id=None,
                                       enable_auto_commit=False, isolation_level="read_committed",
                                       client_id="trustreel-test-reader")
        partitions = self._consumer.partitions_for_topic(topic) or set()
        self._consumer.assign([TopicPartition(topic, p) for p in partitions])
        self._consumer.seek_to_beginning()
        self.records: list = []

    def poll(self) -> list:
        for batch in self._consumer.poll(timeout_ms=300).values():
            self.records.extend(batch)
        return self.records

    def json_values(self) -> list[dict]:
        return [json.loads(record.value) for record in self.poll()]

    def wait_for_count(self, count: int, timeout: float = 60.0) -> list[dict]:
        wait_for(lambda: len(self.poll()) >= count, timeout, what=f"{count} messages on {self.topic}")
        return self.json_values()

    def settle(self, quiet_seconds: float = 3.0) -> list[dict]:
        """Keep reading until nothing new arrives for quiet_seconds (to prove there is no extra message)."""
        last, since = len(self.poll()), time.monotonic()
        while time.monotonic() - since < quiet_seconds:
            if len(self.poll()) != last:
                last, since = len(self.records), time.monotonic()
        return self.json_values()

    def close(self) -> None:
        self._consumer.close()


@pytest.fixture
def read_topic(settings: Settings) -> Iterator[Callable[[str], TopicReader]]:
    readers: list[TopicReader] = []
    topics = TopicMap.from_settings(settings)

    def open_reader(logical: str) -> TopicReader:
        reader = TopicReader(settings, topics.name(logical))
        readers.append(reader)
        return reader

    yield open_reader
    for reader in readers:
        reader.close()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[LocalPostgres]:
    bindir = postgres_bindir()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) are not installed; "
                    "install Debian's postgresql package or set TRUSTREEL_TEST_POSTGRES_URL")
    server = LocalPostgres(bindir)
    yield server
    server.remove()


@pytest.fixture(scope="session")
def postgres_url(request: pytest.FixtureRequest) -> str:
    """The audit database URL on PostgreSQL: TRUSTREEL_TEST_POSTGRES_URL, or the local throwaway server."""
    explicit = os.environ.get("TRUSTREEL_TEST_POSTGRES_URL")
    if explicit:
        return explicit
    return request.getfixturevalue("postgres_server").url()


@pytest.fixture
def producer(settings: Settings):
    from pipeline.producer import PipelineProducer

    with PipelineProducer(settings) as client:
        yield client


@pytest.fixture
def sessions(settings: Settings):
    from pipeline.audit.db import make_engine, make_sessionmaker

    engine = make_engine(settings.db_url)
    yield make_sessionmaker(engine)
    engine.dispose()

"""Topic names and their creation.

    gen.requests -> [stage 1] -> gen.passed.<stage 1> -> [stage 2] -> ... -> [publish] -> feed.published
                          \\-> gen.rejected        \\-> gen.deadletter (unreadable input)
    cameo.consents (compacted) -> consent registry table (+ feed.takedowns on revocation)
    accounts.events (compacted) -> account registry table
    rights.registry (compacted) -> rights holders' works table + their reference images' hashes
    feed.reports -> reports table; past the policy's threshold, a case in the console's report queue

Names derive from the configured stage order, so adding a stage adds its hand-off topic.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.settings import Settings
from pipeline.transport.security import KafkaConnection

REQUESTS = "gen.requests"
REJECTED = "gen.rejected"
DEADLETTER = "gen.deadletter"
PUBLISHED = "feed.published"
CONSENTS = "cameo.consents"
ACCOUNTS = "accounts.events"
TAKEDOWNS = "feed.takedowns"
RIGHTS = "rights.registry"
REVIEW = "gen.review"
REPORTS = "feed.reports"


@dataclass(frozen=True)
class TopicSpec:
    name: str
    config: dict[str, str]


@dataclass(frozen=True)
class TopicMap:
    """Resolves logical topic names to real ones (with the configured prefix)."""

    prefix: str
    stages: tuple[str, ...]

    @classmethod
    def from_settings(cls, settings: Settings) -> "TopicMap":
        return cls(prefix=settings.topic_prefix, stages=settings.stages)

    def name(self, logical: str) -> str:
        return f"{self.prefix}{logical}"

    def input_of(self, stage: str) -> str:
        index = self.stages.index(stage)
        return self.name(REQUESTS if index == 0 else f"gen.passed.{self.stages[index - 1]}")

    def output_of(self, stage: str) -> str:
        return self.name(PUBLISHED if stage == self.stages[-1] else f"gen.passed.{stage}")

    @property
    def rejected(self) -> str:
        return self.name(REJECTED)

    @property
    def deadletter(self) -> str:
        return self.name(DEADLETTER)

    @property
    def published(self) -> str:
        return self.name(PUBLISHED)

    @property
    def review(self) -> str:
        return self.name(REVIEW)

    @property
    def takedowns(self) -> str:
        return self.name(TAKEDOWNS)

    @property
    def consents(self) -> str:
        return self.name(CONSENTS)

    @property
    def accounts(self) -> str:
        return self.name(ACCOUNTS)

    @property
    def rights(self) -> str:
        return self.name(RIGHTS)

    @property
    def reports(self) -> str:
        return self.name(REPORTS)

    def all_topics(self, settings: Settings) -> list[TopicSpec]:
        flow = [self.input_of(stage) for stage in self.stages] + [self.published, self.rejected, self.takedowns,
                                                                      self.review, self.reports]
        specs = [TopicSpec(name, {}) for name in flow]
        specs.append(TopicSpec(self.deadletter, {"max.message.bytes": str(settings.deadletter_max_message_bytes)}))
        specs.append(TopicSpec(self.consents, {"cleanup.policy": "compact"}))
        specs.append(TopicSpec(self.accounts, {"cleanup.policy": "compact"}))
        specs.append(TopicSpec(self.rights, {"cleanup.policy": "compact"}))
        return specs


def ensure_topics(settings: Settings) -> list[str]:
    """Create every pipeline topic that does not exist yet; returns the names created."""
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import TopicAlreadyExistsError

    topics = TopicMap.from_settings(settings)
    admin = KafkaAdminClient(**KafkaConnection.from_settings(settings).client_options(), client_id="trustreel-admin")
    try:
        existing = set(admin.list_topics())
        wanted = [
            NewTopic(
                name=spec.name,
                num_partitions=settings.partitions,
                replication_factor=settings.replication_factor,
                topic_configs=spec.config,
            )
            for spec in topics.all_topics(settings)
            if spec.name not in existing
        ]
        if wanted:
            try:
                admin.create_topics(wanted)
            except TopicAlreadyExistsError:
                pass  # another worker created them between our listing and our request
            _wait_until_listed(admin, {topic.name for topic in wanted})
        return [topic.name for topic in wanted]
    finally:
        admin.close()


def _wait_until_listed(admin, names: set[str], timeout_seconds: float = 30.0) -> None:
    """The controller acknowledges a creation before every broker's metadata shows it; a health check
    or client right after `topics create` must find the topics, so return once they are listed."""
    import time

    deadline = time.monotonic() + timeout_seconds
    while not names <= set(admin.list_topics()):
        if time.monotonic() > deadline:
            missing = ", ".join(sorted(names - set(admin.list_topics())))
            raise TimeoutError(f"topics created but not listed after {timeout_seconds:.0f}s: {missing}")
        time.sleep(0.1)

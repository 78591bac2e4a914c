"""Least privilege on Kafka: one principal per stage and per producing service, and the ACLs each needs.

    stage-<name>      reads its input topic only (the state topics' records, with consents and birth dates,
                      reach it through the registries in the database; it sees only how far they are applied),
                      writes its output, gen.rejected, gen.review and gen.deadletter; transactional ids
                      "<group>:<its input topic>:" only (one per input partition, see transactions.py)
    registries        the worker that applies cameo.consents / accounts.events / rights.registry and takes in
                      feed.reports (`trustreel worker --state-feeds-only`); writes feed.takedowns (revocations)
                      + dead letters
    requester         client services: write gen.requests
    cameo-app         the only writer of cameo.consents
    account-service   the only writer of accounts.events
    rights-desk       the only writer of rights.registry
    reports-app       the app's report button: the only writer of feed.reports
    reviewer          reviewers' tools and the web console: resume a parked request (any stage's output,
                      gen.rejected, feed.published), send takedowns from reviews, confirmed reports, owners'
                      removals and gallery sweeps
    feed-reader       the app's feed: reads feed.published and feed.takedowns, groups "feed-reader*"
    admin             super user: creates topics, applies this plan (never used by a worker)

Every worker principal may DESCRIBE the pipeline's topics (names and partitions, no data): a worker checks
at start that every topic exists (topics it cannot see it would try to create, and be refused), and all
workers share one consumer group (pipeline.worker.app says why), whose leading member assigns the
partitions of every topic the group consumes. Group membership lets a principal
commit offsets only for topics it may READ, so sharing the group gives no stage another's input.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipeline.settings import Settings
from pipeline.transport.topics import REQUESTS, TopicMap

ADMIN = "admin"
BROKER_CERTIFICATE_NAME = "trustreel-kafka-broker"
ADMIN_CERTIFICATE_NAME = "trustreel-admin"
SUPER_USERS = (f"User:CN={BROKER_CERTIFICATE_NAME}", f"User:CN={ADMIN_CERTIFICATE_NAME}")
"""The broker itself and the admin, both known by their certificates on the mutual-TLS listener."""
REGISTRIES = "registries"
REQUESTER = "requester"
CAMEO_APP = "cameo-app"
ACCOUNT_SERVICE = "account-service"
RIGHTS_DESK = "rights-desk"
REPORTS_APP = "reports-app"
REVIEWER = "reviewer"
FEED_READER = "feed-reader"


def stage_principal(stage: str) -> str:
    return f"stage-{stage}"


@dataclass(frozen=True, order=True)
class Grant:
    """One ALLOW ACL: principal (a SCRAM user name) may do operation on a resource."""

    principal: str
    resource: str  # TOPIC, GROUP, TRANSACTIONAL_ID
    name: str
    operation: str  # READ, WRITE, DESCRIBE
    pattern: str = "LITERAL"  # or PREFIXED

    def line(self) -> str:
        where = f"{self.name}*" if self.pattern == "PREFIXED" else self.name
        return f"User:{self.principal:<22} {self.operation:<9} {self.resource.lower():<16} {where}"


def principals(settings: Settings) -> list[str]:
    """Every principal the plan names (the broker needs a SCRAM user for each), admin first."""
    return [ADMIN, *(stage_principal(stage) for stage in settings.stages), REGISTRIES, REQUESTER, CAMEO_APP,
            ACCOUNT_SERVICE, RIGHTS_DESK, REPORTS_APP, REVIEWER, FEED_READER]


def acl_plan(settings: Settings) -> list[Grant]:
    topics = TopicMap.from_settings(settings)
    group = settings.consumer_group
    state = [topics.consents, topics.accounts, topics.rights]
    every_topic = [spec.name for spec in topics.all_topics(settings)]
    grants: list[Grant] = []

    def topic(principal: str, operation: str, *names: str) -> None:
        grants.extend(Grant(principal, "TOPIC", name, operation) for name in names)

    def consumer(principal: str, *reads: str) -> None:
        topic(principal, "READ", *reads)
        grants.append(Grant(principal, "GROUP", group, "READ"))

    def transactions(principal: str, *inputs: str) -> None:
        grants.extend(Grant(principal, "TRANSACTIONAL_ID", f"{group}:{name}:", operation, "PREFIXED")
                      for name in inputs for operation in ("WRITE", "DESCRIBE"))

    for stage in settings.stages:
        principal = stage_principal(stage)
        consumer(principal, topics.input_of(stage))
        topic(principal, "WRITE", topics.output_of(stage), topics.rejected, topics.review, topics.deadletter)
        topic(principal, "DESCRIBE", *every_topic)
        transactions(principal, topics.input_of(stage))
    consumer(REGISTRIES, *state, topics.reports)
    topic(REGISTRIES, "WRITE", topics.takedowns, topics.deadletter)
    topic(REGISTRIES, "DESCRIBE", *every_topic)
    transactions(REGISTRIES, *state, topics.reports)
    topic(REQUESTER, "WRITE", topics.name(REQUESTS))
    topic(CAMEO_APP, "WRITE", topics.consents)
    topic(ACCOUNT_SERVICE, "WRITE", topics.accounts)
    topic(RIGHTS_DESK, "WRITE", topics.rights)
    topic(REPORTS_APP, "WRITE", topics.reports)
    topic(REVIEWER, "WRITE", *dict.fromkeys([topics.output_of(stage) for stage in settings.stages]
                                            + [topics.rejected, topics.takedowns]))
    topic(FEED_READER, "READ", topics.published, topics.takedowns)
    grants.append(Grant(FEED_READER, "GROUP", FEED_READER, "READ", "PREFIXED"))
    def describe_only(grant: Grant) -> bool:
        return grant.resource == "TOPIC" and grant.operation == "DESCRIBE"

    used = {(grant.principal, grant.name) for grant in grants if grant.resource == "TOPIC" and not describe_only(grant)}
    needed = {grant for grant in grants  # READ and WRITE imply DESCRIBE
              if not (describe_only(grant) and (grant.principal, grant.name) in used)}
    order = principals(settings)
    return sorted(needed, key=lambda grant: (order.index(grant.principal), grant))


def render(grants: list[Grant]) -> str:
    return "\n".join(grant.line() for grant in grants)


def secure_listener_properties(keystore: Path | str, truststore: Path | str) -> list[str]:
    """Broker properties of the secure layout (the local broker writes them; docker/compose.yaml sets the same):

        SASL_SSL    clients, SCRAM-SHA-512 over TLS, each as its principal
        BROKER      mutual TLS: the broker's own traffic, and the admin (certificate CN=trustreel-admin)
        CONTROLLER  mutual TLS: KRaft
    SCRAM users live in the cluster metadata and are made by the admin, so no password is in this file.
    """
    tls = ["ssl.keystore.type=PEM", f"ssl.keystore.location={keystore}",
           "ssl.truststore.type=PEM", f"ssl.truststore.location={truststore}"]
    return [
        "listener.security.protocol.map=SASL_SSL:SASL_SSL,BROKER:SSL,CONTROLLER:SSL",
        "inter.broker.listener.name=BROKER",
        "sasl.enabled.mechanisms=SCRAM-SHA-512",
        "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config="
        "org.apache.kafka.common.security.scram.ScramLoginModule required;",
        *tls,
        "listener.name.broker.ssl.client.auth=required",
        "listener.name.controller.ssl.client.auth=required",
        "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
        f"super.users={';'.join(SUPER_USERS)}",
        "allow.everyone.if.no.acl.found=false",
    ]


def provision(admin, passwords: dict[str, str], grants: list[Grant]) -> int:
    """Each principal's SCRAM user (made or updated) and the plan's ACLs, through a super user's admin client."""
    upsert_scram_users(admin, passwords)
    return apply_plan(admin, grants)


def upsert_scram_users(admin, passwords: dict[str, str]) -> None:
    """Create or update one SCRAM-SHA-512 user per principal, through a super user's admin client."""
    from kafka.admin import ScramMechanism, UserScramCredentialUpsertion

    if not passwords:
        return
    upserts = [UserScramCredentialUpsertion(user, ScramMechanism.SCRAM_SHA_512, password)
               for user, password in passwords.items()]
    refused = {user: error for user, error in admin.alter_user_scram_credentials(upserts).items() if error}
    if refused:
        raise RuntimeError(f"the broker refused SCRAM users: {refused}")


def apply_plan(admin, grants: list[Grant]) -> int:
    """Create the plan's ACLs through a kafka-python admin client of a super user; returns how many.

    Creating an ACL that exists is a no-op on the broker, so applying twice is safe. ACLs of principals
    the plan no longer names are left alone (remove them with Kafka's tools when retiring a stage).
    """
    from kafka.admin import (ACL, ACLOperation, ACLPermissionType, ACLResourcePatternType, ResourcePattern,
                             ResourceType)

    acls = [ACL(principal=f"User:{grant.principal}", host="*", operation=ACLOperation[grant.operation],
                permission_type=ACLPermissionType.ALLOW,
                resource_pattern=ResourcePattern(ResourceType[grant.resource], grant.name,
                                                 ACLResourcePatternType[grant.pattern]))
            for grant in grants]
    result = admin.create_acls(acls)
    if result["failed"]:
        raise RuntimeError(f"{len(result['failed'])} ACL(s) were refused: {result['failed'][0]!r}")
    return len(result["succeeded"])

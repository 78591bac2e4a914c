"""Unit tests of the consent decision and registry logic (in-memory registry, no broker)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from consumers.consent import ConsentRules, ConsentStage, check_cameos
from pipeline.state.consent_registry import InMemoryConsentRegistry
from policies.loader import load_policy, policy_path
from schemas.models import ConsentEvent, GenerationRequest, Outcome, PipelineItem

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc)


def clock() -> datetime:
    return NOW


class Events:
    """Feeds events to a registry with increasing offsets, as one partition would."""

    def __init__(self, registry: InMemoryConsentRegistry) -> None:
        self.registry = registry
        self.offset = 0

    def __call__(self, cameo: str, kind: str, occurred_at: datetime = NOW - timedelta(days=1), **fields) -> None:
        self.offset += 1
        event = ConsentEvent(event_id=f"e{self.offset}", cameo_id=cameo, kind=kind, occurred_at=occurred_at, **fields)
        self.registry.apply(event, self.offset)


@pytest.fixture
def registry() -> InMemoryConsentRegistry:
    registry = InMemoryConsentRegistry()
    send = Events(registry)
    send("c-approved", "register", owner_account="alice", audience="approved")
    send("c-approved", "verify", verified_by="liveness-svc", verification_method="liveness")
    send("c-approved", "grant", account="bob", access="allow")
    send("c-everyone", "register", owner_account="erin", audience="everyone")
    send("c-everyone", "verify", verified_by="liveness-svc", verification_method="liveness")
    send("c-everyone", "grant", account="mallory", access="deny")
    send("c-unverified", "register", owner_account="dave", audience="everyone")
    send("c-revoked", "register", owner_account="fay", audience="everyone")
    send("c-revoked", "verify", verified_by="liveness-svc", verification_method="liveness")
    send("c-revoked", "revoke", reason="changed my mind")
    send("c-old", "register", owner_account="gus", audience="everyone")
    send("c-old", "verify", occurred_at=NOW - timedelta(days=400), verified_by="svc", verification_method="liveness")
    send("c-selfie", "register", owner_account="hal", audience="everyone")
    send("c-selfie", "verify", verified_by="svc", verification_method="selfie-upload")
    send("c-mutuals", "register", owner_account="ivy", audience="mutuals")
    send("c-mutuals", "verify", verified_by="svc", verification_method="liveness")
    send("c-mine", "register", owner_account="jo", audience="only_me")
    send("c-mine", "verify", verified_by="svc", verification_method="liveness")
    send("c-mine", "grant", account="bob", access="allow")
    return registry


def decide(registry, requester: str, *cameos: str, rules: ConsentRules | None = None):
    item = PipelineItem(request=GenerationRequest(request_id="r1", requester_account=requester, prompt="p",
                                                  cameo_ids=list(cameos)))
    rules = rules or ConsentRules(accepted_verification_methods=["liveness", "document"])
    return check_cameos(item, registry, rules, clock)


@pytest.mark.parametrize(
    ("requester", "cameo", "code"),
    [
        ("bob", "c-nope", "cameo_unknown"),
        ("bob", "c-unverified", "cameo_unverified"),
        ("bob", "c-revoked", "cameo_revoked"),
        ("fay", "c-revoked", "cameo_revoked"),  # not even the owner may use a withdrawn cameo
        ("carol", "c-approved", "cameo_not_allowed"),
        ("mallory", "c-everyone", "cameo_requester_denied"),
        ("bob", "c-old", "cameo_verification_expired"),
        ("bob", "c-selfie", "cameo_verification_method"),
        ("bob", "c-mutuals", "cameo_not_allowed"),  # no grant, no mutual relation known: fail closed
        ("bob", "c-mine", "cameo_not_allowed"),  # only_me ignores the allow list
    ],
)
def test_each_refusal_has_its_own_reason(registry, requester: str, cameo: str, code: str) -> None:
    verdict = decide(registry, requester, cameo)
    assert verdict.outcome is Outcome.REJECTED
    assert [reason.code for reason in verdict.reasons] == [code]
    assert cameo in verdict.reasons[0].message


@pytest.mark.parametrize(
    ("requester", "cameos"),
    [("bob", ["c-approved"]), ("alice", ["c-approved"]), ("anyone", ["c-everyone"]), ("jo", ["c-mine"]),
     ("bob", ["c-approved", "c-everyone"]), ("carol", [])],
)
def test_permitted_uses_pass(registry, requester: str, cameos: list[str]) -> None:
    verdict = decide(registry, requester, *cameos)
    assert verdict.outcome is Outcome.APPROVED, verdict.reasons
    assert verdict.details["checked_cameos"] == cameos


def test_every_bad_cameo_in_a_request_is_named(registry) -> None:
    verdict = decide(registry, "bob", "c-approved", "c-revoked", "c-nope")
    assert [reason.code for reason in verdict.reasons] == ["cameo_revoked", "cameo_unknown"]


def test_too_many_cameos(registry) -> None:
    verdict = decide(registry, "bob", "c-approved", "c-everyone", rules=ConsentRules(max_cameos_per_request=1))
    assert [reason.code for reason in verdict.reasons] == ["too_many_cameos"]


def test_registry_slots_never_move_backwards() -> None:
    registry = InMemoryConsentRegistry()
    grant = ConsentEvent(event_id="e1", cameo_id="c", kind="grant", account="bob", access="allow")
    remove = ConsentEvent(event_id="e2", cameo_id="c", kind="revoke", account="bob")
    register = ConsentEvent(event_id="e0", cameo_id="c", kind="register", owner_account="o", audience="approved")
    assert registry.apply(register, 1) and registry.apply(grant, 2) and registry.apply(remove, 3)
    assert registry.apply(grant, 2) is False  # a replayed older record is ignored
    assert registry.get("c").access["bob"].value == "none"


def test_consent_stage_uses_its_policy(registry) -> None:
    policy = load_policy(policy_path("consent"), ConsentRules, expected_stage="consent")
    stage = ConsentStage(policy, registry, clock)
    item = PipelineItem(request=GenerationRequest(request_id="r1", requester_account="bob", prompt="p",
                                                  cameo_ids=["c-approved"]))
    assert stage.decide(item).outcome is Outcome.APPROVED

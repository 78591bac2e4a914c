"""Hot policy reload and shadow policies around a real stage (consent), without a broker."""

from __future__ import annotations

import logging
import shutil
from datetime import datetime, timezone
from pathlib import Path

import pytest
import yaml

from consumers.consent import ConsentRules, ConsentStage
from pipeline.runtime.policy_reload import reloading
from pipeline.state.consent_registry import InMemoryConsentRegistry
from policies.loader import load_policy, policy_path, shadow_policy_path
from schemas.models import ConsentEvent, GenerationRequest, Outcome, PipelineItem

NOW = datetime(2026, 11, 25, 12, tzinfo=timezone.utc)


def write_policy(path: Path, mode: str = "enforce", **rules: object) -> None:
    document = {"policy_id": f"consent-{mode}-{len(rules)}", "stage": "consent", "mode": mode,
                "rules": {"max_cameos_per_request": 4, "accepted_verification_methods": ["liveness"]} | rules}
    path.write_text(yaml.safe_dump(document))


@pytest.fixture
def policy_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "policies"
    directory.mkdir()
    shutil.copy(policy_path("consent"), directory / "consent.yaml")
    return directory


@pytest.fixture
def stage(policy_dir: Path):
    registry = InMemoryConsentRegistry()
    registry.apply(ConsentEvent(event_id="e1", cameo_id="c1", kind="register", owner_account="olive",
                                audience="everyone", occurred_at=NOW), 0)
    registry.apply(ConsentEvent(event_id="e2", cameo_id="c1", kind="verify", verified_by="liveness",
                                verification_method="liveness", occurred_at=NOW), 1)

    def build(path_of, mode):
        return lambda: ConsentStage(load_policy(path_of("consent", policy_dir), ConsentRules, "consent", mode),
                                    registry, lambda: NOW)

    return reloading("consent", policy_dir, build(policy_path, "enforce"), build(shadow_policy_path, "shadow"),
                     check_interval_seconds=0.0)


ITEM = PipelineItem(request=GenerationRequest(request_id="r1", requester_account="bob", prompt="p",
                                              cameo_ids=["c1"]))


def test_a_shadow_policy_is_recorded_beside_the_enforced_one_without_changing_the_outcome(stage, policy_dir) -> None:
    plain = stage.decide(ITEM)
    assert plain.outcome is Outcome.APPROVED and "shadow" not in plain.details
    write_policy(policy_dir / "consent.shadow.yaml", mode="shadow", max_cameos_per_request=0)
    verdict = stage.decide(ITEM)
    assert verdict.outcome is Outcome.APPROVED
    shadow = verdict.details["shadow"]
    assert shadow["outcome"] == "rejected" and shadow["differs"] is True
    assert shadow["reasons"] == ["too_many_cameos"]
    assert shadow["policy_version"] != stage.policy.version


def test_a_changed_policy_is_picked_up_and_a_broken_one_refused(stage, policy_dir, caplog) -> None:
    first_version = stage.policy.version
    write_policy(policy_dir / "consent.yaml", max_cameos_per_request=-1)  # invalid: refused
    with caplog.at_level(logging.ERROR, logger="trustreel.policy"):
        assert stage.decide(ITEM).outcome is Outcome.APPROVED
    assert stage.policy.version == first_version
    assert "refusing the changed policy for stage consent" in caplog.text and "max_cameos_per_request" in caplog.text
    write_policy(policy_dir / "consent.yaml", max_cameos_per_request=0)  # valid and stricter: used
    assert stage.decide(ITEM).outcome is Outcome.REJECTED
    assert stage.policy.version != first_version


def test_a_shadow_file_marked_enforce_is_refused(stage, policy_dir, caplog) -> None:
    write_policy(policy_dir / "consent.shadow.yaml", mode="enforce", max_cameos_per_request=0)
    with caplog.at_level(logging.ERROR, logger="trustreel.policy"):
        verdict = stage.decide(ITEM)
    assert "shadow" not in verdict.details and "mode is 'enforce'" in caplog.text

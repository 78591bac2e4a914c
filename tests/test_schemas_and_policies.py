"""Unit tests: exported JSON Schemas stay current; policy files validate with clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from consumers.consent import ConsentRules
from pipeline.cli import app
from policies.loader import PolicyError, load_policy, policy_path
from schemas.export import render_all, stale_files, write_all
from schemas.models import ConsentEvent, GenerationRequest


def test_exported_json_schemas_match_the_models() -> None:
    assert stale_files() == [], "run `trustreel schemas export` and commit the result"


def test_schema_export_writes_every_model_and_check_detects_drift(tmp_path: Path) -> None:
    written = write_all(tmp_path)
    assert {path.name for path in written} == set(render_all())
    assert stale_files(tmp_path) == []
    (tmp_path / "generation_request.schema.json").write_text("{}")
    assert stale_files(tmp_path) == ["generation_request.schema.json"]
    result = CliRunner().invoke(app, ["schemas", "export", "--check", "--dir", str(tmp_path)])
    assert result.exit_code == 1


def test_generation_request_rejects_unknown_fields_and_bad_ids() -> None:
    GenerationRequest(request_id="r-1", requester_account="alice", prompt="a cat")
    with pytest.raises(ValidationError, match="promt"):
        GenerationRequest(request_id="r-1", requester_account="alice", prompt="a cat", promt="typo")
    with pytest.raises(ValidationError, match="request_id"):
        GenerationRequest(request_id="../../etc/passwd", requester_account="alice", prompt="a cat")


def test_consent_event_fields_must_match_its_kind() -> None:
    with pytest.raises(ValidationError, match="a register event needs owner_account, audience"):
        ConsentEvent(event_id="e1", cameo_id="c1", kind="register")
    with pytest.raises(ValidationError, match="use revoke"):
        ConsentEvent(event_id="e1", cameo_id="c1", kind="grant", account="bob", access="none")
    whole = ConsentEvent(event_id="e1", cameo_id="c1", kind="revoke")
    one = ConsentEvent(event_id="e2", cameo_id="c1", kind="revoke", account="bob")
    assert (whole.aspect(), one.aspect()) == ("revocation", "access:bob")


def test_packaged_policies_load_and_carry_a_content_hash() -> None:
    policy = load_policy(policy_path("consent"), ConsentRules, expected_stage="consent")
    assert policy.policy_id == "consent-default"
    assert len(policy.version) == 64
    assert policy.rules.accepted_verification_methods == ["liveness", "document"]


def test_policy_version_changes_with_the_text(tmp_path: Path) -> None:
    original = policy_path("consent").read_text()
    (tmp_path / "a.yaml").write_text(original)
    (tmp_path / "b.yaml").write_text(original.replace("max_cameos_per_request: 4", "max_cameos_per_request: 2"))
    a = load_policy(tmp_path / "a.yaml", ConsentRules)
    b = load_policy(tmp_path / "b.yaml", ConsentRules)
    assert a.version != b.version and b.rules.max_cameos_per_request == 2


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("policy_id: x\nstage: consent\nrules: {max_cameos_per_request: many}\n",
         "rules.max_cameos_per_request: Input should be a valid integer"),
        ("policy_id: x\nstage: consent\nrules: {max_cameo_per_request: 2}\n",
         "rules.max_cameo_per_request: Extra inputs are not permitted"),
        ("stage: consent\nrules: {}\n", "policy_id: Field required"),
        ("policy_id: x\nstage: consent\nrules: [1, 2\n", "not valid YAML"),
        ("- just\n- a list\n", "must be a mapping"),
    ],
)
def test_bad_policy_files_are_refused_with_the_field_named(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "consent.yaml"
    path.write_text(text)
    with pytest.raises(PolicyError, match=message.replace("[", r"\[")):
        load_policy(path, ConsentRules, expected_stage="consent")


def test_policy_check_command_reports_each_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("policy_id: x\nstage: consent\nrules: {verification_valid_days: 0}\n")
    runner = CliRunner()
    good = runner.invoke(app, ["policy", "check", str(policy_path("consent")), str(policy_path("publish"))])
    assert good.exit_code == 0, good.output
    assert "consent-default (stage consent)" in good.output and "publish-default (stage publish)" in good.output
    failed = runner.invoke(app, ["policy", "check", str(bad)])
    assert failed.exit_code == 1
    assert "rules.verification_valid_days: Input should be greater than or equal to 1" in failed.output


def test_policy_try_shows_how_the_content_policy_and_the_age_bands_judge_a_prompt() -> None:
    import json

    runner = CliRunner()
    drinks = runner.invoke(app, ["policy", "try", "friends doing tequila shots at a party", "--format", "json"])
    assert drinks.exit_code == 0, drinks.output
    report = json.loads(drinks.output)
    assert report["outcome"] == "approved" and "alcohol:medium" in report["labels"]
    assert report["bands"]["adult"] == "allowed" and report["bands"]["13_15"] == "refused: labels not allowed"
    assert report["signals"][0]["matched"] == ["tequila shots"]  # policy writers see what matched
    assert [r["source"] for r in report["readings"]] == ["semantic"]
    # An examples prompt the lexicon reads in its violent sense: the semantic reading clears the label.
    gamer = runner.invoke(app, ["policy", "try", "a teen gamer shouting with joy after winning a shooter tournament"])
    assert gamer.output.startswith("approved") and "labels: -" in gamer.output
    assert '"read_as": "clearly_ordinary"' in gamer.output
    assert "cleared as another sense: violence:medium" in gamer.output
    blocked = runner.invoke(app, ["policy", "try", "a realistic suicide by hanging"])
    assert blocked.exit_code == 0 and blocked.output.startswith("rejected content_self_harm")
    guessed = runner.invoke(app, ["policy", "try", "a man tightening a belt around his own neck in the closet "
                                                   "until he stops breathing"])
    assert guessed.output.startswith("review content_review_self_harm") and '"guess": true' in guessed.output

"""Load and validate policy YAML files.

A policy file names its stage and carries that stage's rules:

    policy_id: consent-default
    stage: consent
    mode: enforce           # or shadow, in <stage>.shadow.yaml: evaluated and recorded, never enforced
    description: why these rules exist
    rules: {...}            # validated by the stage's own pydantic Rules model

Every loaded policy is identified by the sha256 of its bytes, recorded with each
decision, so an auditor can tell exactly which text made a decision.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

RulesT = TypeVar("RulesT", bound=BaseModel)


class PolicyError(ValueError):
    """A policy file that cannot be used; the message says where and why."""


class PolicyHeader(BaseModel):
    model_config = ConfigDict(extra="forbid")

    policy_id: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    stage: str = Field(min_length=1, max_length=64)
    mode: Literal["enforce", "shadow"] = "enforce"
    description: str = ""
    rules: dict[str, Any] = Field(default_factory=dict)


@dataclass(frozen=True)
class LoadedPolicy(Generic[RulesT]):
    policy_id: str
    stage: str
    version: str
    path: Path
    rules: RulesT
    mode: str = "enforce"


def policy_path(stage: str, policy_dir: Path | None = None) -> Path:
    """The file a stage reads: <policy_dir>/<stage>.yaml, or the packaged default."""
    if policy_dir is not None:
        return Path(policy_dir) / f"{stage}.yaml"
    return Path(str(resources.files("policies").joinpath(f"{stage}.yaml")))


def _describe(error: ValidationError, section: str) -> str:
    lines = []
    for item in error.errors():
        where = ".".join(str(part) for part in item["loc"]) or "(top level)"
        lines.append(f"  {section}{where}: {item['msg']}")
    return "\n".join(lines)


def shadow_policy_path(stage: str, policy_dir: Path | None = None) -> Path:
    """<stage>.shadow.yaml beside the enforced file: evaluated and recorded, never enforced."""
    return policy_path(stage, policy_dir).with_name(f"{stage}.shadow.yaml")


def load_policy(path: Path, rules_model: type[RulesT], expected_stage: str | None = None,
                expected_mode: str | None = None) -> LoadedPolicy[RulesT]:
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise PolicyError(f"{path}: cannot read policy file ({exc.strerror})") from exc
    try:
        document = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise PolicyError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(document, dict):
        raise PolicyError(f"{path}: a policy file must be a mapping with policy_id, stage and rules")
    try:
        header = PolicyHeader.model_validate(document)
    except ValidationError as exc:
        raise PolicyError(f"{path}: invalid policy header\n{_describe(exc, '')}") from exc
    if expected_stage is not None and header.stage != expected_stage:
        raise PolicyError(f"{path}: written for stage '{header.stage}', loaded for stage '{expected_stage}'")
    if expected_mode is not None and header.mode != expected_mode:
        raise PolicyError(f"{path}: mode is '{header.mode}', but this file is read as the {expected_mode} policy "
                          f"(shadow policies go in <stage>.shadow.yaml)")
    try:
        rules = rules_model.model_validate(header.rules)
    except ValidationError as exc:
        raise PolicyError(f"{path}: invalid rules for stage '{header.stage}'\n{_describe(exc, 'rules.')}") from exc
    return LoadedPolicy(
        policy_id=header.policy_id,
        stage=header.stage,
        version=hashlib.sha256(raw).hexdigest(),
        path=path,
        rules=rules,
        mode=header.mode,
    )


class LatestPolicy(Generic[RulesT]):
    """A policy that is not a stage's (enrollment, enforcement), read where it is used: read again when its
    file changes; an edit that does not validate is logged and the last good version stays in use.

    The first read happens at construction, so a process with no usable policy stops at start instead of
    failing later, one decision at a time.
    """

    def __init__(self, name: str, rules_model: type[RulesT], policy_dir: Path | None) -> None:
        self._name = name
        self._rules_model = rules_model
        self._path = policy_path(name, policy_dir)
        self._stamp = self._path.stat().st_mtime_ns if self._path.exists() else None
        self._policy = self._load()

    def _load(self) -> LoadedPolicy[RulesT]:
        return load_policy(self._path, self._rules_model, expected_stage=self._name, expected_mode="enforce")

    def __call__(self) -> LoadedPolicy[RulesT]:
        try:
            stamp = self._path.stat().st_mtime_ns
        except OSError:
            return self._policy  # gone for a moment (an editor's save): the last good version
        if stamp != self._stamp:
            self._stamp = stamp
            try:
                self._policy = self._load()
            except PolicyError as exc:
                logging.getLogger("trustreel.policy").error(
                    "%s policy not reloaded, the previous version stays in use: %s", self._name, exc)
        return self._policy

"""The stage catalog: stage name -> how to build it from its policy and shared services.

The runtime never names a stage; later stages (likeness, age, generate, provenance)
register here and are switched on by listing them in TRUSTREEL_STAGES.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from pydantic import BaseModel

from consumers.consent import ConsentRules, ConsentStage
from consumers.publish import PublishRules, PublishStage
from pipeline.audit import AuditStore
from pipeline.consent_registry import ConsentRegistry
from pipeline.settings import Settings
from pipeline.stage import Clock, Stage
from policies.loader import LoadedPolicy, load_policy, policy_path


@dataclass(frozen=True)
class StageServices:
    settings: Settings
    audit: AuditStore
    registry: ConsentRegistry
    clock: Clock

    def policy(self, stage: str) -> LoadedPolicy:
        return load_policy(policy_path(stage, self.settings.policy_dir), RULES[stage], expected_stage=stage)


def _consent(services: StageServices) -> Stage:
    return ConsentStage(services.policy("consent"), services.registry, services.clock)


def _publish(services: StageServices) -> Stage:
    stages = services.settings.stages
    return PublishStage(services.policy("publish"), services.policy("consent"), services.registry, services.audit,
                        earlier_stages=stages[: stages.index("publish")], clock=services.clock)


RULES: dict[str, type[BaseModel]] = {"consent": ConsentRules, "publish": PublishRules}
BUILDERS: dict[str, Callable[[StageServices], Stage]] = {"consent": _consent, "publish": _publish}
USES_CONSENT_REGISTRY = frozenset({"consent", "publish"})


def build_stage(name: str, services: StageServices) -> Stage:
    try:
        builder = BUILDERS[name]
    except KeyError:
        raise ValueError(f"unknown stage '{name}'; known stages: {', '.join(sorted(BUILDERS))}") from None
    return builder(services)


def needs_consent_registry(name: str) -> bool:
    return name in USES_CONSENT_REGISTRY

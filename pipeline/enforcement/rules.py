"""The enforcement policy's rules (policies/enforcement.yaml), validated like every stage's."""

from __future__ import annotations

import enum
import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from policies.loader import LoadedPolicy, load_policy, policy_path
from schemas.models import ReportCategory

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(value: object) -> timedelta:
    """'90d', '12h', '30m', '20s' (or a timedelta) -> timedelta: policy authors write spans that way."""
    if isinstance(value, timedelta):
        return value
    match = _DURATION.match(str(value))
    if match is None:
        raise ValueError(f"{value!r} is not a duration like 90d, 12h, 30m or 20s")
    return timedelta(seconds=float(match.group(1)) * _UNIT_SECONDS[match.group(2)])


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]


class SanctionLevel(str, enum.Enum):
    """Ordered mildest first."""

    COOLDOWN = "cooldown"
    RESTRICTION = "restriction"
    SUSPENSION = "suspension"

    @property
    def rank(self) -> int:
        return list(SanctionLevel).index(self)


class SanctionStep(BaseModel):
    model_config = ConfigDict(extra="forbid")

    level: SanctionLevel
    points: float = Field(gt=0)
    duration: Duration


class ReportRules(BaseModel):
    model_config = ConfigDict(extra="forbid")

    threshold: float = Field(default=3.0, gt=0)
    category_weights: dict[ReportCategory, float] = Field(default_factory=dict)

    def weight(self, category: ReportCategory) -> float:
        return self.category_weights.get(category, 1.0)


class StrikeRules(BaseModel):
    model_config = ConfigDict(extra="forbid")

    window: Duration = Field(default=timedelta(days=90))
    rejection_reasons: dict[str, float] = Field(default_factory=dict)
    takedown_reasons: dict[str, float] = Field(default_factory=dict)


class EnforcementRules(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reports: ReportRules = Field(default_factory=ReportRules)
    strikes: StrikeRules = Field(default_factory=StrikeRules)
    sanctions: list[SanctionStep] = Field(default_factory=list)

    @model_validator(mode="after")
    def _ladder_climbs(self) -> "EnforcementRules":
        points = [step.points for step in self.sanctions]
        if points != sorted(set(points)):
            raise ValueError("sanctions must be listed by increasing points, each step with more points than the last")
        return self


def load_enforcement(policy_dir: Path | None) -> LoadedPolicy[EnforcementRules]:
    return load_policy(policy_path("enforcement", policy_dir), EnforcementRules, expected_stage="enforcement",
                       expected_mode="enforce")


class LatestEnforcement:
    """The enforcement policy, read again when its file changes; a broken edit keeps the last good one.

    Read at construction, so a worker or console without a usable policy stops at start.
    """

    def __init__(self, policy_dir: Path | None) -> None:
        self._policy_dir = policy_dir
        self._path = policy_path("enforcement", policy_dir)
        self._stamp = self._path.stat().st_mtime_ns if self._path.exists() else None
        self._policy = load_enforcement(policy_dir)

    def __call__(self) -> LoadedPolicy[EnforcementRules]:
        import logging

        from policies.loader import PolicyError

        try:
            stamp = self._path.stat().st_mtime_ns
        except OSError:
            return self._policy
        if stamp != self._stamp:
            self._stamp = stamp
            try:
                self._policy = load_enforcement(self._policy_dir)
            except PolicyError as exc:
                logging.getLogger("trustreel.enforcement").error(
                    "enforcement policy not reloaded, the previous version stays in use: %s", exc)
        return self._policy

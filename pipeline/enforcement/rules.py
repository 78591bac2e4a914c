"""The enforcement policy's rules (policies/enforcement.yaml), validated like every stage's."""

from __future__ import annotations

import enum
import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from policies.loader import LatestPolicy
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


def latest_enforcement(policy_dir: Path | None) -> LatestPolicy[EnforcementRules]:
    """policies/enforcement.yaml, read again when it changes (consent, the reports feed and the console ask)."""
    return LatestPolicy("enforcement", EnforcementRules, policy_dir)

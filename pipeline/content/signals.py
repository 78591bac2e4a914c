"""What a content classifier says: categories with a severity, and the evidence kept for reviewers.

    prompt / frame / transcript --TextClassifier | ImageClassifier--> [Signal(category, severity, score, evidence)]

Every backend speaks this vocabulary; the policy (consumers.content) turns signals into block, review
or an age-restricted label. A backend that cannot answer raises ClassifierError: never "nothing found".
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np


class Category(str, enum.Enum):
    SEXUAL = "sexual"
    SEXUAL_MINORS = "sexual_minors"
    SELF_HARM = "self_harm"
    VIOLENCE_GRAPHIC = "violence_graphic"
    VIOLENCE = "violence"
    EXTREMISM = "extremism"
    HATE = "hate"
    HARASSMENT = "harassment"
    ILLICIT_INSTRUCTIONS = "illicit_instructions"
    DRUGS = "drugs"
    ALCOHOL = "alcohol"
    DANGEROUS_ACTS = "dangerous_acts"
    PROFANITY = "profanity"
    GAMBLING = "gambling"


class Severity(str, enum.Enum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"

    @property
    def rank(self) -> int:
        return SEVERITY_ORDER.index(self)

    def raised(self) -> "Severity":
        return SEVERITY_ORDER[min(self.rank + 1, len(SEVERITY_ORDER) - 1)]


SEVERITY_ORDER = [Severity.LOW, Severity.MEDIUM, Severity.HIGH]


@dataclass(frozen=True)
class Signal:
    category: Category
    severity: Severity
    score: float
    source: str  # which backend said it: lexicon, nudenet, transformers, http, learned, semantic
    evidence: dict[str, Any] = field(default_factory=dict)  # matched phrases, classes, boxes: for reviewers only
    guess: bool = False  # a learned model's hunch: at most sends to a person, never blocks, adds no label

    def record(self) -> dict[str, Any]:
        return {"category": self.category.value, "severity": self.severity.value, "score": round(self.score, 4),
                "source": self.source, **({"guess": True} if self.guess else {}), **self.evidence}


ReadingVerdict = Literal["restricted", "leaning", "unsure", "ordinary", "clearly_ordinary"]
ORDINARY_READINGS: tuple[ReadingVerdict, ...] = ("ordinary", "clearly_ordinary")
READINGS_UNDER_LEANING: tuple[ReadingVerdict, ...] = ("unsure", *ORDINARY_READINGS)


@dataclass(frozen=True)
class MinorsReading:
    """A semantic model's reading of a whole text for minors' age bands, beside its signals, from most to least
    harmful: "restricted" (harmful for someone: minors' bands refuse it whatever phrase matched), "leaning" (the
    low labels phrase rules derived from the text count as medium: two weak findings that agree), "unsure",
    "ordinary" (the milder labels phrase rules derived from the text are another sense of their words) and
    "clearly_ordinary" (the same for labels of every severity). From "unsure" down, other backends' guesses in
    the text are overruled."""

    source: str
    verdict: ReadingVerdict
    margin: float

    def record(self) -> dict[str, Any]:
        return {"source": self.source, "read_as": self.verdict, "margin": round(self.margin, 4)}


class ClassifierError(Exception):
    """A backend could not classify (timeout, model or service error): the stage fails closed."""


class TextClassifier(Protocol):
    name: str

    def classify(self, text: str) -> list[Signal]:
        """Signals in `text` (empty: nothing found). Raises ClassifierError when it cannot tell."""
        ...


@runtime_checkable
class MinorsReader(Protocol):
    """A text backend that also reads whole texts for minors' bands (the semantic backend)."""

    def minors_reading(self, text: str) -> MinorsReading | None:
        """None: no reading (too short). Raises ClassifierError when it cannot tell."""
        ...


@runtime_checkable
class BatchReader(Protocol):
    """A text backend that reads a batch's texts faster together (the semantic backend's encoder)."""

    def remember(self, texts: Sequence[str]) -> None:
        """Prepares the texts, which `classify` and `minors_reading` then answer from. Raises ClassifierError."""
        ...


class ImageClassifier(Protocol):
    name: str

    def classify(self, rgb: np.ndarray) -> list[Signal]:
        """Signals in one RGB uint8 image. Raises ClassifierError when it cannot tell."""
        ...


class Transcriber(Protocol):
    name: str

    def transcribe(self, samples: np.ndarray, sample_rate: int) -> str:
        """The words spoken in a mono float32 clip ("" for none). Raises ClassifierError when it cannot tell."""
        ...

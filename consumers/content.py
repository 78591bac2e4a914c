"""Content stage: what a request asks for and what a video shows, judged on the server.

Before generation ("content"): the prompt through every text backend the policy names; each input image
and sampled input video frame through the image backend. After generation ("content-post"): sampled
frames of the generated video, and its sound (transcribed) through the text backends.

    each signal (category, severity) from any backend, by the policy's table for its category:
        severity >= block_at ............ reject: blocked for everyone (sexual_minors: always, at any severity)
        severity >= review_at ........... a person decides (gen.review); approved, it is labelled like the next
        otherwise ....................... label "category:severity" for the age stage, which allows it per band
    a guess (the learned and semantic backends) of a category blocked or reviewed at any severity: a person
        decides, even for sexual_minors; approved, it adds no label. A guess never blocks: the lexicon's still do
    a whole-text reading (the semantic backend), for minors' bands only:
        restricted ...................... label `semantic.label` ("mature": adults' band allows it, minors' not)
        ordinary ........................ the text's labels up to `semantic.clears_up_to` are dropped (another
                                          sense of the words matched: a kitchen knife, a nurse's flu shot);
                                          never a block, a review, an image's label or a declared label
    a backend error or timeout .......... on_error: reject or review, never a pass

The age stage decides on the union of these labels and the client's declared ones, so leaving
`content_labels` empty can only ever add restrictions, never remove them. Reasons name the category and
the policy, never the phrase that matched (that would teach evasion); the details keep matched phrases,
scores and the frames that tripped the image check, for reviewers.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from pipeline.content.semantic import SemanticThresholds
from pipeline.content.signals import (ORDINARY_READINGS, READINGS_UNDER_LEANING, BatchReader, Category, ClassifierError,
                                      ImageClassifier, MinorsReader, Severity, Signal, TextClassifier, Transcriber)
from pipeline.media.assets import AssetIntegrityError, AssetStore
from pipeline.media.frames import UnreadableMedia, audio_of, frames_of
from pipeline.observability.logs import decision_context
from pipeline.runtime.stage import Verdict, media_unreadable, no_generated_video
from policies.loader import LoadedPolicy
from schemas.models import MediaReference, PipelineItem, Reason

CONTENT_STAGES = ("content", "content-post")

log = logging.getLogger(__name__)

DESCRIPTIONS = {
    Category.SEXUAL: "sexual content", Category.SEXUAL_MINORS: "sexual content involving minors",
    Category.SELF_HARM: "suicide or self-harm", Category.VIOLENCE_GRAPHIC: "graphic violence",
    Category.VIOLENCE: "violence", Category.EXTREMISM: "violent extremism", Category.HATE: "hate",
    Category.HARASSMENT: "harassment", Category.ILLICIT_INSTRUCTIONS: "instructions for weapons, explosives or drugs",
    Category.DRUGS: "drugs", Category.ALCOHOL: "alcohol", Category.DANGEROUS_ACTS: "dangerous acts",
    Category.PROFANITY: "profanity", Category.GAMBLING: "gambling",
}


class CategoryRule(BaseModel):
    model_config = ConfigDict(extra="forbid")

    block_at: Severity | None = Field(default=None, description="This severity and above: blocked for everyone")
    review_at: Severity | None = Field(default=None, description="This severity and above: a person decides")


class MappedClass(BaseModel):
    """What one backend class or label means."""

    model_config = ConfigDict(extra="forbid")

    category: Category
    severity: Severity
    min_score: float = Field(default=0.5, ge=0, le=1)


class SemanticRules(BaseModel):
    """Where the semantic backend's margins (signed distances from its machines' boundaries) act."""

    model_config = ConfigDict(extra="forbid")

    review_at: float = Field(default=0.25, description="Harmful-for-everyone margin from which a person decides")
    label_at: float | None = Field(default=0.75, description=(
        "Harmful-for-someone margin from which the text is labelled `label` (minors' bands refuse it); null: never"))
    label: str = Field(default="mature", min_length=1)
    leaning_from: float | None = Field(default=0.0, description=(
        "Harmful-for-someone margin from which the text's low phrase labels count as medium (13-15 refuses them; "
        "each band's own list decides): a mild phrase and a whole text leaning harmful agree; null: never"))
    ordinary_below: float | None = Field(default=-0.25, description=(
        "Harmful-for-someone margin under which the text reads as ordinary: its labels up to clears_up_to are "
        "dropped; null: never"))
    clears_up_to: Severity = Severity.MEDIUM
    clearly_ordinary_below: float | None = Field(default=-0.5, description=(
        "Harmful-for-someone margin under which the text's labels of every severity are dropped; null: never"))
    never_cleared: list[Category] = Field(default_factory=lambda: [Category.PROFANITY], description=(
        "Categories whose labels no ordinary reading drops: a swear word has no innocent sense"))
    overrules_guesses: bool = Field(default=True, description=(
        "A reading that does not even lean harmful (under leaning_from) drops the guesses other backends (the "
        "learned one) made in that text, but never one of sexual_minors: a guess sends a text to a person only "
        "when the model that reads whole sentences does not read it as ordinary"))

    def thresholds(self) -> SemanticThresholds:
        """The margins the semantic backend itself applies (what each reading does acts in this stage)."""
        return SemanticThresholds(self.review_at, self.label_at, self.ordinary_below, self.leaning_from,
                                  self.clearly_ordinary_below)

    @model_validator(mode="after")
    def _margins_in_order(self) -> "SemanticRules":
        ordered = [(name, getattr(self, name)) for name in ("label_at", "leaning_from", "ordinary_below",
                                                             "clearly_ordinary_below")]
        given = [(name, margin) for name, margin in ordered if margin is not None]
        for (higher, high), (lower, low) in zip(given, given[1:]):
            if low >= high:
                raise ValueError(f"semantic.{lower} must be below semantic.{higher}")
        return self

    def clears(self, signal: Signal, read_as: str | None) -> bool:
        """Whether a reading of the signal's text as ordinary drops its label (another sense of the words)."""
        if read_as not in ORDINARY_READINGS or signal.category in self.never_cleared:
            return False
        return read_as == "clearly_ordinary" or signal.severity.rank <= self.clears_up_to.rank

    def overrules(self, guess: Signal, where: dict[str, Any]) -> bool:
        """Whether another backend's reading of the guess's text, not leaning harmful, drops the guess."""
        return (self.overrules_guesses and where.get("read_as") in READINGS_UNDER_LEANING
                and where.get("read_by") != guess.source and guess.category is not Category.SEXUAL_MINORS)


class ContentRules(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text_backends: list[Literal["lexicon", "learned", "semantic", "transformers", "http"]] = Field(
        default_factory=lambda: ["lexicon"], min_length=1)
    image_backend: Literal["nudenet"] | None = "nudenet"
    lexicon_files: list[str] = Field(default_factory=lambda: ["lexicons/content/en.txt"])
    lexicon_stemming: bool = Field(default=True, description=(
        "Also match each lexicon file's phrases in other inflections of their words (Snowball stemmer of the "
        "language the file is named after: en, it, es, fr, de, pt, ...)"))
    learned_examples: list[str] = Field(default_factory=lambda: ["examples/content_prompts*.jsonl"], description=(
        "Labelled prompts the learned backend is trained on: paths or glob patterns relative to the policy file"))
    learned_review_at: float = Field(default=0.90, gt=0, le=1, description=(
        "Least probability of harm for everyone at which the learned backend sends a text to a person"))
    semantic: SemanticRules = Field(default_factory=SemanticRules, description=(
        "The semantic backend (trained on learned_examples): its review and minors' reading margins"))
    categories: dict[Category, CategoryRule]
    image_classes: dict[str, MappedClass] = Field(default_factory=dict, description="NudeNet class -> meaning")
    transformers_labels: dict[str, MappedClass] = Field(default_factory=dict,
                                                        description="Model label -> meaning (transformers backend)")
    http_thresholds: dict[Severity, float] = Field(
        default_factory=lambda: {Severity.LOW: 0.3, Severity.MEDIUM: 0.6, Severity.HIGH: 0.85},
        description="Lowest moderation-endpoint score that counts at each severity")
    on_error: Literal["reject", "review"] = "reject"
    frame_every: int = Field(default=24, ge=1, description="After generation: every Nth frame is checked")
    max_frames: int = Field(default=5, ge=1, le=1000)
    input_frame_every: int = Field(default=12, ge=1, description="Input videos: every Nth frame")
    input_max_frames: int = Field(default=10, ge=1, le=1000)
    audio_without_transcriber: Literal["allow", "reject"] = "reject"
    max_audio_seconds: float = Field(default=60.0, gt=0)

    @field_validator("categories")
    @classmethod
    def _minors_always_blocked(cls, value: dict[Category, CategoryRule]) -> dict[Category, CategoryRule]:
        rule = value.get(Category.SEXUAL_MINORS)
        if rule is None or rule.block_at is not Severity.LOW:
            raise ValueError("sexual_minors must be blocked at every severity (block_at: low); this is not "
                             "configurable")
        return value

    @model_validator(mode="after")
    def _every_category_has_a_rule(self) -> "ContentRules":
        missing = [category.value for category in Category if category not in self.categories]
        if missing:
            raise ValueError(f"categories needs a rule for {', '.join(missing)}")
        return self


@dataclass(frozen=True)
class ContentBackends:
    """The classifiers a content stage uses, built by the stage catalog from policy and settings."""

    text: list[TextClassifier]
    image: Callable[[], ImageClassifier] | None  # loaded on first use: prompt-only traffic never pays for it
    transcriber: Callable[[], Transcriber | None] = lambda: None


@dataclass
class _Findings:
    signals: list[tuple[Signal, dict[str, Any]]] = field(default_factory=list)  # (signal, where)
    errors: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)
    checked: list[dict[str, Any]] = field(default_factory=list)
    readings: list[dict[str, Any]] = field(default_factory=list)  # MinorsReading records, with where
    labels: set[str] = field(default_factory=set)  # from readings


def label_of(signal: Signal) -> str:
    return f"{signal.category.value}:{signal.severity.value}"


def derived_labels(item: PipelineItem) -> list[str] | None:
    """Labels the content stages derived for this request so far; None when no content stage decided."""
    decisions = [d for d in item.decisions if d.stage in CONTENT_STAGES or d.stage in
                 {f"review-{stage}" for stage in CONTENT_STAGES}]
    if not decisions:
        return None
    return sorted({label for decision in decisions for label in decision.details.get("labels", [])})


class ContentStage:
    def __init__(self, name: str, policy: LoadedPolicy[ContentRules], backends: ContentBackends,
                 assets: AssetStore) -> None:
        if name not in CONTENT_STAGES:
            raise ValueError(name)
        self.name = name
        self.policy = policy
        self._backends = backends
        self._assets = assets

    @property
    def after_generation(self) -> bool:
        return self.name == "content-post"

    def decide(self, item: PipelineItem) -> Verdict:
        rules = self.policy.rules
        findings = _Findings()
        if self.after_generation:
            video = item.assets.get("video")
            if video is None:
                return no_generated_video()
            self._check_media(video, rules.frame_every, rules.max_frames, findings, with_sound=True)
        else:
            self._check_text(item.request.prompt, {"in": "prompt"}, findings)
            for reference in item.request.input_media:
                self._check_media(reference, rules.input_frame_every, rules.input_max_frames, findings,
                                  with_sound=False)
        return self._verdict(findings)

    def decide_many(self, items: list[PipelineItem]) -> list[Verdict | Exception]:
        """`decide` for a batch, with the batch's prompts encoded in one pass by the backends that can (the
        semantic one: its sentence encoder costs about a third per prompt in a batch). An item whose decision
        raises gets its exception back (the runtime retries it alone); an encoder failing here costs nothing,
        since each decision then asks again and fails closed on its own."""
        if not self.after_generation:
            prompts = [item.request.prompt for item in items]
            for backend in self._backends.text:
                if isinstance(backend, BatchReader):
                    try:
                        backend.remember(prompts)
                    except ClassifierError as problem:
                        log.warning("content: %s could not read the batch's prompts together: %s", backend.name,
                                    problem)
        outcomes: list[Verdict | Exception] = []
        for item in items:
            try:
                with decision_context(self.name, item.request.request_id):
                    outcomes.append(self.decide(item))
            except Exception as exc:  # the runtime retries this item alone
                outcomes.append(exc)
        return outcomes

    def _check_text(self, text: str, where: dict[str, Any], findings: _Findings) -> None:
        """Every text backend's signals for the text, and what readings of the whole text make of them: a
        restricted reading labels the text; every reading marks the signals (`read_as`), so that the verdict
        lifts their low labels (leaning), drops their milder labels (ordinary) or other backends' guesses (not
        leaning), once every backend has spoken."""
        signals: list[Signal] = []
        for backend in self._backends.text:
            try:
                signals.extend(backend.classify(text))
                reading = backend.minors_reading(text) if isinstance(backend, MinorsReader) else None
            except ClassifierError as problem:
                findings.errors.append(f"{backend.name}: {problem}")
                continue
            if reading is None:
                continue
            findings.readings.append(reading.record() | where)
            if reading.verdict == "restricted":
                findings.labels.add(self.policy.rules.semantic.label)
            else:
                where = where | {"read_as": reading.verdict, "read_by": reading.source}
        findings.signals.extend((signal, where) for signal in signals)

    def _check_media(self, reference: MediaReference, every: int, most: int, findings: _Findings,
                     with_sound: bool) -> None:
        try:
            data = self._assets.get(reference)
            frames = frames_of(data, reference.media_type, every, most)
        except (AssetIntegrityError, UnreadableMedia) as problem:
            findings.unreadable.append(str(problem))
            return
        if self._backends.image is not None:
            try:
                classifier = self._backends.image()
                for index, rgb in frames:
                    where = {"in": "media", "media": reference.sha256[:16], "frame": index}
                    findings.signals.extend((signal, where) for signal in classifier.classify(rgb))
                findings.checked.append({"media": reference.sha256[:16], "frames": [i for i, _ in frames]})
            except ClassifierError as problem:
                findings.errors.append(str(problem))
        if with_sound:
            self._check_sound(data, reference, findings)

    def _check_sound(self, data: bytes, reference: MediaReference, findings: _Findings) -> None:
        rules = self.policy.rules
        try:
            audio = audio_of(data, rules.max_audio_seconds)
        except UnreadableMedia as problem:
            findings.unreadable.append(str(problem))
            return
        if audio is None:
            return
        transcriber = self._backends.transcriber()
        if transcriber is None:
            findings.checked.append({"media": reference.sha256[:16], "sound": "not transcribed: no transcriber"})
            if rules.audio_without_transcriber == "reject":
                findings.errors.append("the video has sound and no transcriber is configured")
            return
        try:
            transcript = transcriber.transcribe(*audio)
        except ClassifierError as problem:
            findings.errors.append(str(problem))
            return
        findings.checked.append({"media": reference.sha256[:16], "transcript": transcript[:2000]})
        self._check_text(transcript, {"in": "sound", "media": reference.sha256[:16]}, findings)

    def _verdict(self, findings: _Findings) -> Verdict:
        rules = self.policy.rules
        blocked, reviewed, labels = set(), set(), set(findings.labels)
        cleared: list[str] = []
        lifted: list[str] = []
        overruled: list[str] = []
        for signal, where in findings.signals:
            rule = rules.categories[signal.category]
            if signal.guess and rules.semantic.overrules(signal, where):
                overruled.append(f"{signal.source}:{signal.category.value}")  # kept for reviewers, as signals
                continue
            if signal.guess:  # a person confirms a guess; approved, it leaves nothing behind
                if signal.category is Category.SEXUAL_MINORS or rule.block_at or rule.review_at:
                    reviewed.add(signal.category)
                continue
            if signal.category is Category.SEXUAL_MINORS or _at_least(signal.severity, rule.block_at):
                blocked.add(signal.category)
            elif _at_least(signal.severity, rule.review_at):
                reviewed.add(signal.category)
                labels.add(label_of(signal))  # a person may approve it; the age bands still apply after
            elif rules.semantic.clears(signal, where.get("read_as")):
                cleared.append(label_of(signal))  # another sense of the words: kept for reviewers, not a label
            elif where.get("read_as") == "leaning" and signal.severity is Severity.LOW:
                lifted.append(label_of(signal))
                labels.add(f"{signal.category.value}:{Severity.MEDIUM.value}")
            else:
                labels.add(label_of(signal))
        details = {"labels": sorted(labels), "signals": [signal.record() | where for signal, where in findings.signals],
                   "checked": findings.checked, "errors": findings.errors,
                   "backends": [backend.name for backend in self._backends.text]}
        if findings.readings:
            details |= {"readings": findings.readings, "cleared_labels": sorted(set(cleared) - labels),
                        "lifted_labels": sorted(set(lifted)), "overruled_guesses": sorted(set(overruled))}
        policy = self.policy.policy_id
        reasons = [Reason(code=f"content_{category.value}",
                          message=f"This request was refused under content policy {policy}: "
                                  f"{DESCRIPTIONS[category]} is not allowed.")
                   for category in sorted(blocked, key=lambda c: c.value)]
        reasons += [media_unreadable(problem) for problem in findings.unreadable]
        if reasons:
            return Verdict.reject(reasons, **details)
        if findings.errors:
            unsure = [Reason(code="content_check_failed",
                             message=f"The content check could not be completed under policy {policy}; "
                                     f"nothing is published unchecked.")]
            return Verdict.reject(unsure, **details) if rules.on_error == "reject" else Verdict.review(unsure, **details)
        if reviewed:
            return Verdict.review([Reason(code=f"content_review_{category.value}",
                                          message=f"Possible {DESCRIPTIONS[category]}: a person will check it "
                                                  f"under content policy {policy}.")
                                   for category in sorted(reviewed, key=lambda c: c.value)], **details)
        return Verdict.approve(**details)


def _at_least(severity: Severity, floor: Severity | None) -> bool:
    return floor is not None and severity.rank >= floor.rank


def lexicon_paths(policy: LoadedPolicy[ContentRules]) -> list[Path]:
    return [Path(policy.path).parent / relative for relative in policy.rules.lexicon_files]


def learned_example_paths(policy: LoadedPolicy[ContentRules]) -> list[Path]:
    """The example files the learned backend trains on, sorted per pattern; a pattern that names no file raises
    ValueError (a typo must not train a model on nothing)."""
    folder = Path(policy.path).parent
    paths: list[Path] = []
    for pattern in policy.rules.learned_examples:
        found = sorted(folder.glob(pattern))
        if not found:
            raise ValueError(f"policy {policy.policy_id}: learned_examples {pattern!r} names no file in {folder}")
        paths.extend(found)
    return paths

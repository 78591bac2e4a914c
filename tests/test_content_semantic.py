"""The semantic text backend: a sentence encoder shipped in its package and kernel machines trained from example
files. Its guesses go to a person and never block; its reading of a whole text restricts minors' bands, lifts
the low labels of a text leaning harmful, or clears the labels phrase rules gave another sense of a word and
overrules other backends' guesses; it fails closed; its trained machines are cached."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from consumers.age import AgeRules, Band, not_allowed_labels
from consumers.content import ContentBackends, ContentRules, ContentStage, SemanticRules, learned_example_paths
from pipeline.content.learned import Example, examples_version
from pipeline.content.semantic import MultilingualUSE, SemanticTextClassifier, SemanticThresholds
from pipeline.content.signals import Category, ClassifierError, MinorsReading, Severity, Signal
from pipeline.media.assets import LocalAssetStore
from pipeline.settings import Settings
from pipeline.worker.catalog import content_backends
from policies.loader import load_policy, policy_path
from schemas.models import GenerationRequest, Outcome, PipelineItem
from tests.test_content_learned import HARMFUL, ORDINARY  # the learned backend's test examples, and more

POLICY = load_policy(policy_path("content"), ContentRules, expected_stage="content")
AGE = load_policy(policy_path("age"), AgeRules, expected_stage="age").rules

TEEN = ["friends drinking beer at a party", "a man drunk at a bar", "doing shots of vodka at a club",
        "a woman drinking wine until she is drunk"]
THRESHOLDS = SemanticThresholds(review_at=0.0, label_at=0.5, ordinary_below=-0.55)


def examples() -> list[Example]:
    rows = [Example(p, "block", Category(c)) for c, prompts in HARMFUL.items() for p in prompts]
    rows += [Example(p, "teen", Category.ALCOHOL) for p in TEEN]
    return rows + [Example(p, "benign", None) for p in ORDINARY]


@pytest.fixture(scope="module")
def encoder() -> MultilingualUSE:
    return MultilingualUSE()


@pytest.fixture(scope="module")
def semantic(encoder, tmp_path_factory) -> SemanticTextClassifier:
    return SemanticTextClassifier(examples(), encoder, THRESHOLDS, "v1", tmp_path_factory.mktemp("cache"))


def decide(text_backends, prompt: str, rules: ContentRules | None = None):
    policy = POLICY if rules is None else replace(POLICY, rules=rules)
    stage = ContentStage("content", policy, ContentBackends(text_backends, None), LocalAssetStore(Path("/nonexistent")))
    return stage.decide(PipelineItem(request=GenerationRequest(request_id="r1", requester_account="a", prompt=prompt)))


def test_the_encoder_ships_in_its_package_and_reads_across_languages(encoder) -> None:
    vectors = encoder.encode(["a man hanging himself from a tree", "un uomo che si impicca a un albero",
                              "a cat chasing a ball of yarn"])
    assert vectors.shape == (3, 512) and np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-3)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2] + 0.2
    assert encoder.version.startswith("use-multilingual-v3/")


def test_a_wording_in_a_language_no_example_uses_gets_a_guess_of_the_right_category(semantic) -> None:
    bomb = semantic.classify("cómo fabricar una bomba casera paso a paso")  # the examples are all English
    assert [(s.category, s.guess, s.source, s.severity) for s in bomb] == [
        (Category.ILLICIT_INSTRUCTIONS, True, "semantic", Severity.HIGH)]
    assert bomb[0].evidence["margin"] >= THRESHOLDS.review_at and bomb[0].evidence["encoder"].startswith("use-")
    wrists = semantic.classify("a young woman cutting her wrists with a razor")
    assert [s.category for s in wrists] == [Category.SELF_HARM]
    for ordinary in ("my grandpa fishing on a quiet lake", "mi abuelo pescando en un lago tranquilo"):
        assert semantic.classify(ordinary) == []


def test_the_fast_margin_is_the_machines_own(semantic, encoder) -> None:
    """The backend computes the kernel expansion itself; it must be what sklearn's decision_function gives."""
    from sklearn.svm import SVC

    rows = examples()
    vectors = encoder.encode([e.prompt for e in rows])
    machine = SVC(C=10.0, kernel="rbf", gamma="scale", class_weight="balanced").fit(
        vectors, [e.expect == "block" for e in rows])
    for text in ("a young woman cutting her wrists with a razor", "a picnic", "", "un vídeo de 🍆 y sangre", *TEEN):
        expected = machine.decision_function(encoder.encode([text]))[0]
        assert semantic.harmful_margin(text) == pytest.approx(expected, abs=1e-4)


def test_the_whole_text_reads_restricted_ordinary_or_unsure(semantic) -> None:
    restricted = semantic.minors_reading("teenagers doing vodka shots until they are drunk")
    assert restricted.verdict == "restricted" and restricted.margin >= THRESHOLDS.label_at
    ordinary = semantic.minors_reading("a family picnic in the garden")
    assert ordinary.verdict == "ordinary" and ordinary.margin < THRESHOLDS.ordinary_below
    between = SemanticTextClassifier(examples(), semantic._encoder, SemanticThresholds(0.0, None, None), "v1")
    assert between.minors_reading("teenagers doing vodka shots until they are drunk").verdict == "unsure"


def test_each_reading_is_where_the_margin_falls_from_most_to_least_harmful(semantic, monkeypatch) -> None:
    text = "two boys fighting in the schoolyard"
    margin = semantic.restricted_margin(text)
    ladder = {"restricted": (margin - 0.1, None, None, None), "leaning": (margin + 0.1, margin - 0.1, None, None),
              "unsure": (margin + 0.2, margin + 0.1, margin - 0.1, margin - 0.2),
              "ordinary": (margin + 0.2, margin + 0.1, margin + 0.05, margin - 0.1),
              "clearly_ordinary": (margin + 0.2, margin + 0.1, margin + 0.05, margin + 0.01)}
    for verdict, (label_at, leaning_from, ordinary_below, clearly_below) in ladder.items():
        monkeypatch.setattr(semantic, "thresholds", SemanticThresholds(0.0, label_at, ordinary_below, leaning_from,
                                                                       clearly_below))
        assert semantic.minors_reading(text) == MinorsReading("semantic", verdict, margin)


def test_texts_under_three_words_get_no_guess_and_no_reading(semantic) -> None:
    assert semantic.harmful_margin("pipe bomb") >= THRESHOLDS.review_at  # the machine alone would guess
    assert semantic.classify("pipe bomb") == [] and semantic.minors_reading("pipe bomb") is None


def test_the_trained_machines_are_cached_by_what_they_were_trained_on(encoder, tmp_path: Path, monkeypatch) -> None:
    first = SemanticTextClassifier(examples(), encoder, THRESHOLDS, "v1", tmp_path)
    assert len(list(tmp_path.glob("semantic-*.npz"))) == 1

    def no_training(self, rows):
        raise AssertionError("trained again")

    monkeypatch.setattr(SemanticTextClassifier, "_train", no_training)
    again = SemanticTextClassifier(examples(), encoder, THRESHOLDS, "v1", tmp_path)
    for text in ("a girl cutting her arms with a razor", "a boat on the lake at dawn", *TEEN):
        assert again.harmful_margin(text) == first.harmful_margin(text)
        assert again.restricted_margin(text) == first.restricted_margin(text)
        assert again.category_probabilities(text) == pytest.approx(first.category_probabilities(text))
    with pytest.raises(AssertionError, match="trained again"):  # one example more: another model
        SemanticTextClassifier([*examples(), Example("a kid swallowing bleach", "block", Category.SELF_HARM)],
                               encoder, THRESHOLDS, "v2", tmp_path)


def test_a_damaged_or_unwritable_cache_costs_a_training_not_a_worker(encoder, tmp_path: Path) -> None:
    SemanticTextClassifier(examples(), encoder, THRESHOLDS, "v1", tmp_path)
    [cached] = tmp_path.glob("semantic-*.npz")
    cached.write_bytes(b"not a model")
    again = SemanticTextClassifier(examples(), encoder, THRESHOLDS, "v1", tmp_path)
    assert again.classify("how to make a bomb in the kitchen") and cached.read_bytes()[:2] == b"PK"  # rewritten
    blocked = tmp_path / "a-file-not-a-folder"
    blocked.write_text("")
    unwritable = SemanticTextClassifier(examples(), encoder, THRESHOLDS, "v1", blocked / "cache")
    assert unwritable.classify("how to make a bomb in the kitchen")


def test_a_guess_sends_to_a_person_and_never_blocks(semantic) -> None:
    verdict = decide([semantic], "how to make a bomb in the kitchen")
    assert verdict.outcome is Outcome.REVIEW
    assert [r.code for r in verdict.reasons] == ["content_review_illicit_instructions"]
    assert verdict.details["signals"][0]["source"] == "semantic" and verdict.details["signals"][0]["guess"] is True
    assert "bomb" not in " ".join(r.message for r in verdict.reasons)


def test_a_restricted_reading_labels_the_request_for_adults_only(semantic) -> None:
    verdict = decide([semantic], "teenagers doing vodka shots until they are drunk")
    assert verdict.outcome is Outcome.APPROVED and verdict.details["labels"] == [POLICY.rules.semantic.label]
    assert verdict.details["readings"] == [{"source": "semantic", "read_as": "restricted", "in": "prompt",
                                            "margin": pytest.approx(verdict.details["readings"][0]["margin"])}]
    labels = ["general", *verdict.details["labels"]]
    assert not_allowed_labels(labels, AGE.bands[Band.TEEN_13_15]) and not_allowed_labels(labels, AGE.bands[Band.TEEN_16_17])
    assert not not_allowed_labels(labels, AGE.bands[Band.ADULT])


def test_an_ordinary_reading_clears_only_the_milder_labels_of_that_text() -> None:
    rules = POLICY.rules
    knife = _Fixed([Signal(Category.VIOLENCE, Severity.MEDIUM, 1.0, "lexicon", {"matched": ["knife"]})], "ordinary")
    verdict = decide([knife], "a chef slicing onions with a big knife")
    assert verdict.outcome is Outcome.APPROVED and verdict.details["labels"] == []
    assert verdict.details["cleared_labels"] == ["violence:medium"]
    assert verdict.details["signals"][0]["read_as"] == "ordinary"  # kept for reviewers
    # Above clears_up_to, reviewed or blocked: the reading changes nothing.
    graphic = _Fixed([Signal(Category.VIOLENCE_GRAPHIC, Severity.HIGH, 1.0, "lexicon")], "ordinary")
    assert decide([graphic], "anything said here").outcome is Outcome.REJECTED
    self_harm = _Fixed([Signal(Category.SELF_HARM, Severity.MEDIUM, 1.0, "lexicon")], "ordinary")
    verdict = decide([self_harm], "anything said here")
    assert verdict.outcome is Outcome.REVIEW and verdict.details["labels"] == ["self_harm:medium"]
    strict = rules.model_copy(update={"semantic": rules.semantic.model_copy(update={"clears_up_to": Severity.LOW})})
    assert decide([knife], "a chef slicing onions with a big knife", strict).details["labels"] == ["violence:medium"]
    # Unsure: nothing cleared.
    unsure = _Fixed([Signal(Category.VIOLENCE, Severity.MEDIUM, 1.0, "lexicon")], "unsure")
    assert decide([unsure], "a chef slicing onions with a big knife").details["labels"] == ["violence:medium"]


def test_a_leaning_reading_lifts_the_low_labels_of_that_text_to_medium() -> None:
    duel = _Fixed([Signal(Category.VIOLENCE, Severity.LOW, 1.0, "lexicon", {"matched": ["duel"]})], "leaning")
    verdict = decide([duel], "a samurai duel ending with one man cut down")
    assert verdict.outcome is Outcome.APPROVED and verdict.details["labels"] == ["violence:medium"]
    assert verdict.details["lifted_labels"] == ["violence:low"]
    labels = ["general", *verdict.details["labels"]]
    assert not_allowed_labels(labels, AGE.bands[Band.TEEN_13_15])  # alone, violence:low is allowed at 13-15
    assert not not_allowed_labels(labels, AGE.bands[Band.TEEN_16_17])  # each band's own list decides
    # A leaning reading alone adds nothing; medium or higher labels, reviews and blocks stay what they were.
    assert decide([_Fixed([], "leaning")], "two friends arguing at lunch").details["labels"] == []
    alcohol = _Fixed([Signal(Category.ALCOHOL, Severity.MEDIUM, 1.0, "lexicon")], "leaning")
    assert decide([alcohol], "friends doing tequila shots").details["labels"] == ["alcohol:medium"]
    self_harm = _Fixed([Signal(Category.SELF_HARM, Severity.LOW, 1.0, "lexicon")], "leaning")
    assert decide([self_harm], "a sad girl alone in her room").outcome is Outcome.APPROVED  # review_at is medium
    # Unsure: nothing lifted.
    assert decide([_Fixed(duel._signals, "unsure")], "a samurai duel").details["labels"] == ["violence:low"]


def test_a_clearly_ordinary_reading_clears_labels_of_every_severity_but_never_a_swear_word() -> None:
    overdose = _Fixed([Signal(Category.DRUGS, Severity.HIGH, 1.0, "lexicon", {"matched": ["overdose"]})], "ordinary")
    prompt = "a doctor explaining the signs of an overdose to parents"
    assert decide([overdose], prompt).details["labels"] == ["drugs:high"]  # ordinary: up to medium only
    clearly = _Fixed([Signal(Category.DRUGS, Severity.HIGH, 1.0, "lexicon")], "clearly_ordinary")
    verdict = decide([clearly], prompt)
    assert verdict.details["labels"] == [] and verdict.details["cleared_labels"] == ["drugs:high"]
    for reading in ("ordinary", "clearly_ordinary"):
        swearing = _Fixed([Signal(Category.PROFANITY, Severity.MEDIUM, 1.0, "lexicon")], reading)
        assert decide([swearing], "a football fan yelling at the referee").details["labels"] == ["profanity:medium"]
    # Blocked stays blocked, whatever the reading.
    graphic = _Fixed([Signal(Category.VIOLENCE_GRAPHIC, Severity.HIGH, 1.0, "lexicon")], "clearly_ordinary")
    assert decide([graphic], "anything said here").outcome is Outcome.REJECTED


def test_a_reading_not_leaning_harmful_overrules_another_backends_guess_but_never_one_of_sexual_minors() -> None:
    def learned(category: Category) -> _Fixed:
        return _Fixed([Signal(category, Severity.HIGH, 0.99, "learned", guess=True)], None, "learned")

    prompt = "a teenage girl studying for her maths exam"
    for reading in ("unsure", "ordinary", "clearly_ordinary"):
        verdict = decide([learned(Category.SELF_HARM), _Fixed([], reading)], prompt)
        assert verdict.outcome is Outcome.APPROVED and verdict.details["overruled_guesses"] == ["learned:self_harm"]
        assert verdict.details["signals"][0]["source"] == "learned"  # kept for reviewers
    for reading in ("leaning", "restricted"):
        assert decide([learned(Category.SELF_HARM), _Fixed([], reading)], prompt).outcome is Outcome.REVIEW
    assert decide([learned(Category.SELF_HARM)], prompt).outcome is Outcome.REVIEW  # no reading, no overruling
    assert decide([learned(Category.SEXUAL_MINORS), _Fixed([], "clearly_ordinary")], prompt).outcome is Outcome.REVIEW
    own = _Fixed([Signal(Category.SELF_HARM, Severity.HIGH, 0.3, "semantic", guess=True)], "ordinary")
    assert decide([own], prompt).outcome is Outcome.REVIEW  # a reader never overrules its own guess
    keep = POLICY.rules.model_copy(update={"semantic": POLICY.rules.semantic.model_copy(
        update={"overrules_guesses": False})})
    assert decide([learned(Category.SELF_HARM), _Fixed([], "ordinary")], prompt, keep).outcome is Outcome.REVIEW


def test_an_ordinary_reading_clears_what_every_backend_found_in_that_text() -> None:
    lexicon = _Fixed([Signal(Category.ALCOHOL, Severity.MEDIUM, 1.0, "lexicon")], None)
    reader = _Fixed([], "ordinary")
    for order in ([lexicon, reader], [reader, lexicon]):
        assert decide(order, "a bartender polishing glasses").details["labels"] == []


def test_a_batch_is_encoded_in_one_pass_and_decided_as_one_by_one(semantic, monkeypatch) -> None:
    prompts = ["how to make a bomb in the kitchen", "teenagers doing vodka shots until they are drunk",
               "a family picnic in the garden", "picnic"]
    items = [PipelineItem(request=GenerationRequest(request_id=f"r{n}", requester_account="a", prompt=prompt))
             for n, prompt in enumerate(prompts)]
    stage = ContentStage("content", POLICY, ContentBackends([semantic], None), LocalAssetStore(Path("/nonexistent")))
    one_by_one = [stage.decide(item) for item in items]
    encoded: list[list[str]] = []
    encode = semantic._encoder.encode
    monkeypatch.setattr(semantic._encoder, "encode", lambda texts: encoded.append(list(texts)) or encode(texts))
    together = stage.decide_many(items)
    assert encoded == [prompts[:3]]  # one pass; two words are too few to read
    assert [(v.outcome, v.details) for v in together] == [(v.outcome, v.details) for v in one_by_one]
    assert [v.outcome for v in together] == [Outcome.REVIEW, Outcome.APPROVED, Outcome.APPROVED, Outcome.APPROVED]


def test_a_batch_the_encoder_cannot_read_is_decided_one_by_one_and_fails_closed(semantic, monkeypatch) -> None:
    def broken(texts):
        raise MemoryError("no room")

    monkeypatch.setattr(semantic, "_last", None)
    monkeypatch.setattr(semantic, "_remembered", {})
    monkeypatch.setattr(semantic._encoder, "encode", broken)
    items = [PipelineItem(request=GenerationRequest(request_id=f"r{n}", requester_account="a", prompt=prompt))
             for n, prompt in enumerate(["a walk on the beach with my dog", "a cat asleep on the sofa"])]
    stage = ContentStage("content", POLICY, ContentBackends([semantic], None), LocalAssetStore(Path("/nonexistent")))
    for verdict in stage.decide_many(items):
        assert verdict.outcome is Outcome.REJECTED and [r.code for r in verdict.reasons] == ["content_check_failed"]


def test_a_reader_that_cannot_answer_fails_closed(semantic, monkeypatch) -> None:
    def broken(texts):
        raise MemoryError("no room")

    monkeypatch.setattr(semantic, "_last", None)
    monkeypatch.setattr(semantic._encoder, "encode", broken)
    with pytest.raises(ClassifierError, match="MemoryError"):
        semantic.minors_reading("a walk on the beach with my dog")
    verdict = decide([semantic], "a walk on the beach with my dog")
    assert verdict.outcome is Outcome.REJECTED and [r.code for r in verdict.reasons] == ["content_check_failed"]


def test_the_reading_margins_must_run_from_most_to_least_harmful() -> None:
    with pytest.raises(ValidationError, match="ordinary_below must be below semantic.label_at"):
        SemanticRules(label_at=0.2, leaning_from=None, ordinary_below=0.3)
    with pytest.raises(ValidationError, match="leaning_from must be below semantic.label_at"):
        SemanticRules(label_at=0.2, leaning_from=0.2)
    with pytest.raises(ValidationError, match="ordinary_below must be below semantic.leaning_from"):
        SemanticRules(leaning_from=0.0, ordinary_below=0.1)
    with pytest.raises(ValidationError, match="clearly_ordinary_below must be below semantic.ordinary_below"):
        SemanticRules(ordinary_below=-0.25, clearly_ordinary_below=-0.1)
    assert SemanticRules(label_at=None, leaning_from=None, ordinary_below=0.3).ordinary_below == 0.3


def test_examples_that_cannot_train_the_machines_stop_the_build(encoder) -> None:
    with pytest.raises(ValueError, match="two categories or more"):
        SemanticTextClassifier([e for e in examples() if e.category is not Category.SELF_HARM], encoder, THRESHOLDS)


def test_the_shipped_policy_trains_it_from_its_examples_and_reads_a_fresh_wording(tmp_path: Path) -> None:
    backends = content_backends(Settings(model_cache_dir=tmp_path), POLICY)
    assert [b.name for b in backends.text] == ["lexicon", "learned", "semantic"]
    semantic = backends.text[2]
    assert semantic.version == examples_version(learned_example_paths(POLICY))
    assert semantic.thresholds.review_at == POLICY.rules.semantic.review_at
    assert list(tmp_path.glob("semantic-*.npz"))
    # No lexicon line reads it, no example holds it.
    prompt = "a lonely old man writing letters to his children before drinking the weedkiller in the shed"
    assert decide(backends.text[:1], prompt).outcome is Outcome.APPROVED
    verdict = decide(backends.text, prompt)
    assert verdict.outcome is Outcome.REVIEW and "content_review_self_harm" in [r.code for r in verdict.reasons]
    for ordinary in ("me as an astronaut floating in space", "a cat dances on the beach at sunset",
                     "my sister and me baking cookies for christmas"):
        verdict = decide(backends.text, ordinary)
        assert verdict.outcome is Outcome.APPROVED and verdict.details["labels"] == []


class _Fixed:
    """A text backend with fixed signals and a fixed whole-text reading: the stage's handling of readings, alone."""

    def __init__(self, signals: list[Signal], reading: str | None, name: str = "semantic") -> None:
        self._signals = signals
        self._reading = reading
        self.name = name

    def classify(self, text: str) -> list[Signal]:
        return list(self._signals)

    def minors_reading(self, text: str) -> MinorsReading | None:
        return None if self._reading is None else MinorsReading(self.name, self._reading, 0.0)

"""The stage catalog: stage name -> how to build it from its policy and shared services.

The runtime never names a stage; a stage is switched on by listing it in TRUSTREEL_STAGES.
"""

from __future__ import annotations

import functools
import hashlib
import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

from pydantic import BaseModel

from consumers.age import AgeRules, AgeStage
from consumers.consent import ConsentRules, ConsentStage
from consumers.content import ContentBackends, ContentRules, ContentStage, learned_example_paths, lexicon_paths
from consumers.generate import GenerateRules, GenerateStage
from consumers.known_media import KnownMediaRules, KnownMediaStage
from consumers.likeness import LikenessRules, LikenessStage, build_name_matcher
from consumers.provenance import ProvenanceRules, ProvenanceStage, mark_plan
from consumers.publish import PublishRules, PublishStage, Recheck
from pipeline.audit.store import AuditStore
from pipeline.cases.takedowns import TakedownService
from pipeline.content.http_moderation import HttpModerationClassifier
from pipeline.content.images import NudeNetImageClassifier
from pipeline.content.learned import LearnedTextClassifier, examples_version, read_examples
from pipeline.content.lexicon import LexiconTextClassifier, read_content_lexicon
from pipeline.content.semantic import MultilingualUSE, SemanticTextClassifier, SemanticThresholds
from pipeline.content.signals import TextClassifier
from pipeline.content.transcribers import shared_transcriber
from pipeline.content.transformers_text import TransformersTextClassifier
from pipeline.enforcement.rules import EnforcementRules
from pipeline.enforcement.standing import StandingBook
from pipeline.generation.generator import DiffusersVideoGenerator, GeneratorConfig
from pipeline.hashing.banking import MediaBanker
from pipeline.hashing.banks import BankSearch, BankStore
from pipeline.hashing.signals import signal_type
from pipeline.likeness.faces import shared_embedder
from pipeline.likeness.galleries import GallerySearch, GalleryStore
from pipeline.likeness.voices import shared_voice_embedder
from pipeline.media.assets import AssetStore, asset_store
from pipeline.provenance.content_credentials import SigningConfig
from pipeline.provenance.ledger import ProvenanceLedger
from pipeline.provenance.marking import MarkPlan
from pipeline.runtime.stage import Clock, Stage
from pipeline.settings import Settings
from pipeline.state.account_registry import AccountRegistry
from pipeline.state.consent_registry import ConsentRegistry
from pipeline.state.enrollment import EnrollmentRules
from pipeline.state.generation_caps import CapLedger
from pipeline.state.rights_registry import RightsNames, SqlRightsRegistry
from pipeline.transport.feed_freshness import FeedFreshness
from pipeline.transport.topics import TopicMap
from policies.loader import LoadedPolicy, load_policy, policy_path, shadow_policy_path

log = logging.getLogger("trustreel.catalog")


@dataclass(frozen=True)
class StageServices:
    settings: Settings
    audit: AuditStore
    cameos: ConsentRegistry
    accounts: AccountRegistry
    caps: CapLedger
    clock: Clock
    assets: AssetStore
    galleries: GalleryStore
    provenance: ProvenanceLedger
    banks: BankStore
    rights: SqlRightsRegistry
    read_only_caps: CapLedger | None = None
    feeds: FeedFreshness | None = None  # publish waits on it; None where no broker feeds the registries
    standing: StandingBook | None = None  # accounts' sanctions, read by consent (and publish's re-check)
    shadow_of: str | None = None  # building the shadow twin of this stage: its policy file, no side effects

    def policy(self, stage: str) -> LoadedPolicy:
        if stage == self.shadow_of:
            return load_policy(shadow_policy_path(stage, self.settings.policy_dir), RULES[stage],
                               expected_stage=stage, expected_mode="shadow")
        return load_policy(policy_path(stage, self.settings.policy_dir), RULES[stage], expected_stage=stage,
                           expected_mode="enforce")

    def for_shadow(self, stage: str) -> "StageServices":
        if stage not in SHADOWABLE:
            raise ValueError(f"stage {stage} cannot run a shadow policy (it has side effects)")
        return replace(self, shadow_of=stage, caps=self.read_only_caps or self.caps)


def _consent(services: StageServices) -> ConsentStage:
    """The consent stage waits for the consent feed before each batch (not its shadow twin, nor publish's
    re-check: publish waits for the feeds itself)."""
    feeds = services.feeds if services.shadow_of is None else None
    return ConsentStage(services.policy("consent"), services.cameos, services.clock, services.standing, feeds,
                        services.settings.consent_feed_wait_seconds)


def _recheck_consent(services: StageServices) -> ConsentStage:
    return ConsentStage(services.policy("consent"), services.cameos, services.clock, services.standing)


def _age(services: StageServices) -> AgeStage:
    stages = services.settings.stages
    requires_content = "content" in stages and "age" in stages and stages.index("content") < stages.index("age")
    return AgeStage(services.policy("age"), services.accounts, services.cameos, services.caps, services.clock,
                    requires_content=requires_content)


def _content(name: str) -> Callable[[StageServices], Stage]:
    def build(services: StageServices) -> ContentStage:
        settings = services.settings
        policy = services.policy("content")
        return ContentStage(name, policy, content_backends(settings, policy), services.assets)

    return build


def content_backends(settings: Settings, policy: LoadedPolicy[ContentRules]) -> ContentBackends:
    """The policy's backends with the deployment's models and endpoints; a missing one stops the build."""
    rules = policy.rules
    text: list[TextClassifier] = []
    for backend in rules.text_backends:
        if backend == "lexicon":
            paths = tuple(lexicon_paths(policy))
            text.append(_lexicon(paths, hashlib.sha256(b"".join(path.read_bytes() for path in paths)).hexdigest(),
                                 rules.lexicon_stemming))
        elif backend == "learned":
            examples = tuple(learned_example_paths(policy))
            text.append(_learned(examples, examples_version(examples), rules.learned_review_at))
        elif backend == "semantic":
            examples = tuple(learned_example_paths(policy))
            text.append(_semantic(examples, examples_version(examples), rules.semantic.thresholds(),
                                  settings.model_cache_dir))
        elif backend == "transformers":
            if settings.content_model_dir is None:
                raise ValueError(f"policy {policy.policy_id} uses the transformers backend; set "
                                 f"TRUSTREEL_CONTENT_MODEL_DIR")
            labels = {label: (m.category, m.severity, m.min_score) for label, m in rules.transformers_labels.items()}
            text.append(TransformersTextClassifier(settings.content_model_dir, labels))
        else:
            if settings.moderation_url is None:
                raise ValueError(f"policy {policy.policy_id} uses the http backend; set TRUSTREEL_MODERATION_URL")
            text.append(HttpModerationClassifier(
                settings.moderation_url, {s.value: v for s, v in rules.http_thresholds.items()},
                settings.moderation_model, settings.moderation_api_key, settings.moderation_timeout_seconds,
                settings.moderation_retries))
    image = None
    if rules.image_backend == "nudenet":
        classes = tuple(sorted((name, (m.category, m.severity, m.min_score)) for name, m in rules.image_classes.items()))
        image = functools.partial(_nudenet, classes)
    transcriber = functools.partial(shared_transcriber, settings.transcriber, settings.transcriber_model_dir)
    return ContentBackends(text, image, transcriber)


@functools.cache
def _lexicon(paths: tuple[Path, ...], version: str, stemming: bool) -> LexiconTextClassifier:
    """Built once per set of files and version of their bytes: a policy reload after an edit rebuilds it."""
    return LexiconTextClassifier(read_content_lexicon(list(paths)), stemming=stemming)


@functools.cache
def _learned(paths: tuple[Path, ...], version: str, review_at: float) -> LearnedTextClassifier:
    """Trained once per set of example files and version of their bytes: an edit retrains it on reload."""
    return LearnedTextClassifier(read_examples(paths), review_at, version)


@functools.cache
def _semantic(paths: tuple[Path, ...], version: str, thresholds: SemanticThresholds,
              cache_dir: Path) -> SemanticTextClassifier:
    """Trained (or loaded from the cache) once per set of example files and version of their bytes."""
    return SemanticTextClassifier(read_examples(paths), MultilingualUSE(), thresholds, version, cache_dir)


@functools.cache
def _nudenet(classes: tuple) -> NudeNetImageClassifier:
    return NudeNetImageClassifier(dict(classes))


def _likeness(name: str) -> Callable[[StageServices], Stage]:
    def build(services: StageServices) -> LikenessStage:
        settings = services.settings
        policy = services.policy("likeness")
        embedder = functools.partial(shared_embedder, settings.face_backend, settings.insightface_model_dir)
        searches = functools.cache(lambda backend: GallerySearch(services.galleries, backend,
                                                                 settings.gallery_approximate_above))
        voice = functools.partial(shared_voice_embedder, settings.voice_backend, settings.voice_model_dir)
        return LikenessStage(name, policy, build_name_matcher(policy), embedder, searches, services.assets, voice)

    return build


def _known_media(name: str) -> Callable[[StageServices], Stage]:
    def build(services: StageServices) -> KnownMediaStage:
        settings = services.settings
        policy = services.policy("known-media")
        rules = policy.rules
        search = BankSearch(services.banks, rules.signal_type, settings.bank_exact_up_to)
        names = functools.cache(lambda: RightsNames(services.rights, rules.rights_allow_list,
                                                    rules.rights_min_alias_length))
        return KnownMediaStage(name, policy, signal_type(rules.signal_type), search, names, services.assets)

    return build


def takedown_banker(services: StageServices) -> MediaBanker:
    return _takedown_banker(services.policy("known-media").rules, services.banks, services.assets)


def takedown_service(settings: Settings, sessions) -> TakedownService:
    """The takedown service outside a worker (CLI, console), banking videos' frames as the workers' does."""
    rules = load_policy(policy_path("known-media", settings.policy_dir), KnownMediaRules, "known-media").rules
    banker = _takedown_banker(rules, BankStore(sessions), asset_store(settings.asset_dir, settings.asset_url))
    return TakedownService(sessions, TopicMap.from_settings(settings).takedowns, settings.stages[-1], banker=banker)


def _takedown_banker(rules: KnownMediaRules, banks: BankStore, assets: AssetStore) -> MediaBanker:
    """How takedowns bank a video's frames: sampled like the generated videos the post stage checks."""
    return MediaBanker(banks, assets, rules.output_sampling(), rules.signal_type)


@functools.cache
def _loaded_generator(config: GeneratorConfig) -> DiffusersVideoGenerator:
    """One model per worker process, kept across policy reloads."""
    generator = DiffusersVideoGenerator(config)
    generator.load()  # before the worker takes any work: a missing model stops the worker at start
    return generator


def _generate(services: StageServices) -> GenerateStage:
    settings = services.settings
    generator = _loaded_generator(GeneratorConfig(
        model_id=settings.generator_model, pipeline_class=settings.generator_pipeline,
        image_pipeline_class=settings.generator_image_pipeline, device=settings.generator_device,
        dtype=settings.generator_dtype, audio_pipeline_class=settings.generator_audio_pipeline,
        audio_model_id=settings.generator_audio_model, public_name=settings.generator_model_name,
        public_version=settings.generator_model_version, attention_backend=settings.generator_attention_backend,
        compile_transformer=settings.generator_compile))
    return GenerateStage(services.policy("generate"), generator, services.cameos, services.assets,
                         marks=_provenance_marks(services))


def _provenance_marks(services: StageServices) -> Callable[[], MarkPlan | None]:
    """The marks provenance.yaml asks for, read for each video the generate stage encodes (a changed policy
    applies to the next video); none when no provenance stage runs after generation, or when the file does not
    load (the provenance stage, which keeps its last good policy, then marks and encodes again)."""
    stages = services.settings.stages
    if "provenance" not in stages or ("generate" in stages and stages.index("provenance") < stages.index("generate")):
        return lambda: None

    def current() -> MarkPlan | None:
        try:
            return mark_plan(services.policy("provenance"))
        except Exception:  # any loader or validation error: unmarked here, marked by the provenance stage
            log.exception("provenance policy did not load; the generate stage leaves the marks to provenance")
            return None

    return current


def _provenance(services: StageServices) -> ProvenanceStage:
    settings = services.settings
    return ProvenanceStage(services.policy("provenance"), signing_config(settings), trust_anchors(settings),
                           services.assets, services.provenance, services.clock)


def signing_config(settings: Settings) -> SigningConfig:
    return SigningConfig(cert_chain=settings.c2pa_cert_chain, private_key=settings.c2pa_private_key,
                         algorithm=settings.c2pa_algorithm, tsa_url=settings.c2pa_tsa_url,
                         signer_callback=settings.c2pa_signer_callback)


def trust_anchors(settings: Settings) -> bytes | None:
    return settings.c2pa_trust_anchors.read_bytes() if settings.c2pa_trust_anchors else None


def _publish(services: StageServices) -> Stage:
    stages = services.settings.stages
    consent = _recheck_consent(services)
    rechecks = [Recheck("consent", consent.policy.version, consent.decide)]
    if "age" in stages:
        age = _age(services)
        rechecks.append(Recheck("age", age.policy.version, age.recheck))
    return PublishStage(services.policy("publish"), services.audit, earlier_stages=stages[: stages.index("publish")],
                        rechecks=rechecks, assets=services.assets, feeds=services.feeds)


RULES: dict[str, type[BaseModel]] = {"consent": ConsentRules, "content": ContentRules, "likeness": LikenessRules,
                                     "known-media": KnownMediaRules,
                                     "age": AgeRules,
                                     "generate": GenerateRules, "provenance": ProvenanceRules,
                                     "publish": PublishRules, "enrollment": EnrollmentRules,
                                     "enforcement": EnforcementRules}
"""Each policy file's rules model, by the name in its `stage:` field (enrollment runs in the consents feed;
enforcement in the consent stage, the reports feed and the console)."""
BUILDERS: dict[str, Callable[[StageServices], Stage]] = {
    "consent": _consent, "content": _content("content"), "content-post": _content("content-post"),
    "likeness": _likeness("likeness"), "likeness-post": _likeness("likeness-post"),
    "known-media": _known_media("known-media"), "known-media-post": _known_media("known-media-post"),
    "age": _age, "generate": _generate, "provenance": _provenance, "publish": _publish,
}


SHADOWABLE = frozenset({"consent", "content", "likeness", "age"})
"""Stages whose decision has no side effect once caps are read-only, so a shadow twin may run beside them."""


def build_stage(name: str, services: StageServices) -> Stage:
    try:
        builder = BUILDERS[name]
    except KeyError:
        raise ValueError(f"unknown stage '{name}'; known stages: {', '.join(sorted(BUILDERS))}") from None
    return builder(services)


def build_reloading_stage(name: str, services: StageServices, check_interval_seconds: float = 1.0) -> Stage:
    """The stage as workers run it: policy files hot-reloaded, plus its shadow twin if one is configured."""
    from pipeline.runtime.policy_reload import reloading

    shadow = (lambda: build_stage(name, services.for_shadow(name))) if name in SHADOWABLE else None
    return reloading(name, services.settings.policy_dir, lambda: build_stage(name, services), shadow,
                     check_interval_seconds)

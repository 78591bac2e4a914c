"""Cameo enrollment on real photographs, a real SQLite database and a real asset store (no broker).

The consents feed's own chain (enrollment, then the registry) applies each event; the consent and
likeness stages then decide on what it left behind, as the worker's would.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest
from skimage import data
from sqlalchemy import select

from consumers.consent import ConsentRules, ConsentStage
from consumers.likeness import LikenessRules, LikenessStage, build_name_matcher
from pipeline.audit.db import CameoEnrollmentRow, GalleryEmbeddingRow, GalleryIdentityRow, make_engine, \
    make_sessionmaker, upgrade
from pipeline.likeness.faces import DlibEmbedder
from pipeline.likeness.galleries import CAMEOS, RETIRED_CAMEOS, GallerySearch, GalleryStore
from pipeline.media.assets import LocalAssetStore
from pipeline.state.consent_registry import InMemoryConsentRegistry, SqlConsentRegistry
from pipeline.state.enrollment import CameoEnrollment, enrollment_policy
from pipeline.state.feeds import InOrder
from policies.loader import load_policy, policy_path
from schemas.models import ConsentEvent, GenerationRequest, MediaReference, Outcome, PipelineItem
from tests import face_fixtures as photos
from tests import voice_fixtures as voices

LIKENESS = load_policy(policy_path("likeness"), LikenessRules, expected_stage="likeness")
CONSENT = load_policy(policy_path("consent"), ConsentRules, expected_stage="consent")


def likeness_policy(**rules: object):
    return replace(LIKENESS, rules=LIKENESS.rules.model_copy(update=rules))


class CountingEmbedder:
    """The real dlib embedder, counting how often enrollment asks it for faces."""

    def __init__(self, inner: DlibEmbedder) -> None:
        self.inner, self.name, self.dimension, self.calls = inner, inner.name, inner.dimension, 0
        self.unscaled_min_face = inner.unscaled_min_face

    def faces(self, rgb, min_face_size=None, memory=None):
        self.calls += 1
        return self.inner.faces(rgb, min_face_size, memory)


@pytest.fixture(scope="module")
def dlib_embedder() -> DlibEmbedder:
    return DlibEmbedder()


class World:
    """One database + asset store; events go through the consents feed's chain in offset order."""

    def __init__(self, path: Path, embedder, voice=None, likeness=LIKENESS, assets: LocalAssetStore | None = None):
        path.mkdir(parents=True, exist_ok=True)
        url = f"sqlite:///{path / 'audit.db'}"
        upgrade(url)
        self.sessions = make_sessionmaker(make_engine(url))
        self.galleries = GalleryStore(self.sessions)
        self.assets = assets or LocalAssetStore(path / "assets")
        self.embedder = CountingEmbedder(embedder)
        self.registry = SqlConsentRegistry(self.sessions)
        self.enrollment = CameoEnrollment(self.sessions, self.galleries, self.assets, lambda: [self.embedder],
                                          lambda: voice, enrollment_policy(None))
        self.feed = InOrder((self.enrollment, self.registry))
        self.consent = ConsentStage(CONSENT, self.registry, lambda: datetime.now(timezone.utc))
        searches = {}

        def search(backend: str) -> GallerySearch:
            return searches.setdefault(backend, GallerySearch(self.galleries, backend, 50_000))

        matcher = build_name_matcher(likeness)
        self.likeness = LikenessStage("likeness", likeness, matcher, lambda: embedder, search, self.assets,
                                      lambda: voice)
        self.likeness_post = LikenessStage("likeness-post", likeness, matcher, lambda: embedder, search,
                                           self.assets, lambda: voice)
        self.events: list[tuple[ConsentEvent, int]] = []
        self.count = 0

    def send(self, cameo: str, kind: str, **fields: object) -> bool:
        event = ConsentEvent(event_id=f"e{len(self.events)}", cameo_id=cameo, kind=kind, **fields)
        self.events.append((event, len(self.events) + 10))
        return self.feed.apply(event, self.events[-1][1])

    def verify(self, cameo: str, *references: MediaReference) -> bool:
        return self.send(cameo, "verify", verified_by="liveness-service", verification_method="liveness",
                         reference_media=list(references))

    def photo(self, rgb: np.ndarray) -> MediaReference:
        return self.assets.put(photos.png_bytes(rgb), "image/png")

    def request(self, requester: str, *cameos: str, media: tuple[np.ndarray, ...] = ()):
        """(stage that decided last, verdict): consent first, then likeness, as the pipeline runs them."""
        self.count += 1
        item = PipelineItem(request=GenerationRequest(
            request_id=f"r{self.count}", requester_account=requester, prompt="a video of us", cameo_ids=list(cameos),
            input_media=[self.photo(rgb) for rgb in media]))
        verdict = self.consent.decide(item)
        if verdict.outcome is not Outcome.APPROVED:
            return "consent", verdict
        return "likeness", self.likeness.decide(item)

    def enrolled_rows(self, cameo: str) -> dict[str, list[str]]:
        """gallery -> sources of the cameo's embeddings."""
        with self.sessions() as session:
            rows = session.execute(select(GalleryIdentityRow.gallery, GalleryEmbeddingRow.source)
                                   .join(GalleryEmbeddingRow, GalleryEmbeddingRow.identity_id == GalleryIdentityRow.id)
                                   .where(GalleryIdentityRow.name == cameo)).all()
        found: dict[str, list[str]] = {}
        for gallery, source in rows:
            found.setdefault(gallery, []).append(source)
        return found

    def enrollment_row(self, cameo: str) -> CameoEnrollmentRow:
        with self.sessions() as session:
            return session.get(CameoEnrollmentRow, cameo)


def outcome(result) -> tuple[str, str]:
    stage, verdict = result
    return stage, verdict.reasons[0].code if verdict.reasons else verdict.outcome.value


@pytest.fixture
def world(tmp_path: Path, dlib_embedder) -> World:
    world = World(tmp_path / "first", dlib_embedder)
    world.send("cam-eileen", "register", owner_account="alice", audience="approved")
    world.send("cam-eileen", "grant", account="bob", access="allow")
    return world


ASTRONAUT = photos.astronaut()
HER_OTHER_PHOTO = photos.altered_copies(ASTRONAUT)["flip"]


def test_verification_enrolls_her_face_so_owner_and_friend_may_use_her_photo(world: World) -> None:
    assert world.verify("cam-eileen", world.photo(ASTRONAUT))
    row = world.enrollment_row("cam-eileen")
    assert (row.status, row.error, row.policy_id) == ("enrolled", None, "enrollment-default")
    assert row.findings[0]["face_scores"]["dlib"] >= 0.3
    assert list(world.enrolled_rows("cam-eileen")) == [CAMEOS]
    assert world.enrolled_rows("cam-eileen")[CAMEOS][0].startswith("enrollment:")
    assert world.registry.get("cam-eileen").enrollment_status == "enrolled"

    assert outcome(world.request("alice", "cam-eileen", media=(HER_OTHER_PHOTO,))) == ("likeness", "approved")
    friend = world.request("bob", "cam-eileen", media=(HER_OTHER_PHOTO,))
    assert outcome(friend) == ("likeness", "approved")
    own = friend[1].details["faces"][0]["own_cameo"]
    assert own["name"] == "cam-eileen" and own["reference_distances"] == [own["distance"]] and own["distance"] < 0.5
    assert outcome(world.request("carol", media=(HER_OTHER_PHOTO,))) == ("likeness", "unconsented_person_face")
    assert outcome(world.request("carol", "cam-eileen", media=(HER_OTHER_PHOTO,))) == ("consent", "cameo_not_allowed")


@pytest.mark.parametrize("image, shown", [(data.coffee(), "shows no face"),
                                          (photos.group_photo(), "shows 6 faces")])
def test_a_reference_without_exactly_one_face_fails_the_verification(world: World, image, shown) -> None:
    assert world.verify("cam-eileen", world.photo(image))
    state = world.registry.get("cam-eileen")
    assert state.enrollment_status == "failed" and shown in state.enrollment_error
    assert world.enrolled_rows("cam-eileen") == {}
    stage, verdict = world.request("alice", "cam-eileen")
    assert (stage, verdict.reasons[0].code) == ("consent", "cameo_enrollment_failed")
    assert shown in verdict.reasons[0].message and "must verify again" in verdict.reasons[0].message


def test_references_of_two_people_or_unreadable_media_fail_the_verification(world: World) -> None:
    assert world.verify("cam-eileen", world.photo(ASTRONAUT), world.photo(photos.group_portrait(2)))
    assert "do not show one person" in world.registry.get("cam-eileen").enrollment_error
    missing = MediaReference(uri="asset://sha256/" + "0" * 64, sha256="0" * 64, media_type="image/png")
    assert world.verify("cam-eileen", missing)
    assert "could not be read" in world.registry.get("cam-eileen").enrollment_error
    sound_only_type = world.assets.put(b"%PDF-1.4", "application/pdf")
    assert world.verify("cam-eileen", sound_only_type)
    assert "neither an image nor a voice sample" in world.registry.get("cam-eileen").enrollment_error
    assert outcome(world.request("alice", "cam-eileen")) == ("consent", "cameo_enrollment_failed")


def test_re_verification_replaces_the_reference_and_keeps_operator_embeddings(world: World, dlib_embedder) -> None:
    world.verify("cam-eileen", world.photo(ASTRONAUT))
    guest = photos.group_portrait(2)
    operator_face = dlib_embedder.faces(photos.group_portrait(4))[0].embedding
    world.galleries.add(CAMEOS, "cam-eileen", "dlib", [(operator_face, "added by an operator")])

    assert world.verify("cam-eileen", world.photo(guest))
    sources = world.enrolled_rows("cam-eileen")[CAMEOS]
    assert len(sources) == 2 and "added by an operator" in sources
    assert [s for s in sources if s.startswith("enrollment:")][0].startswith(f"enrollment:{world.events[-1][1]}:")
    assert outcome(world.request("alice", "cam-eileen", media=(guest,))) == ("likeness", "approved")
    old = world.request("alice", "cam-eileen", media=(HER_OTHER_PHOTO,))
    assert outcome(old) == ("likeness", "unconsented_person_face")
    assert old[1].details["faces"][0]["verdict"] == "unknown_real_person"


def test_a_failed_re_verification_keeps_her_old_face_protecting_her(world: World) -> None:
    world.verify("cam-eileen", world.photo(ASTRONAUT))
    world.verify("cam-eileen", world.photo(data.coffee()))
    assert outcome(world.request("alice", "cam-eileen")) == ("consent", "cameo_enrollment_failed")
    stranger = world.request("carol", media=(HER_OTHER_PHOTO,))
    assert outcome(stranger) == ("likeness", "unconsented_person_face")
    assert stranger[1].details["faces"][0]["verdict"] == "unconsented_cameo"


def test_revocation_retires_her_face_which_stays_protected_for_everyone(world: World) -> None:
    world.verify("cam-eileen", world.photo(ASTRONAUT))
    assert world.send("cam-eileen", "revoke", reason="changed my mind")
    assert list(world.enrolled_rows("cam-eileen")) == [RETIRED_CAMEOS]
    assert world.enrollment_row("cam-eileen").retired_at is not None
    assert outcome(world.request("alice", "cam-eileen", media=(HER_OTHER_PHOTO,))) == ("consent", "cameo_revoked")
    for requester in ("alice", "bob", "carol"):
        stage, verdict = world.request(requester, media=(HER_OTHER_PHOTO,))
        assert (stage, verdict.reasons[0].code) == ("likeness", "unconsented_person_face")
        assert verdict.details["faces"][0]["any_cameo"]["gallery"] == RETIRED_CAMEOS
    # even a stage that ran without the consent check never treats a retired face as consenting
    item = PipelineItem(request=GenerationRequest(request_id="direct", requester_account="alice", prompt="us",
                                                  cameo_ids=["cam-eileen"], input_media=[world.photo(HER_OTHER_PHOTO)]))
    assert world.likeness.decide(item).reasons[0].code == "unconsented_person_face"
    # a verification after the revocation (the topic keeps both slots) is enrolled straight into retirement
    world.verify("cam-eileen", world.photo(photos.altered_copies(ASTRONAUT)["rescale"]))
    assert list(world.enrolled_rows("cam-eileen")) == [RETIRED_CAMEOS]


def test_replays_enroll_once_and_an_empty_database_rebuilt_from_the_events_is_the_same(
        world: World, tmp_path: Path, dlib_embedder) -> None:
    world.verify("cam-eileen", world.photo(ASTRONAUT))
    world.send("cam-eileen", "revoke", account="bob")
    calls = world.embedder.calls
    for event, offset in world.events:  # a worker start replays the whole topic
        assert world.feed.apply(event, offset) is False
    assert world.embedder.calls == calls, "a replay never embeds an enrolled verification again"

    rebuilt = World(tmp_path / "rebuilt", dlib_embedder, assets=world.assets)
    for event, offset in world.events:
        rebuilt.feed.apply(event, offset)
    assert rebuilt.enrolled_rows("cam-eileen").keys() == world.enrolled_rows("cam-eileen").keys()
    assert rebuilt.enrollment_row("cam-eileen").status == "enrolled"
    assert outcome(rebuilt.request("alice", "cam-eileen", media=(HER_OTHER_PHOTO,))) == ("likeness", "approved")
    assert outcome(rebuilt.request("bob", "cam-eileen", media=(HER_OTHER_PHOTO,))) == ("consent", "cameo_not_allowed")


def test_k_of_n_references_decide_a_cameo_match_and_every_distance_is_recorded(tmp_path: Path,
                                                                                  dlib_embedder) -> None:
    world = World(tmp_path, dlib_embedder, likeness=likeness_policy(cameo_match_references={"dlib": 2}))
    world.send("cam-eileen", "register", owner_account="alice", audience="only_me")
    copies = photos.altered_copies(ASTRONAUT)
    assert world.verify("cam-eileen", world.photo(ASTRONAUT), world.photo(copies["rescale"]))
    stage, verdict = world.request("alice", "cam-eileen", media=(copies["flip"],))
    assert (stage, verdict.outcome) == ("likeness", Outcome.APPROVED)
    own = verdict.details["faces"][0]["own_cameo"]
    assert own["references_within"] == 2 and own["references_required"] == 2
    assert len(own["reference_distances"]) == 2 and own["reference_distances"] == sorted(own["reference_distances"])

    # a reference an operator added of another person: her face now matches 2 of 3, one short of 3 of 3
    other = dlib_embedder.faces(photos.group_portrait(2))[0].embedding
    world.galleries.add(CAMEOS, "cam-eileen", "dlib", [(other, "operator")])
    strict = likeness_policy(cameo_match_references={"dlib": 3})
    search = GallerySearch(world.galleries, "dlib", 50_000)
    stage3 = LikenessStage("likeness", strict, build_name_matcher(strict), lambda: dlib_embedder, lambda _: search,
                           world.assets)
    item = PipelineItem(request=GenerationRequest(request_id="k3", requester_account="alice", prompt="me",
                                                  cameo_ids=["cam-eileen"], input_media=[world.photo(copies["flip"])]))
    decided = stage3.decide(item)
    assert decided.reasons[0].code == "cameo_match_insufficient"
    assert decided.details["faces"][0]["own_cameo"]["references_within"] == 2


def test_consent_decisions_on_enrollment_states_with_the_in_memory_registry() -> None:
    registry = InMemoryConsentRegistry()
    reference = MediaReference(uri="asset://sha256/" + "a" * 64, sha256="a" * 64, media_type="image/png")
    registry.apply(ConsentEvent(event_id="r", cameo_id="c", kind="register", owner_account="alice",
                                audience="everyone"), 0)
    registry.apply(ConsentEvent(event_id="v", cameo_id="c", kind="verify", verified_by="svc",
                                verification_method="liveness", reference_media=[reference]), 1)
    stage = ConsentStage(CONSENT, registry, lambda: datetime.now(timezone.utc))
    item = PipelineItem(request=GenerationRequest(request_id="x", requester_account="bob", prompt="p", cameo_ids=["c"]))
    assert stage.decide(item).reasons[0].code == "cameo_enrollment_pending"
    registry.record_enrollment("c", "failed", "reference 1 shows no face")
    assert stage.decide(item).reasons[0].code == "cameo_enrollment_failed"
    registry.record_enrollment("c", "enrolled")
    assert stage.decide(item).outcome is Outcome.APPROVED


def test_voice_samples_enroll_and_generated_sound_is_checked_like_faces(tmp_path: Path, dlib_embedder) -> None:
    voice = voices.ScriptedVoiceEmbedder()
    policy = likeness_policy(voice=LIKENESS.rules.voice.model_copy(update={"match_distance": {"scripted": 0.3}}))
    world = World(tmp_path, dlib_embedder, voice=voice, likeness=policy)
    world.send("cam-eileen", "register", owner_account="alice", audience="everyone")
    sample = world.assets.put(voices.tone_wav(220.0), "audio/wav")
    assert world.verify("cam-eileen", world.photo(ASTRONAUT), sample)
    assert world.enrollment_row("cam-eileen").findings[1]["voice"] == "scripted"
    assert "voice:scripted" in {b for g, n, b, c in world.galleries.listing() if n == "cam-eileen"}

    def generated(frequency: float | None, *cameos: str):
        video = world.assets.put(voices.video_with_tone(frequency), "video/mp4")
        item = PipelineItem(request=GenerationRequest(request_id=f"g{frequency}-{len(cameos)}", requester_account="bob",
                                                      prompt="p", cameo_ids=list(cameos)), assets={"video": video})
        return world.likeness_post.decide(item)

    assert generated(220.0, "cam-eileen").outcome is Outcome.APPROVED
    stolen = generated(220.0)
    assert stolen.reasons[0].code == "unconsented_person_voice"
    assert stolen.details["voices"][0]["any_cameo"]["name"] == "cam-eileen"
    assert generated(330.0).outcome is Outcome.APPROVED, "a voice nobody enrolled is synthetic"
    assert generated(None).details["voices"] == []


@pytest.mark.parametrize("without_model, expected", [("reject", "audio_unchecked"), ("allow", "approved")])
def test_without_a_voice_model_the_policy_says_whether_sound_may_pass(tmp_path: Path, dlib_embedder,
                                                                      without_model, expected) -> None:
    policy = likeness_policy(voice=LIKENESS.rules.voice.model_copy(update={"without_model": without_model}))
    world = World(tmp_path, dlib_embedder, likeness=policy)
    world.send("cam-eileen", "register", owner_account="alice", audience="everyone")
    assert world.verify("cam-eileen", world.photo(ASTRONAUT), world.assets.put(voices.tone_wav(220.0), "audio/wav"))
    assert world.enrollment_row("cam-eileen").findings[1]["voice"].startswith("not enrolled")
    video = world.assets.put(voices.video_with_tone(220.0), "video/mp4")
    verdict = world.likeness_post.decide(PipelineItem(
        request=GenerationRequest(request_id="s", requester_account="bob", prompt="p"), assets={"video": video}))
    assert (verdict.reasons[0].code if verdict.reasons else verdict.outcome.value) == expected
    silent = world.assets.put(voices.video_with_tone(None), "video/mp4")
    assert world.likeness_post.decide(PipelineItem(
        request=GenerationRequest(request_id="q", requester_account="bob", prompt="p"),
        assets={"video": silent})).outcome is Outcome.APPROVED


def build_tiny_xvector_model(directory: Path) -> Path:
    """A randomly initialised WavLM x-vector model and its feature extractor, saved like a downloaded one."""
    import torch
    from transformers import Wav2Vec2FeatureExtractor, WavLMConfig, WavLMForXVector

    torch.manual_seed(0)
    config = WavLMConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37,
                         conv_dim=(16, 16), conv_kernel=(10, 3), conv_stride=(5, 2), num_conv_pos_embeddings=16,
                         num_conv_pos_embedding_groups=2, tdnn_dim=(16, 16, 32), tdnn_kernel=(5, 3, 1),
                         tdnn_dilation=(1, 2, 1), xvector_output_dim=24, num_buckets=32, max_bucket_distance=64)
    WavLMForXVector(config).save_pretrained(directory)
    Wav2Vec2FeatureExtractor(sampling_rate=16000, return_attention_mask=True).save_pretrained(directory)
    return directory


def test_a_transformers_speaker_model_loads_from_a_local_directory(tmp_path: Path) -> None:
    from pipeline.likeness.voices import voice_embedder_from_settings

    model_dir = build_tiny_xvector_model(tmp_path / "tiny-xvector")
    embedder = voice_embedder_from_settings("transformers", model_dir)
    first = embedder.embed(voices.tone(220.0, 1.0, 8000), 8000)  # resampled to the extractor's 16 kHz
    assert embedder.name == "tiny-xvector" and first.shape == (24,)
    assert abs(float(np.linalg.norm(first)) - 1.0) < 1e-5
    assert np.allclose(first, embedder.embed(voices.tone(220.0, 1.0, 8000), 8000))
    assert float(np.linalg.norm(first - embedder.embed(voices.tone(600.0, 1.0, 16000), 16000))) > 1e-3


def test_voice_backends_are_chosen_by_name() -> None:
    from pipeline.likeness.voices import voice_embedder_from_settings

    assert voice_embedder_from_settings(None, None) is None
    plugged = voice_embedder_from_settings("tests.voice_fixtures:scripted_voice_embedder", None)
    assert plugged.name == "scripted"
    with pytest.raises(ValueError, match="TRUSTREEL_VOICE_MODEL_DIR"):
        voice_embedder_from_settings("transformers", None)
    with pytest.raises(ValueError, match="unknown voice backend"):
        voice_embedder_from_settings("whisper", None)


def test_an_only_me_cameo_protects_her_face_in_input_media_and_generated_frames(tmp_path: Path,
                                                                                 dlib_embedder) -> None:
    world = World(tmp_path, dlib_embedder)
    world.send("cam-private", "register", owner_account="alice", audience="only_me")
    world.verify("cam-private", world.photo(ASTRONAUT))
    assert outcome(world.request("bob", media=(HER_OTHER_PHOTO,))) == ("likeness", "unconsented_person_face")
    assert outcome(world.request("bob", "cam-private")) == ("consent", "cameo_not_allowed")

    frames = [photos.even(HER_OTHER_PHOTO)] * 3
    video = world.assets.put(photos.mp4_bytes(frames), "video/mp4")

    def after_generation(*cameos: str):
        return world.likeness_post.decide(PipelineItem(
            request=GenerationRequest(request_id=f"v{len(cameos)}", requester_account="alice", prompt="p",
                                      cameo_ids=list(cameos)), assets={"video": video}))

    assert after_generation().reasons[0].code == "unconsented_person_face"
    assert after_generation("cam-private").outcome is Outcome.APPROVED

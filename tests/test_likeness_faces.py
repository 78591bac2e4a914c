"""Face checks on real photographs (dlib backend) and the insightface backend on in-test ONNX models."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from consumers.likeness import LikenessRules, LikenessStage, build_name_matcher
from pipeline.audit.db import make_engine, make_sessionmaker, upgrade
from pipeline.likeness.faces import (DetectedFace, DlibEmbedder, InsightFaceEmbedder, SameFaceMemory, SmallFaceSchedule,
                                     upsamples_for)
from pipeline.likeness.galleries import CAMEOS, PUBLIC_FIGURES, GallerySearch, GalleryStore
from pipeline.media.assets import LocalAssetStore
from policies.loader import load_policy, policy_path
from schemas.models import GenerationRequest, Outcome, PipelineItem
from tests import face_fixtures as photos

POLICY = load_policy(policy_path("likeness"), LikenessRules, expected_stage="likeness")


@pytest.fixture(scope="module")
def dlib_embedder() -> DlibEmbedder:
    return DlibEmbedder()


@pytest.fixture(scope="module")
def group_faces(dlib_embedder):
    faces = dlib_embedder.faces(photos.group_photo())
    assert len(faces) == 6
    return faces


class Pipeline:
    """A likeness stage on a real SQLite gallery and a real asset store."""

    def __init__(self, tmp_path: Path, embedder, policy=POLICY) -> None:
        url = f"sqlite:///{tmp_path / 'audit.db'}"
        upgrade(url)
        self.galleries = GalleryStore(make_sessionmaker(make_engine(url)))
        self.assets = LocalAssetStore(tmp_path / "assets")
        self.embedder = embedder
        search = GallerySearch(self.galleries, embedder.name, approximate_above=50_000)
        matcher = build_name_matcher(policy)
        self.before = LikenessStage("likeness", policy, matcher, lambda: embedder, lambda _: search, self.assets)
        self.after = LikenessStage("likeness-post", policy, matcher, lambda: embedder, lambda _: search, self.assets)
        self.count = 0

    def enrol(self, gallery: str, name: str, rgb: np.ndarray) -> None:
        best = max(self.embedder.faces(rgb), key=lambda face: face.score)
        self.galleries.add(gallery, name, self.embedder.name, [(best.embedding, name)])

    def enrol_embedding(self, gallery: str, name: str, embedding: np.ndarray) -> None:
        self.galleries.add(gallery, name, self.embedder.name, [(embedding, name)])

    def check_photo(self, rgb: np.ndarray, *cameos: str, prompt: str = "make a video of this"):
        self.count += 1
        reference = self.assets.put(photos.png_bytes(rgb), "image/png")
        item = PipelineItem(request=GenerationRequest(request_id=f"r{self.count}", requester_account="bob",
                                                      prompt=prompt, cameo_ids=list(cameos),
                                                      input_media=[reference]))
        return self.before.decide(item)

    def check_output(self, video: bytes, *cameos: str):
        self.count += 1
        reference = self.assets.put(video, "video/mp4")
        item = PipelineItem(request=GenerationRequest(request_id=f"r{self.count}", requester_account="bob",
                                                      prompt="generated", cameo_ids=list(cameos)),
                            assets={"video": reference})
        return self.after.decide(item)


@pytest.fixture
def pipeline(tmp_path: Path, dlib_embedder, group_faces) -> Pipeline:
    world = Pipeline(tmp_path, dlib_embedder)
    world.enrol(PUBLIC_FIGURES, "Eileen Collins", photos.astronaut())
    world.enrol_embedding(CAMEOS, "cam-guest-0", group_faces[0].embedding)
    return world


def codes(verdict) -> list[str]:
    return [reason.code for reason in verdict.reasons]


@pytest.mark.parametrize("alteration", ["original", "flip", "crop", "rescale", "jpeg30", "brighter"])
def test_the_public_figure_and_altered_copies_are_blocked(pipeline: Pipeline, alteration: str) -> None:
    original = photos.astronaut()
    image = original if alteration == "original" else photos.altered_copies(original)[alteration]
    verdict = pipeline.check_photo(image)
    assert "public_figure_face" in codes(verdict)
    assert "Eileen Collins" in verdict.reasons[0].message
    matched = [f for f in verdict.details["faces"] if f["verdict"] == "public_figure"]
    assert matched and matched[0]["public_figure"]["distance"] <= matched[0]["threshold"]


def test_other_peoples_faces_are_not_taken_for_the_public_figure(pipeline: Pipeline) -> None:
    verdict = pipeline.check_photo(photos.group_photo())
    faces = verdict.details["faces"]
    assert len(faces) == 6
    assert all(face["public_figure"]["distance"] > face["threshold"] for face in faces)
    assert "public_figure_face" not in codes(verdict)


def test_a_consenting_cameo_passes_and_an_unconsented_person_is_rejected(pipeline: Pipeline, group_faces) -> None:
    photo = photos.group_photo()
    left, top, right, bottom = group_faces[0].box
    portrait = photo[max(top - 60, 0):bottom + 60, max(left - 60, 0):right + 60].copy()
    allowed = pipeline.check_photo(portrait, "cam-guest-0")
    assert allowed.outcome is Outcome.APPROVED, allowed.reasons
    assert [face["verdict"] for face in allowed.details["faces"]] == ["consenting_cameo"]
    not_named = pipeline.check_photo(portrait)  # same person, but the request has no consent to use her
    assert codes(not_named) == ["unconsented_person_face"]
    strangers = pipeline.check_photo(photo, "cam-guest-0")  # five other people in the picture
    assert codes(strangers) == ["unconsented_person_face"]
    assert sorted(f["verdict"] for f in strangers.details["faces"]).count("consenting_cameo") == 1


def test_dlib_doubles_the_image_as_often_as_the_smallest_face_asks() -> None:
    assert [upsamples_for(size) for size in (200, 80, 79, 40, 39, 20, 10)] == [0, 0, 1, 1, 2, 2, 3]


def test_every_face_of_the_group_photo_at_half_size_is_found(dlib_embedder) -> None:
    """Six faces ~52 px across: detection runs on luma, which finds all six above the policy's score; on the
    RGB frame dlib's HOG found four of them."""
    from PIL import Image

    photo = Image.fromarray(photos.group_photo())
    half = np.asarray(photo.resize((photo.width // 2, photo.height // 2), Image.BILINEAR))
    faces = [face for face in dlib_embedder.faces(half, POLICY.rules.min_face_size)
             if face.score >= POLICY.rules.min_detection_score["dlib"]]
    assert len(faces) == 6
    assert all(48 <= face.box[2] - face.box[0] <= 64 for face in faces)


def test_the_policy_sets_the_smallest_face_the_check_must_find(tmp_path: Path, dlib_embedder, group_faces) -> None:
    """A public figure's face ~43 px across: the shipped 40 px finds and rejects it; a policy asking only
    for faces from 80 px (no upsampling, ~4x less detection time) does not see it at all."""
    frame = photos.small_astronaut(0.5)
    assert [face.box[2] - face.box[0] for face in dlib_embedder.faces(frame, 40)] == [43]
    assert dlib_embedder.faces(frame, 80) == []
    (tmp_path / "shipped").mkdir(), (tmp_path / "coarse").mkdir()
    shipped = Pipeline(tmp_path / "shipped", dlib_embedder)
    shipped.enrol(PUBLIC_FIGURES, "Eileen Collins", photos.astronaut())
    assert POLICY.rules.min_face_size == 40
    assert codes(shipped.check_photo(frame)) == ["public_figure_face"]
    coarse = Pipeline(tmp_path / "coarse", dlib_embedder,
                      replace(POLICY, rules=POLICY.rules.model_copy(update={"min_face_size": 80})))
    coarse.enrol(PUBLIC_FIGURES, "Eileen Collins", photos.astronaut())
    verdict = coarse.check_photo(frame)
    assert verdict.outcome is Outcome.APPROVED and verdict.details["faces"] == []


def test_small_faces_are_searched_every_other_sampled_frame_and_followed_once_seen() -> None:
    schedule = SmallFaceSchedule(min_face_size=40, every=2, unscaled_min_face=80)
    small, large = DetectedFace((0, 0, 43, 43), 1.0, np.zeros(2)), DetectedFace((0, 0, 120, 120), 1.0, np.zeros(2))
    sizes = []
    for shown in ([], [], [large], [], [small], [small], [], [], []):
        sizes.append(schedule.next_size())
        schedule.found(shown)
    assert sizes == [40, 80, 40, 80, 40, 40, 40, 80, 40]  # after a small face: every frame until one without
    assert [SmallFaceSchedule(40, 1, 80).next_size() for _ in range(3)] == [40, 40, 40]
    assert SmallFaceSchedule(40, 2, None).next_size() == 40  # a backend for which size costs nothing
    coarse = SmallFaceSchedule(80, 2, 80)
    assert [coarse.next_size() for _ in range(2)] == [80, 80]


def test_a_small_face_entering_a_video_is_caught_on_the_next_full_search(tmp_path: Path, dlib_embedder) -> None:
    """The public figure ~43 px across from the second sampled frame on: the shipped policy does not double that
    frame (every other one), finds her on the third and rejects; every frame doubled finds her on the second."""
    frames = [np.full((480, 704, 3), 128, np.uint8)] * 8 + [photos.small_astronaut(0.5)] * 17
    video = photos.mp4_bytes(frames)
    assert POLICY.rules.small_face_every == 2 and POLICY.rules.frame_every == 8
    verdicts = {}
    for every in (2, 1):
        (tmp_path / str(every)).mkdir()
        world = Pipeline(tmp_path / str(every), dlib_embedder,
                         replace(POLICY, rules=POLICY.rules.model_copy(update={"small_face_every": every})))
        world.enrol(PUBLIC_FIGURES, "Eileen Collins", photos.astronaut())
        verdicts[every] = world.check_output(video)
    shipped, dense = verdicts[2], verdicts[1]
    assert codes(shipped) == ["public_figure_face"] and codes(dense) == ["public_figure_face"]
    assert [s["min_face_size"] for s in shipped.details["faces_searched"]] == [40, 80, 40, 40]
    assert [f["frame"] for f in shipped.details["faces"]] == [16, 24]
    assert [f["frame"] for f in dense.details["faces"]] == [8, 16, 24]


def test_prompt_names_are_rejected_with_the_entry_named(pipeline: Pipeline) -> None:
    item = PipelineItem(request=GenerationRequest(request_id="n1", requester_account="bob",
                                                  prompt="Eileen C0llins walking on the moon"))
    verdict = pipeline.before.decide(item)
    assert codes(verdict) == ["public_figure_named"] and "Eileen Collins" in verdict.reasons[0].message


def test_tampered_media_is_refused(pipeline: Pipeline) -> None:
    reference = pipeline.assets.put(photos.png_bytes(photos.astronaut()), "image/png")
    stored = pipeline.assets.root / reference.sha256[:2] / reference.sha256
    stored.write_bytes(stored.read_bytes()[:-10])
    item = PipelineItem(request=GenerationRequest(request_id="t1", requester_account="bob", prompt="p",
                                                  input_media=[reference]))
    verdict = pipeline.before.decide(item)
    assert codes(verdict) == ["media_unreadable"] and "does not match its hash" in verdict.reasons[0].message


def test_a_generated_video_showing_the_public_figure_is_blocked_after_generation(pipeline: Pipeline,
                                                                                  group_faces) -> None:
    astronaut = photos.even(photos.astronaut())
    blank = np.full_like(astronaut, 90)
    blocked = pipeline.check_output(photos.mp4_bytes([blank] * 9 + [astronaut] * 8))
    assert codes(blocked) == ["public_figure_face"]
    assert {face["frame"] for face in blocked.details["faces"]} <= {8, 16}
    photo = photos.group_photo()
    left, top, right, bottom = group_faces[3].box
    stranger = photos.even(photo[max(top - 80, 0):bottom + 80, max(left - 80, 0):right + 80].copy())
    synthetic_looking = pipeline.check_output(photos.mp4_bytes([stranger] * 8))
    assert synthetic_looking.outcome is Outcome.APPROVED, "a face that matches nobody is not a real person"
    assert pipeline.check_output(photos.mp4_bytes([blank] * 8)).outcome is Outcome.APPROVED
    missing = pipeline.after.decide(PipelineItem(request=GenerationRequest(request_id="x", requester_account="b",
                                                                           prompt="p")))
    assert codes(missing) == ["no_generated_video"]


def panned(rgb: np.ndarray, shift: int, zoom: float) -> np.ndarray:
    """The photo a few pixels over and a little larger: the next sampled frame of a slow pan and zoom."""
    from PIL import Image

    height, width = rgb.shape[:2]
    image = Image.fromarray(rgb).resize((round(width * zoom), round(height * zoom)), Image.BILINEAR)
    return np.asarray(image)[shift:shift + height, shift:shift + width].copy()


def test_a_face_seen_again_in_a_video_takes_its_descriptor_and_a_changed_one_is_described(dlib_embedder) -> None:
    frames = [panned(photos.astronaut(), 2 * n, 1 + 0.01 * n) for n in range(4)]
    memory = SameFaceMemory(max_block_change=12)
    remembered = []
    for index, frame in enumerate(frames):
        memory.where = index
        remembered.append(max(dlib_embedder.faces(frame, None, memory), key=lambda face: face.score))
    # Landmarks jitter by a pixel from frame to frame, so not every frame matches a described crop (here 1 and
    # 3 take frame 0's descriptor, 2 is described); those that do are as close as re-describing would be.
    assert memory.reused >= 2 and {face.described_at for face in remembered} <= {0, 1, 2, 3}
    for index, (frame, face) in enumerate(zip(frames, remembered)):
        own = max(dlib_embedder.faces(frame), key=lambda found: found.score)
        assert own.described_at is None and own.box == face.box and face.described_at <= index
        assert float(np.linalg.norm(own.embedding - face.embedding)) < 0.1, "well inside the 0.5 match distance"

    # The same place, the same size: the mouth covered (a small part of the crop), then another person.
    left, top, right, bottom = remembered[0].box
    width, height = right - left, bottom - top
    covered = frames[0].copy()
    covered[top + height * 2 // 3:top + height * 5 // 6, left + width // 3:right - width // 3] = 0
    stranger = photos.group_portrait(3)
    described_before = memory.described
    for where, frame in (("covered", covered), ("stranger", stranger)):
        memory.where = where
        face = max(dlib_embedder.faces(frame, None, memory), key=lambda found: found.score)
        assert face.described_at == where, f"{where}: a face that changed is described anew"
        own = max(dlib_embedder.faces(frame), key=lambda found: found.score)
        assert np.array_equal(own.embedding, face.embedding)
    assert memory.described >= described_before + 2


def test_likeness_post_records_which_frame_a_face_was_described_on(pipeline: Pipeline) -> None:
    astronaut = photos.even(photos.astronaut())
    verdict = pipeline.check_output(photos.mp4_bytes([astronaut] * 17))
    assert codes(verdict) == ["public_figure_face"]
    faces = [face for face in verdict.details["faces"] if face["verdict"] == "public_figure"]
    assert [face["frame"] for face in faces] == [0, 8, 16]
    assert [face.get("descriptor_from_frame") for face in faces] == [None, 0, 0]
    assert all(face["public_figure"]["name"] == "Eileen Collins" for face in faces)


def test_insightface_backend_runs_scrfd_and_arcface_shaped_models(tmp_path: Path) -> None:
    models = tmp_path / "models"
    models.mkdir()
    photos.build_scrfd_like(models / "det_tiny.onnx")
    photos.build_arcface_like(models / "w600k_tiny.onnx")
    embedder = InsightFaceEmbedder.from_directory(models)
    assert embedder.dimension == 512
    first = embedder.faces(photos.bright_square_image((320, 320)))
    assert len(first) == 1
    left, top, right, bottom = first[0].box
    assert left < 336 < right and top < 336 < bottom, "the box is centred on the bright cell"
    assert abs(float(np.linalg.norm(first[0].embedding)) - 1.0) < 1e-4
    assert embedder.faces(np.zeros((640, 640, 3), dtype=np.uint8)) == []
    memory = SameFaceMemory(max_block_change=12)
    for where, image in enumerate([photos.bright_square_image((320, 320))] * 2
                                  + [photos.bright_square_image((320, 320), checkered=True)]):
        memory.where = where
        (face,) = embedder.faces(image, None, memory)
        assert face.described_at == [0, 0, 2][where]
        assert np.allclose(face.embedding, embedder.faces(image)[0].embedding)
    assert (memory.described, memory.reused) == (2, 1)

    # The toy recogniser is far less discriminative than ArcFace, so its policy sets a tight threshold.
    rules = POLICY.rules.model_copy(update={"face_match_distance": {"insightface": 0.1}})
    world = Pipeline(tmp_path, embedder, replace(POLICY, rules=rules))
    world.enrol(PUBLIC_FIGURES, "Synthetic Figure", photos.bright_square_image((320, 320)))
    same = world.check_photo(photos.bright_square_image((320, 320)))
    assert codes(same) == ["public_figure_face"]
    assert same.details["faces"][0]["public_figure"]["distance"] < 1e-3
    other = world.check_photo(photos.bright_square_image((128, 448), checkered=True))
    assert codes(other) == ["unconsented_person_face"]
    assert other.details["faces"][0]["public_figure"]["distance"] > 0.2


def test_gallery_search_switches_to_approximate_above_the_configured_size(tmp_path: Path) -> None:
    from pipeline.likeness.galleries import VectorIndex

    rng = np.random.default_rng(3)
    vectors = rng.standard_normal((3000, 64)).astype(np.float32)
    labels = [f"id{n}" for n in range(3000)]
    exact = VectorIndex(labels, vectors, approximate_above=10_000)
    approximate = VectorIndex(labels, vectors, approximate_above=1000)
    assert exact.exact and not approximate.exact
    queries = vectors[:50] + 0.01 * rng.standard_normal((50, 64)).astype(np.float32)
    _, exact_hits = exact.nearest(queries)
    _, approximate_hits = approximate.nearest(queries)
    assert (exact_hits[:, 0] == np.arange(50)).all()
    assert (approximate_hits[:, 0] == np.arange(50)).mean() >= 0.95

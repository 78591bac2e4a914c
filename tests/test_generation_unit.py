"""Generate stage decisions, batching, MP4 output and asset stores, without a broker.

The stage is exercised with an in-memory generator (pure decision code: limits, conditioning,
retries, batching); the real diffusers path is exercised with the session's tiny model.
"""

from __future__ import annotations

import io
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from consumers.generate import GenerateRules, GenerateStage, seed_for
from pipeline.generation.batching import compatible_batches
from pipeline.media.assets import AssetIntegrityError, FsspecAssetStore, LocalAssetStore
from pipeline.state.consent_registry import InMemoryConsentRegistry
from pipeline.generation.generator import (DiffusersVideoGenerator, GeneratedVideo, GenerationJob, GenerationTimeout,
                                GeneratorConfig, RenderSpec)
from pipeline.media.frames import frames_of
from pipeline.media.video_files import AudioTrack, encode_mp4, probe_mp4
from pipeline.provenance.marking import MarkPlan, watermark_id_for
from pipeline.provenance.watermarks import InvisibleMarkStyle, VisibleMarkStyle, read_payload
from policies.loader import LoadedPolicy
from schemas.models import ConsentEvent, GenerationRequest, Outcome, PipelineItem

SPEC_A = RenderSpec(width=64, height=64, num_frames=9, fps=8, steps=2, guidance_scale=3.0, conditioned=False)
SPEC_B = RenderSpec(width=64, height=96, num_frames=9, fps=8, steps=2, guidance_scale=3.0, conditioned=False)


class ScriptedGenerator:
    """Makes solid-colour videos; `failures` is a list of exceptions to raise on successive calls."""

    def __init__(self, failures: list[BaseException] | None = None, audio: bool = False,
                 fail_batches_larger_than: int | None = None) -> None:
        self.calls: list[list[GenerationJob]] = []
        self.failures = list(failures or [])
        self.audio = audio
        self.fail_batches_larger_than = fail_batches_larger_than

    def describe(self) -> dict:
        return {"model_id": "scripted", "pipeline": "ScriptedGenerator"}

    def generate(self, jobs: list[GenerationJob], deadline: float | None) -> list[GeneratedVideo]:
        self.calls.append(list(jobs))
        if self.fail_batches_larger_than is not None and len(jobs) > self.fail_batches_larger_than:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        if self.failures:
            raise self.failures.pop(0)
        videos = []
        for job in jobs:
            frames = np.full((job.spec.num_frames, job.spec.height, job.spec.width, 3), job.seed % 255, np.uint8)
            audio = None
            if self.audio:
                seconds = job.spec.num_frames / job.spec.fps
                t = np.arange(int(16000 * seconds)) / 16000
                audio = AudioTrack(np.sin(2 * np.pi * 440 * t)[None, :].astype(np.float32) * 0.3, 16000)
            videos.append(GeneratedVideo(frames=frames, audio=audio, timings={"video_seconds": 0.0}))
        return videos


def policy(**rules: object) -> LoadedPolicy[GenerateRules]:
    defaults = {"fps": 8, "steps": 2, "max_attempts": 3}
    return LoadedPolicy(policy_id="generate-test", stage="generate", version="v-test", path=Path("generate.yaml"),
                        rules=GenerateRules(**(defaults | rules)))


def item(request_id: str, *cameos: str, width: int = 64, height: int = 64, seconds: float = 1.0,
         input_media: list | None = None) -> PipelineItem:
    return PipelineItem(request=GenerationRequest(
        request_id=request_id, requester_account="bob", prompt="a cat dances on the beach",
        cameo_ids=list(cameos), duration_seconds=seconds, resolution={"width": width, "height": height},
        input_media=input_media or []))


def png(colour: tuple[int, int, int], size: tuple[int, int] = (40, 40)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def assets(tmp_path: Path) -> LocalAssetStore:
    return LocalAssetStore(tmp_path / "assets")


def registry_with_cameo(assets: LocalAssetStore, cameo_id: str = "cam-1", with_reference: bool = True):
    registry = InMemoryConsentRegistry()
    registry.apply(ConsentEvent(event_id="e1", cameo_id=cameo_id, kind="register", owner_account="alice",
                                audience="everyone"), 0)
    references = [assets.put(png((200, 10, 10)), "image/png")] if with_reference else []
    registry.apply(ConsentEvent(event_id="e2", cameo_id=cameo_id, kind="verify", verified_by="liveness",
                                verification_method="liveness", reference_media=references), 1)
    return registry


def test_compatible_batches_keep_specs_apart_and_arrival_order() -> None:
    jobs = [GenerationJob(f"r{i}", "p", "", i, spec) for i, spec in
            enumerate([SPEC_A, SPEC_A, SPEC_B, SPEC_A, SPEC_B, SPEC_A])]
    batches = compatible_batches(jobs, max_size=2)
    assert [[job.request_id for job in batch] for batch in batches] == [["r0", "r1"], ["r2", "r4"], ["r3", "r5"]]
    assert all(len({job.spec for job in batch}) == 1 for batch in batches)
    with pytest.raises(ValueError):
        compatible_batches(jobs, max_size=0)


def test_oversized_requests_are_rejected_before_the_generator(assets: LocalAssetStore) -> None:
    generator = ScriptedGenerator()
    stage = GenerateStage(policy(max_duration_seconds=5, max_long_side=1280, max_short_side=720), generator,
                          InMemoryConsentRegistry(), assets)
    too_long, too_large, fine = stage.decide_batch([item("long", seconds=30), item("large", width=1920, height=1080),
                                                    item("fine")])
    assert too_long.outcome is Outcome.REJECTED and too_long.reasons[0].code == "too_long"
    assert too_large.outcome is Outcome.REJECTED and too_large.reasons[0].code == "too_large"
    assert fine.outcome is Outcome.APPROVED
    assert [[job.request_id for job in call] for call in generator.calls] == [["fine"]]


def test_output_is_a_playable_mp4_referenced_by_hash_with_reproduction_details(assets: LocalAssetStore) -> None:
    stage = GenerateStage(policy(), ScriptedGenerator(), InMemoryConsentRegistry(), assets)
    verdict = stage.decide(item("r1", width=70, height=100, seconds=2))
    assert verdict.outcome is Outcome.APPROVED
    video = verdict.assets["video"]
    assert video.media_type == "video/mp4" and video.uri == f"asset://sha256/{video.sha256}"
    info = probe_mp4(assets.get(video))
    # sizes snap to the 32 px grid, 2 s at 8 fps is 16 + 1 frames
    assert (info.width, info.height, info.frames, info.fps) == (64, 96, 17, 8.0)
    assert info.has_audio is False and verdict.details["audio"]["muxed"] is False
    assert verdict.details["seed"] == seed_for("r1")
    assert verdict.details["parameters"] == {"width": 64, "height": 96, "num_frames": 17, "fps": 8, "steps": 2,
                                             "guidance_scale": 3.0,
                                             "negative_prompt": GenerateRules().negative_prompt}
    assert verdict.details["model"]["model_id"] == "scripted"
    assert verdict.details["video"]["sha256"] == video.sha256


def test_provenance_marks_are_drawn_before_the_one_encode(assets: LocalAssetStore) -> None:
    """With a provenance stage after it, the stored video already carries both marks (the provenance stage then
    signs it as it is); a video too small for the invisible mark, or a pipeline without provenance, is left
    unmarked."""
    plan = MarkPlan("provenance-test", "v1", VisibleMarkStyle(), InvisibleMarkStyle())
    marked = GenerateStage(policy(), ScriptedGenerator(), InMemoryConsentRegistry(), assets, marks=lambda: plan)
    verdict = marked.decide(item("marked", width=288, height=256, seconds=1))
    assert verdict.details["marks"] == {"policy_id": "provenance-test", "policy_version": "v1",
                                        "watermark_id": watermark_id_for("marked", 32).hex(),
                                        "invisible": {"strength": 72, "block": 4, "payload_bits": 32}}
    frames = [rgb for _, rgb in frames_of(assets.get(verdict.assets["video"]), "video/mp4", 1, 100)]
    assert read_payload(frames, InvisibleMarkStyle()).payload == watermark_id_for("marked", 32)
    assert frames[0][:40].std() > 0  # solid colour from the generator; the visible mark's text is in the corner
    small = marked.decide(item("small", width=64, height=64))
    assert small.outcome is Outcome.APPROVED and "marks" not in small.details
    plain = GenerateStage(policy(), ScriptedGenerator(), InMemoryConsentRegistry(), assets)
    assert "marks" not in plain.decide(item("plain", width=288, height=256)).details


def test_audio_from_the_pipeline_is_muxed(assets: LocalAssetStore) -> None:
    stage = GenerateStage(policy(), ScriptedGenerator(audio=True), InMemoryConsentRegistry(), assets)
    verdict = stage.decide(item("sound"))
    info = probe_mp4(assets.get(verdict.assets["video"]))
    assert info.has_audio and info.audio_seconds == pytest.approx(9 / 8, abs=0.1)
    assert verdict.details["audio"]["muxed"] is True


def test_cameos_are_conditioned_on_registry_reference_not_uploads(assets: LocalAssetStore) -> None:
    generator = ScriptedGenerator()
    registry = registry_with_cameo(assets)
    upload = assets.put(png((10, 200, 10)), "image/png")
    stage = GenerateStage(policy(), generator, registry, assets)
    verdict = stage.decide(item("with-cameo", "cam-1", input_media=[upload]))
    assert verdict.outcome is Outcome.APPROVED
    job = generator.calls[0][0]
    assert job.spec.conditioned is True
    assert job.conditioning_image.shape == (64, 64, 3)
    assert tuple(job.conditioning_image[32, 32]) == (200, 10, 10)  # the owner's verified red, not the green upload
    reference = registry.get("cam-1").reference_media[0]
    assert verdict.details["conditioning"] == [{"cameo_id": "cam-1", "reference_sha256": reference.sha256}]


def test_cameo_without_verified_reference_or_with_a_tampered_one_is_rejected(assets: LocalAssetStore,
                                                                               tmp_path: Path) -> None:
    generator = ScriptedGenerator()
    stage = GenerateStage(policy(), generator, registry_with_cameo(assets, with_reference=False), assets)
    assert stage.decide(item("bare", "cam-1")).reasons[0].code == "cameo_reference_missing"
    registry = registry_with_cameo(assets)
    reference = registry.get("cam-1").reference_media[0]
    (tmp_path / "assets" / reference.sha256[:2] / reference.sha256).write_bytes(png((0, 0, 0)))
    verdict = GenerateStage(policy(), generator, registry, assets).decide(item("tampered", "cam-1"))
    assert verdict.reasons[0].code == "cameo_reference_unreadable"
    assert generator.calls == []


def test_batches_group_compatible_requests_up_to_the_policy_size(assets: LocalAssetStore) -> None:
    generator = ScriptedGenerator()
    stage = GenerateStage(policy(batch_size=2), generator, InMemoryConsentRegistry(), assets)
    items = [item("a1"), item("b1", height=96), item("a2"), item("a3"), item("b2", height=96)]
    verdicts = stage.decide_batch(items)
    assert [v.outcome for v in verdicts] == [Outcome.APPROVED] * 5
    assert [[job.request_id for job in call] for call in generator.calls] == [["a1", "a2"], ["b1", "b2"], ["a3"]]
    assert verdicts[0].details["batch"] == {"size": 2, "requests": ["a1", "a2"]}
    assert verdicts[0].assets["video"] != verdicts[2].assets["video"]  # per-request seeds


def test_model_errors_are_retried_then_end_as_one_rejection(assets: LocalAssetStore) -> None:
    generator = ScriptedGenerator(failures=[RuntimeError("bad weights")] * 3)
    verdict = GenerateStage(policy(max_attempts=3), generator, InMemoryConsentRegistry(), assets).decide(item("x"))
    assert verdict.outcome is Outcome.REJECTED
    assert verdict.reasons[0].code == "generation_failed_model_error"
    assert verdict.details["attempts"] == 3 and len(generator.calls) == 3


def test_a_transient_failure_then_success_approves(assets: LocalAssetStore) -> None:
    generator = ScriptedGenerator(failures=[GenerationTimeout("slow")])
    verdict = GenerateStage(policy(), generator, InMemoryConsentRegistry(), assets).decide(item("x"))
    assert verdict.outcome is Outcome.APPROVED and verdict.details["attempts"] == 2


def test_out_of_memory_splits_the_batch(assets: LocalAssetStore) -> None:
    generator = ScriptedGenerator(fail_batches_larger_than=1)
    verdicts = GenerateStage(policy(batch_size=4), generator, InMemoryConsentRegistry(), assets).decide_batch(
        [item("m1"), item("m2"), item("m3")])
    assert [v.outcome for v in verdicts] == [Outcome.APPROVED] * 3
    assert [len(call) for call in generator.calls] == [3, 1, 1, 1]


def test_tiny_diffusers_pipeline_is_reproducible_and_honours_the_deadline(tiny_model_dir: Path) -> None:
    generator = DiffusersVideoGenerator(GeneratorConfig(model_id=str(tiny_model_dir)))
    job = GenerationJob("r", "a cat dances", "", seed=7, spec=SPEC_B)
    first, again = generator.generate([job], None)[0], generator.generate([job], None)[0]
    other = generator.generate([GenerationJob("r", "a cat dances", "", seed=8, spec=SPEC_B)], None)[0]
    assert first.frames.shape == (9, 96, 64, 3) and first.frames.dtype == np.uint8
    assert np.array_equal(first.frames, again.frames)
    assert not np.array_equal(first.frames, other.frames)
    assert first.audio is None
    batch = generator.generate([job, GenerationJob("s", "a dog", "", seed=9, spec=SPEC_B)], None)
    assert len(batch) == 2 and batch[0].timings["batch_size"] == 2
    conditioned = RenderSpec(**{**SPEC_B.__dict__, "conditioned": True})
    image = np.zeros((96, 64, 3), np.uint8)
    assert generator.generate([GenerationJob("c", "a cat", "", 1, conditioned, image)], None)[0].frames.shape[0] == 9
    with pytest.raises(GenerationTimeout):
        generator.generate([job], deadline=0.0)
    assert generator.describe()["device"] == "cpu"


def test_a_tiny_model_built_by_older_code_is_recognised(tiny_model_dir: Path, tmp_path: Path) -> None:
    import shutil

    from pipeline.generation.tiny_generator import VERSION_FILE, is_current_tiny_model

    assert is_current_tiny_model(tiny_model_dir)
    old = tmp_path / "old"
    shutil.copytree(tiny_model_dir, old)
    (old / VERSION_FILE).unlink()  # what the first version of the demo left behind
    assert not is_current_tiny_model(old) and not is_current_tiny_model(tmp_path / "missing")


def test_fsspec_asset_store_round_trip_and_tamper_detection() -> None:
    store = FsspecAssetStore(f"memory://assets-{id(object())}")
    reference = store.put(b"video bytes", "video/mp4")
    assert store.put(b"video bytes", "video/mp4") == reference
    assert store.get(reference) == b"video bytes"
    store.filesystem.pipe_file(store._path(reference.sha256), b"other bytes")
    with pytest.raises(AssetIntegrityError, match="does not match"):
        store.get(reference)
    with pytest.raises(AssetIntegrityError, match="missing"):
        store.get(reference.model_copy(update={"sha256": "0" * 64, "uri": "asset://sha256/" + "0" * 64}))


def test_encode_mp4_is_deterministic_and_rejects_bad_frames() -> None:
    frames = np.random.default_rng(0).integers(0, 255, (9, 32, 32, 3), dtype=np.uint8)
    assert encode_mp4(frames, 8) == encode_mp4(frames, 8)
    with pytest.raises(ValueError):
        encode_mp4(frames.astype(np.float32), 8)


def test_the_image_pipeline_shares_the_weights_without_changing_their_dtype(tiny_model_dir: Path) -> None:
    """diffusers' `from_pipe` casts the shared modules to float32: on a GPU the half-precision text pipeline
    then ran 7x slower. The image-to-video pipeline must take the very modules, in the dtype they were loaded."""
    import torch

    generator = DiffusersVideoGenerator(GeneratorConfig(model_id=str(tiny_model_dir), dtype="bfloat16"))
    generator.load()
    text, image = generator._text_pipe, generator._image_pipe
    modules = [name for name, part in text.components.items() if isinstance(part, torch.nn.Module)]
    assert set(modules) == {"transformer", "vae", "text_encoder"}
    for name in modules:
        assert getattr(image, name) is getattr(text, name)
        assert {parameter.dtype for parameter in getattr(text, name).parameters()} == {torch.bfloat16}, name
    assert image.scheduler is text.scheduler and image.tokenizer is text.tokenizer
    assert type(image).__name__ == "LTXImageToVideoPipeline"
    conditioned = RenderSpec(**{**SPEC_B.__dict__, "conditioned": True})
    video = generator.generate([GenerationJob("c", "a cat", "", 1, conditioned, np.zeros((96, 64, 3), np.uint8))],
                               None)[0]
    assert video.frames.dtype == np.uint8 and video.frames.shape == (9, 96, 64, 3)
    assert {parameter.dtype for parameter in text.transformer.parameters()} == {torch.bfloat16}


def test_from_pipe_would_have_cast_the_shared_weights(tiny_model_dir: Path) -> None:
    """Guards the reason for `sharing_pipeline`: if diffusers stops casting, this fails and the note can go."""
    import torch
    from diffusers import LTXImageToVideoPipeline, LTXPipeline

    text = LTXPipeline.from_pretrained(str(tiny_model_dir), torch_dtype=torch.bfloat16)
    LTXImageToVideoPipeline.from_pipe(text)
    assert next(text.transformer.parameters()).dtype == torch.float32


class StoreWaitingForTheNextGpuCall(LocalAssetStore):
    """An asset store whose first put waits until the generator has been called again: it only returns if the
    stage encodes and stores one batch while it generates the next."""

    def __init__(self, root: Path, generator: ScriptedGenerator) -> None:
        super().__init__(root)
        self.generator = generator
        self.overlapped: list[bool] = []

    def put(self, data: bytes, media_type: str):
        if not self.overlapped:
            deadline = time.monotonic() + 10
            while len(self.generator.calls) < 2 and time.monotonic() < deadline:
                time.sleep(0.01)
            self.overlapped.append(len(self.generator.calls) >= 2)
        return super().put(data, media_type)


def test_the_next_gpu_batch_generates_while_the_last_one_is_encoded(tmp_path: Path) -> None:
    generator = ScriptedGenerator()
    store = StoreWaitingForTheNextGpuCall(tmp_path / "assets", generator)
    stage = GenerateStage(policy(batch_size=1, batches_per_poll=3), generator, InMemoryConsentRegistry(), store)
    assert stage.batch_size == 3  # what the worker takes per poll: three GPU calls
    verdicts = stage.decide_batch([item("r1"), item("r2", seconds=2.0), item("r3")])
    assert store.overlapped == [True]
    assert [v.details["batch"]["requests"] for v in verdicts] == [["r1"], ["r2"], ["r3"]]  # arrival order
    assert [v.outcome for v in verdicts] == [Outcome.APPROVED] * 3
    assert verdicts[1].details["video"]["frames"] == 17


class FailingStore(LocalAssetStore):
    def put(self, data: bytes, media_type: str):
        raise OSError("disk full")


def test_a_store_failure_on_the_encode_pool_fails_the_batch_for_the_runtime_to_retry(tmp_path: Path) -> None:
    stage = GenerateStage(policy(batch_size=1, batches_per_poll=2), ScriptedGenerator(), InMemoryConsentRegistry(),
                          FailingStore(tmp_path / "assets"))
    with pytest.raises(OSError, match="disk full"):
        stage.decide_batch([item("r1"), item("r2")])

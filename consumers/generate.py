"""Generate stage: make the video, store it by hash, pass on only the reference.

    items from the runtime's batch
      -> plan each: too long / too large for policy?      -> reject (never reaches the GPU)
                    cameo without verified reference media -> reject (fail closed)
                    else a GenerationJob (seed from the request id, size rounded to the model's grid,
                    cameo conditioning image from the registry's verified media, never the upload)
      -> compatible_batches(jobs)  (same size / length / steps / conditioning), batch_size per GPU call;
                                   the worker hands over batches_per_poll of them at a time
      -> generator.generate(batch)  retried up to max_attempts; out of memory splits the batch;
                                    still failing -> reject with the reason (exactly one outcome)
      -> provenance marks drawn (pipeline.provenance.marking; details["marks"]) -> encode MP4 (+ audio when
         the pipeline makes any) -> asset store -> assets["video"]
         on a small thread pool, while the next GPU batch is already generating: the GPU does not
         wait for x264 (verdicts still come back in arrival order, after every video is stored)

Seed, model, pipeline parameters and timings go into the decision's details so an output
can be reproduced from the audit database.
"""

from __future__ import annotations

import hashlib
import io
import logging
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from pipeline.generation.batching import compatible_batches
from pipeline.generation.generator import GenerationJob, GenerationTimeout, RenderSpec, VideoGenerator
from pipeline.media.assets import AssetIntegrityError, AssetStore
from pipeline.media.video_files import AudioTrack, VideoEncoding, encode_mp4, encode_yuv, yuv_from_rgb
from pipeline.provenance.marking import MarkPlan
from pipeline.runtime.stage import Verdict
from pipeline.state.consent_registry import ConsentRegistry
from policies.loader import LoadedPolicy
from schemas.models import Outcome, PipelineItem, Reason

log = logging.getLogger("trustreel.generate")


class GenerateRules(BaseModel):
    model_config = ConfigDict(extra="forbid")

    fps: int = Field(default=24, ge=1, le=120)
    max_duration_seconds: float = Field(default=10.0, gt=0)
    max_long_side: int = Field(default=1280, ge=16)
    max_short_side: int = Field(default=720, ge=16)
    size_multiple: int = Field(default=32, ge=1, description="The model's spatial grid; sizes are rounded to it")
    frame_multiple: int = Field(default=8, ge=1, description="Frame counts are k * frame_multiple + 1")
    steps: int = Field(default=30, ge=1, le=500)
    guidance_scale: float = Field(default=3.0, ge=0)
    negative_prompt: str = "worst quality, inconsistent motion, blurry, jittery, distorted"
    batch_size: int = Field(default=4, ge=1, le=64, description="Requests per GPU call")
    batches_per_poll: int = Field(default=4, ge=1, le=32,
                                  description="GPU calls per batch the worker takes: while one call's videos "
                                              "are encoded the next is generating")
    batch_wait_seconds: float = Field(default=0.5, ge=0, le=60)
    encode_threads: int = Field(default=2, ge=1, le=64, description="Videos encoded and stored at a time")
    x264_preset: str = Field(default="veryfast", pattern="^(ultrafast|superfast|veryfast|faster|fast|medium|slow)$")
    x264_crf: int = Field(default=23, ge=0, le=51, description="Quality of the stored video (lower is better)")
    x264_subme: int | None = Field(default=1, ge=0, le=11, description="Sub-pixel motion refinement (None: the "
                                                                       "preset's own)")
    max_attempts: int = Field(default=3, ge=1, le=10)
    timeout_seconds: float = Field(default=600.0, gt=0)


@dataclass(frozen=True)
class PlannedJob:
    index: int
    job: GenerationJob
    conditioning: list[dict[str, str]]


@dataclass(frozen=True)
class Generated:
    """A job's video off the GPU, still to be encoded and stored."""

    video: Any
    batch: list[PlannedJob]
    attempts: int


class GenerateStage:
    name = "generate"

    def __init__(self, policy: LoadedPolicy[GenerateRules], generator: VideoGenerator, cameos: ConsentRegistry,
                 assets: AssetStore, marks: Callable[[], MarkPlan | None] = lambda: None) -> None:
        """`marks`: the provenance marks to draw before the one encode (read per video, so a changed provenance
        policy applies to the next video; None: the provenance stage marks and encodes again)."""
        self.policy = policy
        self._generator = generator
        self._cameos = cameos
        self._assets = assets
        self._marks = marks
        self.batch_size = policy.rules.batch_size * policy.rules.batches_per_poll  # what the worker takes
        self.batch_wait_seconds = policy.rules.batch_wait_seconds
        self._finishing = ThreadPoolExecutor(max_workers=policy.rules.encode_threads,
                                             thread_name_prefix="generate-encode")

    def decide(self, item: PipelineItem) -> Verdict:
        return self.decide_batch([item])[0]

    def decide_batch(self, items: list[PipelineItem]) -> list[Verdict]:
        verdicts: list[Verdict | None] = [None] * len(items)
        planned: list[PlannedJob] = []
        for index, item in enumerate(items):
            plan = self._plan(index, item)
            if isinstance(plan, Verdict):
                verdicts[index] = plan
            else:
                planned.append(plan)
        by_job = {id(plan.job): plan for plan in planned}
        finishing: list[tuple[int, Future[Verdict]]] = []
        try:
            for batch in compatible_batches([plan.job for plan in planned], self.policy.rules.batch_size):
                for plan_job, outcome in self._run([by_job[id(job)] for job in batch]):
                    if isinstance(outcome, Verdict):
                        verdicts[plan_job.index] = outcome
                    else:  # encoded and stored on the pool while the next batch generates
                        finishing.append((plan_job.index, self._finishing.submit(self._approve, plan_job, outcome)))
        finally:
            for index, future in finishing:  # an encode or store error fails the whole batch, as before
                verdicts[index] = future.result()
        return [verdict for verdict in verdicts if verdict is not None]

    def _plan(self, index: int, item: PipelineItem) -> PlannedJob | Verdict:
        rules = self.policy.rules
        request = item.request
        if request.duration_seconds > rules.max_duration_seconds:
            return Verdict.reject([Reason(code="too_long",
                                          message=f"The video would be {request.duration_seconds:g} s long; the "
                                                  f"limit is {rules.max_duration_seconds:g} s.")])
        width, height = request.resolution.width, request.resolution.height
        if max(width, height) > rules.max_long_side or min(width, height) > rules.max_short_side:
            return Verdict.reject([Reason(code="too_large",
                                          message=f"{width}x{height} is larger than allowed "
                                                  f"({rules.max_long_side} px long side, {rules.max_short_side} "
                                                  f"px short side).")])
        conditioning, reference_images = [], []
        for cameo_id in request.cameo_ids:
            found = self._reference_image(cameo_id)
            if isinstance(found, Reason):
                return Verdict.reject([found])
            sha256, image = found
            conditioning.append({"cameo_id": cameo_id, "reference_sha256": sha256})
            reference_images.append(image)
        spec = RenderSpec(width=_round_to(width, rules.size_multiple), height=_round_to(height, rules.size_multiple),
                          num_frames=_frame_count(request.duration_seconds, rules.fps, rules.frame_multiple),
                          fps=rules.fps, steps=rules.steps, guidance_scale=rules.guidance_scale,
                          conditioned=bool(reference_images))
        image = _conditioning_image(reference_images, spec.width, spec.height) if reference_images else None
        job = GenerationJob(request_id=request.request_id, prompt=request.prompt,
                            negative_prompt=rules.negative_prompt, seed=seed_for(request.request_id), spec=spec,
                            conditioning_image=image)
        return PlannedJob(index=index, job=job, conditioning=conditioning)

    def _reference_image(self, cameo_id: str) -> tuple[str, np.ndarray] | Reason:
        """The first verified reference image of the cameo, hash-checked; never requester-supplied media."""
        state = self._cameos.get(cameo_id)
        images = [media for media in (state.reference_media if state else ()) if media.media_type.startswith("image/")]
        if not images:
            return Reason(code="cameo_reference_missing",
                          message=f"Cameo {cameo_id} has no verified reference image to generate from.")
        try:
            from PIL import Image

            data = self._assets.get(images[0])
            rgb = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
        except (AssetIntegrityError, OSError) as problem:
            return Reason(code="cameo_reference_unreadable",
                          message=f"The verified reference image of cameo {cameo_id} cannot be used ({problem}).")
        return images[0].sha256, rgb

    def _run(self, batch: list[PlannedJob]) -> list[tuple[PlannedJob, Verdict | Generated]]:
        """Generate one compatible batch with bounded retries; a batch that runs out of memory is split.
        Each job ends as a rejection or as a video still to be encoded and stored."""
        rules = self.policy.rules
        errors: list[str] = []
        for attempt in range(1, rules.max_attempts + 1):
            deadline = time.monotonic() + rules.timeout_seconds
            try:
                videos = self._generator.generate([plan.job for plan in batch], deadline)
            except Exception as exc:  # model errors, timeouts and OOM all end the same bounded way
                code = _failure_code(exc)
                errors.append(f"{code}: {type(exc).__name__}: {exc}"[:500])
                log.warning("generation of %s failed (attempt %d/%d): %s", [p.job.request_id for p in batch],
                            attempt, rules.max_attempts, errors[-1])
                if code == "out_of_memory" and len(batch) > 1:
                    return [result for plan in batch for result in self._run([plan])]
                continue
            return [(plan, Generated(video, batch, attempt)) for plan, video in zip(batch, videos)]
        code = errors[-1].split(":", 1)[0]
        return [(plan, Verdict.reject(
            [Reason(code=f"generation_failed_{code}",
                    message=f"The video could not be generated ({code.replace('_', ' ')}, {len(errors)} attempts).")],
            attempts=len(errors), errors=errors, seed=plan.job.seed)) for plan in batch]

    def _approve(self, plan: PlannedJob, generated: Generated) -> Verdict:
        video, batch, attempts = generated.video, generated.batch, generated.attempts
        spec = plan.job.spec
        rules = self.policy.rules
        started = time.perf_counter()
        encoded, marks = encode_generated(video.frames, video.audio, spec.fps, plan.job.request_id,
                                          encoding_of(rules), self._marks())
        reference = self._assets.put(encoded, "video/mp4")
        timings = {**video.timings, "encode_seconds": round(time.perf_counter() - started, 4)}
        audio = ({"muxed": True, "seconds": round(video.audio.seconds, 3), "sample_rate": video.audio.sample_rate}
                 if video.audio is not None else {"muxed": False, "note": "silent video: the configured "
                                                                          "pipelines make no audio"})
        details: dict[str, Any] = {
            "seed": plan.job.seed, "model": self._generator.describe(),
            "parameters": {"width": spec.width, "height": spec.height, "num_frames": spec.num_frames,
                           "fps": spec.fps, "steps": spec.steps, "guidance_scale": spec.guidance_scale,
                           "negative_prompt": plan.job.negative_prompt},
            "conditioning": plan.conditioning, "audio": audio, "timings": timings,
            "batch": {"size": len(batch), "requests": [member.job.request_id for member in batch]},
            "attempts": attempts, "video": {"sha256": reference.sha256, "bytes": len(encoded),
                                            "frames": int(video.frames.shape[0])},
        }
        if marks is not None:
            details["marks"] = marks
        return Verdict(outcome=Outcome.APPROVED, details=details, assets={"video": reference})


def encoding_of(rules: GenerateRules) -> VideoEncoding:
    return VideoEncoding(preset=rules.x264_preset, crf=rules.x264_crf, subme=rules.x264_subme)


def encode_generated(frames: np.ndarray, audio: AudioTrack | None, fps: int, request_id: str,
                     encoding: VideoEncoding, plan: MarkPlan | None) -> tuple[bytes, dict[str, Any] | None]:
    """The MP4 the generate stage stores, with the provenance marks drawn on the encoder's own planes when there
    are any (and the frames are large enough to carry them); the marks' record for the decision."""
    if plan is not None:
        planes = yuv_from_rgb(frames)
        if plan.fits(planes):
            marks = plan.apply(planes, fps, request_id)
            return encode_yuv(planes, fps, audio, encoding), marks
    return encode_mp4(frames, fps, audio, encoding), None


def seed_for(request_id: str) -> int:
    """A stable seed per request: a redelivered request regenerates the same video."""
    return int.from_bytes(hashlib.sha256(request_id.encode()).digest()[:4], "big")


def _round_to(value: int, multiple: int) -> int:
    return max(multiple, int(round(value / multiple)) * multiple)


def _frame_count(seconds: float, fps: int, multiple: int) -> int:
    return max(1, int(round(seconds * fps / multiple))) * multiple + 1


def _conditioning_image(images: list[np.ndarray], width: int, height: int) -> np.ndarray:
    """Image-to-video pipelines take one image: several cameos' references are tiled side by side."""
    from PIL import Image

    tile_width = max(1, width // len(images))
    tiles = [Image.fromarray(image).resize((tile_width, height)) for image in images]
    canvas = Image.new("RGB", (width, height))
    for position, tile in enumerate(tiles):
        canvas.paste(tile, (position * tile_width, 0))
    return np.asarray(canvas)


def _failure_code(exc: BaseException) -> str:
    if isinstance(exc, GenerationTimeout):
        return "timeout"
    if isinstance(exc, MemoryError) or "out of memory" in str(exc).lower() or type(exc).__name__ == "OutOfMemoryError":
        return "out_of_memory"
    return "model_error"

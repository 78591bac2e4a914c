"""Benchmark: the CPU work of one generated video after the generate stage, against the old code in the same run.

    python bench/postprocessing.py [--videos 3] [--width 704 --height 480 --frames 121]

A realistic, smooth 5-second video (a slow pan and zoom over scikit-image's astronaut photo, encoded as
the generate stage encodes it: with the provenance marks drawn first, or plain as before) goes through the
post-generation stages as workers build them (policies/ as shipped, a SQLite audit database, a local asset
store, development C2PA credentials): likeness-post (faces on sampled frames), content-post (NudeNet on
sampled frames), known-media-post (PDQ hashes against the banks), provenance (signing and read-back
verification; for an unmarked video also the marks and an x264 encode) and publish's hash checks of the
stored files. Prints CPU seconds (all threads: process time) and wall seconds per stage and in total,
median over --videos, and apart from the total the generate stage's encode of the same video, for:

- baseline: provenance as it was before #21 (invisible-watermark's per-frame encoder and decoder on every
  frame, the visible mark composited frame by frame with PIL, x264 `medium` on one thread), on a video the
  generate stage stored unmarked;
- current: the code as it is (marks drawn at generation, provenance signs the file as it is);
- current, marks drawn by provenance: the generate stage stores the video unmarked (no provenance stage
  configured after it when it encoded), so provenance decodes, marks and encodes;
- current without likeness-post's same-face memory (`same_face_max_block_change: 0`: every face found on
  a sampled frame goes through the recognition network);
- current with likeness-post doubling every sampled frame (`small_face_every: 1`);
- with --min-face-size N: also the code as it is with likeness-post's `min_face_size` at N instead of the
  shipped policy's (80: dlib does not upsample the frames), for the trust & safety choice it prices.
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import consumers.provenance as provenance_module  # noqa: E402
import pipeline.provenance.marking as marking_module  # noqa: E402
from consumers.generate import encode_generated, encoding_of  # noqa: E402
from pipeline.audit.db import make_engine, make_sessionmaker, upgrade  # noqa: E402
from pipeline.audit.store import SqlAuditStore  # noqa: E402
from pipeline.enforcement.rules import latest_enforcement  # noqa: E402
from pipeline.enforcement.standing import SqlStandingBook  # noqa: E402
from pipeline.hashing.banks import BankStore  # noqa: E402
from pipeline.likeness.galleries import GalleryStore  # noqa: E402
from pipeline.media.assets import LocalAssetStore  # noqa: E402
from pipeline.media.video_files import VideoEncoding, decode_mp4, encode_mp4  # noqa: E402
from pipeline.provenance.dev_certificates import write_dev_credentials  # noqa: E402
from pipeline.provenance.ledger import SqlProvenanceLedger  # noqa: E402
from pipeline.provenance.watermarks import CORNERS, INVISIBLE_METHOD, InvisibleMarkStyle, payload_bits_of  # noqa: E402
from pipeline.provenance.watermarks import PayloadReading, VisibleMarkStyle  # noqa: E402
from pipeline.settings import Settings  # noqa: E402
from pipeline.state.account_registry import SqlAccountRegistry  # noqa: E402
from pipeline.state.consent_registry import SqlConsentRegistry  # noqa: E402
from pipeline.state.feeds import rights_registry  # noqa: E402
from pipeline.state.generation_caps import ReadOnlyCapLedger, SqlCapLedger  # noqa: E402
from pipeline.worker import catalog  # noqa: E402
from schemas.models import GenerationRequest, Outcome, PipelineItem, StageDecision  # noqa: E402

STAGES = ("likeness-post", "content-post", "known-media-post", "provenance")


def smooth_video(width: int, height: int, frames: int) -> np.ndarray:
    """A slow pan and zoom over a photo: compresses and looks like camera footage, unlike noise."""
    from PIL import Image
    from skimage import data

    photo = Image.fromarray(data.astronaut())
    video = []
    for index in range(frames):
        zoom = 1.0 + 0.3 * index / max(1, frames - 1)
        crop_width, crop_height = 512 / zoom, 512 * height / width / zoom
        left = (512 - crop_width) * index / max(1, frames - 1)
        box = (left, 40, left + crop_width, 40 + crop_height)
        video.append(np.asarray(photo.resize((width, height), Image.BILINEAR, box=box)))
    return np.stack(video)


def services_in(work: Path) -> catalog.StageServices:
    credentials = write_dev_credentials(work / "c2pa")
    settings = Settings(db_url=f"sqlite:///{work / 'audit.db'}", asset_dir=work / "assets",
                        c2pa_cert_chain=credentials.cert_chain, c2pa_private_key=credentials.private_key,
                        c2pa_trust_anchors=credentials.trust_anchor)
    upgrade(settings.db_url)
    sessions = make_sessionmaker(make_engine(settings.db_url))
    return catalog.StageServices(
        settings=settings, audit=SqlAuditStore(sessions), cameos=SqlConsentRegistry(sessions),
        accounts=SqlAccountRegistry(sessions), caps=SqlCapLedger(sessions), clock=lambda: datetime.now(timezone.utc),
        assets=LocalAssetStore(settings.asset_dir), galleries=GalleryStore(sessions),
        provenance=SqlProvenanceLedger(sessions), banks=BankStore(sessions), rights=rights_registry(settings, sessions),
        read_only_caps=ReadOnlyCapLedger(sessions), standing=SqlStandingBook(sessions, latest_enforcement(
            settings.policy_dir)))


def with_likeness_rule(services: catalog.StageServices, work: Path, rule: str, shipped: object,
                       value: object) -> catalog.StageServices:
    """The same services reading a copy of the shipped policies whose likeness policy sets `rule` to `value`."""
    from policies.loader import policy_path

    policies = work / f"policies-{rule}-{value}"
    shutil.copytree(policy_path("likeness").parent, policies)
    likeness = policies / "likeness.yaml"
    text = likeness.read_text()
    if f"  {rule}: {shipped}\n" not in text:
        raise SystemExit(f"policies/likeness.yaml no longer ships {rule}: {shipped}; update this bench")
    likeness.write_text(text.replace(f"  {rule}: {shipped}\n", f"  {rule}: {value}\n"))
    return dataclasses.replace(services, settings=services.settings.model_copy(update={"policy_dir": policies}))


def generated_item(services: catalog.StageServices, request_id: str, video: bytes,
                   marks: dict | None = None) -> PipelineItem:
    """The item the generate stage passes on; `marks`: what it recorded drawing before its encode."""
    now = datetime.now(timezone.utc)
    generate_details = {"model": {"model_id": "bench"}, **({"marks": marks} if marks is not None else {})}
    decisions = [StageDecision(request_id=request_id, stage=stage, outcome=Outcome.APPROVED, policy_id="bench",
                               policy_version="bench", decided_at=now,
                               details=generate_details if stage == "generate" else {})
                 for stage in services.settings.stages[:services.settings.stages.index("generate") + 1]]
    return PipelineItem(request=GenerationRequest(request_id=request_id, requester_account="bench",
                                                  prompt="an astronaut smiles at the camera"),
                        decisions=decisions, assets={"video": services.assets.put(video, "video/mp4")})


def one_video(stages: dict, services: catalog.StageServices, item: PipelineItem) -> dict[str, tuple[float, float]]:
    """(CPU seconds, wall seconds) per stage, the verdicts chained as the runtime chains them."""
    spent = {}
    for name, stage in stages.items():
        cpu, wall = time.process_time(), time.perf_counter()
        verdict = stage.decide(item)
        spent[name] = (time.process_time() - cpu, time.perf_counter() - wall)
        if verdict.outcome is not Outcome.APPROVED:
            raise SystemExit(f"{name} rejected the bench video: {verdict.reasons}")
        decision = StageDecision(request_id=item.request.request_id, stage=name, outcome=verdict.outcome,
                                 policy_id=stage.policy.policy_id, policy_version=stage.policy.version,
                                 decided_at=datetime.now(timezone.utc), details=verdict.details)
        item = item.model_copy(update={"decisions": [*item.decisions, decision],
                                       "assets": {**item.assets, **verdict.assets}})
    cpu, wall = time.process_time(), time.perf_counter()
    for reference in item.assets.values():  # publish's integrity checks of what it is about to publish
        services.assets.get(reference)
    spent["publish (hash checks)"] = (time.process_time() - cpu, time.perf_counter() - wall)
    return spent


def library_embed(frames: np.ndarray, payload: bytes, style: InvisibleMarkStyle) -> np.ndarray:
    """Before #21: invisible-watermark's own encoder, one frame at a time (into new frames, as it was)."""
    from imwatermark import WatermarkEncoder

    encoder = WatermarkEncoder()
    encoder.set_watermark("bits", payload_bits_of(payload, style.payload_bits))
    scales = [0, style.strength, style.strength]
    return np.stack([encoder.encode(np.ascontiguousarray(rgb[:, :, ::-1]), INVISIBLE_METHOD, scales=scales,
                                    block=style.block)[:, :, ::-1] for rgb in frames])


def library_read(frames, style: InvisibleMarkStyle, min_agreement: float = 0.85) -> PayloadReading:
    """Before #21: invisible-watermark's own decoder on each frame."""
    from imwatermark import WatermarkDecoder

    frames = list(frames)
    decoder = WatermarkDecoder("bits", style.payload_bits)
    votes = np.array([decoder.decode(np.ascontiguousarray(rgb[:, :, ::-1]), INVISIBLE_METHOD,
                                     scales=[0, style.strength, style.strength], block=style.block)
                      for rgb in frames], dtype=float)
    share = votes.mean(axis=0)
    agreement = float(np.mean(np.maximum(share, 1 - share)))
    if agreement < min_agreement:
        return PayloadReading(None, agreement, len(frames))
    return PayloadReading(np.packbits((share > 0.5).astype(np.uint8)).tobytes(), agreement, len(frames))


def pil_visible_mark(frames: np.ndarray, style: VisibleMarkStyle, fps: int) -> np.ndarray:
    """Before #21: the text drawn and composited on each frame with PIL (into new frames, as it was)."""
    from PIL import Image, ImageDraw, ImageFont

    height, width = frames.shape[1:3]
    font_size = max(8, int(round(height * style.height_fraction)))
    font = ImageFont.load_default(size=font_size)
    margin, alpha = max(2, font_size // 3), int(round(255 * style.opacity))
    marked = np.empty_like(frames)
    for index, rgb in enumerate(frames):
        corner = style.position
        if corner == "moving":
            corner = CORNERS[int(index / max(1, fps * style.seconds_per_corner)) % len(CORNERS)]
        base = Image.fromarray(rgb).convert("RGBA")
        overlay = Image.new("RGBA", base.size, (0, 0, 0, 0))
        draw = ImageDraw.Draw(overlay)
        left, top, right, bottom = draw.textbbox((0, 0), style.text, font=font)
        x = margin if corner.endswith("left") else width - (right - left) - margin
        y = margin if corner.startswith("top") else height - (bottom - top) - margin
        draw.text((x - left + 1, y - top + 1), style.text, font=font, fill=(0, 0, 0, alpha))
        draw.text((x - left, y - top), style.text, font=font, fill=(255, 255, 255, alpha))
        marked[index] = np.asarray(Image.alpha_composite(base, overlay).convert("RGB"))
    return marked


@dataclasses.dataclass
class RgbVideo:
    """What the baseline stage holds instead of a YuvVideo: the decoded RGB frames, replaced by each mark."""

    frames: np.ndarray

    @property
    def height(self) -> int:
        return self.frames.shape[1]

    @property
    def width(self) -> int:
        return self.frames.shape[2]


def rgb_decode(data: bytes) -> tuple[RgbVideo, int, object]:
    frames, fps, audio = decode_mp4(data)
    return RgbVideo(frames), fps, audio


def rgb_visible_mark(video: RgbVideo, style: VisibleMarkStyle, fps: int) -> None:
    video.frames = pil_visible_mark(video.frames, style, fps)


def rgb_embed(video: RgbVideo, payload: bytes, style: InvisibleMarkStyle) -> None:
    video.frames = library_embed(video.frames, payload, style)


def rgb_encode_medium(video: RgbVideo, fps: int, audio: object, encoding: object = None) -> bytes:
    """The old encoder, whatever the policy now asks for."""
    return encode_mp4(video.frames, fps, audio, encoding=VideoEncoding("medium", 23, 1))


class BaselineProvenance:
    """Swaps the provenance stage's decode, marks, encoder and read-back for what they were before #21: RGB
    frames, invisible-watermark and PIL frame by frame, x264 `medium` on one thread, every frame read back
    (the video comes unmarked from the generate stage, as it did then)."""

    SWAPS = {provenance_module: {"decode_yuv": rgb_decode, "encode_yuv": rgb_encode_medium,
                                 "read_payload": library_read, "READ_BACK_EVERY": 1},
             marking_module: {"burn_visible_mark": rgb_visible_mark, "embed_payload": rgb_embed}}

    def __enter__(self) -> None:
        self.saved = {module: {name: getattr(module, name) for name in swaps} for module, swaps in self.SWAPS.items()}
        for module, swaps in self.SWAPS.items():
            for name, value in swaps.items():
                setattr(module, name, value)

    def __exit__(self, *exc: object) -> None:
        for module, saved in self.saved.items():
            for name, value in saved.items():
                setattr(module, name, value)


def report(label: str, runs: list[dict[str, tuple[float, float]]]) -> float:
    print(f"{label}:")
    total_cpu = total_wall = 0.0
    for name in runs[0]:
        cpu = statistics.median(run[name][0] for run in runs)
        wall = statistics.median(run[name][1] for run in runs)
        total_cpu, total_wall = total_cpu + cpu, total_wall + wall
        print(f"  {name:24s} {cpu:6.2f} CPU s  {wall:6.2f} wall s")
    print(f"  {'total':24s} {total_cpu:6.2f} CPU s  {total_wall:6.2f} wall s")
    return total_cpu


def generated(services: catalog.StageServices, frames: np.ndarray, fps: int, request_id: str,
              marked: bool) -> tuple[PipelineItem, float]:
    """The item the generate stage passes on for this request, and the CPU seconds of its encode: with the
    provenance marks drawn first (as now), or plain x264 `veryfast` (as before marking moved there)."""
    cpu = time.process_time()
    if marked:
        plan = provenance_module.mark_plan(services.policy("provenance"))
        video, marks = encode_generated(frames, None, fps, request_id, encoding_of(services.policy("generate").rules),
                                        plan)
    else:
        video, marks = encode_mp4(frames, fps, None, VideoEncoding("veryfast", 23)), None
    spent = time.process_time() - cpu
    return generated_item(services, request_id, video, marks), spent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=3)
    parser.add_argument("--width", type=int, default=704)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--frames", type=int, default=121)
    parser.add_argument("--fps", type=int, default=24)
    parser.add_argument("--min-face-size", type=int, default=None,
                        help="also run with likeness-post's min_face_size at this many pixels")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="trustreel-bench-post-"))
    services = services_in(work)
    stages = {name: catalog.build_stage(name, services) for name in STAGES}
    frames = smooth_video(args.width, args.height, args.frames)
    print(f"{args.width}x{args.height}, {args.frames} frames at {args.fps} fps, stages {', '.join(STAGES)} + "
          f"publish's hash checks; median of {args.videos}")
    one_video(stages, services, generated(services, frames, args.fps, "warm-up", True)[0])  # model loads, caches
    # label -> (stages, marked at generation)
    variants = {"baseline (before #21)": (stages, False), "current": (stages, True),
                "current, marks drawn by provenance (none at generation)": (stages, False)}
    changed_rules = {"likeness-post without the same-face memory": ("same_face_max_block_change", 12, 0),
                     "likeness-post doubling every sampled frame": ("small_face_every", 2, 1)}
    if args.min_face_size is not None:
        changed_rules[f"likeness-post min_face_size {args.min_face_size}"] = ("min_face_size", 40, args.min_face_size)
    for label, (rule, shipped, value) in changed_rules.items():
        changed = {**stages, "likeness-post": catalog.build_stage(
            "likeness-post", with_likeness_rule(services, work, rule, shipped, value))}
        variants[f"current, {label}"] = (changed, True)
        one_video(changed, services, generated(services, frames, args.fps, f"warm-up-{rule}", True)[0])
    results, encodes = {}, {}
    for label, (chosen, marked) in variants.items():
        runs, encode_cpu = [], []
        for index in range(args.videos):
            item, spent = generated(services, frames, args.fps, f"{label[:4]}-{index}-{len(results)}", marked)
            encode_cpu.append(spent)
            if label.startswith("baseline"):
                with BaselineProvenance():
                    runs.append(one_video(chosen, services, item))
            else:
                runs.append(one_video(chosen, services, item))
        results[label] = report(label, runs)
        encodes[label] = statistics.median(encode_cpu)
        print(f"  (the generate stage's encode of this video: {encodes[label]:.2f} CPU s, not in the total)")
    before, after = list(results.values())[:2]
    print(f"CPU per video after generation: {before:.2f} -> {after:.2f} core-seconds ({before / after:.1f}x less)")
    print(f"with the generate stage's encode: {before + encodes['baseline (before #21)']:.2f} -> "
          f"{after + encodes['current']:.2f} core-seconds")
    for label, total in list(results.items())[2:]:
        print(f"{label}: {total:.2f} core-seconds (+ {encodes[label]:.2f} in the generate stage)")


if __name__ == "__main__":
    main()

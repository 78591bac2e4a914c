"""Provenance stage: every published video says, verifiably, that it is AI-generated and by whom.

    assets["video"] (hash checked)
      -> marked at generation (the generate decision's details["marks"], pipeline.provenance.marking): as it is
         else: decode frames (as stored: 4:2:0 YUV, never converted to RGB) + audio
               -> burn the visible mark (policy: text, corner or moving, size, opacity)
               -> embed the invisible watermark id (derived from the request id; also a C2PA soft binding)
               -> encode MP4 (policy: encoding)
      -> sign a C2PA manifest: c2pa.created by a trainedAlgorithmicMedia model,
                                             moderation summary (stages, outcomes, policy versions),
                                             opted-in protected works and their holders (attribution)
      -> verify before passing on: manifest valid (trusted when anchors are configured),
                                   stored bytes match their hash, watermark reads back (every third frame)
      -> assets["video"] = the signed file; the mark is recorded for `trustreel verify`
    any failure -> rejected with the reason (nothing unsigned reaches publish)
"""

from __future__ import annotations

from datetime import datetime
from importlib import metadata
from typing import Any, Callable

from pydantic import BaseModel, ConfigDict, Field

from consumers.known_media import attributions_of
from pipeline.media.assets import AssetIntegrityError, AssetStore
from pipeline.provenance.content_credentials import (SigningConfig, SigningUnavailable, build_manifest, load_signer,
                                          read_credentials, sign_mp4)
from pipeline.media.frames import UnreadableMedia, frames_of
from pipeline.media.video_files import VideoEncoding, decode_yuv, encode_yuv
from pipeline.provenance.ledger import ProvenanceLedger, ProvenanceMark
from pipeline.provenance.marking import MarkPlan, invisible_style_of
from pipeline.runtime.stage import Verdict
from pipeline.provenance.watermarks import MIN_INVISIBLE_PIXELS, InvisibleMarkStyle, VisibleMarkStyle, read_payload
from policies.loader import LoadedPolicy
from schemas.models import Outcome, PipelineItem, Reason


class VisibleMarkRules(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(default="AI-generated", min_length=1, max_length=60)
    position: str = Field(default="moving", pattern="^(top-left|top-right|bottom-left|bottom-right|moving)$")
    height_fraction: float = Field(default=0.06, gt=0, le=0.5)
    opacity: float = Field(default=0.6, gt=0, le=1)
    seconds_per_corner: float = Field(default=1.0, gt=0)


class InvisibleMarkRules(BaseModel):
    model_config = ConfigDict(extra="forbid")

    strength: int = Field(default=72, ge=8, le=255)
    block: int = Field(default=4, ge=2, le=16)
    payload_bits: int = Field(default=32, ge=8, le=64, multiple_of=8)


class EncodingRules(BaseModel):
    """x264 settings for a video this stage marks itself (one the generate stage stored unmarked)."""

    model_config = ConfigDict(extra="forbid")

    x264_preset: str = Field(default="veryfast", pattern="^(ultrafast|superfast|veryfast|faster|fast|medium|slow)$")
    x264_crf: int = Field(default=23, ge=0, le=51, description="Quality of the published video (lower is better)")
    x264_subme: int | None = Field(default=1, ge=0, le=11, description="Sub-pixel motion refinement (None: the "
                                                                       "preset's own)")

    def encoding(self) -> VideoEncoding:
        return VideoEncoding(preset=self.x264_preset, crf=self.x264_crf, subme=self.x264_subme)


class ProvenanceRules(BaseModel):
    model_config = ConfigDict(extra="forbid")

    claim_generator: str = "trustreel"
    visible: VisibleMarkRules = Field(default_factory=VisibleMarkRules)
    invisible: InvisibleMarkRules = Field(default_factory=InvisibleMarkRules)
    encoding: EncodingRules = Field(default_factory=EncodingRules)
    include_prompt: bool = Field(default=False, description="Put the prompt in the manifest (personal data)")
    include_requester: bool = Field(default=False, description="Put the requester account in the manifest")


READ_BACK_EVERY = 3
"""Every third frame is read back (a 5 s video at 24 fps: 41 frames): the majority over them is as clear as
over all frames, for a third of the work."""


def mark_plan(policy: LoadedPolicy[ProvenanceRules]) -> MarkPlan:
    """The marks this policy asks for, for whichever stage draws them."""
    rules = policy.rules
    return MarkPlan(policy.policy_id, policy.version, VisibleMarkStyle(**rules.visible.model_dump()),
                    InvisibleMarkStyle(**rules.invisible.model_dump()))


class ProvenanceStage:
    name = "provenance"

    def __init__(self, policy: LoadedPolicy[ProvenanceRules], signing: SigningConfig, trust_anchors: bytes | None,
                 assets: AssetStore, ledger: ProvenanceLedger, clock: Callable[[], datetime]) -> None:
        self.policy = policy
        self._signing = signing
        self._anchors = trust_anchors
        self._assets = assets
        self._ledger = ledger
        self._clock = clock
        load_signer(signing)  # a missing or expired credential stops the worker at start, with the reason

    def decide(self, item: PipelineItem) -> Verdict:
        request = item.request
        source = item.assets.get("video")
        if source is None:
            return _reject("no_generated_video", "There is no generated video to sign, so it cannot be published.")
        try:
            data = self._assets.get(source)
        except (AssetIntegrityError, OSError) as problem:
            return _reject("media_unreadable", f"The generated video could not be read for signing ({problem}).")
        plan = mark_plan(self.policy)
        marks = _generation_marks(item)
        if marks is not None:  # encoded once, marks included: signed as it is
            video_bytes = data
        else:
            try:
                video, fps, audio = decode_yuv(data)
            except (UnreadableMedia, ValueError, OSError) as problem:
                return _reject("media_unreadable", f"The generated video could not be read for signing ({problem}).")
            if not plan.fits(video):
                return _reject("too_small_to_watermark",
                               f"A {video.width}x{video.height} video is too small to carry the invisible "
                               f"watermark (at least {MIN_INVISIBLE_PIXELS} pixels), so it cannot be published.")
        try:
            signer = load_signer(self._signing, self._clock())  # read each time: rotated files are picked up
        except SigningUnavailable as problem:
            return _reject("signing_unavailable", f"The video cannot be signed ({problem}); nothing is published "
                                                  f"unsigned.")
        if marks is None:
            # The decoded frames are this call's own: both marks are drawn on them, not on copies.
            marks = {**plan.apply(video, fps, request.request_id), "marked_by": self.name}
            video_bytes = encode_yuv(video, fps, audio, self.policy.rules.encoding.encoding())
        payload = bytes.fromhex(marks["watermark_id"])
        rules = self.policy.rules
        manifest = build_manifest(f"{request.request_id}.mp4", _generator_details(item), self._moderation(item),
                                  payload.hex(), (rules.claim_generator, _version()), attributions_of(item))
        try:
            signed = sign_mp4(video_bytes, manifest, signer)
        except Exception as problem:  # c2pa raises its own error types for a file it cannot parse
            return _reject("media_unreadable", f"The generated video could not be signed ({problem}).")
        return self._verified(item, source.sha256, signed, payload, marks)

    def _verified(self, item: PipelineItem, source_sha256: str, signed: bytes, payload: bytes,
                  marks: dict[str, Any]) -> Verdict:
        """Read the signed file back the way a viewer would; only a file that passes every check moves on."""
        report = read_credentials(signed, self._anchors)
        wanted = "Trusted" if self._anchors else "Valid"
        if report.state != wanted:
            return _reject("manifest_not_valid", f"The signed video did not validate ({report.state}: "
                                                 f"{', '.join(report.codes) or report.error}).", codes=report.codes)
        reference = self._assets.put(signed, "video/mp4")
        try:
            stored = self._assets.get(reference)
            reading = read_payload([rgb for _, rgb in frames_of(stored, "video/mp4", READ_BACK_EVERY, 10_000)],
                                   invisible_style_of(marks, mark_plan(self.policy).invisible))
        except (AssetIntegrityError, UnreadableMedia) as problem:
            return _reject("asset_integrity", f"The signed video does not match the asset store ({problem}).")
        if reading.payload != payload:
            return _reject("watermark_unreadable", f"The invisible watermark did not read back (agreement "
                                                   f"{reading.agreement:.2f}).")
        label = (report.manifest or {}).get("label", "")
        mark = ProvenanceMark(request_id=item.request.request_id, watermark_id=payload.hex(),
                              signed_sha256=reference.sha256, source_sha256=source_sha256, manifest_label=label,
                              signed_at=self._clock())
        self._ledger.record(mark)
        details: dict[str, Any] = {
            "watermark_id": payload.hex(), "watermark_agreement": round(reading.agreement, 3),
            "manifest_label": label, "validation_state": report.state, "signer": report.signer,
            "signed_sha256": reference.sha256, "source_sha256": source_sha256,
            "visible_mark": self.policy.rules.visible.model_dump(), "marks": marks,
        }
        return Verdict(outcome=Outcome.APPROVED, details=details,
                       assets={"video": reference, "unsigned_video": item.assets["video"]})

    def _moderation(self, item: PipelineItem) -> dict[str, Any]:
        rules = self.policy.rules
        summary: dict[str, Any] = {
            "request_id": item.request.request_id,
            "decisions": [{"stage": d.stage, "outcome": d.outcome.value, "policy_id": d.policy_id,
                           "policy_version": d.policy_version, "decided_at": d.decided_at.isoformat()}
                          for d in item.decisions],
            "cameos_used": len(item.request.cameo_ids),
        }
        if rules.include_prompt:
            summary["prompt"] = item.request.prompt
        if rules.include_requester:
            summary["requester_account"] = item.request.requester_account
        return summary


def _generation_marks(item: PipelineItem) -> dict[str, Any] | None:
    """What the generate stage recorded drawing into the video it stored (None: it drew nothing). Never drawn
    twice: a video marked under an older provenance policy keeps those marks, recorded with their version."""
    for decision in item.decisions:
        if decision.stage == "generate" and isinstance(decision.details.get("marks"), dict):
            return {**decision.details["marks"], "marked_by": "generate"}
    return None


def _generator_details(item: PipelineItem) -> dict[str, Any]:
    for decision in item.decisions:
        if decision.stage == "generate":
            return dict(decision.details.get("model", {}))
    return {}


def _version() -> str:
    try:
        return metadata.version("trustreel")
    except metadata.PackageNotFoundError:
        return "unknown"


def _reject(code: str, message: str, **details: Any) -> Verdict:
    return Verdict.reject([Reason(code=code, message=message)], **details)

"""Provenance: signing, watermarks and verification with the real C2PA SDK and real files (no broker).

A test CA and signing certificate are made here (cryptography), trusted through settings.
"""

from __future__ import annotations

import dataclasses
import io
from datetime import datetime, timedelta, timezone
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from consumers.provenance import ProvenanceRules, ProvenanceStage, mark_plan
from pipeline.provenance.marking import watermark_id_for
from pipeline.media.assets import LocalAssetStore
from pipeline.provenance.content_credentials import (DIGITAL_SOURCE_TYPE, MODERATION_LABEL, SOFT_BINDING_LABEL,
                                          SigningConfig, SigningUnavailable, read_credentials)
from pipeline.media.frames import frames_of
from pipeline.media.video_files import (AudioTrack, YuvVideo, decode_mp4, decode_yuv, encode_mp4, encode_yuv, probe_mp4,
                                        yuv_from_rgb)
from pipeline.provenance.dev_certificates import write_dev_credentials
from pipeline.provenance.ledger import InMemoryProvenanceLedger
from pipeline.provenance.verification import verify_file
from pipeline.provenance.watermarks import InvisibleMarkStyle, read_payload
from policies.loader import LoadedPolicy
from schemas.models import GenerationRequest, Outcome, PipelineItem, StageDecision

NOW = datetime.now(timezone.utc)


def smooth_video(width: int = 256, height: int = 256, frames: int = 9, audio: bool = False) -> bytes:
    """Generated-looking frames: low-frequency colour fields (noise upsampled)."""
    coarse = np.random.default_rng(1).integers(0, 255, (frames, 8, 8, 3), dtype=np.uint8)
    video = np.stack([np.asarray(Image.fromarray(f).resize((width, height), Image.BICUBIC)) for f in coarse])
    track = AudioTrack(np.sin(np.linspace(0, 800, 16000 * frames // 8))[None].astype(np.float32) * 0.2,
                       16000) if audio else None
    return encode_mp4(video, 8, track)


def reencode(data: bytes, crf: int) -> bytes:
    output = io.BytesIO()
    with av.open(io.BytesIO(data)) as source, av.open(output, "w", format="mp4") as target:
        stream = target.add_stream("libx264", rate=8, options={"crf": str(crf)})
        first = True
        for frame in source.decode(video=0):
            if first:
                stream.width, stream.height, stream.pix_fmt, first = frame.width, frame.height, "yuv420p", False
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame.to_ndarray(format="rgb24"), format="rgb24")):
                target.mux(packet)
        for packet in stream.encode():
            target.mux(packet)
    return output.getvalue()


@pytest.fixture
def credentials(tmp_path: Path):
    return write_dev_credentials(tmp_path / "c2pa")


@pytest.fixture
def assets(tmp_path: Path) -> LocalAssetStore:
    return LocalAssetStore(tmp_path / "assets")


def stage_policy() -> LoadedPolicy[ProvenanceRules]:
    return LoadedPolicy(policy_id="provenance-test", stage="provenance", version="p" * 64,
                        path=Path("provenance.yaml"), rules=ProvenanceRules())


def stage(credentials, assets, ledger=None, anchors: bytes | None = None, clock=lambda: NOW) -> ProvenanceStage:
    return ProvenanceStage(stage_policy(), SigningConfig(credentials.cert_chain, credentials.private_key),
                           anchors if anchors is not None else credentials.trust_anchor.read_bytes(), assets,
                           ledger if ledger is not None else InMemoryProvenanceLedger(), clock)


def item(assets: LocalAssetStore, video: bytes, request_id: str = "req-1") -> PipelineItem:
    decisions = [StageDecision(request_id=request_id, stage=name, outcome="approved", policy_id=f"{name}-default",
                               policy_version=name[0] * 64, decided_at=NOW,
                               details={"model": {"model_id": "tiny-ltx", "diffusers": "0.39"}}
                               if name == "generate" else {})
                 for name in ("consent", "likeness", "age", "generate", "likeness-post")]
    return PipelineItem(request=GenerationRequest(request_id=request_id, requester_account="bob",
                                                  prompt="my private prompt"),
                        decisions=decisions, assets={"video": assets.put(video, "video/mp4")})


def test_signed_output_is_trusted_and_carries_the_expected_assertions(credentials, assets) -> None:
    ledger = InMemoryProvenanceLedger()
    source = smooth_video(audio=True)
    verdict = stage(credentials, assets, ledger).decide(item(assets, source))
    assert verdict.outcome is Outcome.APPROVED, verdict.reasons
    signed = assets.get(verdict.assets["video"])
    report = read_credentials(signed, credentials.trust_anchor.read_bytes())
    assert report.state == "Trusted" and report.codes == []
    created = report.assertion("c2pa.actions")["actions"][0]
    assert created["action"] == "c2pa.created" and created["digitalSourceType"] == DIGITAL_SOURCE_TYPE
    assert created["softwareAgent"]["name"] == "tiny-ltx"
    assert report.manifest["claim_generator_info"][0]["name"] == "trustreel"
    moderation = report.assertion(MODERATION_LABEL)
    assert moderation["request_id"] == "req-1"
    assert [d["stage"] for d in moderation["decisions"]] == ["consent", "likeness", "age", "generate", "likeness-post"]
    assert "prompt" not in moderation and "requester_account" not in moderation  # not allowed by default policy
    payload = watermark_id_for("req-1", 32)
    assert report.assertion(SOFT_BINDING_LABEL)["blocks"][0]["value"] == payload.hex()
    assert read_payload(decode_mp4(signed)[0], InvisibleMarkStyle()).payload == payload
    assert probe_mp4(signed).has_audio  # the soundtrack survives re-muxing
    assert verdict.assets["unsigned_video"].sha256 == verdict.details["source_sha256"]
    assert ledger.find(watermark_id=payload.hex())[0].signed_sha256 == verdict.assets["video"].sha256


def test_tampered_and_reencoded_files_fail_validation_but_the_watermark_survives(credentials, assets) -> None:
    verdict = stage(credentials, assets).decide(item(assets, smooth_video()))
    signed = assets.get(verdict.assets["video"])
    anchors = credentials.trust_anchor.read_bytes()
    tampered = bytearray(signed)
    media_data = tampered.index(b"mdat") + 500
    tampered[media_data] ^= 0xFF
    report = read_credentials(bytes(tampered), anchors)
    assert report.state == "Invalid" and "assertion.bmffHash.mismatch" in report.codes
    copy = reencode(signed, crf=28)  # what a re-upload elsewhere does
    assert read_credentials(copy, anchors).state in ("absent", "Invalid")
    reading = read_payload([rgb for _, rgb in frames_of(copy, "video/mp4", 1, 100)], InvisibleMarkStyle())
    assert reading.payload == watermark_id_for("req-1", 32) and reading.agreement > 0.9
    unmarked = read_payload([rgb for _, rgb in frames_of(smooth_video(), "video/mp4", 1, 100)], InvisibleMarkStyle())
    assert unmarked.payload is None


def test_an_untrusted_signer_is_reported_and_not_passed(credentials, assets, tmp_path: Path) -> None:
    other_ca = write_dev_credentials(tmp_path / "other", organisation="somebody else").trust_anchor.read_bytes()
    verdict = stage(credentials, assets, anchors=other_ca).decide(item(assets, smooth_video()))
    assert verdict.outcome is Outcome.REJECTED and verdict.reasons[0].code == "manifest_not_valid"
    assert "signingCredential.untrusted" in verdict.details["codes"]
    signed_elsewhere = stage(credentials, assets).decide(item(assets, smooth_video(), "req-2"))
    report = verify_file(assets.get(signed_elsewhere.assets["video"]), other_ca, InvisibleMarkStyle(), None)
    assert report.credentials.state == "Valid" and not report.credentials.trusted
    assert "signingCredential.untrusted" in report.credentials.codes
    assert report.summary()["watermark"]["payload"] == watermark_id_for("req-2", 32).hex()


def test_missing_or_expired_certificates_stop_the_stage_with_a_clear_error(credentials, assets,
                                                                            tmp_path: Path) -> None:
    expired = write_dev_credentials(tmp_path / "expired", valid_days=30, not_before=NOW - timedelta(days=60))
    with pytest.raises(SigningUnavailable, match="expired on"):
        stage(expired, assets)
    missing = type(credentials)(credentials.trust_anchor, tmp_path / "nope.pem", credentials.private_key)
    with pytest.raises(SigningUnavailable, match="cannot read the certificate chain"):
        stage(missing, assets)
    later = stage(credentials, assets, clock=lambda: NOW + timedelta(days=40))  # expires while running
    verdict = later.decide(item(assets, smooth_video()))
    assert verdict.outcome is Outcome.REJECTED and verdict.reasons[0].code == "signing_unavailable"
    assert "expired" in verdict.reasons[0].message


def test_videos_too_small_for_the_watermark_are_not_passed(credentials, assets) -> None:
    verdict = stage(credentials, assets).decide(item(assets, smooth_video(64, 64)))
    assert verdict.outcome is Outcome.REJECTED and verdict.reasons[0].code == "too_small_to_watermark"


def frames_of_photo(count: int = 6, width: int = 320, height: int = 256) -> np.ndarray:
    """A slow pan over scikit-image's astronaut photo: realistic, smooth content."""
    from skimage import data

    photo = np.asarray(Image.fromarray(data.astronaut()).resize((width + 4 * count, height + 2 * count)))
    return np.stack([photo[2 * i:2 * i + height, 4 * i:4 * i + width] for i in range(count)])


@pytest.mark.parametrize("width, height", [(320, 256), (262, 258)])  # the second: edges outside the 4x4 grid
def test_the_array_watermark_is_invisible_watermarks_own_both_ways(width: int, height: int) -> None:
    """embed_payload computes invisible-watermark's dwtDctSvd over all frames at once, on the 4:2:0 planes the
    encoder takes: the library's decoder reads it from the frames as a player shows them (RGB), and our reader
    reads what the library embedded (videos marked before)."""
    from imwatermark import WatermarkDecoder, WatermarkEncoder

    from pipeline.provenance.watermarks import embed_payload

    style, payload = InvisibleMarkStyle(), bytes.fromhex("5ee1c0de")
    bits = np.unpackbits(np.frombuffer(payload, np.uint8)).tolist()
    frames = frames_of_photo(width=width, height=height)
    video = YuvVideo.from_rgb(frames)
    unmarked, luma, red = video.to_rgb(), video.y.copy(), video.v.copy()
    embed_payload(video, payload, style)
    marked = video.to_rgb()
    assert marked.shape == frames.shape and np.array_equal(video.y, luma) and np.array_equal(video.v, red)
    assert 10 * np.log10(255 ** 2 / np.mean((marked.astype(float) - unmarked) ** 2)) > 34  # PSNR in dB: invisible
    decoder = WatermarkDecoder("bits", 32)
    for frame in marked:
        read = decoder.decode(np.ascontiguousarray(frame[:, :, ::-1]), "dwtDctSvd", scales=[0, 72, 72], block=4)
        assert list(map(int, read)) == bits
    encoder = WatermarkEncoder()
    encoder.set_watermark("bits", bits)
    by_library = np.stack([encoder.encode(np.ascontiguousarray(f[:, :, ::-1]), "dwtDctSvd", scales=[0, 72, 72],
                                          block=4)[:, :, ::-1] for f in frames])
    assert read_payload(by_library, style).payload == payload
    assert read_payload(marked, style) == read_payload(list(marked), style)
    assert read_payload(marked, style).agreement == 1.0


def test_yuv_frames_round_trip_through_the_encoder_and_views_write_through() -> None:
    frames = frames_of_photo(count=3, width=66, height=38)
    video = YuvVideo.from_rgb(frames)
    assert (video.y.shape, video.u.shape, video.v.shape) == ((3, 38, 66), (3, 19, 33), (3, 19, 33))
    assert 10 * np.log10(255 ** 2 / np.mean((video.to_rgb().astype(float) - frames) ** 2)) > 30
    video.u[1, 0, 0] = 7
    assert video.planes[1, 38 * 66] == 7  # the views are the planes themselves
    decoded, fps, audio = decode_yuv(encode_yuv(video, 8))
    assert (decoded.height, decoded.width, len(decoded), fps, audio) == (38, 66, 3, 8, None)
    assert np.array_equal(decoded.to_rgb(), decode_mp4(encode_yuv(video, 8))[0])
    odd, _, _ = decode_yuv(encode_mp4(frames_of_photo(count=2, width=65, height=37), 8))
    assert (odd.height, odd.width) == (36, 64)  # cropped to even sides, as encode_mp4 crops them
    with pytest.raises(ValueError, match="YUV 4:2:0"):
        YuvVideo(np.zeros((2, 10), np.uint8), 4, 4)


def test_the_visible_mark_moves_between_corners_and_only_touches_its_box() -> None:
    from pipeline.provenance.watermarks import VisibleMarkStyle, burn_visible_mark

    video = YuvVideo.from_rgb(np.full((4, 256, 320, 3), 40, np.uint8))
    luma, chroma = video.y.copy(), np.concatenate([video.u, video.v], axis=1)
    burn_visible_mark(video, VisibleMarkStyle(seconds_per_corner=1.0), fps=1)
    for index, (rows, cols) in enumerate([(slice(0, 40), slice(0, 160)), (slice(0, 40), slice(160, 320)),
                                          (slice(216, 256), slice(160, 320)), (slice(216, 256), slice(0, 160))]):
        changed = video.y[index] != luma[index]
        assert changed[rows, cols].sum() > 50 and changed.sum() == changed[rows, cols].sum()
        assert video.y[index].max() > 150  # white text at 60% opacity over dark grey
    # white and black text over grey: no colour comes into the frame
    assert np.abs(np.concatenate([video.u, video.v], axis=1).astype(int) - chroma).max() <= 1


def generated_with_marks(assets: LocalAssetStore, request_id: str, *, marked: bool = True,
                         strength: int | None = None) -> PipelineItem:
    """A video as the generate stage stores it when provenance's marks are drawn before its one encode
    (`strength`: under a provenance policy whose invisible strength has changed since)."""
    plan = mark_plan(stage_policy())
    if strength is not None:
        plan = dataclasses.replace(plan, invisible=InvisibleMarkStyle(strength=strength))
    coarse = np.random.default_rng(2).integers(0, 255, (9, 8, 8, 3), dtype=np.uint8)
    frames = np.stack([np.asarray(Image.fromarray(f).resize((256, 256), Image.BICUBIC)) for f in coarse])
    planes = yuv_from_rgb(frames)
    marks = plan.apply(planes, 8, request_id) if marked else {"policy_id": plan.policy_id,
                                                               "policy_version": plan.policy_version,
                                                               "watermark_id": plan.payload_for(request_id).hex()}
    base = item(assets, encode_yuv(planes, 8), request_id)
    decisions = [d.model_copy(update={"details": {**d.details, "marks": marks}}) if d.stage == "generate" else d
                 for d in base.decisions]
    return base.model_copy(update={"decisions": decisions})


def test_a_video_marked_at_generation_is_signed_as_it_is(credentials, assets) -> None:
    """Encoded once: the published pixels are the pixels the post-generation checks saw, and provenance neither
    decodes nor encodes again (bench/RESULTS.md: about a core-second less per 5-second video)."""
    source = generated_with_marks(assets, "req-3")
    verdict = stage(credentials, assets).decide(source)
    assert verdict.outcome is Outcome.APPROVED, verdict.reasons
    signed = assets.get(verdict.assets["video"])
    before, after = decode_yuv(assets.get(source.assets["video"]))[0], decode_yuv(signed)[0]
    assert np.array_equal(before.planes, after.planes)
    assert verdict.details["marks"]["marked_by"] == "generate"
    assert verdict.details["marks"]["watermark_id"] == watermark_id_for("req-3", 32).hex()
    report = read_credentials(signed, credentials.trust_anchor.read_bytes())
    assert report.state == "Trusted"
    assert report.assertion(SOFT_BINDING_LABEL)["blocks"][0]["value"] == watermark_id_for("req-3", 32).hex()
    unmarked = stage(credentials, assets).decide(item(assets, smooth_video(), "req-4"))
    assert unmarked.outcome is Outcome.APPROVED and unmarked.details["marks"]["marked_by"] == "provenance"


def test_marks_made_under_an_older_policy_are_read_back_as_they_were_made(credentials, assets) -> None:
    verdict = stage(credentials, assets).decide(generated_with_marks(assets, "req-6", strength=48))
    assert verdict.outcome is Outcome.APPROVED, verdict.reasons
    assert verdict.details["marks"]["invisible"]["strength"] == 48


def test_a_generation_record_of_marks_the_video_does_not_carry_is_rejected(credentials, assets) -> None:
    """The record is not taken on trust: the watermark must read back from the signed file."""
    verdict = stage(credentials, assets).decide(generated_with_marks(assets, "req-5", marked=False))
    assert verdict.outcome is Outcome.REJECTED and verdict.reasons[0].code == "watermark_unreadable"

"""Watermarks on video frames: a visible mark people can see, an invisible one machines can read.

    frames --burn_visible_mark--> frames with "AI-generated · trustreel" (corner, or moving round the corners)
    frames --embed_payload------> frames carrying a short payload (invisible-watermark, DWT-DCT-SVD, chroma)
    frames --read_payload-------> payload by bitwise majority over frames (survives re-encoding)

The invisible payload is a watermark id that the audit database maps back to the request and its
manifest, so a copy stripped of its C2PA manifest can still be traced (`trustreel verify`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

INVISIBLE_METHOD = "dwtDctSvd"
MIN_INVISIBLE_PIXELS = 256 * 256
"""invisible-watermark refuses frames smaller than this."""


@dataclass(frozen=True)
class VisibleMarkStyle:
    text: str = "AI-generated"
    position: str = "moving"  # top-left | top-right | bottom-left | bottom-right | moving
    height_fraction: float = 0.06
    opacity: float = 0.6
    seconds_per_corner: float = 1.0


@dataclass(frozen=True)
class InvisibleMarkStyle:
    strength: int = 72
    block: int = 4
    payload_bits: int = 32


CORNERS = ("top-left", "top-right", "bottom-right", "bottom-left")


def burn_visible_mark(frames: np.ndarray, style: VisibleMarkStyle, fps: int) -> np.ndarray:
    """Draw the text on every frame; 'moving' hops corner to corner so cropping one corner does not remove it."""
    from PIL import Image, ImageDraw, ImageFont

    height, width = frames.shape[1:3]
    font_size = max(8, int(round(height * style.height_fraction)))
    font = ImageFont.load_default(size=font_size)
    margin = max(2, font_size // 3)
    alpha = int(round(255 * style.opacity))
    marked = np.empty_like(frames)
    for index, rgb in enumerate(frames):
        corner = style.position
        if corner == "moving":
            corner = CORNERS[int(index / max(1, fps * style.seconds_per_corner)) % len(CORNERS)]
        base = Image.fromarray(rgb).convert("RGBA")
        overlay = Image.new("RGBA", base.size, (0, 0, 0, 0))
        draw = ImageDraw.Draw(overlay)
        left, top, right, bottom = draw.textbbox((0, 0), style.text, font=font)
        text_width, text_height = right - left, bottom - top
        x = margin if corner.endswith("left") else width - text_width - margin
        y = margin if corner.startswith("top") else height - text_height - margin
        draw.text((x - left + 1, y - top + 1), style.text, font=font, fill=(0, 0, 0, alpha))  # shadow
        draw.text((x - left, y - top), style.text, font=font, fill=(255, 255, 255, alpha))
        marked[index] = np.asarray(Image.alpha_composite(base, overlay).convert("RGB"))
    return marked


def _check_size(frames: np.ndarray) -> None:
    if frames.shape[1] * frames.shape[2] < MIN_INVISIBLE_PIXELS:
        raise ValueError(f"frames of {frames.shape[2]}x{frames.shape[1]} are too small for the invisible "
                         f"watermark (at least {MIN_INVISIBLE_PIXELS} pixels, e.g. 256x256)")


def payload_bits_of(payload: bytes, bits: int) -> list[int]:
    all_bits = np.unpackbits(np.frombuffer(payload, dtype=np.uint8)).tolist()
    if len(all_bits) != bits:
        raise ValueError(f"the payload has {len(all_bits)} bits; the policy says {bits}")
    return all_bits


def embed_payload(frames: np.ndarray, payload: bytes, style: InvisibleMarkStyle) -> np.ndarray:
    from imwatermark import WatermarkEncoder

    _check_size(frames)
    encoder = WatermarkEncoder()
    encoder.set_watermark("bits", payload_bits_of(payload, style.payload_bits))
    scales = [0, style.strength, style.strength]  # chroma only: the mark stays out of brightness detail
    marked = np.empty_like(frames)
    for index, rgb in enumerate(frames):
        bgr = np.ascontiguousarray(rgb[:, :, ::-1])
        marked[index] = encoder.encode(bgr, INVISIBLE_METHOD, scales=scales, block=style.block)[:, :, ::-1]
    return marked


@dataclass(frozen=True)
class PayloadReading:
    payload: bytes | None
    agreement: float  # mean share of frames agreeing with the majority bit: 0.5 is chance, unmarked video ~0.65
    frames: int


def read_payload(frames: list[np.ndarray] | np.ndarray, style: InvisibleMarkStyle,
                 min_agreement: float = 0.85) -> PayloadReading:
    """Majority vote per bit over the frames; None when the vote is too close to chance to trust."""
    from imwatermark import WatermarkDecoder

    frames = list(frames)
    if not frames or frames[0].shape[0] * frames[0].shape[1] < MIN_INVISIBLE_PIXELS:
        return PayloadReading(None, 0.0, len(frames))
    decoder = WatermarkDecoder("bits", style.payload_bits)
    scales = [0, style.strength, style.strength]
    votes = np.array([decoder.decode(np.ascontiguousarray(rgb[:, :, ::-1]), INVISIBLE_METHOD, scales=scales,
                                     block=style.block) for rgb in frames], dtype=float)
    share = votes.mean(axis=0)
    agreement = float(np.mean(np.maximum(share, 1 - share)))
    if agreement < min_agreement:
        return PayloadReading(None, agreement, len(frames))
    bits = (share > 0.5).astype(np.uint8)
    return PayloadReading(np.packbits(bits).tobytes(), agreement, len(frames))

"""Watermarks on video frames: a visible mark people can see, an invisible one machines can read.

    YuvVideo --burn_visible_mark--> frames with "AI-generated" (corner, or moving round the corners)
    YuvVideo --embed_payload------> frames carrying a short payload (invisible-watermark's DWT-DCT-SVD on
                                    chroma, computed over all frames at once)
    RGB frames --read_payload-----> payload by bitwise majority over frames (survives re-encoding)

Both marks are drawn on the 4:2:0 YUV planes the encoder takes (pipeline.media.video_files.YuvVideo): the
provenance stage decodes and re-encodes a video, and RGB in between cost two colour conversions a frame
and most of the marking time (bench/RESULTS.md).

The invisible mark is invisible-watermark's `dwtDctSvd` (its decoder reads our frames as a player shows
them, a test checks), computed as array operations over every frame at once instead of one 4x4 block at a
time. Per frame, as the library reads it: U chroma of the RGB frame (OpenCV's YUV), one-level Haar DWT,
LL band in 4x4 blocks, each block's largest singular value s quantised to
(floor(s / strength) + 1/4 + bit/2) * strength. The block DCT of the original is orthonormal, so it
leaves singular values and the rank-one change unchanged and is skipped. The Haar LL of a 2x2 cell is its
U sum / 2, and a player gives the 4 pixels of a cell the cell's one chroma sample Cb, whose OpenCV U is
128 + U_PER_CB * (Cb - 128): so LL = 256 + 2 * U_PER_CB * (Cb - 128), and the mark is a change of the U
plane alone (luma and V, so brightness and red, stay as they are).

The invisible payload is a watermark id that the audit database maps back to the request and its
manifest, so a copy stripped of its C2PA manifest can still be traced (`trustreel verify`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.media.video_files import YuvVideo

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


def burn_visible_mark(video: YuvVideo, style: VisibleMarkStyle, fps: int) -> None:
    """Draw the text on every frame, in place; 'moving' hops corner to corner so cropping one corner does not
    remove it. The text is drawn once per corner (PIL, RGBA), turned into luma and chroma patches, and
    blended into that corner's frames together (array operations)."""
    corners = [_corner_at(index, style, fps) for index in range(len(video))]
    luma, chroma = video.y, (video.u, video.v)
    for corner in dict.fromkeys(corners):
        colour, alpha, (left, top) = _text_patch((video.height, video.width), style, corner)
        colour, alpha, left, top = _even_box(colour, alpha, left, top)
        which = [index for index, at in enumerate(corners) if at == corner]
        ycc = colour.astype(np.float32) @ YCC_FROM_RGB.T + YCC_OFFSET  # the text's own Y, Cb, Cr
        rows, cols = slice(top, top + alpha.shape[0]), slice(left, left + alpha.shape[1])
        _blend(luma, which, rows, cols, ycc[..., 0] * alpha[..., 0], alpha[..., 0].astype(np.float32))
        cells = (alpha.shape[0] // 2, 2, alpha.shape[1] // 2, 2)
        cell_alpha = alpha[..., 0].reshape(cells).mean(axis=(1, 3))
        rows, cols = slice(top // 2, rows.stop // 2), slice(left // 2, cols.stop // 2)
        for plane, channel in zip(chroma, (1, 2)):  # a 2x2 cell's sample: the mean of its four blended pixels
            weighted = (ycc[..., channel] * alpha[..., 0]).reshape(cells).mean(axis=(1, 3))
            _blend(plane, which, rows, cols, weighted, cell_alpha)


YCC_FROM_RGB = np.array([[65.481, 128.553, 24.966], [-37.797, -74.203, 112.0], [112.0, -93.786, -18.214]],
                        dtype=np.float32) / 255
YCC_OFFSET = np.array([16, 128, 128], dtype=np.float32)
"""BT.601 limited range, as libswscale turns RGB into the yuv420p that H.264 stores."""


def _even_box(colour: np.ndarray, alpha: np.ndarray, left: int, top: int
              ) -> tuple[np.ndarray, np.ndarray, int, int]:
    """The patch grown by transparent pixels to even corners, so it covers whole 2x2 chroma cells."""
    pad_top, pad_left = top % 2, left % 2
    pad_bottom, pad_right = (pad_top + alpha.shape[0]) % 2, (pad_left + alpha.shape[1]) % 2
    pads = ((pad_top, pad_bottom), (pad_left, pad_right), (0, 0))
    return np.pad(colour, pads), np.pad(alpha, pads), left - pad_left, top - pad_top


def _blend(plane: np.ndarray, which: list[int], rows: slice, cols: slice, weighted: np.ndarray,
           alpha: np.ndarray) -> None:
    """plane = (text * alpha + plane * (255 - alpha)) / 255 over the box, `weighted` being text * alpha."""
    under = plane[which, rows, cols].astype(np.float32)
    plane[which, rows, cols] = np.clip(np.rint((weighted + under * (255 - alpha)) / 255), 0, 255).astype(np.uint8)


def _corner_at(index: int, style: VisibleMarkStyle, fps: int) -> str:
    if style.position != "moving":
        return style.position
    return CORNERS[int(index / max(1, fps * style.seconds_per_corner)) % len(CORNERS)]


def _text_patch(size: tuple[int, int], style: VisibleMarkStyle, corner: str) -> tuple[np.ndarray, np.ndarray,
                                                                                        tuple[int, int]]:
    """The text with its shadow for one corner: colours [h, w, 3] and alpha [h, w, 1] (uint16, 0-255) over
    the box it covers, and the box's top-left corner in the frame."""
    from PIL import Image, ImageDraw, ImageFont

    height, width = size
    font_size = max(8, int(round(height * style.height_fraction)))
    font = ImageFont.load_default(size=font_size)
    margin = max(2, font_size // 3)
    alpha = int(round(255 * style.opacity))
    overlay = Image.new("RGBA", (width, height), (0, 0, 0, 0))
    draw = ImageDraw.Draw(overlay)
    left, top, right, bottom = draw.textbbox((0, 0), style.text, font=font)
    text_width, text_height = right - left, bottom - top
    x = margin if corner.endswith("left") else width - text_width - margin
    y = margin if corner.startswith("top") else height - text_height - margin
    draw.text((x - left + 1, y - top + 1), style.text, font=font, fill=(0, 0, 0, alpha))  # shadow
    draw.text((x - left, y - top), style.text, font=font, fill=(255, 255, 255, alpha))
    box = overlay.getbbox() or (0, 0, 1, 1)
    patch = np.asarray(overlay.crop(box), dtype=np.uint16)
    return patch[..., :3], patch[..., 3:], (box[0], box[1])


def _check_size(height: int, width: int) -> None:
    if height * width < MIN_INVISIBLE_PIXELS:
        raise ValueError(f"frames of {width}x{height} are too small for the invisible "
                         f"watermark (at least {MIN_INVISIBLE_PIXELS} pixels, e.g. 256x256)")


def payload_bits_of(payload: bytes, bits: int) -> list[int]:
    all_bits = np.unpackbits(np.frombuffer(payload, dtype=np.uint8)).tolist()
    if len(all_bits) != bits:
        raise ValueError(f"the payload has {len(all_bits)} bits; the policy says {bits}")
    return all_bits


def embed_payload(video: YuvVideo, payload: bytes, style: InvisibleMarkStyle) -> None:
    """Mark the frames with `payload`, in place (on their U plane)."""
    _check_size(video.height, video.width)
    bits = np.array(payload_bits_of(payload, style.payload_bits), dtype=np.float32)
    chroma = video.u[:, :video.height // 4 * 2, :video.width // 4 * 2]  # the 4x4-pixel grid: 2x2 samples
    for start in range(0, len(chroma), FRAMES_AT_ONCE):  # bounded memory for long videos
        run = chroma[start:start + FRAMES_AT_ONCE]
        ll = (run.astype(np.float32) - np.float32(128)) * np.float32(2 * U_PER_CB) + np.float32(256)
        step = np.rint(_payload_change(ll, bits, style) * np.float32(1 / (2 * U_PER_CB))).astype(np.int16)
        step += run
        run[...] = np.clip(step, 0, 255, out=step)


FRAMES_AT_ONCE = 32

U_PER_CB = 0.492 * 1.772 * 255 / 224
"""OpenCV's U of a pixel per unit of its limited-range Cb sample: U = 0.492 (B - Y) and, decoding BT.601,
B - Y = 1.772 * 255 / 224 * (Cb - 128)."""


def _payload_change(ll: np.ndarray, bits: np.ndarray, style: InvisibleMarkStyle) -> np.ndarray:
    """The change of the LL band ([T, H, W]) that quantises every block's largest singular value to its bit
    (the remainder at the edges, outside whole blocks, is left alone)."""
    block, scale = style.block, float(style.strength)
    entries, grid = _block_entries(ll, block)
    value, left, right = _top_singular(entries)
    wanted = bits[np.arange(grid[0] * grid[1]) % len(bits)].reshape(1, *grid)
    change = (np.floor(value / scale) + 0.25 + 0.5 * wanted) * scale - value
    ll_change = np.zeros_like(ll)
    for row in range(block):  # the rank-one change of every block, one block entry at a time
        scaled = change * left[row]
        for col in range(block):
            ll_change[:, row:grid[0] * block:block, col:grid[1] * block:block] = scaled * right[col]
    return ll_change


U_FROM_RGB = (-0.147108, -0.288804, 0.435912)
"""OpenCV's U = 0.492 (B - Y) + 128 with Y = 0.299 R + 0.587 G + 0.114 B, as weights of R, G, B."""


def _chroma_ll(rgb: np.ndarray) -> np.ndarray:
    """The Haar LL band of U chroma ([T, H/2, W/2]: each 2x2 cell's U sum / 2), from the cells' RGB sums
    (U is linear in RGB), so the float work is on a quarter of the pixels. Rows are summed in pairs first,
    over whole contiguous rows, then neighbouring pixels: fewer strided passes than four corner views."""
    count, height, width = rgb.shape[:3]
    row_pairs = rgb.reshape(count, height // 2, 2, width * 3)
    rows = row_pairs[:, :, 0].astype(np.uint16)
    rows += row_pairs[:, :, 1]
    cells = rows.reshape(count, height // 2, width // 2, 2, 3)
    return (cells[:, :, :, 0] + cells[:, :, :, 1]).astype(np.float32) @ U_HALF_WEIGHTS + np.float32(256.0)


U_HALF_WEIGHTS = np.array(U_FROM_RGB, dtype=np.float32) / 2


def _block_entries(ll: np.ndarray, block: int) -> tuple[list[list[np.ndarray]], tuple[int, int]]:
    """[T, H, W] cut into block x block blocks, held entry by entry: entries[row][col] is that entry of
    every block ([T, rows, cols], contiguous; the remainder at the edges is left alone). Tiny 4x4
    matrices cost numpy's batched matmul a loop per block; one array per entry turns the same algebra into
    a few dozen whole-array operations (embedding 121 frames 1.8 -> 1.0 s; bench/RESULTS.md)."""
    grid = (ll.shape[1] // block, ll.shape[2] // block)
    cut = ll[:, :grid[0] * block, :grid[1] * block]
    return [[np.ascontiguousarray(cut[:, row::block, col::block]) for col in range(block)]
            for row in range(block)], grid


def _top_singular(entries: list[list[np.ndarray]], iterations: int = 6
                  ) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray]]:
    """Largest singular value with its left and right vectors (as lists of per-entry arrays) of every
    block, by power iteration on B^T B from the constant vector: chroma blocks are nearly constant, so a few
    steps reach float precision."""
    size = len(entries)
    gram: dict[tuple[int, int], np.ndarray] = {}
    for i in range(size):
        for j in range(i, size):
            gram[i, j] = gram[j, i] = sum(entries[k][i] * entries[k][j] for k in range(size))
    right = [np.full(entries[0][0].shape, 1 / np.sqrt(size), dtype=np.float32)] * size
    for _ in range(iterations):
        right = [sum(gram[i, j] * right[j] for j in range(size)) for i in range(size)]
        norm = np.sqrt(sum(part * part for part in right)) + np.float32(1e-20)
        right = [part / norm for part in right]
    image = [sum(entries[k][i] * right[i] for i in range(size)) for k in range(size)]
    value = np.sqrt(sum(part * part for part in image))
    inverse = 1 / (value + np.float32(1e-20))
    return value, [part * inverse for part in image], right


def _frame_bits(frames: np.ndarray, style: InvisibleMarkStyle) -> np.ndarray:
    """The bits each frame carries ([T, payload_bits] of 0/1), as invisible-watermark's decoder reads them."""
    rows, cols = frames.shape[1] // 4 * 4, frames.shape[2] // 4 * 4
    entries, _ = _block_entries(_chroma_ll(frames[:, :rows, :cols]), style.block)
    value = _top_singular(entries)[0].reshape(len(frames), -1)
    scores = (np.mod(value, float(style.strength)) > style.strength * 0.5).astype(np.float32)
    which = np.arange(value.shape[1]) % style.payload_bits
    sums = np.stack([scores[:, which == bit].mean(axis=1) for bit in range(style.payload_bits)], axis=1)
    return (sums * 255 > 127).astype(np.float32)


@dataclass(frozen=True)
class PayloadReading:
    payload: bytes | None
    agreement: float  # mean share of frames agreeing with the majority bit: 0.5 is chance, unmarked video ~0.65
    frames: int


def read_payload(frames: list[np.ndarray] | np.ndarray, style: InvisibleMarkStyle,
                 min_agreement: float = 0.85) -> PayloadReading:
    """Majority vote per bit over the frames; None when the vote is too close to chance to trust."""
    frames = list(frames)
    if not frames or frames[0].shape[0] * frames[0].shape[1] < MIN_INVISIBLE_PIXELS:
        return PayloadReading(None, 0.0, len(frames))
    votes = np.concatenate([_frame_bits(np.stack(frames[start:start + FRAMES_AT_ONCE]), style)
                            for start in range(0, len(frames), FRAMES_AT_ONCE)])
    share = votes.mean(axis=0)
    agreement = float(np.mean(np.maximum(share, 1 - share)))
    if agreement < min_agreement:
        return PayloadReading(None, agreement, len(frames))
    bits = (share > 0.5).astype(np.uint8)
    return PayloadReading(np.packbits(bits).tobytes(), agreement, len(frames))

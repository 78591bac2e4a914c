"""Read media for the checks: images as RGB arrays, videos as sampled RGB frames, sound as mono samples (PyAV)."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageOps


class UnreadableMedia(Exception):
    pass


def decode_image(data: bytes, max_side: int = 2048) -> np.ndarray:
    """RGB uint8 array from image bytes, EXIF orientation applied, very large images scaled down."""
    with Image.open(io.BytesIO(data)) as image:
        image = ImageOps.exif_transpose(image).convert("RGB")
        if max(image.size) > max_side:
            image.thumbnail((max_side, max_side))
        return np.asarray(image, dtype=np.uint8)


def frames_of(data: bytes, media_type: str, every: int, max_frames: int) -> list[tuple[int, np.ndarray]]:
    """(frame index, RGB array) pairs: the image itself, or every `every`-th video frame up to `max_frames`."""
    try:
        if media_type.startswith("image/"):
            return [(0, decode_image(data))]
        if media_type.startswith("video/"):
            return _video_frames(data, every, max_frames)
    except UnreadableMedia:
        raise
    except Exception as exc:  # decoders raise many types for corrupt input
        raise UnreadableMedia(f"cannot decode {media_type}: {type(exc).__name__}: {exc}") from exc
    raise UnreadableMedia(f"media type {media_type} is neither an image nor a video")


def _video_frames(data: bytes, every: int, max_frames: int) -> list[tuple[int, np.ndarray]]:
    import av

    sampled = []
    with av.open(io.BytesIO(data)) as container:
        if not container.streams.video:
            raise UnreadableMedia("the file has no video stream")
        for index, frame in enumerate(container.decode(video=0)):
            if index % every == 0:
                sampled.append((index, frame.to_ndarray(format="rgb24")))
                if len(sampled) >= max_frames:
                    break
    if not sampled:
        raise UnreadableMedia("the video has no frames")
    return sampled


def audio_of(data: bytes, max_seconds: float) -> tuple[np.ndarray, int] | None:
    """The first audio stream as mono float32 samples in [-1, 1] and their rate, up to `max_seconds`.

    Any container PyAV reads (WAV, MP3, an MP4's AAC track). None when the file has no audio stream;
    UnreadableMedia when it cannot be decoded or holds no samples.
    """
    import av

    try:
        with av.open(io.BytesIO(data)) as container:
            if not container.streams.audio:
                return None
            stream = container.streams.audio[0]
            rate = stream.rate
            limit = int(max_seconds * rate)
            resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
            chunks, total = [], 0
            for frame in container.decode(stream):
                for mono in resampler.resample(frame):
                    chunk = mono.to_ndarray().reshape(-1)
                    chunks.append(chunk)
                    total += len(chunk)
                if total >= limit:
                    break
    except Exception as exc:  # decoders raise many types for corrupt input
        raise UnreadableMedia(f"cannot decode audio: {type(exc).__name__}: {exc}") from exc
    if total == 0:
        raise UnreadableMedia("the audio stream has no samples")
    return np.concatenate(chunks)[:limit].astype(np.float32), rate


def resample(samples: np.ndarray, rate: int, target: int) -> np.ndarray:
    """Linear resampling: enough for speaker embeddings and speech recognisers fed from generated sound."""
    if rate == target or len(samples) == 0:
        return samples.astype(np.float32)
    duration = len(samples) / rate
    positions = np.arange(int(round(duration * target))) / target
    return np.interp(positions, np.arange(len(samples)) / rate, samples).astype(np.float32)

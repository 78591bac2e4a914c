"""MP4 in and out (PyAV): what the generator writes and what later stages and tests read back.

    frames uint8 [T, H, W, 3] (+ optional AudioTrack) --encode_mp4--> H.264 (+ AAC) MP4 bytes
    MP4 bytes --probe_mp4--> VideoInfo(frames, width, height, fps, audio)
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from fractions import Fraction

import numpy as np


@dataclass(frozen=True)
class AudioTrack:
    """Float samples in [-1, 1], shape [channels, samples]."""

    samples: np.ndarray
    sample_rate: int

    @property
    def seconds(self) -> float:
        return self.samples.shape[-1] / self.sample_rate


@dataclass(frozen=True)
class VideoEncoding:
    """libx264 settings. `veryfast` takes half the CPU of x264's default `medium` for a slightly larger file;
    threads 0 lets x264 use every core. Output is deterministic for equal input and settings on one machine
    (x264 output depends on its thread count)."""

    preset: str = "veryfast"
    crf: int = 23
    threads: int = 0


@dataclass(frozen=True)
class VideoInfo:
    frames: int
    width: int
    height: int
    fps: float
    has_audio: bool
    audio_seconds: float


def encode_mp4(frames: np.ndarray, fps: int, audio: AudioTrack | None = None,
               encoding: VideoEncoding = VideoEncoding()) -> bytes:
    """H.264 (yuv420p, so sides are cropped to even) with AAC audio when given; deterministic for equal input."""
    import av

    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 [T, H, W, 3], got {frames.dtype} {frames.shape}")
    frames = frames[:, : frames.shape[1] // 2 * 2, : frames.shape[2] // 2 * 2]
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="mp4", options={"fflags": "+bitexact"}) as container:
        video = container.add_stream("libx264", rate=fps, options={
            "threads": str(encoding.threads), "preset": encoding.preset, "crf": str(encoding.crf)})
        video.height, video.width = frames.shape[1:3]
        video.pix_fmt = "yuv420p"
        audio_stream = None
        if audio is not None:
            audio_stream = container.add_stream("aac", rate=audio.sample_rate)
            audio_stream.layout = "stereo" if audio.samples.shape[0] >= 2 else "mono"
        for rgb in frames:
            for packet in video.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                container.mux(packet)
        for packet in video.encode():
            container.mux(packet)
        if audio_stream is not None:
            _mux_audio(container, audio_stream, audio)
    return buffer.getvalue()


def _mux_audio(container, stream, audio: AudioTrack) -> None:
    import av

    channels = 2 if audio.samples.shape[0] >= 2 else 1
    samples = np.clip(audio.samples[:channels], -1.0, 1.0).astype(np.float32)
    chunk = 1024
    for start in range(0, samples.shape[1], chunk):
        piece = np.ascontiguousarray(samples[:, start:start + chunk])
        frame = av.AudioFrame.from_ndarray(piece, format="fltp", layout="stereo" if channels == 2 else "mono")
        frame.sample_rate = audio.sample_rate
        frame.pts = start
        frame.time_base = Fraction(1, audio.sample_rate)
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)


def probe_mp4(data: bytes) -> VideoInfo:
    """Decode the whole file (a cheap way to be sure it plays) and report what it holds."""
    import av

    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        count = 0
        width = height = 0
        for frame in container.decode(video=0):
            count += 1
            width, height = frame.width, frame.height
        fps = float(stream.average_rate or stream.base_rate or 0)
    audio_seconds = 0.0
    with av.open(io.BytesIO(data)) as container:
        has_audio = bool(container.streams.audio)
        if has_audio:
            rate = container.streams.audio[0].rate
            audio_seconds = sum(frame.samples for frame in container.decode(audio=0)) / rate
    return VideoInfo(frames=count, width=width, height=height, fps=fps, has_audio=has_audio,
                     audio_seconds=audio_seconds)


def decode_mp4(data: bytes) -> tuple[np.ndarray, int, AudioTrack | None]:
    """All frames (uint8 [T, H, W, 3]), the frame rate, and the audio track if there is one."""
    import av

    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        fps = int(round(float(stream.average_rate or stream.base_rate or 24)))
        frames = np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)])
    audio = None
    with av.open(io.BytesIO(data)) as container:
        if container.streams.audio:
            rate = container.streams.audio[0].rate
            chunks = [frame.to_ndarray().astype(np.float32) for frame in container.decode(audio=0)]
            if chunks:  # AAC decodes to planar float: [channels, samples] per frame
                audio = AudioTrack(samples=np.concatenate(chunks, axis=1), sample_rate=rate)
    return frames, fps, audio

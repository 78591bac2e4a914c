"""MP4 in and out (PyAV): what the generator writes and what later stages and tests read back.

    frames uint8 [T, H, W, 3] (+ optional AudioTrack) --encode_mp4--> H.264 (+ AAC) MP4 bytes
    YuvVideo (the encoder's own 4:2:0 planes) ----------encode_yuv--> H.264 (+ AAC) MP4 bytes
    frames uint8 [T, H, W, 3] --yuv_from_rgb--> YuvVideo (to draw on before encoding)
    MP4 bytes --probe_mp4--> VideoInfo(frames, width, height, fps, audio)
    MP4 bytes --decode_mp4 / decode_yuv--> RGB frames / YuvVideo, fps, audio

A stage that decodes a video only to re-encode it (provenance) works on YuvVideo: H.264 stores 4:2:0 YUV,
so converting to RGB and back costs two colour conversions per frame and touches four times the chroma.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from fractions import Fraction
from typing import Iterable

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
    (x264 output depends on its thread count). `subme` overrides the preset's sub-pixel motion refinement
    (None: the preset's own; veryfast's is 2)."""

    preset: str = "veryfast"
    crf: int = 23
    threads: int = 0
    subme: int | None = None

    def options(self) -> dict[str, str]:
        """PyAV's codec options for libx264."""
        options = {"threads": str(self.threads), "preset": self.preset, "crf": str(self.crf)}
        if self.subme is not None:
            options["x264-params"] = f"subme={self.subme}"
        return options


@dataclass(frozen=True)
class YuvVideo:
    """Frames as H.264 stores them: 8-bit YUV 4:2:0 (BT.601, limited range, as libswscale converts RGB),
    one row of `planes` per frame holding its Y, then U, then V plane. `y`, `u` and `v` are views: writing
    them changes the frames. Sides are even (4:2:0 has one chroma sample per 2x2 pixels)."""

    planes: np.ndarray  # uint8 [T, H * W * 3 // 2]
    height: int
    width: int

    def __post_init__(self) -> None:
        if self.height % 2 or self.width % 2 or self.planes.dtype != np.uint8 or self.planes.ndim != 2 \
                or self.planes.shape[1] != self.height * self.width * 3 // 2 or not self.planes.flags.c_contiguous:
            raise ValueError(f"not {self.width}x{self.height} YUV 4:2:0 planes: {self.planes.dtype} "
                             f"{self.planes.shape}")

    @property
    def y(self) -> np.ndarray:
        return self.planes[:, :self.height * self.width].reshape(-1, self.height, self.width)

    @property
    def u(self) -> np.ndarray:
        return self._chroma(0)

    @property
    def v(self) -> np.ndarray:
        return self._chroma(1)

    def _chroma(self, which: int) -> np.ndarray:
        size = self.height * self.width // 4
        start = self.height * self.width + which * size
        return self.planes[:, start:start + size].reshape(-1, self.height // 2, self.width // 2)

    def __len__(self) -> int:
        return len(self.planes)

    @classmethod
    def from_rgb(cls, frames: np.ndarray) -> "YuvVideo":
        """RGB uint8 [T, H, W, 3] converted as encode_mp4 converts it (sides cropped to even)."""
        import av

        frames = _even_sides(frames)
        planes = [av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format="yuv420p").to_ndarray()
                  for rgb in frames]
        return cls(np.stack(planes).reshape(len(planes), -1), frames.shape[1], frames.shape[2])

    def to_rgb(self) -> np.ndarray:
        """RGB uint8 [T, H, W, 3] as a player shows these frames."""
        return np.stack([_av_frame(frame, self).to_ndarray(format="rgb24") for frame in self.planes])


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
    frames = _even_sides(frames)
    return _write_mp4((av.VideoFrame.from_ndarray(rgb, format="rgb24") for rgb in frames), frames.shape[1],
                      frames.shape[2], fps, audio, encoding)


def encode_yuv(video: YuvVideo, fps: int, audio: AudioTrack | None = None,
               encoding: VideoEncoding = VideoEncoding()) -> bytes:
    """encode_mp4 for frames already in the encoder's format: no colour conversion on the way in."""
    return _write_mp4((_av_frame(frame, video) for frame in video.planes), video.height, video.width, fps, audio,
                      encoding)


def yuv_from_rgb(frames: np.ndarray) -> YuvVideo:
    """The 4:2:0 planes encode_mp4 would hand x264 for these RGB frames (the same libswscale conversion), for a
    stage that draws on them before encoding (sides cropped to even)."""
    import av

    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 [T, H, W, 3], got {frames.dtype} {frames.shape}")
    frames = _even_sides(frames)
    height, width = frames.shape[1:3]
    planes = np.empty((len(frames), height * width * 3 // 2), dtype=np.uint8)
    converter = av.video.reformatter.VideoReformatter()  # one scaler context for all frames: set up once
    for index, rgb in enumerate(frames):
        converted = converter.reformat(av.VideoFrame.from_ndarray(rgb, format="rgb24"), format="yuv420p", threads=1)
        planes[index] = converted.to_ndarray().reshape(-1)
    return YuvVideo(planes, height, width)


def _even_sides(frames: np.ndarray) -> np.ndarray:
    return frames[:, : frames.shape[1] // 2 * 2, : frames.shape[2] // 2 * 2]


def _av_frame(planes: np.ndarray, video: YuvVideo):
    import av

    return av.VideoFrame.from_ndarray(planes.reshape(video.height * 3 // 2, video.width), format="yuv420p")


def _write_mp4(frames: Iterable, height: int, width: int, fps: int, audio: AudioTrack | None,
               encoding: VideoEncoding) -> bytes:
    import av

    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="mp4", options={"fflags": "+bitexact"}) as container:
        video = container.add_stream("libx264", rate=fps, options=encoding.options())
        video.height, video.width = height, width
        video.pix_fmt = "yuv420p"
        audio_stream = None
        if audio is not None:
            audio_stream = container.add_stream("aac", rate=audio.sample_rate)
            audio_stream.layout = "stereo" if audio.samples.shape[0] >= 2 else "mono"
        for frame in frames:
            for packet in video.encode(frame):
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
    return frames, fps, _audio_track(data)


def decode_yuv(data: bytes) -> tuple[YuvVideo, int, AudioTrack | None]:
    """decode_mp4 without the conversion to RGB: the stored 4:2:0 planes as they are (other pixel formats are
    converted; odd sides are cropped to even as encode_mp4 crops them)."""
    import av

    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        fps = int(round(float(stream.average_rate or stream.base_rate or 24)))
        planes, height, width = [], 0, 0
        for frame in container.decode(video=0):
            if frame.width % 2 or frame.height % 2:
                rgb = _even_sides(frame.to_ndarray(format="rgb24")[None])[0]
                frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            height, width = frame.height, frame.width
            planes.append(frame.to_ndarray(format="yuv420p").reshape(-1))
    if not planes:
        raise ValueError("the video has no frames")
    return YuvVideo(np.stack(planes), height, width), fps, _audio_track(data)


def _audio_track(data: bytes) -> AudioTrack | None:
    import av

    with av.open(io.BytesIO(data)) as container:
        if not container.streams.audio:
            return None
        rate = container.streams.audio[0].rate
        chunks = [frame.to_ndarray().astype(np.float32) for frame in container.decode(audio=0)]
    if not chunks:
        return None
    return AudioTrack(samples=np.concatenate(chunks, axis=1), sample_rate=rate)  # AAC: planar float per frame

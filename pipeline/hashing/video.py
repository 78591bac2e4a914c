"""What a piece of media is, as hashes: the vPDQ recipe on frames PyAV already decodes.

    image  -> one hash (queries add its dihedral variants: a mirrored or rotated re-upload still matches)
    video  -> every Nth frame (the policy's rate) -> hash -> drop quality < min_quality
           -> drop a frame within `dedup_distance` of the last kept one (a still shot is one hash, not 120)

vPDQ itself needs FFmpeg's development libraries to build; the frames here come from the decoder the
other checks share, so the hashes are the same PDQ hashes a vPDQ list holds per frame.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.hashing.signals import FrameHash, SignalType, hamming
from pipeline.media.frames import frames_of


@dataclass(frozen=True)
class Sampling:
    every: int = 12
    max_frames: int = 60
    min_quality: int = 50
    dedup_distance: int = 4


@dataclass(frozen=True)
class MediaHash:
    frame: int
    hash: FrameHash
    variants: tuple[FrameHash, ...] = ()  # images only: the transformed copies to query with


@dataclass(frozen=True)
class MediaHashes:
    kept: list[MediaHash]
    sampled: int
    low_quality: int
    duplicates: int

    def record(self) -> dict:
        return {"sampled": self.sampled, "hashed": len(self.kept), "low_quality": self.low_quality,
                "duplicates": self.duplicates}


def media_hashes(signal: SignalType, data: bytes, media_type: str, sampling: Sampling,
                 with_variants: bool = False) -> MediaHashes:
    """Hashes worth matching in an image or video (UnreadableMedia for anything else or broken files)."""
    frames = frames_of(data, media_type, sampling.every, sampling.max_frames)
    kept: list[MediaHash] = []
    low = duplicates = 0
    image = media_type.startswith("image/")
    for index, rgb in frames:
        if image and with_variants:
            variants = signal.variants(rgb)
            first = variants[0]
        else:
            first, variants = signal.hash(rgb), []
        if first.quality < sampling.min_quality:
            low += 1
            continue
        if kept and hamming(kept[-1].hash.value, first.value) <= sampling.dedup_distance:
            duplicates += 1
            continue
        kept.append(MediaHash(index, first, tuple(variants[1:])))
    return MediaHashes(kept, len(frames), low, duplicates)

"""Perceptual hash signal types: one interface, PDQ as the implementation that ships.

    RGB array -> SignalType.hash(rgb) -> FrameHash(256 bits as 32 bytes, quality 0-100)
              -> SignalType.variants(rgb) -> the 8 rotations and mirrors (dihedral), for queries
    hex (ThreatExchange's spelling, 64 lowercase hex digits) <-> bytes: what banks import and export

Near-duplicates are within a Hamming distance of each other; PDQ's authors suggest 31 of 256 bits, and
call hashes below quality 50 too unreliable to match on. Another signal type (a video-level hash, say)
implements the same protocol and is named in the known-media policy.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Protocol

import numpy as np

PDQ = "pdq"
_HEX = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class FrameHash:
    value: bytes  # packed bits, most significant first (ThreatExchange's hex order)
    quality: int

    @property
    def hex(self) -> str:
        return self.value.hex()


class SignalType(Protocol):
    name: str
    bits: int

    def hash(self, rgb: np.ndarray) -> FrameHash: ...

    def variants(self, rgb: np.ndarray) -> list[FrameHash]:
        """Hashes of the image and its transformed copies a re-upload might be (first: the image itself)."""
        ...

    def parse(self, text: str) -> bytes:
        """A hash as exchanged between systems -> bytes; ValueError says what is wrong with it."""
        ...


class PdqSignal:
    """Meta's PDQ (pdqhash, the reference C++ implementation behind a Python binding)."""

    name = PDQ
    bits = 256

    def hash(self, rgb: np.ndarray) -> FrameHash:
        import pdqhash

        bits, quality = pdqhash.compute(_contiguous(rgb))
        return FrameHash(np.packbits(bits.astype(np.uint8)).tobytes(), int(quality))

    def variants(self, rgb: np.ndarray) -> list[FrameHash]:
        """PDQ's 8 dihedral hashes (computed on the DCT, cheap), plus the mirror hashed from its pixels:
        the DCT shortcut misses mirrored fine textures (bench/hash_banks.py), and a mirror is the most
        common re-upload edit."""
        import pdqhash

        image = _contiguous(rgb)
        hashes, quality = pdqhash.compute_dihedral(image)
        found = [FrameHash(np.packbits(bits.astype(np.uint8)).tobytes(), int(quality)) for bits in hashes]
        return found + [self.hash(np.ascontiguousarray(image[:, ::-1]))]

    def parse(self, text: str) -> bytes:
        value = text.strip().lower()
        if not _HEX.match(value):
            raise ValueError(f"not a PDQ hash (64 hex digits): {text.strip()[:80]!r}")
        return bytes.fromhex(value)


def _contiguous(rgb: np.ndarray) -> np.ndarray:
    if rgb.ndim == 2:
        rgb = np.repeat(rgb[:, :, None], 3, axis=2)
    return np.ascontiguousarray(rgb[:, :, :3], dtype=np.uint8)


SIGNAL_TYPES: dict[str, SignalType] = {PDQ: PdqSignal()}


def signal_type(name: str) -> SignalType:
    try:
        return SIGNAL_TYPES[name]
    except KeyError:
        raise ValueError(f"unknown signal type {name!r}; known: {', '.join(sorted(SIGNAL_TYPES))}") from None


def hamming(a: bytes, b: bytes) -> int:
    return int(np.unpackbits(np.bitwise_xor(np.frombuffer(a, np.uint8), np.frombuffer(b, np.uint8))).sum())

"""Voices for tests: sine tones as 'speakers', and a scripted embedder that tells them apart.

ScriptedVoiceEmbedder is plugged in like any operator's model (TRUSTREEL_VOICE_BACKEND=
tests.voice_fixtures:scripted_voice_embedder): a clip's embedding is a bump at its dominant frequency,
so a 220 Hz tone and a 330 Hz tone are two different people, and the same tone after AAC encoding is
still the same one. It exercises the wiring (enrollment, galleries, likeness-post), not speech.
"""

from __future__ import annotations

import io
import wave
from pathlib import Path

import numpy as np

from pipeline.media.video_files import AudioTrack, encode_mp4


class ScriptedVoiceEmbedder:
    name = "scripted"
    centres = np.linspace(50.0, 2000.0, 64)

    def embed(self, samples: np.ndarray, sample_rate: int) -> np.ndarray:
        spectrum = np.abs(np.fft.rfft(samples))
        frequencies = np.fft.rfftfreq(len(samples), 1.0 / sample_rate)
        peak = frequencies[1 + int(np.argmax(spectrum[1:]))]
        vector = np.exp(-((self.centres - peak) / 40.0) ** 2).astype(np.float32)
        return vector / max(float(np.linalg.norm(vector)), 1e-12)


def scripted_voice_embedder(model_dir: Path | None) -> ScriptedVoiceEmbedder:
    """The factory TRUSTREEL_VOICE_BACKEND names (it gets the model directory, which it does not need)."""
    return ScriptedVoiceEmbedder()


def tone(frequency: float, seconds: float = 1.0, rate: int = 16000) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.5 * np.sin(2 * np.pi * frequency * t)).astype(np.float32)


def tone_wav(frequency: float, seconds: float = 1.0, rate: int = 16000) -> bytes:
    """A 16-bit mono WAV file: what a verification service would send as the owner's voice sample."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes((tone(frequency, seconds, rate) * 32767).astype("<i2").tobytes())
    return buffer.getvalue()


def video_with_tone(frequency: float | None, frames: int = 8, size: int = 64, fps: int = 8) -> bytes:
    """A small grey MP4 (no faces) whose sound is a tone, or silent when frequency is None."""
    pixels = np.full((frames, size, size, 3), 120, dtype=np.uint8)
    audio = None
    if frequency is not None:
        rate = 16000
        audio = AudioTrack(samples=tone(frequency, frames / fps, rate)[None, :], sample_rate=rate)
    return encode_mp4(pixels, fps, audio)

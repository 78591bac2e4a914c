"""Voices behind one small interface, like faces: a speaker embedding per audio clip.

    audio bytes -> mono float32 samples (media.frames.decode_audio) -> VoiceEmbedder.embed() -> vector

- TransformersVoiceEmbedder: any speaker-verification model with an x-vector head that transformers
  loads from a local directory (AutoFeatureExtractor + AutoModelForAudioXVector, e.g. a WavLM or
  UniSpeech-SAT checkpoint an operator downloaded); TRUSTREEL_VOICE_BACKEND=transformers and
  TRUSTREEL_VOICE_MODEL_DIR. Nothing is downloaded. Its name is the directory's name.
- Any other class: TRUSTREEL_VOICE_BACKEND=package.module:factory, called with the model directory
  (or None), returning a VoiceEmbedder. Tests plug a scripted embedder in this way.
- Unset: no voice model. Voice samples are not enrolled, and the likeness policy says whether
  generated audio is allowed at all (`voice.without_model`).

Voice embeddings live in the same galleries as faces, under the backend name "voice:<name>", so they
are never compared with faces or with another voice model's vectors.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Protocol

import numpy as np

from pipeline.media.frames import resample
from pipeline.settings import import_named


class VoiceEmbedder(Protocol):
    name: str

    def embed(self, samples: np.ndarray, sample_rate: int) -> np.ndarray:
        """One L2-normalised speaker embedding for a mono float32 clip in [-1, 1]."""
        ...


def voice_backend_name(embedder: VoiceEmbedder) -> str:
    """The gallery backend a voice model's vectors are stored under."""
    return f"voice:{embedder.name}"


class TransformersVoiceEmbedder:
    """A transformers x-vector model from a local directory (the operator downloads it; we never do)."""

    def __init__(self, model_dir: Path) -> None:
        import torch
        from transformers import AutoFeatureExtractor, AutoModelForAudioXVector

        self._torch = torch
        self._extractor = AutoFeatureExtractor.from_pretrained(model_dir, local_files_only=True)
        self._model = AutoModelForAudioXVector.from_pretrained(model_dir, local_files_only=True).eval()
        self.name = Path(model_dir).name[:26]  # the policy's voice.match_distance names the model so

    def embed(self, samples: np.ndarray, sample_rate: int) -> np.ndarray:
        target = self._extractor.sampling_rate
        inputs = self._extractor(resample(samples, sample_rate, target), sampling_rate=target, return_tensors="pt")
        with self._torch.no_grad():
            vector = self._model(**inputs).embeddings[0].numpy().astype(np.float32)
        return vector / max(float(np.linalg.norm(vector)), 1e-12)


def voice_embedder_from_settings(backend: str | None, model_dir: Path | None) -> VoiceEmbedder | None:
    """The configured voice model, or None when there is none (a misconfiguration raises at start)."""
    if not backend:
        return None
    if backend == "transformers":
        if model_dir is None:
            raise ValueError("TRUSTREEL_VOICE_MODEL_DIR must name the speaker model directory")
        return TransformersVoiceEmbedder(model_dir)
    if ":" not in backend:
        raise ValueError(f"unknown voice backend {backend!r}; use transformers or package.module:factory")
    return import_named(backend)(model_dir)


shared_voice_embedder = functools.cache(voice_embedder_from_settings)
"""The voice model loads once per process (on first use), shared by enrollment and likeness-post."""

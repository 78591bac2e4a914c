"""Transcribers: the words in generated sound, for the text classifiers.

- TransformersTranscriber: an automatic-speech-recognition model (e.g. a Whisper checkpoint) that
  transformers loads from a local directory; TRUSTREEL_TRANSCRIBER=transformers and
  TRUSTREEL_TRANSCRIBER_MODEL_DIR. Nothing is downloaded.
- Any other: TRUSTREEL_TRANSCRIBER=package.module:factory, called with the model directory (tests plug a
  scripted transcriber in this way). Unset: no transcriber; the content policy says whether a video
  with sound may pass unheard (`audio_without_transcriber`).
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from pipeline.content.signals import ClassifierError, Transcriber
from pipeline.media.frames import resample
from pipeline.settings import import_named


class TransformersTranscriber:
    def __init__(self, model_dir: Path) -> None:
        from transformers import pipeline

        self._pipe = pipeline("automatic-speech-recognition", model=str(model_dir), device="cpu")
        self._rate = self._pipe.feature_extractor.sampling_rate
        self.name = Path(model_dir).name

    def transcribe(self, samples: np.ndarray, sample_rate: int) -> str:
        try:
            result = self._pipe({"raw": resample(samples, sample_rate, self._rate), "sampling_rate": self._rate})
        except Exception as exc:
            raise ClassifierError(f"transcriber failed: {type(exc).__name__}: {exc}") from exc
        return str(result.get("text", "")).strip()


def transcriber_from_settings(backend: str | None, model_dir: Path | None) -> Transcriber | None:
    if not backend:
        return None
    if backend == "transformers":
        if model_dir is None:
            raise ValueError("TRUSTREEL_TRANSCRIBER_MODEL_DIR must name the speech recognition model directory")
        return TransformersTranscriber(model_dir)
    if ":" not in backend:
        raise ValueError(f"unknown transcriber {backend!r}; use transformers or package.module:factory")
    return import_named(backend)(model_dir)


shared_transcriber = functools.cache(transcriber_from_settings)
"""Loaded once per process, on first use."""

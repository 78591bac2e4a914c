"""Image classifiers: NudeNet (embedded, offline) behind the ImageClassifier interface.

    RGB frame -> NudeNet's ONNX detector (320n.onnx ships in the nudenet wheel; onnxruntime, no download)
              -> [(class, score, box)] -> policy mapping class -> (category, severity), min score
              -> [Signal]

The mapping lives in policy (policies/content.yaml, image_classes), so trust & safety decide what an
exposed or covered body part means, and tests can map a harmless class (a face) to a test category.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from pipeline.content.signals import Category, ClassifierError, Severity, Signal


class NudeNetImageClassifier:
    name = "nudenet"

    def __init__(self, classes: dict[str, tuple[Category, Severity, float]]) -> None:
        """`classes`: NudeNet class -> (category, severity, minimum score); other classes are ignored."""
        import nudenet
        import onnxruntime
        from nudenet import NudeDetector

        model = Path(nudenet.__file__).with_name("320n.onnx")  # the detector the wheel ships
        self._detector = NudeDetector(model_path=str(model))
        # onnxruntime's worker threads spin between runs by default: a third of a frame's CPU time
        # (41 -> 31 ms of CPU per 704x480 frame here, the same wall time), which a busy worker needs for other work.
        options = onnxruntime.SessionOptions()
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._detector.onnx_session = onnxruntime.InferenceSession(
            str(model), sess_options=options, providers=["CPUExecutionProvider"])
        self._classes = classes

    def detections(self, rgb: np.ndarray) -> list[dict[str, Any]]:
        try:
            return self._detector.detect(np.ascontiguousarray(rgb[:, :, ::-1]))  # it reads BGR, like OpenCV
        except Exception as exc:  # onnxruntime and OpenCV raise many types
            raise ClassifierError(f"nudenet failed: {type(exc).__name__}: {exc}") from exc

    def classify(self, rgb: np.ndarray) -> list[Signal]:
        signals = []
        for found in self.detections(rgb):
            mapped = self._classes.get(found["class"])
            if mapped is None or found["score"] < mapped[2]:
                continue
            category, severity, _ = mapped
            signals.append(Signal(category, severity, float(found["score"]), self.name,
                                  {"class": found["class"], "box": [int(v) for v in found["box"]]}))
        return signals

"""Face detection + embedding behind one small interface, with two real backends.

    image bytes -> RGB array -> FaceEmbedder.faces() -> [DetectedFace(box, score, embedding)]

- InsightFaceEmbedder: the production backend. SCRFD detection + ArcFace recognition ONNX
  files from a model directory (config), run by onnxruntime; 512-d embeddings, L2-normalised.
- DlibEmbedder: dlib's HOG detector + ResNet descriptor, whose weights install from the package
  index (face-recognition-models), so it works offline out of the box; 128-d embeddings.

Embeddings of different backends are never compared with each other: galleries keep one
set per backend, and each backend names the distance at which faces count as the same person.
"""

from __future__ import annotations

import functools
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np


@dataclass(frozen=True)
class DetectedFace:
    box: tuple[int, int, int, int]  # left, top, right, bottom
    score: float
    embedding: np.ndarray


class FaceEmbedder(Protocol):
    name: str
    dimension: int

    def faces(self, rgb: np.ndarray, min_face_size: int | None = None) -> list[DetectedFace]:
        """Every face found in an RGB uint8 image (H x W x 3), down to `min_face_size` pixels across where
        the backend has to be told (None: its default)."""
        ...


class DlibEmbedder:
    name = "dlib"
    dimension = 128

    def __init__(self, upsample: int = 1) -> None:
        import dlib

        with warnings.catch_warnings():  # it imports pkg_resources, deprecated; pinned below setuptools 81
            warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)
            import face_recognition_models

        self._detector = dlib.get_frontal_face_detector()
        self._shapes = dlib.shape_predictor(face_recognition_models.pose_predictor_model_location())
        self._encoder = dlib.face_recognition_model_v1(face_recognition_models.face_recognition_model_location())
        self._upsample = upsample

    def faces(self, rgb: np.ndarray, min_face_size: int | None = None) -> list[DetectedFace]:
        image = np.ascontiguousarray(rgb)
        found = []
        upsample = self._upsample if min_face_size is None else upsamples_for(min_face_size)
        detections, scores, _ = self._detector.run(image, upsample, 0.0)
        for rect, score in zip(detections, scores):
            shape = self._shapes(image, rect)
            descriptor = np.asarray(self._encoder.compute_face_descriptor(image, shape), dtype=np.float32)
            found.append(DetectedFace((rect.left(), rect.top(), rect.right(), rect.bottom()), float(score),
                                      descriptor))
        return found


DLIB_SMALLEST_FACE = 80
"""dlib's HOG window: the smallest face, in pixels across, it finds without upsampling the image."""


def upsamples_for(min_face_size: int) -> int:
    """How often dlib must double the image to find faces of `min_face_size` pixels: each doubling finds
    faces half as small and costs about 4x the detection time (bench/RESULTS.md)."""
    return max(0, math.ceil(math.log2(DLIB_SMALLEST_FACE / min_face_size)))


class InsightFaceEmbedder:
    name = "insightface"

    def __init__(self, detector_model: Path, recognizer_model: Path, detection_threshold: float = 0.5,
                 input_size: tuple[int, int] = (640, 640)) -> None:
        from insightface.model_zoo import get_model

        providers = ["CPUExecutionProvider"]
        self._detector = get_model(str(detector_model), providers=providers)
        self._recognizer = get_model(str(recognizer_model), providers=providers)
        if self._detector is None or self._recognizer is None:
            raise ValueError(f"{detector_model} / {recognizer_model} are not an SCRFD detector and an ArcFace model")
        self._detector.prepare(ctx_id=-1, det_thresh=detection_threshold, input_size=input_size)
        self._recognizer.prepare(ctx_id=-1)
        self.dimension = int(self._recognizer.output_shape[1])

    @classmethod
    def from_directory(cls, directory: Path, **options: object) -> "InsightFaceEmbedder":
        """A model pack directory holding det_*.onnx (SCRFD) and w600k_*/*rec*.onnx (ArcFace), as insightface ships."""
        directory = Path(directory)
        detectors = sorted(directory.glob("det*.onnx")) or sorted(directory.glob("*scrfd*.onnx"))
        recognizers = sorted(p for p in directory.glob("*.onnx") if p not in detectors)
        if not detectors or not recognizers:
            raise FileNotFoundError(f"{directory} needs a det*.onnx detector and a recognition .onnx model")
        return cls(detectors[0], recognizers[0], **options)

    def faces(self, rgb: np.ndarray, min_face_size: int | None = None) -> list[DetectedFace]:
        """`min_face_size` is not passed on: SCRFD runs at its fixed input size (640 x 640 here), where its
        smallest anchors are 16 px."""
        from insightface.app.common import Face

        bgr = np.ascontiguousarray(rgb[:, :, ::-1])
        boxes, keypoints = self._detector.detect(bgr, max_num=0)
        found = []
        for index, row in enumerate(boxes):
            if keypoints is None:
                continue  # ArcFace alignment needs the five landmarks
            face = Face(bbox=row[:4], kps=keypoints[index], det_score=float(row[4]))
            embedding = np.asarray(self._recognizer.get(bgr, face), dtype=np.float32)
            embedding /= max(float(np.linalg.norm(embedding)), 1e-12)
            left, top, right, bottom = (int(round(v)) for v in row[:4])
            found.append(DetectedFace((left, top, right, bottom), float(row[4]), embedding))
        return found


def embedder_from_settings(backend: str, insightface_model_dir: Path | None) -> FaceEmbedder:
    if backend == "dlib":
        return DlibEmbedder()
    if backend == "insightface":
        if insightface_model_dir is None:
            raise ValueError("TRUSTREEL_INSIGHTFACE_MODEL_DIR must name the SCRFD + ArcFace model directory")
        return InsightFaceEmbedder.from_directory(insightface_model_dir)
    raise ValueError(f"unknown face backend {backend!r}; use dlib or insightface")


shared_embedder = functools.cache(embedder_from_settings)
"""Face models load once per process (on first use), shared by the likeness stages and cameo enrollment."""

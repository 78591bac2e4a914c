"""Face detection + embedding behind one small interface, with two real backends.

    image bytes -> RGB array -> FaceEmbedder.faces() -> [DetectedFace(box, score, embedding)]

- InsightFaceEmbedder: the production backend. SCRFD detection + ArcFace recognition ONNX
  files from a model directory (config), run by onnxruntime; 512-d embeddings, L2-normalised.
- DlibEmbedder: dlib's HOG detector + ResNet descriptor, whose weights install from the package
  index (face-recognition-models), so it works offline out of the box; 128-d embeddings.

Embeddings of different backends are never compared with each other: galleries keep one
set per backend, and each backend names the distance at which faces count as the same person.

Across the frames of one video a SameFaceMemory spares the recognition network: a face whose aligned
crop matches a crop already described takes that descriptor (bench/RESULTS.md prices it).
"""

from __future__ import annotations

import functools
import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol

import numpy as np


@dataclass(frozen=True)
class DetectedFace:
    box: tuple[int, int, int, int]  # left, top, right, bottom
    score: float
    embedding: np.ndarray
    described_at: Any = None  # with a SameFaceMemory: where the crop this embedding was computed on was seen


class SameFaceMemory:
    """The descriptors computed for one video's faces, each kept with the aligned crop it was computed on.

    The recognition network is most of a face's cost (dlib: 0.073 s a face on one core, the crop 0.0015 s),
    and a sampled video shows the same faces frame after frame. A face whose crop differs from a remembered
    crop by at most `max_block_change` grey levels in every block of a grid over the crop (mean absolute
    difference per block, so a changed eye or mouth counts, not just the average) is the same face and takes
    that descriptor. Crops are compared with the ones that were described, never with the previous frame, so
    a slow drift over many frames is described anew once it adds up. 0 turns the memory off.
    """

    def __init__(self, max_block_change: float, grid: int = 10, capacity: int = 64) -> None:
        self.max_block_change = max_block_change
        self.where: Any = None  # set by the caller before each frame: what `described_at` will say
        self._grid = grid
        self._capacity = capacity
        self._seen: list[tuple[np.ndarray, np.ndarray, np.ndarray, Any]] = []  # crop, block means, descriptor, where
        self.described = 0
        self.reused = 0

    def embedding(self, crop: np.ndarray, describe: Callable[[np.ndarray], np.ndarray]) -> tuple[np.ndarray, Any]:
        """(descriptor, where its crop was seen): a remembered one, or `describe(crop)` remembered here."""
        if self.max_block_change <= 0:  # the memory is off: nothing to compare, nothing worth keeping
            self.described += 1
            return describe(crop), self.where
        crop16 = crop.astype(np.int16)
        means = self._block_means(crop16)
        for seen, seen_means, descriptor, where in self._seen:
            # A block's mean absolute change is at least the change of its mean: most crops of other faces
            # are ruled out on the block means (~300 numbers) before the full comparison (~0.3 ms).
            if (seen.shape == crop16.shape
                    and self._per_block(np.abs(seen_means - means)).max() <= self.max_block_change
                    and self._largest_block_change(seen, crop16) <= self.max_block_change):
                self.reused += 1
                return descriptor, where
        descriptor = describe(crop)
        self.described += 1
        self._seen.append((crop16, means, descriptor, self.where))
        del self._seen[:-self._capacity]
        return descriptor, self.where

    def _blocks(self, values: np.ndarray) -> np.ndarray:
        """[grid, rows, grid, cols, ...] view of the crop's top-left grid x grid blocks (edges left over)."""
        rows, cols = (side // self._grid for side in values.shape[:2])
        return values[:rows * self._grid, :cols * self._grid].reshape(self._grid, rows, self._grid, cols,
                                                                       *values.shape[2:])

    def _block_means(self, crop: np.ndarray) -> np.ndarray:
        return self._blocks(crop).mean(axis=(1, 3))  # [grid, grid(, channels)]

    @staticmethod
    def _per_block(change: np.ndarray) -> np.ndarray:
        return change.mean(axis=2) if change.ndim == 3 else change

    def _largest_block_change(self, first: np.ndarray, second: np.ndarray) -> float:
        return float(self._per_block(self._block_means(np.abs(first - second))).max())


class SmallFaceSchedule:
    """How small a face each sampled frame of one video is searched for.

    Below a backend's `unscaled_min_face` (dlib: 80 px) the frame has to be upsampled, and each doubling costs
    ~4x the detection (dlib: 0.090 instead of 0.023 s a 704x480 frame here; most of likeness-post's CPU). The
    people of a video stay on screen over many sampled frames (a third of a second apart as shipped), so the
    search down to `min_face_size` runs on every `every`-th sampled frame, and on the frame after any frame
    where a face under the unscaled size was found (a small face, once seen, is followed on every frame); the
    frames between are searched from the unscaled size. every = 1 searches every frame down to min_face_size.
    """

    def __init__(self, min_face_size: int, every: int, unscaled_min_face: int | None) -> None:
        self.min_face_size = min_face_size
        self.every = every
        self._unscaled = unscaled_min_face
        self._position = 0
        self._small_face_seen = False

    def next_size(self) -> int:
        """The smallest face to look for on the next sampled frame (call once per frame, in order)."""
        position, self._position = self._position, self._position + 1
        if self._unscaled is None or self._small_face_seen or position % self.every == 0:
            return self.min_face_size
        return max(self.min_face_size, self._unscaled)

    def found(self, faces: list[DetectedFace]) -> None:
        """The faces the last frame showed, whatever their detection score."""
        self._small_face_seen = self._unscaled is not None and any(
            face.box[2] - face.box[0] < self._unscaled for face in faces)


def _embedding(crop: np.ndarray, describe: Callable[[np.ndarray], np.ndarray],
               memory: SameFaceMemory | None) -> tuple[np.ndarray, Any]:
    return memory.embedding(crop, describe) if memory is not None else (describe(crop), None)


class FaceEmbedder(Protocol):
    name: str
    dimension: int
    unscaled_min_face: int | None  # the smallest face found without upsampling (None: size costs nothing)

    def faces(self, rgb: np.ndarray, min_face_size: int | None = None,
              memory: SameFaceMemory | None = None) -> list[DetectedFace]:
        """Every face found in an RGB uint8 image (H x W x 3), down to `min_face_size` pixels across where
        the backend has to be told (None: its default); `memory` holds the faces of earlier frames of the
        same video."""
        ...


DLIB_SMALLEST_FACE = 80
"""dlib's HOG window: the smallest face, in pixels across, it finds without upsampling the image."""


class DlibEmbedder:
    name = "dlib"
    dimension = 128
    unscaled_min_face = DLIB_SMALLEST_FACE

    def __init__(self, upsample: int = 1) -> None:
        import dlib

        with warnings.catch_warnings():  # it imports pkg_resources, deprecated; pinned below setuptools 81
            warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)
            import face_recognition_models

        self._detector = dlib.get_frontal_face_detector()
        self._shapes = dlib.shape_predictor(face_recognition_models.pose_predictor_model_location())
        self._encoder = dlib.face_recognition_model_v1(face_recognition_models.face_recognition_model_location())
        self._upsample = upsample
        self._face_chip = dlib.get_face_chip

    def faces(self, rgb: np.ndarray, min_face_size: int | None = None,
              memory: SameFaceMemory | None = None) -> list[DetectedFace]:
        image = np.ascontiguousarray(rgb)
        found = []
        upsample = self._upsample if min_face_size is None else upsamples_for(min_face_size)
        # Detection on luma: on RGB dlib's HOG takes gradients in every channel (~20% more time), and in the
        # 6-person group photo scaled to faces of 37-63 px luma found all six where RGB found four or five
        # (bench/RESULTS.md). Landmarks and descriptors still read the RGB image.
        detections, scores, _ = self._detector.run(_luma(image), upsample, 0.0)
        for rect, score in zip(detections, scores):
            # The crop compute_face_descriptor(image, shape) would make: the same descriptor, bit for bit.
            crop = self._face_chip(image, self._shapes(image, rect), size=150, padding=0.25)
            descriptor, where = _embedding(crop, self._describe, memory)
            found.append(DetectedFace((rect.left(), rect.top(), rect.right(), rect.bottom()), float(score),
                                      descriptor, where))
        return found

    def _describe(self, crop: np.ndarray) -> np.ndarray:
        return np.asarray(self._encoder.compute_face_descriptor(crop), dtype=np.float32)


def _luma(rgb: np.ndarray) -> np.ndarray:
    """ITU-R 601 luma as uint8 (Pillow's "L"): what a grey photo of the same scene would hold."""
    from PIL import Image

    return np.asarray(Image.fromarray(rgb).convert("L"))


def upsamples_for(min_face_size: int) -> int:
    """How often dlib must double the image to find faces of `min_face_size` pixels: each doubling finds
    faces half as small and costs about 4x the detection time (bench/RESULTS.md)."""
    return max(0, math.ceil(math.log2(DLIB_SMALLEST_FACE / min_face_size)))


class InsightFaceEmbedder:
    name = "insightface"
    unscaled_min_face = None  # SCRFD runs at one input size whatever the smallest face

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

    def faces(self, rgb: np.ndarray, min_face_size: int | None = None,
              memory: SameFaceMemory | None = None) -> list[DetectedFace]:
        """`min_face_size` is not passed on: SCRFD runs at its fixed input size (640 x 640 here), where its
        smallest anchors are 16 px."""
        from insightface.utils import face_align

        bgr = np.ascontiguousarray(rgb[:, :, ::-1])
        boxes, keypoints = self._detector.detect(bgr, max_num=0)
        found = []
        for index, row in enumerate(boxes):
            if keypoints is None:
                continue  # ArcFace alignment needs the five landmarks
            # What the recognizer's own get() does: align on the landmarks, then the network.
            crop = face_align.norm_crop(bgr, landmark=keypoints[index], image_size=self._recognizer.input_size[0])
            embedding, where = _embedding(crop, self._describe, memory)
            left, top, right, bottom = (int(round(v)) for v in row[:4])
            found.append(DetectedFace((left, top, right, bottom), float(row[4]), embedding, where))
        return found

    def _describe(self, crop: np.ndarray) -> np.ndarray:
        embedding = np.asarray(self._recognizer.get_feat(crop).flatten(), dtype=np.float32)
        return embedding / max(float(np.linalg.norm(embedding)), 1e-12)


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

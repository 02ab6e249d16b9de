"""The face engine: image -> faces (box, score, 5 landmarks, 128-D descriptor).

One object wires the pipeline stages together: load image -> detect -> landmarks -> align ->
embed. Each stage lives in its own module; this one only orchestrates and batches. Nothing is
loaded at import time: the models load on first use and stay in memory for the engine's life.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import BinaryIO

import numpy as np

from photosearch.images import ImageLoadError, LoadedImage, load_image
from photosearch.models.registry import MODEL_ID

ImageSource = str | os.PathLike | bytes | BinaryIO | LoadedImage

# Faces smaller than the detector's 80x80 window are only found after upsampling; small images
# (selfie crops, thumbnails, LFW's 250x250) get one 2x upsampling under the "auto" policy, large
# ones do not (it would quadruple the cost while their faces are usually big enough already).
AUTO_UPSAMPLE_BELOW_SIDE = 1000
DEFAULT_MAX_SIDE = 2000


@dataclass(frozen=True)
class Face:
    """One detected face, in original-image pixel coordinates."""

    box: tuple[int, int, int, int]  # left, top, right, bottom (inclusive, like dlib's rectangle)
    score: float  # detector confidence (> 0 means detected)
    landmarks: np.ndarray  # (5, 2) float64: x, y of dlib's 5 points
    descriptor: np.ndarray  # (128,) float32

    @property
    def area(self) -> int:
        left, top, right, bottom = self.box
        return max(0, right - left + 1) * max(0, bottom - top + 1)

    def to_json(self) -> dict:
        return {
            "box": [int(v) for v in self.box],
            "score": round(float(self.score), 6),
            "landmarks": [[round(float(x), 3), round(float(y), 3)] for x, y in self.landmarks],
            "descriptor": [round(float(v), 7) for v in self.descriptor],
        }


def resolve_device(device: str | None) -> str:
    """'auto' (or None) picks CUDA when torch sees a GPU, else the CPU."""
    if device in (None, "auto"):
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return str(device)


class FaceEngine:
    """Detects and describes faces; `faces()` for one image, `faces_for_images()` batched.

    upsample: how many times to double the image before detection (finds faces down to ~40 px
    per doubling), or "auto" (once for images whose longer side is under 1000 px).
    max_side: working resolution: larger photos are shrunk to this longer side before detection;
    boxes and landmarks are mapped back to original pixels. None keeps full resolution.
    mirror: describe each face as the mean of its chip's descriptor and its mirror image's
    (deterministic test-time augmentation; a little more robust for search).
    """

    def __init__(
        self,
        device: str = "auto",
        upsample: int | str = "auto",
        max_side: int | None = DEFAULT_MAX_SIDE,
        mirror: bool = True,
        batch_size: int = 32,
    ) -> None:
        if upsample != "auto" and (not isinstance(upsample, int) or upsample < 0):
            raise ValueError(f"upsample must be 'auto' or an integer >= 0, not {upsample!r}")
        self.device = resolve_device(device)
        self.upsample = upsample
        self.max_side = max_side
        self.mirror = mirror
        self.batch_size = batch_size

    @property
    def model_id(self) -> str:
        """Descriptors are comparable only between engines with the same model id."""
        return f"{MODEL_ID}{'+mirror' if self.mirror else ''}"

    # The three models load lazily, on first use.
    @cached_property
    def detector(self):
        from photosearch.detector import FaceDetector

        return FaceDetector(device=self.device)

    @cached_property
    def shape_predictor(self):
        from photosearch.landmarks import ShapePredictor

        return ShapePredictor()

    @cached_property
    def descriptor_net(self):
        from photosearch.descriptor import FaceDescriptor

        return FaceDescriptor(device=self.device)

    def load(self, source: ImageSource) -> LoadedImage:
        if isinstance(source, LoadedImage):
            return source
        return load_image(source, max_side=self.max_side)

    def upsample_for(self, pixels: np.ndarray) -> int:
        if self.upsample == "auto":
            return 1 if max(pixels.shape[:2]) < AUTO_UPSAMPLE_BELOW_SIDE else 0
        return int(self.upsample)

    def faces(self, image: ImageSource) -> list[Face]:
        """All faces of one image (path, bytes, file object or LoadedImage)."""
        return self.faces_for_images([self.load(image)])[0]

    def faces_for_images(self, images: Sequence[LoadedImage]) -> list[list[Face]]:
        """Faces of several already-loaded images; descriptors are computed in shared batches."""
        boxes_per_image: list[list[tuple[tuple[int, int, int, int], float]]] = []
        for image in images:
            detections = self.detector.detect(
                image.pixels, upsample=self.upsample_for(image.pixels)
            )
            boxes_per_image.append([(d.box, d.score) for d in detections])

        landmarks_per_image: list[np.ndarray] = []
        chips: list[np.ndarray] = []
        from photosearch.align import face_chips

        for image, detections in zip(images, boxes_per_image, strict=True):
            if not detections:
                landmarks_per_image.append(np.zeros((0, 5, 2)))
                continue
            boxes = [box for box, _ in detections]
            landmarks = self.shape_predictor.predict_many(image.pixels, boxes)
            landmarks_per_image.append(landmarks)
            chips.append(face_chips(image.pixels, landmarks))

        descriptors = (
            self.describe_chips(np.concatenate(chips)) if chips else np.zeros((0, 128), np.float32)
        )

        results: list[list[Face]] = []
        next_descriptor = 0
        for image, detections, landmarks in zip(
            images, boxes_per_image, landmarks_per_image, strict=True
        ):
            faces = []
            for (box, score), points in zip(detections, landmarks, strict=True):
                faces.append(
                    Face(
                        box=image.to_original_box(box),
                        score=float(score),
                        landmarks=image.to_original_points(np.asarray(points, np.float64)),
                        descriptor=descriptors[next_descriptor],
                    )
                )
                next_descriptor += 1
            results.append(faces)
        return results

    def describe_chips(self, chips: np.ndarray) -> np.ndarray:
        """(N, 150, 150, 3) uint8 aligned chips -> (N, 128) float32 descriptors."""
        return self.descriptor_net.compute(chips, mirror=self.mirror, batch_size=self.batch_size)

    def faces_from_sources(
        self, sources: Iterable[ImageSource]
    ) -> Iterable[tuple[ImageSource, list[Face] | ImageLoadError]]:
        """(source, faces) per source, or (source, ImageLoadError) for an unreadable one."""
        for source in sources:
            try:
                loaded = self.load(source)
            except ImageLoadError as error:
                yield source, error
                continue
            yield source, self.faces_for_images([loaded])[0]


def largest_face(faces: Sequence[Face]) -> Face | None:
    """The biggest face by box area: the default choice of 'who' in a reference photo."""
    return max(faces, key=lambda face: face.area, default=None)

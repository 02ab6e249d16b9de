"""The face engine: image -> faces (box, score, 5 landmarks, 128-D descriptor).

One object wires the pipeline stages together: load image -> detect -> landmarks -> align ->
embed. Each stage lives in its own module; this one only orchestrates and batches. Nothing is
loaded at import time: the models load on first use and stay in memory for the engine's life.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from functools import cached_property
from typing import TypeVar

import numpy as np

from photosearch.faces.base import Face, ImageSource
from photosearch.faces.images import ImageLoadError, LoadedImage, load_image
from photosearch.faces.memory import keep_freed_memory
from photosearch.faces.models.registry import MODEL_ID
from photosearch.faces.threads import one_torch_thread_each, torch_threads

__all__ = [
    "DEFAULT_DETECTOR",
    "DEFAULT_MAX_SIDE",
    "DETECTION_SIDE",
    "DETECTORS",
    "MAX_DETECTION_SCALE",
    "SMALL_PHOTO_SIDE",
    "FaceEngine",
    "resolve_device",
    "resolve_max_side",
]

Item = TypeVar("Item")
Result = TypeVar("Result")

# The detector finds faces from its 80x80 window up; smaller ones only after enlarging the image.
# Under the "auto" policy a photo up to SMALL_PHOTO_SIDE px is doubled (dlib's own upsampling):
# faces from 40 px are found. A larger photo is resized to DETECTION_SIDE px on its longer side
# (shrunk, or enlarged at most 2x): faces from 80/1400 = 5.7% of its longer side are found. The
# CNN's work grows with pixels, so the cost per photo is about the same whatever its size: on a
# CPU the detector is ~90% of indexing time and at the limit of the cores' arithmetic, and 1400
# px takes ~0.8x the time of 1600 px (faces from 5%). Landmarks and descriptors still use the
# full working image (up to max_side), so a face found at the detection size is described at
# full detail.
DETECTION_SIDE = 1400
SMALL_PHOTO_SIDE = 800
MAX_DETECTION_SCALE = 2.0  # 40 px faces: below that a 150 px chip is mostly interpolation
DEFAULT_MAX_SIDE = 2000
# "cascade" (the default): MTCNN proposals verified by MMOD on a crop at each face's scale
# (faces/cascade.py), from 2% of the longer side (10 px in photos up to 1000 px), at a cost
# that grows with faces, not pixels. "mmod": dlib's detector on the whole image, box-for-box as dlib
# (with `upsample` / `detection_side` as below).
DETECTORS = ("cascade", "mmod")
DEFAULT_DETECTOR = "cascade"


def resolve_max_side(max_side: int | None) -> int | None:
    """The working-resolution rule of every entry point (CLI, app, AWS jobs, `index_album`):
    None means the default (DEFAULT_MAX_SIDE), 0 means full size (no shrinking, None here)."""
    if max_side is None:
        return DEFAULT_MAX_SIDE
    if max_side < 0:
        raise ValueError(f"max_side must be 0 (full size) or a number of pixels, not {max_side}")
    return max_side or None


def resolve_device(device: str | None) -> str:
    """'auto' (or None) picks CUDA when torch sees a GPU, else the CPU. ValueError for a device
    torch does not know or this machine lacks ("banana", "cuda" without a GPU, "cuda:7" on a
    one-GPU machine), before any work starts."""
    import torch

    if device in (None, "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        chosen = torch.device(str(device))
    except (RuntimeError, TypeError, ValueError):
        raise ValueError(f"unknown device {device!r} (use cpu, cuda, cuda:N or auto)") from None
    if chosen.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r}: no usable CUDA GPU on this machine")
        if chosen.index is not None and chosen.index >= torch.cuda.device_count():
            count = torch.cuda.device_count()
            raise ValueError(f"device {device!r}: this machine has {count} GPU(s)")
    elif chosen.type != "cpu":
        raise ValueError(f"device {device!r}: photosearch runs on cpu or cuda")
    return str(device)


class FaceEngine:
    """Detects and describes faces (the `FaceFinder` of faces/base.py): `faces()` for one image,
    `faces_for_images()` for several.

    detector: "cascade" (the default when `upsample` is "auto") or "mmod" (dlib-exact; the
    default when `upsample` is a number of doublings), see DETECTORS.
    upsample: (mmod only) how many times to double the image before detection, dlib-style (each
    doubling finds faces half as big, from 80 px at none), or "auto": photos up to
    SMALL_PHOTO_SIDE px doubled, larger ones detected at `detection_side` pixels on the longer
    side (enlarged at most 2x; a 2x enlargement is dlib's own upsampling).
    max_side: working resolution: larger photos are shrunk to this longer side before detection;
    boxes and landmarks are mapped back to original pixels. None or 0 keeps full resolution
    (entry points that take None as "the default" use `resolve_max_side`).
    mirror: describe each face as the mean of its chip's descriptor and its mirror image's
    (deterministic test-time augmentation; a little more robust for search).
    workers: on the CPU, how many images are processed at once, each in its own thread with one
    torch thread (None: as many as torch's intra-op threads, i.e. the CPU cores). On a GPU the
    images of a call are batched instead.
    """

    def __init__(
        self,
        device: str = "auto",
        upsample: int | str = "auto",
        max_side: int | None = DEFAULT_MAX_SIDE,
        mirror: bool = True,
        batch_size: int = 32,
        workers: int | None = None,
        detection_side: int = DETECTION_SIDE,
        detector: str | None = None,
    ) -> None:
        if upsample != "auto" and (not isinstance(upsample, int) or upsample < 0):
            raise ValueError(f"upsample must be 'auto' or an integer >= 0, not {upsample!r}")
        if detector is None:
            detector = DEFAULT_DETECTOR if upsample == "auto" else "mmod"
        if detector not in DETECTORS:
            raise ValueError(f"detector must be one of {', '.join(DETECTORS)}, not {detector!r}")
        if detector == "cascade" and upsample != "auto":
            raise ValueError("upsample applies to the mmod detector only (--detector mmod)")
        self.detector_name = detector
        self.device = resolve_device(device)
        if self.device == "cpu":
            # Before any worker thread starts: threads pick their malloc arena on first use.
            keep_freed_memory()
        self.upsample = upsample
        self.max_side = max_side or None
        self.mirror = mirror
        self.batch_size = batch_size
        if workers is not None and workers < 1:
            raise ValueError(f"workers must be >= 1, not {workers}")
        self._workers = workers
        if detection_side < 80:
            raise ValueError(f"detection_side must be at least 80 px, not {detection_side}")
        self.detection_side = detection_side

    @property
    def workers(self) -> int:
        """Images processed in parallel (1 on a GPU, where one batch keeps it busy)."""
        if self.device != "cpu":
            return 1
        if self._workers is None:
            return torch_threads()
        return self._workers

    @property
    def model_id(self) -> str:
        """Descriptors are comparable only between engines with the same model id."""
        return f"{MODEL_ID}{'+mirror' if self.mirror else ''}"

    @property
    def detection_settings(self) -> str:
        """Which faces this engine looks for: recorded with every photo in the index, so that
        `photosearch index --rebuild` redoes only photos detected otherwise."""
        if self.detector_name == "cascade":
            from photosearch.faces import cascade as c
            from photosearch.faces.detail import DETAIL_FACE_PX

            return (
                f"max side {self.max_side or 'full'}, detector cascade (MTCNN proposals from "
                f"{c.MIN_FACE_FRACTION:.1%} of the longer side, {c.MIN_FACE_PX} px up to "
                f"{c.SMALL_SIDE} px; MMOD at {c.FACE_PX} px on {c.CROP_PX} px crops"
                f"{', boxes at score peaks' if c.SUBCELL else ''}; faces under "
                f"{DETAIL_FACE_PX} px described from a finer decode)"
            )
        if self.upsample == "auto":
            how = f"{self.detection_side} px (doubled up to {SMALL_PHOTO_SIDE} px)"
        else:
            how = f"upsample {self.upsample}"
        return f"max side {self.max_side or 'full'}, detection at {how}"

    # The three models load lazily, on first use.
    @cached_property
    def detector(self):
        from photosearch.faces.detector import FaceDetector

        return FaceDetector(device=self.device)

    @cached_property
    def cascade(self):
        from photosearch.faces.cascade import CascadeDetector
        from photosearch.faces.proposals import FaceProposer

        return CascadeDetector(self.detector, FaceProposer(device=self.device))

    @cached_property
    def shape_predictor(self):
        from photosearch.faces.landmarks import ShapePredictor

        return ShapePredictor()

    @cached_property
    def descriptor_net(self):
        from photosearch.faces.descriptor import FaceDescriptor

        return FaceDescriptor(device=self.device)

    def load(self, source: ImageSource) -> LoadedImage:
        if isinstance(source, LoadedImage):
            return source
        return load_image(source, max_side=self.max_side)

    def detection_scale(self, pixels: np.ndarray) -> float:
        """How much the "auto" policy resizes this image before detection (2.0: one dlib
        upsampling; 1.0: as it is)."""
        longer = max(pixels.shape[:2])
        if longer <= SMALL_PHOTO_SIDE:
            return MAX_DETECTION_SCALE
        return min(MAX_DETECTION_SCALE, self.detection_side / longer)

    def detect(self, pixels: np.ndarray) -> list[tuple[tuple[int, int, int, int], float]]:
        """(box, score) of every face in a working image, box in that image's pixels."""
        if self.detector_name == "cascade":
            return self.cascade.detect(pixels)
        if self.upsample != "auto":
            found = self.detector.detect(pixels, upsample=int(self.upsample))
            return [(d.box, d.score) for d in found]
        scale = self.detection_scale(pixels)
        if scale >= MAX_DETECTION_SCALE or abs(scale - 1.0) < 0.02:
            # Exactly dlib's upsample 1 (small photos such as LFW's) or 0 (nearly the size).
            upsample = 1 if scale >= MAX_DETECTION_SCALE else 0
            return [(d.box, d.score) for d in self.detector.detect(pixels, upsample=upsample)]
        from photosearch.faces.images import resize_pixels

        rows, cols = pixels.shape[:2]
        size = (max(1, round(cols * scale)), max(1, round(rows * scale)))
        resized = resize_pixels(pixels, size)
        sx, sy = cols / size[0], rows / size[1]
        return [
            (_scaled_box(d.box, sx, sy), d.score) for d in self.detector.detect(resized, upsample=0)
        ]

    def faces(self, image: ImageSource) -> list[Face]:
        """All faces of one image (path, bytes, file object or LoadedImage)."""
        return self.faces_for_images([self.load(image)])[0]

    @contextmanager
    def parallel_pool(self) -> Iterator[ThreadPoolExecutor | None]:
        """A pool of `workers` threads to run this engine's methods on several images at once,
        with one torch thread each while the block lasts; None when there is only one worker
        (on a GPU, or one core), where callers batch images instead."""
        if self.workers <= 1:
            yield None
            return
        # Load the models once, before the threads race to do it.
        self.detector, self.shape_predictor, self.descriptor_net  # noqa: B018
        if self.detector_name == "cascade":
            self.cascade.proposer.nets  # noqa: B018
        with (
            one_torch_thread_each(),
            ThreadPoolExecutor(self.workers, thread_name_prefix="faces") as pool,
        ):
            yield pool

    def map_parallel(self, work: Callable[[Item], Result], items: Iterable[Item]) -> list[Result]:
        """``[work(item) for item in items]``, run `workers` at a time when that is more than one
        (``work`` may call this engine's methods; results keep the items' order)."""
        items = list(items)
        if self.workers <= 1 or len(items) <= 1:
            return [work(item) for item in items]
        with self.parallel_pool() as pool:
            assert pool is not None
            return list(pool.map(work, items))

    def faces_for_images(self, images: Sequence[LoadedImage]) -> list[list[Face]]:
        """Faces of several already-loaded images: in parallel threads on a CPU, in shared
        batches on a GPU."""
        if self.workers > 1 and len(images) > 1:
            return self.map_parallel(lambda image: self._faces_batched([image])[0], images)
        return self._faces_batched(images)

    def _faces_batched(self, images: Sequence[LoadedImage]) -> list[list[Face]]:
        """Faces of several images; descriptors are computed in shared batches."""
        boxes_per_image: list[list[tuple[tuple[int, int, int, int], float]]] = []
        for image in images:
            boxes_per_image.append(self.detect(image.pixels))

        landmarks_per_image: list[np.ndarray] = []
        chips: list[np.ndarray] = []
        for image, detections in zip(images, boxes_per_image, strict=True):
            if not detections:
                landmarks_per_image.append(np.zeros((0, 5, 2)))
                continue
            points, image_chips = self._landmarks_and_chips(image, [box for box, _ in detections])
            landmarks_per_image.append(points)
            chips.append(image_chips)

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
                        landmarks=points,
                        descriptor=descriptors[next_descriptor],
                    )
                )
                next_descriptor += 1
            results.append(faces)
        return results

    def _landmarks_and_chips(
        self, image: LoadedImage, boxes: list[tuple[int, int, int, int]]
    ) -> tuple[np.ndarray, np.ndarray]:
        """(K, 5, 2) landmarks in original pixels and (K, 150, 150, 3) chips of one image's
        faces. With the cascade, small faces of a shrunk photo are taken from a more detailed
        decode (faces/detail.py)."""
        from photosearch.faces import detail
        from photosearch.faces.align import face_chips

        landmarks = self.shape_predictor.predict_many(image.pixels, boxes)
        points = image.to_original_points(landmarks.astype(np.float64))
        chips = face_chips(image.pixels, landmarks)
        small = detail.small_faces(image, boxes) if self.detector_name == "cascade" else []
        detailed = detail.detail_image(image, [boxes[i] for i in small]) if small else None
        if detailed is not None:
            fine = self.shape_predictor.predict_many(
                detailed.pixels, [detail.to_detail_box(image, detailed, boxes[i]) for i in small]
            )
            chips[small] = face_chips(detailed.pixels, fine)
            points[small] = detailed.to_original_points(fine.astype(np.float64))
        return points, chips

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


def _scaled_box(box: tuple[int, int, int, int], sx: float, sy: float) -> tuple[int, int, int, int]:
    """An inclusive integer box of a resized image in the original image's pixels."""
    left, top, right, bottom = box
    return (
        round(left * sx),
        round(top * sy),
        round((right + 1) * sx) - 1,
        round((bottom + 1) * sy) - 1,
    )

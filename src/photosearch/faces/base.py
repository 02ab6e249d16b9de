"""The contract of a face engine: what the index, the search and the AWS jobs may ask of one.

`FaceEngine` (engine.py) is the implementation; the rest of the package types its engines as
`FaceFinder`, so any object with these members works in its place: a wrapper that counts
photos for a progress bar (the web app), or a test engine that holds a run at a gate.
`EngineWrapper` is the base of such wrappers: it hands every member to the wrapped engine and
runs photos one at a time, so the wrapper sees each call in order.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import BinaryIO, Protocol, TypeVar, runtime_checkable

import numpy as np

from photosearch.faces.images import LoadedImage, load_image

__all__ = [
    "EngineWrapper",
    "Face",
    "FaceFinder",
    "ImageSource",
    "largest_face",
]

ImageSource = str | os.PathLike | bytes | BinaryIO | LoadedImage
Item = TypeVar("Item")
Result = TypeVar("Result")


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


def largest_face(faces: Sequence[Face], image_size: tuple[int, int] | None = None) -> Face | None:
    """The biggest face: the default choice of 'who' in a reference photo. With the photo's
    (width, height), only the part of each box inside the photo counts: a bystander's face cut
    by the photo's edge (its box reaching past it) is rarely the person the photo is of."""
    if image_size is None:
        return max(faces, key=lambda face: face.area, default=None)
    width, height = image_size

    def visible(face: Face) -> int:
        left, top, right, bottom = face.box
        inside_w = min(right, width - 1) - max(left, 0) + 1
        inside_h = min(bottom, height - 1) - max(top, 0) + 1
        return max(0, inside_w) * max(0, inside_h)

    return max(faces, key=visible, default=None)


@runtime_checkable
class FaceFinder(Protocol):
    """Finds and describes the faces of photos.

    model_id: descriptors are comparable only between engines with the same id (it is stored
    in the index). max_side: the working resolution photos are decoded at (None: full size).
    detection_settings: which faces it looks for, recorded with each indexed photo so that
    `index --rebuild` redoes photos detected otherwise (None: unknown, every photo is redone).
    """

    @property
    def model_id(self) -> str: ...

    @property
    def max_side(self) -> int | None: ...

    @property
    def detection_settings(self) -> str | None: ...

    def faces(self, image: ImageSource) -> list[Face]:
        """All faces of one image (path, bytes, file object or LoadedImage)."""
        ...

    def faces_for_images(self, images: Sequence[LoadedImage]) -> list[list[Face]]:
        """Faces of several decoded images, in their order."""
        ...

    def parallel_pool(self) -> AbstractContextManager[ThreadPoolExecutor | None]:
        """A pool whose threads may call `faces_for_images` at once, while the block lasts; None
        when photos go one call at a time (callers batch them instead)."""
        ...

    def map_parallel(self, work: Callable[[Item], Result], items: Iterable[Item]) -> list[Result]:
        """``[work(item) for item in items]``, several at a time where the engine can."""
        ...


class EngineWrapper:
    """A FaceFinder that hands everything to `engine`; subclasses override what they watch.

    Photos go one call at a time (no parallel pool), so an override sees every call in order.
    """

    def __init__(self, engine: FaceFinder) -> None:
        self.engine = engine

    @property
    def model_id(self) -> str:
        return self.engine.model_id

    @property
    def max_side(self) -> int | None:
        return self.engine.max_side

    @property
    def detection_settings(self) -> str | None:
        return self.engine.detection_settings

    def faces(self, image: ImageSource) -> list[Face]:
        if not isinstance(image, LoadedImage):
            image = load_image(image, max_side=self.max_side)
        return self.faces_for_images([image])[0]

    def faces_for_images(self, images: Sequence[LoadedImage]) -> list[list[Face]]:
        return self.engine.faces_for_images(images)

    def parallel_pool(self) -> AbstractContextManager[ThreadPoolExecutor | None]:
        return nullcontext(None)

    def map_parallel(self, work: Callable[[Item], Result], items: Iterable[Item]) -> list[Result]:
        return [work(item) for item in items]

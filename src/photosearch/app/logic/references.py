"""Reference photos: the faces found in an upload, their thumbnails, and which is the person.

An uploaded photo is read in memory with the same engine settings as the CLI, and only its face
descriptors and small face thumbnails are kept. The private image helpers here (`_working_box`,
`_jpeg`) and the default engine (`_default_engine`) are also used by the results' thumbnails and
by background indexing, which import them from this module.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from photosearch.faces.base import FaceFinder
from photosearch.faces.images import LoadedImage
from photosearch.search.query import ReferencePhotoError

__all__ = [
    "FACE_THUMBNAIL_SIDE",
    "Reference",
    "ReferenceReader",
    "crowd_picture",
    "face_thumbnail",
]


FACE_THUMBNAIL_SIDE = 160


@dataclass
class Reference:
    """A reference photo's faces; `chosen` is the one the user says is the person."""

    name: str
    descriptors: np.ndarray  # (N, 128) float32, one per face found
    boxes: list[tuple[int, int, int, int]]  # original pixels
    face_thumbnails: list[bytes]  # JPEG crop of each face
    chosen: int  # index of the person's face (default: the largest)
    data_digest: str | None = None  # BLAKE2b of the uploaded bytes: the same file is used once
    # For a crowd photo: the photo with every face boxed and numbered, to click a face in, and
    # the photo's original size, to map a click back onto `boxes`.
    picture: bytes | None = None
    photo_size: tuple[int, int] | None = None

    @property
    def descriptor(self) -> np.ndarray:
        return self.descriptors[self.chosen]

    @property
    def face_count(self) -> int:
        return len(self.boxes)


class ReferenceReader:
    """Finds the faces of uploaded reference photos with the same engine settings as the CLI."""

    def __init__(self, engine_factory: Callable[[], FaceFinder] | None = None) -> None:
        self._engine_factory = engine_factory or _default_engine
        self._engine: FaceFinder | None = None
        # One face search at a time (the engine is shared by sessions), but decoding runs outside
        # the lock: one user's huge upload never stalls another user's search.
        self._lock = threading.Lock()

    @property
    def engine(self) -> FaceFinder:
        if self._engine is None:
            self._engine = self._engine_factory()
        return self._engine

    @property
    def model_id(self) -> str:
        return self.engine.model_id

    def read(self, data: bytes, name: str) -> Reference:
        """The faces of one photo; raises ReferencePhotoError whose `str()` is a sentence for
        the user."""
        from photosearch.search import query

        try:
            found = query.read_reference(_OneAtATime(self.engine, self._lock), data, name=name)
        except ReferencePhotoError as error:
            if error.kind == "unreadable":
                raise ReferencePhotoError(
                    f"“{name}” can't be used: {error.reason}. "
                    "Upload a photo (JPEG, PNG, WEBP or HEIC).",
                    error.kind,
                    error.reason,
                ) from None
            raise ReferencePhotoError(
                f"No face found in “{name}”. Try a photo where the face is clearly visible.",
                error.kind,
                error.reason,
            ) from None
        boxes = [face.box for face in found.faces]
        return Reference(
            name=name,
            descriptors=np.stack([face.descriptor for face in found.faces]).astype(np.float32),
            boxes=boxes,
            face_thumbnails=[face_thumbnail(found.image, box) for box in boxes],
            chosen=found.chosen,
            **crowd_picture(found.image, boxes),
        )


class _OneAtATime:
    """The engine, with only its face search (not the decoding before it) behind `lock`."""

    def __init__(self, engine: FaceFinder, lock: threading.Lock) -> None:
        self._engine, self._lock = engine, lock

    def faces(self, image: LoadedImage):
        with self._lock:
            return self._engine.faces(image)

    def __getattr__(self, name: str):
        return getattr(self._engine, name)


def crowd_picture(image: LoadedImage, boxes: Sequence[Sequence[int]]) -> dict:
    """`picture` and `photo_size` for a photo of several faces (none for a single face)."""
    if len(boxes) < 2:
        return {}
    from photosearch.app.logic.face_picker import numbered_picture

    return {"picture": numbered_picture(image, boxes), "photo_size": image.original_size}


def _default_engine() -> FaceFinder:
    from photosearch.faces.engine import FaceEngine

    return FaceEngine()


def _working_box(image: LoadedImage, box: Sequence[int]) -> tuple[float, float, float, float]:
    """An original-pixel box in the loaded (possibly shrunk) image's pixels."""
    scale_x, scale_y = image.axis_scales
    left, top, right, bottom = box
    return left / scale_x, top / scale_y, (right + 1) / scale_x, (bottom + 1) / scale_y


def face_thumbnail(
    image: LoadedImage, box: Sequence[int], side: int = FACE_THUMBNAIL_SIDE
) -> bytes:
    """A square JPEG crop around one face, with some margin (hair, chin) for recognition."""
    left, top, right, bottom = _working_box(image, box)
    size = max(right - left, bottom - top) * 1.6
    centre_x, centre_y = (left + right) / 2, (top + bottom) / 2
    height, width = image.pixels.shape[:2]
    crop = (
        max(0, round(centre_x - size / 2)),
        max(0, round(centre_y - size / 2)),
        min(width, round(centre_x + size / 2)),
        min(height, round(centre_y + size / 2)),
    )
    picture = Image.fromarray(image.pixels).crop(crop)
    picture.thumbnail((side, side), Image.Resampling.LANCZOS)
    return _jpeg(picture)


def _jpeg(picture: Image.Image, quality: int = 85) -> bytes:
    buffer = io.BytesIO()
    picture.convert("RGB").save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()

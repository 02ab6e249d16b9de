"""Searching an index: one committed snapshot as arrays, reference photos, and the search call.

The CLI, the web app and the SageMaker endpoint all search through this module, so the same
reference photo and threshold give the same photos everywhere.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Collection
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from photosearch.faces.base import Face, FaceFinder, largest_face
from photosearch.faces.engine import FaceEngine
from photosearch.faces.images import ImageLoadError, LoadedImage, load_image
from photosearch.index.store import IndexReader, IndexSnapshot
from photosearch.search.match import Match

__all__ = [
    "DEFAULT_THRESHOLD",
    "IndexView",
    "ReferenceFaces",
    "ReferencePhotoError",
    "SearchableIndex",
    "engine_for_index",
    "find_matches",
    "read_reference",
]

_BOX_COLUMNS = ("left", "top", "right", "bottom")
DEFAULT_THRESHOLD = 0.6


@dataclass(frozen=True)
class SearchableIndex:
    """One committed snapshot of the index, in the arrays the search works on."""

    snapshot: IndexSnapshot
    descriptors: np.ndarray  # (F, 128) float32
    face_photos: list[str]  # album key of each face
    face_numbers: np.ndarray  # (F,) int: face number within its photo
    boxes: np.ndarray  # (F, 4) int: left, top, right, bottom in original pixels (inclusive)

    @classmethod
    def from_snapshot(cls, snapshot: IndexSnapshot) -> SearchableIndex:
        faces = snapshot.faces
        boxes = np.stack(
            [faces.column(name).to_numpy(zero_copy_only=False) for name in _BOX_COLUMNS], axis=1
        ).reshape(-1, 4)
        return cls(
            snapshot=snapshot,
            descriptors=snapshot.descriptors,
            face_photos=faces.column("photo").to_pylist(),
            face_numbers=faces.column("face").to_numpy(zero_copy_only=False).astype(np.int64),
            boxes=boxes.astype(np.int64),
        )

    @classmethod
    def load(cls, location: str, **storage_options: Any) -> SearchableIndex | None:
        """The index's current snapshot, or None when nothing was ever committed there."""
        reader = IndexReader(location, **storage_options)
        manifest = reader.manifest()
        return None if manifest is None else cls.from_snapshot(reader.snapshot(manifest))

    @cached_property
    def face_set(self):
        """The faces prepared for the adaptive search (squared norms, stats sample): built once
        per snapshot and reused by every search on it."""
        from photosearch.search.adaptive import FaceSet

        return FaceSet(self.descriptors, self.face_photos, self.boxes, self.face_numbers)

    @property
    def generation(self) -> int:
        return self.snapshot.manifest.generation

    @property
    def model_id(self) -> str | None:
        return self.snapshot.manifest.model_id

    @property
    def photo_count(self) -> int:
        return self.snapshot.manifest.stats.photos


class IndexView:
    """The committed part of an index, reloaded when a new commit lands.

    The manifest is re-read at most every `recheck_seconds`, so repeated searches do not hit
    the storage each time, and a running indexer's commits show up within seconds.
    """

    def __init__(self, location: str, recheck_seconds: float = 2.0, **storage_options) -> None:
        self.reader = IndexReader(location, **storage_options)
        self.location = self.reader.location
        self.recheck_seconds = recheck_seconds
        self._lock = threading.Lock()
        self._current: SearchableIndex | None = None
        self._checked = -1e9

    def refresh(self) -> None:
        """Re-read the manifest on the next call."""
        with self._lock:
            self._checked = -1e9

    def current(self) -> SearchableIndex | None:
        """The latest committed snapshot, or None when nothing was ever committed."""
        with self._lock:
            now = time.monotonic()
            if now - self._checked < self.recheck_seconds:
                return self._current
            manifest = self.reader.manifest()
            self._checked = now
            if manifest is None:
                self._current = None
            elif self._current is None or self._current.generation != manifest.generation:
                self._current = SearchableIndex.from_snapshot(self.reader.snapshot(manifest))
            return self._current


# ----------------------------------------------------------------------------------------------
# Reference photos


class ReferencePhotoError(ValueError):
    """A reference photo that cannot be used; `str()` is one line naming the photo.

    kind: "unreadable" (not a photo), "no_face", or "no_such_face" (the chosen face number
    is out of range); `reason` is the bare cause, without the photo's name.
    """

    def __init__(self, message: str, kind: str, reason: str, face_count: int = 0) -> None:
        super().__init__(message)
        self.kind = kind
        self.reason = reason
        self.face_count = face_count


@dataclass
class ReferenceFaces:
    """The faces found in one reference photo and which one is the person."""

    name: str
    image: LoadedImage
    faces: list[Face]
    chosen: int  # index into faces (default: the largest face)

    @property
    def descriptor(self) -> np.ndarray:
        return self.faces[self.chosen].descriptor


def engine_for_index(model_id: str | None, device: str = "auto") -> FaceEngine:
    """An engine whose descriptors are comparable with the index's (mirror TTA or not)."""
    mirror = model_id is None or model_id.endswith("+mirror")
    return FaceEngine(device=device, mirror=mirror)


def read_reference(
    engine: FaceFinder, source: Any, *, name: str | None = None, face: int | None = None
) -> ReferenceFaces:
    """Find the faces of a reference photo; `face` (0-based, faces ordered left to right)
    picks one, else the largest (by its part inside the photo). Raises ReferencePhotoError for
    unreadable or faceless photos."""
    label = name or str(source)
    try:
        image = load_image(source, max_side=engine.max_side, name=name)
    except ImageLoadError as error:
        raise ReferencePhotoError(str(error), "unreadable", error.reason) from None
    faces = sorted(engine.faces(image), key=lambda found: (found.box[0], found.box[1]))
    if not faces:
        raise ReferencePhotoError(
            f"{label}: no face found in this reference photo", "no_face", "no face found"
        )
    if face is None:
        chosen = faces.index(largest_face(faces, image.original_size))
    elif 0 <= face < len(faces):
        chosen = face
    else:
        count = f"{len(faces)} face{'s' if len(faces) != 1 else ''}"
        raise ReferencePhotoError(
            f"{label}: has {count}, there is no face {face + 1}",
            "no_such_face",
            f"has {count}",
            len(faces),
        )
    return ReferenceFaces(name=label, image=image, faces=faces, chosen=chosen)


# ----------------------------------------------------------------------------------------------
# The search


def find_matches(
    references: np.ndarray,
    index: SearchableIndex,
    *,
    threshold: float | None = None,
    strictness: float | None = None,
    exclude: Collection[tuple[str, int]] = (),
) -> list[Match]:
    """Every photo showing the person of `references`, best first; one Match per photo.

    Two ways to decide, both exact (every indexed face is compared, no top-N cut):
    - threshold=None (the default): the adaptive search (search/adaptive.py): each reference
      is judged against the album's own stranger crowd, with query expansion; `strictness` is
      its margin (higher is stricter, None = the calibrated default). `score` is the margin.
    - threshold=T: a fixed distance threshold, like face_recognition's tolerance: every face
      closer than T to any reference. `score` is 1 - distance / T.
    `exclude` holds (photo, face number) pairs marked "not me", which never match.
    """
    references = np.asarray(references, dtype=np.float32).reshape(-1, 128)
    if len(references) == 0 or len(index.descriptors) == 0:
        return []
    if threshold is None:
        from photosearch.search.adaptive import search

        return search(references, index.face_set, threshold=strictness, exclude=set(exclude))
    from photosearch.search.adaptive import candidates_within, exact_distances

    # The same exact machinery as the adaptive search: one float32 pass picks candidates
    # (with slack), then float64 distances decide.
    threshold = float(threshold)
    rows = candidates_within(index.face_set, references, np.full(len(references), threshold))
    distances = np.full(len(index.descriptors), np.inf)
    if len(rows):
        distances[rows] = exact_distances(references, index.descriptors[rows]).min(axis=0)
    best: dict[str, int] = {}
    excluded = set(exclude)
    for row in np.flatnonzero(distances <= threshold):
        photo = index.face_photos[row]
        if (photo, int(index.face_numbers[row])) in excluded:
            continue
        if photo not in best or distances[row] < distances[best[photo]]:
            best[photo] = int(row)
    matches = [
        Match(
            photo=photo,
            distance=float(distances[row]),
            box=tuple(int(v) for v in index.boxes[row]),  # type: ignore[arg-type]
            face_index=int(index.face_numbers[row]),
            score=float(np.clip(1.0 - distances[row] / max(threshold, 1e-9), 0.0, 1.0)),
            reason="threshold",
            row=row,
        )
        for photo, row in best.items()
    ]
    matches.sort(key=lambda match: (match.distance, match.photo))
    return matches

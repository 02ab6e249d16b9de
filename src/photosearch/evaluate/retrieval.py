"""Retrieval quality: "find every photo of this person" measured as mean precision/recall/F1.

Protocol (docs/search.md): every person with >= 2 photos is one query; the reference is one photo
of that person (the first in sorted order, its face nearest the image centre for LFW); the album
is the whole photo set, every face of every photo (bystanders stay in as strangers); the answer
is the set of returned photos minus the reference photo itself, compared with the person's other
photos. A query that returns nothing has precision 1 (nothing wrong was shown) and F1 0. Means
are over queries, so a person with 2 photos weighs as much as one with 500.

Descriptor sources are injected: `describe(paths)` returns, for each image, its faces as objects
with `.box` (left, top, right, bottom) and `.descriptor` (128 floats), e.g. the engine's Face.
"""

from __future__ import annotations

import csv
import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from photosearch.search.adaptive import FaceSet, exact_distances, search
from photosearch.search.match import Match

__all__ = [
    "AlbumFaces",
    "Describe",
    "FaceLike",
    "Query",
    "RetrievalReport",
    "Searcher",
    "album_from_faces",
    "best_fixed_threshold",
    "default_searcher",
    "describe_lfw_album",
    "describe_shared_photos",
    "fixed_threshold_searcher",
    "identity_half",
    "lfw_first_photo_references",
    "lfw_queries",
    "lfw_retrieval_reports",
    "run_queries",
    "score_query",
    "shared_photo_labels",
    "shared_photo_queries",
    "shared_photos_reports",
]


class FaceLike(Protocol):
    box: tuple[int, int, int, int]
    descriptor: np.ndarray


Describe = Callable[[Sequence[Path]], Sequence[Sequence[FaceLike]]]
Searcher = Callable[[np.ndarray, FaceSet], list[Match]]


@dataclass
class AlbumFaces:
    """Every face of every album photo, plus the photos (with or without faces)."""

    photos: list[str]  # every photo key, including photos with no face
    faces: FaceSet
    centre_face: dict[str, int] = field(default_factory=dict)  # photo -> face nearest its centre


@dataclass(frozen=True)
class Query:
    person: str
    reference_photo: str
    reference: np.ndarray  # (R, 128)
    positives: frozenset[str]  # the person's other photos


@dataclass(frozen=True)
class RetrievalReport:
    method: str
    queries: int
    mean_precision: float
    mean_recall: float
    mean_f1: float
    skipped: int = 0  # people whose reference photo had no face

    def to_json(self) -> dict:
        return asdict(self)


def album_from_faces(
    photos: Sequence[str],
    faces_per_photo: Sequence[Sequence[FaceLike]],
    image_sizes: Sequence[tuple[int, int]] | None = None,
) -> AlbumFaces:
    """Flatten per-photo faces into a FaceSet; image_sizes (w, h) enable the centre-face map."""
    descriptors, keys, boxes = [], [], []
    centre: dict[str, int] = {}
    for n, (photo, found) in enumerate(zip(photos, faces_per_photo, strict=True)):
        best = None
        for face in found:
            index = len(keys)
            descriptors.append(np.asarray(face.descriptor, np.float32))
            keys.append(photo)
            boxes.append(tuple(int(v) for v in face.box))
            if image_sizes is not None:
                width, height = image_sizes[n]
                left, top, right, bottom = face.box
                offset = np.hypot(
                    (left + right) / 2 - (width - 1) / 2, (top + bottom) / 2 - (height - 1) / 2
                )
                if best is None or offset < best[0]:
                    best = (offset, index)
        if best is not None:
            centre[photo] = best[1]
    matrix = np.array(descriptors, np.float32).reshape(-1, 128)
    return AlbumFaces(list(photos), FaceSet(matrix, keys, np.array(boxes).reshape(-1, 4)), centre)


def identity_half(person: str) -> int:
    """Deterministic 0/1 split of identities (calibration half 0, held-out half 1)."""
    return hashlib.sha1(person.encode()).digest()[0] & 1


def lfw_queries(album: AlbumFaces, half: int | None = None) -> tuple[list[Query], int]:
    """Queries for an LFW-layout album (keys "Person/Person_NNNN.jpg"); half selects 0/1/None."""
    by_person: dict[str, list[str]] = {}
    for photo in sorted(album.photos):
        by_person.setdefault(photo.split("/")[0], []).append(photo)
    queries, skipped = [], 0
    for person, photos in sorted(by_person.items()):
        if len(photos) < 2 or (half is not None and identity_half(person) != half):
            continue
        reference_photo = photos[0]
        face = album.centre_face.get(reference_photo)
        if face is None:
            skipped += 1
            continue
        reference = album.faces.descriptors[face][None].astype(np.float64)
        queries.append(Query(person, reference_photo, reference, frozenset(photos[1:])))
    return queries, skipped


def score_query(returned: Iterable[str], query: Query) -> tuple[float, float, float]:
    found = set(returned) - {query.reference_photo}
    true = len(found & query.positives)
    precision = true / len(found) if found else 1.0
    recall = true / len(query.positives)
    f1 = 2 * precision * recall / (precision + recall) if true else 0.0
    return precision, recall, f1


def run_queries(
    album: AlbumFaces, queries: Sequence[Query], searcher: Searcher, method: str, skipped: int = 0
) -> RetrievalReport:
    scores = np.array(
        [score_query((m.photo for m in searcher(q.reference, album.faces)), q) for q in queries]
    ).reshape(-1, 3)
    means = scores.mean(axis=0) if len(scores) else np.zeros(3)
    return RetrievalReport(method, len(queries), *(round(float(v), 4) for v in means), skipped)


def fixed_threshold_searcher(threshold: float) -> Searcher:
    """The baseline: every face within `threshold` of a reference (face_recognition: 0.6)."""

    def run(references: np.ndarray, faces: FaceSet) -> list[Match]:
        distances = exact_distances(references, faces.descriptors).min(axis=0)
        hits = np.flatnonzero(distances < threshold)
        hits = hits[np.argsort(distances[hits], kind="stable")]
        return [
            Match(
                faces.photos[i],
                float(distances[i]),
                tuple(int(v) for v in faces.boxes[i]),
                int(faces.face_numbers[i]),
                float(threshold - distances[i]),
                "threshold",
                int(i),
            )
            for i in hits
        ]

    return run


def default_searcher(**options) -> Searcher:
    return lambda references, faces: search(references, faces, **options)


def best_fixed_threshold(
    album: AlbumFaces, queries: Sequence[Query], grid: Iterable[float] = np.arange(0.36, 0.62, 0.01)
) -> float:
    """The single distance threshold with the highest mean F1 on these queries."""
    distances = [exact_distances(q.reference, album.faces.descriptors).min(axis=0) for q in queries]
    photos = np.array(album.faces.photos, dtype=object)
    best = (-1.0, 0.6)
    for threshold in grid:
        f1 = np.mean(
            [
                score_query(set(photos[d < threshold]), q)[2]
                for d, q in zip(distances, queries, strict=True)
            ]
        )
        best = max(best, (float(f1), float(threshold)))
    return best[1]


def lfw_retrieval_reports(album: AlbumFaces) -> dict[str, RetrievalReport]:
    """The standard comparison on an LFW album: held-out identities (half 1) and all of them."""
    reports: dict[str, RetrievalReport] = {}
    calibration, _ = lfw_queries(album, half=0)
    best = best_fixed_threshold(album, calibration)
    for label, half in (("heldout", 1), ("all", None)):
        queries, skipped = lfw_queries(album, half=half)
        reports[f"{label}/fixed-0.6"] = run_queries(
            album, queries, fixed_threshold_searcher(0.6), "distance < 0.6", skipped
        )
        reports[f"{label}/fixed-best"] = run_queries(
            album, queries, fixed_threshold_searcher(best), f"distance < {best:.2f}", skipped
        )
        reports[f"{label}/photosearch"] = run_queries(
            album, queries, default_searcher(), "photosearch default", skipped
        )
    return reports


def describe_lfw_album(images_dir: Path, describe: Describe) -> AlbumFaces:
    """Run a descriptor source over every LFW image (250x250, so the centre is fixed)."""
    paths = sorted(Path(images_dir).glob("*/*.jpg"))
    photos = [p.relative_to(images_dir).as_posix() for p in paths]
    faces = describe(paths)
    return album_from_faces(photos, faces, [(250, 250)] * len(paths))


# --- The shared photos set (people/, group/, multires/) ---------------------------------------


def shared_photo_labels(photos_dir: Path) -> dict[str, set[str]]:
    """photo key (relative to photos_dir) -> the named people in it (may be empty)."""
    photos_dir = Path(photos_dir)
    labels: dict[str, set[str]] = {}
    with open(photos_dir / "people" / "people.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            labels[row["path"]] = {row["identity"]} if row["identity"] else set()
    with open(photos_dir / "group" / "group_photos.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            named = row["known_people"]
            labels[row["relative_path"]] = set(named.split(";")) if named else set()
    multires = photos_dir / "multires" / "multires.csv"
    if multires.exists():
        with open(multires, newline="") as handle:
            for row in csv.DictReader(handle):
                labels[row["relative_path"]] = {row["identity"]} if row["identity"] else set()
    return labels


def shared_photo_queries(
    album: AlbumFaces,
    labels: dict[str, set[str]],
    lfw_references: dict[str, np.ndarray] | None = None,
) -> tuple[list[Query], int]:
    """One query per person in >= 2 album photos, referenced by a photo naming only them (its
    largest face); people in only one album photo are queried with an LFW reference when
    `lfw_references` (person -> (R, 128)) has one, the album photo then being the positive."""
    people: dict[str, list[str]] = {}
    for photo, named in sorted(labels.items()):
        for person in named:
            people.setdefault(person, []).append(photo)
    faces_of: dict[str, list[int]] = {}
    for index, photo in enumerate(album.faces.photos):
        faces_of.setdefault(photo, []).append(index)
    queries, skipped = [], 0
    for person, photos in sorted(people.items()):
        # Reference: a photo naming only this person, fewest faces first (a portrait beats a
        # group photo whose largest face may be a bystander), then by key.
        solo = sorted(
            (p for p in photos if len(labels[p]) == 1 and faces_of.get(p)),
            key=lambda p: (len(faces_of[p]), p),
        )
        if len(photos) >= 2 and solo:
            reference_photo = solo[0]
            boxes = album.faces.boxes[faces_of[reference_photo]]
            areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
            face = faces_of[reference_photo][int(np.argmax(areas))]
            reference = album.faces.descriptors[face][None].astype(np.float64)
            positives = frozenset(photos) - {reference_photo}
            queries.append(Query(person, reference_photo, reference, positives))
        elif lfw_references and person in lfw_references:
            reference = np.asarray(lfw_references[person], np.float64).reshape(-1, 128)
            queries.append(Query(person, f"lfw:{person}", reference, frozenset(photos)))
        elif len(photos) >= 2:
            skipped += 1
    return queries, skipped


def shared_photos_reports(
    album: AlbumFaces,
    labels: dict[str, set[str]],
    lfw_references: dict[str, np.ndarray] | None = None,
) -> dict[str, RetrievalReport]:
    queries, skipped = shared_photo_queries(album, labels, lfw_references)
    return {
        "photos/fixed-0.6": run_queries(
            album, queries, fixed_threshold_searcher(0.6), "distance < 0.6", skipped
        ),
        "photos/photosearch": run_queries(
            album, queries, default_searcher(), "photosearch default", skipped
        ),
    }


def lfw_first_photo_references(album: AlbumFaces) -> dict[str, np.ndarray]:
    """person -> (1, 128) descriptor of the centre face of their first LFW photo."""
    references: dict[str, np.ndarray] = {}
    for photo in sorted(album.photos):
        person = photo.split("/")[0]
        face = album.centre_face.get(photo)
        if person not in references and face is not None:
            references[person] = album.faces.descriptors[face][None].astype(np.float64)
    return references


def describe_shared_photos(
    photos_dir: Path, describe: Describe
) -> tuple[AlbumFaces, dict[str, set[str]]]:
    """Run a descriptor source over every labelled photo of the shared set (people/, group/,
    multires/); returns the album and each photo's named people."""
    photos_dir = Path(photos_dir)
    labels = shared_photo_labels(photos_dir)
    keys = sorted(key for key in labels if (photos_dir / key).is_file())
    album = album_from_faces(keys, describe([photos_dir / key for key in keys]))
    return album, {key: labels[key] for key in keys}

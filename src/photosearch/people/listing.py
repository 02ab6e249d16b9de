"""People as the CLI and the app show them: faces, photo count, cover face, references.

The cover is the person's most typical face: the one closest to the mean of their descriptors
(ties broken by face key), so it changes only when the person changes noticeably.
Search references are the person's faces; a person with many faces is searched with an evenly
spread subset (every face adds a matrix row, and a few dozen already cover their looks).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from photosearch.people.album import AlbumFaces
from photosearch.people.store import FaceKey, PeopleState, Person

__all__ = [
    "MAX_REFERENCES",
    "PersonSummary",
    "reference_descriptors",
    "summaries",
    "unassigned",
]

MAX_REFERENCES = 48


@dataclass(frozen=True)
class PersonSummary:
    id: int
    name: str | None
    faces: list[FaceKey]
    photos: int
    cover: FaceKey
    cover_box: tuple[int, int, int, int]

    def to_json(self, with_faces: bool = True) -> dict[str, Any]:
        data: dict[str, Any] = {"person": self.id, "name": self.name}
        if with_faces:
            data["faces"] = [{"photo": photo, "face": face} for photo, face in self.faces]
        data["photos"] = self.photos
        data["cover"] = {"photo": self.cover[0], "face": self.cover[1]}
        return data

    @property
    def label(self) -> str:
        return self.name or f"Person {self.id}"


def summaries(state: PeopleState, faces: AlbumFaces) -> list[PersonSummary]:
    """Every person with a face in the snapshot, most photos first (then by id)."""
    found = []
    for person in state.people.values():
        rows = faces.rows(person.faces)
        if not rows:
            continue
        cover_row = _cover(faces, rows)
        found.append(
            PersonSummary(
                id=person.id,
                name=person.name,
                faces=sorted(faces.keys[row] for row in rows),
                photos=len({faces.keys[row][0] for row in rows}),
                cover=faces.keys[cover_row],
                cover_box=tuple(int(v) for v in faces.index.boxes[cover_row]),  # type: ignore[arg-type]
            )
        )
    found.sort(key=lambda summary: (-summary.photos, summary.id))
    return found


def unassigned(state: PeopleState, faces: AlbumFaces) -> list[FaceKey]:
    """Faces of the snapshot in nobody, sorted."""
    taken = {key for person in state.people.values() for key in person.faces}
    return sorted(key for key in faces.keys if key not in taken)


def reference_descriptors(person: Person, faces: AlbumFaces) -> np.ndarray:
    """(R, 128) descriptors to search for the person: all faces, or MAX_REFERENCES of them
    spread evenly from the most to the least typical."""
    rows = faces.rows(person.faces)
    if len(rows) > MAX_REFERENCES:
        x = faces.descriptors[rows].astype(np.float64)
        order = np.argsort(np.linalg.norm(x - x.mean(axis=0), axis=1), kind="stable")
        picks = np.linspace(0, len(rows) - 1, MAX_REFERENCES).round().astype(int)
        rows = [rows[i] for i in order[picks]]
    return faces.descriptors[rows]


def _cover(faces: AlbumFaces, rows: list[int]) -> int:
    x = faces.descriptors[rows].astype(np.float64)
    distances = np.linalg.norm(x - x.mean(axis=0), axis=1)
    best = min(range(len(rows)), key=lambda i: (round(float(distances[i]), 9), faces.keys[rows[i]]))
    return rows[best]

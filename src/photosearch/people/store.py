"""people.json: the album's people and the user's corrections, stored beside the index.

Kept through the index's own file layer (IndexFiles), so a local folder and an s3:// index
work alike: written atomically (a fsynced temporary file and a rename locally, one PUT on object
stores), read whole. Each save bumps `revision`; a save whose file changed since it was read
(another process saved meanwhile) is refused rather than losing that process's corrections.
The format is documented in docs/index-format.md.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from photosearch.index.store import utc_now
from photosearch.index.store.files import IndexFiles

__all__ = [
    "PEOPLE_FORMAT",
    "PEOPLE_FORMAT_VERSION",
    "PEOPLE_NAME",
    "FaceKey",
    "People",
    "PeopleConflictError",
    "PeopleFormatError",
    "PeopleState",
    "Person",
]

PEOPLE_NAME = "people.json"
PEOPLE_FORMAT = "photosearch-people"
PEOPLE_FORMAT_VERSION = 1

FaceKey = tuple[str, int]  # (album key of the photo, face number within the photo)


class PeopleFormatError(ValueError):
    """people.json exists but cannot be used (one line naming the file)."""


class PeopleConflictError(RuntimeError):
    """Another process saved people.json since it was read."""


@dataclass
class Person:
    id: int
    faces: list[FaceKey]
    name: str | None = None
    corrected: bool = False  # named, merged, split or a face removed: kept whole by regrouping

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "corrected": self.corrected,
            "faces": [[photo, face] for photo, face in self.faces],
        }


@dataclass
class PeopleState:
    """Everything people.json holds."""

    people: dict[int, Person] = field(default_factory=dict)
    next_id: int = 1
    rejected: set[tuple[int, FaceKey]] = field(default_factory=set)  # "not this person"
    merged: dict[int, int] = field(default_factory=dict)  # old id -> the id it joined
    model_id: str | None = None
    index_generation: int | None = None  # the index snapshot last grouped
    threshold: float | None = None
    min_faces: int | None = None
    revision: int = 0

    def new_id(self) -> int:
        number = self.next_id
        self.next_id += 1
        return number

    def to_json(self) -> dict[str, Any]:
        return {
            "format": PEOPLE_FORMAT,
            "format_version": PEOPLE_FORMAT_VERSION,
            "revision": self.revision,
            "updated": utc_now(),
            "model_id": self.model_id,
            "index_generation": self.index_generation,
            "threshold": self.threshold,
            "min_faces": self.min_faces,
            "next_id": self.next_id,
            "people": [self.people[key].to_json() for key in sorted(self.people)],
            "rejected": [[person, photo, face] for person, (photo, face) in sorted(self.rejected)],
            "merged": {str(old): new for old, new in sorted(self.merged.items())},
        }

    @classmethod
    def from_json(cls, data: Any, name: str) -> PeopleState:
        if not isinstance(data, dict) or data.get("format") != PEOPLE_FORMAT:
            raise PeopleFormatError(f"{name}: not a photosearch people file")
        if data.get("format_version") != PEOPLE_FORMAT_VERSION:
            raise PeopleFormatError(
                f"{name}: people format version {data.get('format_version')!r} is not "
                f"supported (this photosearch reads version {PEOPLE_FORMAT_VERSION})"
            )
        try:
            people = {
                int(entry["id"]): Person(
                    id=int(entry["id"]),
                    name=entry.get("name"),
                    corrected=bool(entry.get("corrected", False)),
                    faces=[(str(photo), int(face)) for photo, face in entry["faces"]],
                )
                for entry in data.get("people", [])
            }
            return cls(
                people=people,
                next_id=max([int(data.get("next_id", 1)), *(key + 1 for key in people)]),
                rejected={
                    (int(p), (str(photo), int(f))) for p, photo, f in data.get("rejected", [])
                },
                merged={int(old): int(new) for old, new in data.get("merged", {}).items()},
                model_id=data.get("model_id"),
                index_generation=data.get("index_generation"),
                threshold=data.get("threshold"),
                min_faces=data.get("min_faces"),
                revision=int(data.get("revision", 0)),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise PeopleFormatError(f"{name}: damaged people file ({error})") from None


class People:
    """people.json of one index: load and save (with the revision check)."""

    def __init__(self, index_location: str, **storage_options: Any) -> None:
        self.files = IndexFiles(index_location, storage_options)
        self.location = self.files.location
        self.name = f"{self.location.rstrip('/')}/{PEOPLE_NAME}"

    def load(self) -> PeopleState:
        """The saved state, or an empty one when nothing was saved yet."""
        data = self.files.read_bytes(PEOPLE_NAME)
        if data is None:
            return PeopleState()
        try:
            parsed = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise PeopleFormatError(
                f"{self.name}: not JSON ({error}); move it aside to group the album afresh"
            ) from None
        return PeopleState.from_json(parsed, self.name)

    def save(self, state: PeopleState) -> None:
        """Write the state (revision + 1); refuses when someone else saved since it was read."""
        current = self.files.read_bytes(PEOPLE_NAME)
        if current is not None:
            try:
                on_disk = int(json.loads(current).get("revision", 0))
            except (ValueError, AttributeError, TypeError):
                on_disk = state.revision  # a damaged file: replace it
            if on_disk != state.revision:
                raise PeopleConflictError(
                    f"{self.name} was changed by another process meanwhile: run again"
                )
        state.revision += 1
        text = json.dumps(state.to_json(), indent=1, ensure_ascii=False)
        self.files.write_atomic(PEOPLE_NAME, text.encode())

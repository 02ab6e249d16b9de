"""A browser session's search state: references, match settings, the person, exclusions.

Reference photos come from the uploader and live only in the session; a saved person's
descriptors can be searched too, and "not me" marks go to that person's saved exclusions, or
stay in this session otherwise. The search itself goes through `find_matches`
(photosearch.app.logic.matching).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from photosearch.app.logic.library import Library
from photosearch.app.logic.matching import DEFAULT_THRESHOLD, find_matches
from photosearch.app.logic.people import PeopleStore, SavedPerson
from photosearch.app.logic.references import Reference, ReferenceReader
from photosearch.search.match import Match
from photosearch.search.query import ReferencePhotoError

__all__ = [
    "SearchSession",
    "UploadedFile",
]


class UploadedFile(Protocol):
    """What the page hands over for each uploaded file (Streamlit's UploadedFile fits)."""

    file_id: str
    name: str

    def getvalue(self) -> bytes: ...


@dataclass
class SearchSession:
    """One browser session's search: references, threshold, the person, exclusions.

    Reference photos come from the uploader: each file is read once (by its upload id) and
    dropped when removed from the uploader. A saved person's descriptors can be searched too;
    "not me" marks go to that person's saved exclusions, or stay in this session otherwise.
    """

    uploads: dict[str, Reference | str] = field(default_factory=dict)  # file id -> ref or error
    person_id: str | None = None
    session_exclusions: set[tuple[str, int]] = field(default_factory=set)
    automatic: bool = True  # the adaptive search; False: every face closer than `threshold`
    strictness: float | None = None  # automatic mode's margin; None: calibrated for the album
    threshold: float = DEFAULT_THRESHOLD

    def sync_uploads(self, files: Sequence[UploadedFile], reader: ReferenceReader) -> None:
        """Read newly uploaded files; forget files removed from the uploader."""
        present = {file.file_id for file in files}
        for file_id in list(self.uploads):
            if file_id not in present:
                del self.uploads[file_id]
        seen = {
            ref.data_digest: ref.name
            for ref in self.uploads.values()
            if isinstance(ref, Reference) and ref.data_digest
        }
        for file in files:
            if file.file_id in self.uploads:
                continue
            data = file.getvalue()
            digest = hashlib.blake2b(data, digest_size=16).hexdigest()
            if digest in seen:  # the same photo twice would only weigh its face double
                self.uploads[file.file_id] = f"“{file.name}” is the same photo as “{seen[digest]}”."
                continue
            try:
                reference = reader.read(data, file.name)
            except ReferencePhotoError as error:
                self.uploads[file.file_id] = str(error)
                continue
            reference.data_digest = digest
            self.uploads[file.file_id] = reference
            seen[digest] = file.name

    @property
    def references(self) -> list[tuple[str, Reference]]:
        """(upload id, reference) of the usable uploads, in upload order."""
        return [(key, ref) for key, ref in self.uploads.items() if isinstance(ref, Reference)]

    @property
    def upload_errors(self) -> list[str]:
        return [value for value in self.uploads.values() if isinstance(value, str)]

    def choose_face(self, upload_id: str, face: int) -> None:
        reference = self.uploads.get(upload_id)
        if isinstance(reference, Reference) and 0 <= face < reference.face_count:
            reference.chosen = face

    def person(self, store: PeopleStore) -> SavedPerson | None:
        return store.get(self.person_id) if self.person_id else None

    def descriptors(self, store: PeopleStore) -> np.ndarray:
        """(R, 128): the saved person's descriptors, then the chosen face of each upload."""
        rows = [reference.descriptor for _, reference in self.references]
        person = self.person(store)
        if person is not None:
            rows = [*person.descriptors, *rows]
        return np.asarray(rows, dtype=np.float32).reshape(-1, 128)

    def has_query(self, store: PeopleStore) -> bool:
        return len(self.descriptors(store)) > 0

    def exclusions(self, store: PeopleStore, album: str) -> set[tuple[str, int]]:
        person = self.person(store)
        saved = set(person.exclusions_for(album)) if person is not None else set()
        return saved | self.session_exclusions

    def matches(self, library: Library, store: PeopleStore, remote=None) -> list[Match]:
        """The search; `remote` (an EndpointSearch) runs it on the endpoint instead."""
        index = library.searchable()
        if index is None:
            return []
        settings = {
            "threshold": None if self.automatic else self.threshold,
            "strictness": self.strictness if self.automatic else None,
            "exclude": self.exclusions(store, library.album.location),
        }
        if remote is not None:
            return remote.matches(self.descriptors(store), **settings)
        return find_matches(self.descriptors(store), index, **settings)

    def mark_not_me(self, match: Match, store: PeopleStore, album: str) -> None:
        """Exclude this face from this person's results, for good if the person is saved."""
        person = self.person(store)
        if person is not None:
            store.add_exclusion(person.id, album, match.photo, match.face_index)
        else:
            self.session_exclusions.add((match.photo, match.face_index))

    def hidden(self, store: PeopleStore, album: str) -> list[tuple[str, int]]:
        """The (photo, face) pairs marked "not me" for this search, sorted: what undo offers."""
        return sorted(self.exclusions(store, album))

    def unhide(self, photo: str, face: int, store: PeopleStore, album: str) -> None:
        """Undo "not me": the face may match again (saved person or this session alike)."""
        self.session_exclusions.discard((photo, int(face)))
        person = self.person(store)
        if person is not None:
            store.remove_exclusion(person.id, album, photo, face)

    def save_person(self, name: str, store: PeopleStore, album: str, model_id: str) -> SavedPerson:
        """Save (or update) the person: descriptors, a face thumbnail and the exclusions."""
        references = [reference for _, reference in self.references]
        person = self.person(store)
        if person is not None:
            person.name = name.strip() or person.name
            if references:
                person.descriptors = np.concatenate(
                    [person.descriptors, np.stack([r.descriptor for r in references])]
                )
            for photo, face in self.session_exclusions:
                person.exclusions.setdefault(album, []).append((photo, face))
            store.update(person)
        else:
            if not references:
                raise ValueError("upload a photo of the person first")
            first = references[0]
            person = store.create(
                name,
                np.stack([r.descriptor for r in references]),
                model_id=model_id,
                face=first.face_thumbnails[first.chosen],
                exclusions={album: sorted(self.session_exclusions)},
            )
        self.person_id = person.id
        self.session_exclusions.clear()
        return person

    def use_person(self, person_id: str | None) -> None:
        """Search for a saved person (None: only the uploaded photos)."""
        self.person_id = person_id
        self.session_exclusions.clear()

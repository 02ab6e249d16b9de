"""The People page without Streamlit: the album's people, their cover faces, corrections, photos.

One `AlbumPeopleView` per Library (shared by the sessions). It follows the committed index: a
new commit (photos indexed meanwhile) brings the people up to date through
photosearch.people (new faces join people, ids stay), so the page updates while the album is
being indexed. Corrections go through the same library calls as `photosearch people name |
merge | remove`, so the CLI and the app share people.json. An index the app cannot write
(a read-only S3 prefix) still shows its people; corrections then fail with one line.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from photosearch.app.logic.library import Library
from photosearch.app.logic.references import face_thumbnail
from photosearch.faces.images import ImageLoadError, load_image
from photosearch.index.store import IndexStoreError
from photosearch.people import corrections
from photosearch.people.listing import PersonSummary, reference_descriptors
from photosearch.people.refresh import AlbumPeople, album_people, correct
from photosearch.people.store import FaceKey
from photosearch.search.match import Match
from photosearch.search.query import find_matches

__all__ = ["AlbumPeopleView", "PersonCard"]

COVER_SIDE = 160


@dataclass(frozen=True)
class PersonCard:
    summary: PersonSummary
    cover: bytes | None  # JPEG of the cover face, None when the photo cannot be read

    @property
    def caption(self) -> str:
        count = self.summary.photos
        return f"{self.summary.label} · {count} photo{'s' if count != 1 else ''}"


class AlbumPeopleView:
    """The people of one Library's index, kept in step with its commits."""

    def __init__(self, library: Library) -> None:
        self.library = library
        self._lock = threading.Lock()
        self._people: AlbumPeople | None = None
        self._covers: dict[tuple, bytes | None] = {}
        self.problem: str | None = None  # why people.json could not be saved, if it could not

    def current(self) -> AlbumPeople | None:
        """The people of the latest committed snapshot (None before anything is indexed)."""
        index = self.library.searchable()
        if index is None:
            return None
        with self._lock:
            if self._people is None or self._people.index.generation != index.generation:
                self._people = self._load(index)
            return self._people

    def _load(self, index) -> AlbumPeople:
        location = self.library.index_location
        try:
            found = album_people(location, index=index)
            self.problem = None
        except (IndexStoreError, OSError) as error:
            found = album_people(location, index=index, save=False)
            self.problem = f"people cannot be saved beside the index: {error}"
        return found

    def cards(self) -> list[PersonCard]:
        """Every person, most photos first, with their cover face."""
        found = self.current()
        if found is None:
            return []
        return [PersonCard(summary, self.cover(summary)) for summary in found.summaries()]

    def cover(self, summary: PersonSummary) -> bytes | None:
        key = (summary.cover, summary.cover_box)
        if key not in self._covers:
            self._covers[key] = self.face_crop(summary.cover[0], summary.cover_box)
        return self._covers[key]

    def face_crop(self, photo: str, box) -> bytes | None:
        try:
            image = load_image(self.library.album.read(photo), max_side=1600, name=photo)
        except (ImageLoadError, OSError):
            return None
        return face_thumbnail(image, box, COVER_SIDE)

    def _change(self, change):
        """Apply a correction; returns its result. Raises corrections.PeopleError."""
        index = self.library.searchable()
        if index is None:
            raise corrections.PeopleError("index the album first")
        with self._lock:
            found, result = correct(self.library.index_location, change, index=index)
            self._people = found
        return result

    def rename(self, person: int, name: str | None):
        return self._change(lambda state: corrections.name(state, person, name))

    def merge(self, into: int, other: int):
        return self._change(lambda state: corrections.merge(state, into, [other]))

    def not_this_person(self, person: int, key: FaceKey):
        """The face leaves the person (or, not one of theirs, never joins them)."""

        def change(state):
            found = corrections.find_person(state, person)
            if key in found.faces:
                return corrections.remove_faces(state, found.id, [key])
            state.rejected.add((found.id, key))
            return found

        return self._change(change)

    def matches(self, person: int) -> list[Match]:
        """The person's photos: a search with their grouped faces as the references (so
        photos the grouping left out are found too), without the faces said not to be them."""
        found = self.current()
        if found is None:
            return []
        chosen = corrections.find_person(found.state, person)
        rejected = {key for pid, key in found.state.rejected if pid == chosen.id}
        references = reference_descriptors(chosen, found.faces)
        return find_matches(references, found.index, exclude=rejected)

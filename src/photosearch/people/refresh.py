"""One call for the CLI and the app: an index's people, brought up to date and saved.

`album_people` reads the index's current snapshot and people.json, runs the update (album.py)
when the snapshot or the settings changed since the last save, saves, and returns everything
the callers show. `correct` applies one correction (corrections.py) the same way: it reads,
changes and saves, retrying once when another process saved in between.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from photosearch.index.store import IndexFormatError
from photosearch.people.album import AlbumFaces, UpdateReport, regroup, update
from photosearch.people.listing import PersonSummary, summaries, unassigned
from photosearch.people.store import FaceKey, People, PeopleConflictError, PeopleState
from photosearch.search.query import SearchableIndex

__all__ = ["AlbumPeople", "album_people", "correct"]


@dataclass
class AlbumPeople:
    """An index's people at one snapshot."""

    index: SearchableIndex
    faces: AlbumFaces
    state: PeopleState
    report: UpdateReport | None  # None when nothing needed updating

    def summaries(self) -> list[PersonSummary]:
        return summaries(self.state, self.faces)

    def unassigned(self) -> list[FaceKey]:
        return unassigned(self.state, self.faces)


def _load_index(location: str, storage_options: dict) -> SearchableIndex:
    index = SearchableIndex.load(location, **storage_options)
    if index is None:
        raise IndexFormatError(f"no photosearch index at {location}")
    return index


def album_people(
    location: str,
    *,
    threshold: float | None = None,
    min_faces: int | None = None,
    full_regroup: bool = False,
    save: bool = True,
    index: SearchableIndex | None = None,
    **storage_options: Any,
) -> AlbumPeople:
    """The people of the index at `location`, up to date with its current snapshot."""
    store = People(location, **storage_options)
    index = index or _load_index(location, storage_options)
    faces = AlbumFaces(index)
    for attempt in range(2):
        state = store.load()
        stale = (
            state.index_generation != index.generation
            or state.model_id != index.model_id
            or (threshold is not None and threshold != state.threshold)
            or (min_faces is not None and min_faces != state.min_faces)
        )
        report = None
        if full_regroup:
            regroup(state, faces, threshold=threshold)
            report = update(state, faces, threshold=threshold, min_faces=min_faces)
        elif stale:
            report = update(state, faces, threshold=threshold, min_faces=min_faces)
        if report is None or not save:
            return AlbumPeople(index, faces, state, report)
        try:
            store.save(state)
        except PeopleConflictError:
            if attempt:
                raise
            continue
        return AlbumPeople(index, faces, state, report)
    raise AssertionError("unreachable")


def correct(
    location: str,
    change: Callable[[PeopleState], Any],
    *,
    index: SearchableIndex | None = None,
    **storage_options: Any,
) -> tuple[AlbumPeople, Any]:
    """Apply `change(state)` to the index's up-to-date people and save; returns the people and
    what `change` returned. Corrections raise corrections.PeopleError, leaving the file as it was.
    """
    store = People(location, **storage_options)
    for attempt in range(2):
        current = album_people(location, index=index, **storage_options)
        result = change(current.state)
        try:
            store.save(current.state)
        except PeopleConflictError:
            if attempt:
                raise
            continue
        return current, result
    raise AssertionError("unreachable")

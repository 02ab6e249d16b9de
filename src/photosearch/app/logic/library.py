"""The album and its index: what the album panel shows, and the `Library` of one album.

Only the committed part of the index is searched, reloaded (through `IndexView`) when a commit
lands, so searching goes on while photos are being indexed. One `Library` is shared by every
browser session looking at the same album, so indexing runs once and thumbnails are made once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from photosearch.app.logic.indexing import BackgroundIndexer
from photosearch.app.logic.results import ThumbnailCache
from photosearch.faces.base import FaceFinder
from photosearch.index.album import Album
from photosearch.index.store import IndexReader, IndexStoreError
from photosearch.search.query import IndexView, SearchableIndex
from photosearch.storage import canonical_location

__all__ = [
    "AlbumStatus",
    "Library",
    "album_of_index",
    "index_location_for",
    "known_albums",
]


@dataclass(frozen=True)
class AlbumStatus:
    """What the album panel shows."""

    album: str
    index: str
    indexed: bool  # anything committed yet
    photos: int  # photos recorded in the index (any status)
    faces: int
    no_face: int
    errors: list[tuple[str, str]]  # (photo, reason) of the unreadable photos
    updated: str | None  # time of the last commit (UTC, ISO 8601)
    model_id: str | None  # the index's face models


def index_location_for(album: str, index: str | None = None) -> str:
    """The index to use: the one given, else the album's default index in the data dir."""
    from photosearch.index.indexer import default_index_location

    return canonical_location(index) if index else default_index_location(album)


def album_of_index(index: str) -> str | None:
    """The album an existing index describes (None if there is no index there)."""
    manifest = IndexReader(index).manifest()
    return manifest.album if manifest is not None else None


def known_albums() -> list[tuple[str, str]]:
    """(album, index) of every index in this machine's data dir, for the album picker."""
    from photosearch.index.indexer import known_indexes

    found = []
    for location in known_indexes():
        try:
            album = album_of_index(location)
        except IndexStoreError:
            continue
        if album:
            found.append((album, location))
    return found


class Library:
    """One album with its index: status, search data, thumbnails, background indexing.

    Shared by every browser session looking at the same album (the page caches one per
    album/index pair), so indexing runs once and thumbnails are made once.
    """

    def __init__(
        self,
        album: str,
        index: str | None = None,
        *,
        engine_factory: Callable[[], FaceFinder] | None = None,
    ) -> None:
        self.album = Album(album)
        self.index_location = index_location_for(self.album.location, index)
        self.view = IndexView(self.index_location)
        self.thumbnails = ThumbnailCache(self.album)
        self.indexing = BackgroundIndexer(
            self.album, self.index_location, engine_factory=engine_factory, view=self.view
        )

    def searchable(self) -> SearchableIndex | None:
        return self.view.current()

    def status(self) -> AlbumStatus:
        current = self.view.current()
        if current is None:
            return AlbumStatus(
                self.album.location, self.index_location, False, 0, 0, 0, [], None, None
            )
        manifest = current.snapshot.manifest
        stats = manifest.stats
        return AlbumStatus(
            album=self.album.location,
            index=self.index_location,
            indexed=True,
            photos=stats.photos,
            faces=stats.faces,
            no_face=stats.no_face,
            errors=current.snapshot.errors(),
            updated=manifest.updated,
            model_id=manifest.model_id,
        )

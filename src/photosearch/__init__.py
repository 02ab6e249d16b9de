"""Photosearch: find every photo of a person in an album.

The public API in a few names::

    import photosearch

    album = "~/Pictures/roadtrip"
    photosearch.index_album(album)                   # once; re-run to add new photos only
    index = photosearch.SearchableIndex.load(photosearch.default_index_location(album))
    engine = photosearch.FaceEngine()                # nothing loads until its first photo
    me = photosearch.read_reference(engine, "selfie.heic")
    for match in photosearch.find_matches(me.descriptor, index):   # every match, best first
        print(match.photo, match.distance)

Each name lives in its room (faces/, index/, search/; docs/architecture.md) and is imported on
first use: `import photosearch` loads neither torch nor pyarrow, so the command line starts fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# name -> the module that defines it.
_EXPORTS = {
    "FaceEngine": "photosearch.faces.engine",
    "Face": "photosearch.faces.base",
    "FaceFinder": "photosearch.faces.base",
    "load_image": "photosearch.faces.images",
    "ImageLoadError": "photosearch.faces.images",
    "Album": "photosearch.index.album",
    "AlbumError": "photosearch.index.album",
    "index_album": "photosearch.index.indexer",
    "default_index_location": "photosearch.index.indexer",
    "IndexStoreError": "photosearch.index.store",
    "SearchableIndex": "photosearch.search.query",
    "read_reference": "photosearch.search.query",
    "ReferencePhotoError": "photosearch.search.query",
    "find_matches": "photosearch.search.query",
    "Match": "photosearch.search.match",
}

__all__ = [
    "Album",
    "AlbumError",
    "Face",
    "FaceEngine",
    "FaceFinder",
    "ImageLoadError",
    "IndexStoreError",
    "Match",
    "ReferencePhotoError",
    "SearchableIndex",
    "__version__",
    "default_index_location",
    "find_matches",
    "index_album",
    "load_image",
    "read_reference",
]

if TYPE_CHECKING:
    from photosearch.faces.base import Face, FaceFinder
    from photosearch.faces.engine import FaceEngine
    from photosearch.faces.images import ImageLoadError, load_image
    from photosearch.index.album import Album, AlbumError
    from photosearch.index.indexer import default_index_location, index_album
    from photosearch.index.store import IndexStoreError
    from photosearch.search.match import Match
    from photosearch.search.query import (
        ReferencePhotoError,
        SearchableIndex,
        find_matches,
        read_reference,
    )


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'photosearch' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))

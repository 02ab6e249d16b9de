"""Everything the web app does, without Streamlit, so it can be tested on its own.

The page script (page.py) only lays out widgets and calls into this package, one module a job:

- `config`: configuration and the password (hashed; refusal to serve the network without one);
- `identity`: who uses the page (the user the gateway vouches for, or the loopback owner);
- `library`: the album and its index (the committed part, reloaded when a commit lands);
- `matching`: the search call: ONE function, `find_matches`, and the settings the page offers;
- `references`: reference photos (faces found, face thumbnails, which face is the person);
- `session`: a browser session's search state (references, threshold, "not me" exclusions);
- `results`: results (pages of matches, thumbnails with the matched face boxed) and acting on
  them (zip download, copy to a folder);
- `people`: each user's saved people (descriptors and exclusions under their own prefix,
  local or S3; "forget" deletes them);
- `indexing`: background indexing with progress, which never blocks searching the committed part;
- `remote`: the same search through the SageMaker endpoint (PHOTOSEARCH_APP_ENDPOINT).

Privacy: an uploaded reference photo is decoded in memory and only its face descriptors and
small face thumbnails are kept, for the browser session; nothing reaches the disk unless the
user saves the person, and then only descriptors, one face thumbnail and exclusions.
"""

from __future__ import annotations

from photosearch.app.logic.config import (
    ENV_ALBUM,
    ENV_INDEX,
    ENV_PASSWORD,
    ENV_PASSWORD_HASH,
    ENV_PUBLIC,
    AppConfig,
    StartRefused,
    check_startable,
    hash_password,
    is_loopback,
    is_password_hash,
    password_hash_from,
    verify_password,
)
from photosearch.app.logic.face_picker import click_to_photo, face_at
from photosearch.app.logic.identity import User, page_user
from photosearch.app.logic.indexing import DONE, FAILED, RUNNING
from photosearch.app.logic.library import AlbumStatus, Library, album_of_index, known_albums
from photosearch.app.logic.matching import (
    DEFAULT_THRESHOLD,
    MATCH_AUTOMATIC,
    MATCH_DISTANCE,
    MATCH_MODES,
    STRICTNESS_MAX,
    STRICTNESS_MIN,
    STRICTNESS_STEP,
    THRESHOLD_MAX,
    THRESHOLD_MIN,
    THRESHOLD_STEP,
    default_strictness,
    find_matches,
    strictness_words,
    threshold_words,
)
from photosearch.app.logic.people import PeopleStore, adopt_legacy_people, people_location
from photosearch.app.logic.references import FACE_THUMBNAIL_SIDE, Reference, ReferenceReader
from photosearch.app.logic.remote import EndpointSearch, endpoint_from
from photosearch.app.logic.results import (
    BOX_COLOUR,
    PER_PAGE,
    RESULT_THUMBNAIL_SIZE,
    copy_destination,
    copy_matches,
    copy_to_folder,
    match_caption,
    page_of,
    zip_bytes,
    zip_name,
)
from photosearch.app.logic.session import SearchSession
from photosearch.search.match import Match
from photosearch.search.query import ReferencePhotoError

__all__ = [
    "BOX_COLOUR",
    "DEFAULT_THRESHOLD",
    "DONE",
    "ENV_ALBUM",
    "ENV_INDEX",
    "ENV_PASSWORD",
    "ENV_PASSWORD_HASH",
    "ENV_PUBLIC",
    "FACE_THUMBNAIL_SIDE",
    "FAILED",
    "MATCH_AUTOMATIC",
    "MATCH_DISTANCE",
    "MATCH_MODES",
    "PER_PAGE",
    "RESULT_THUMBNAIL_SIZE",
    "RUNNING",
    "STRICTNESS_MAX",
    "STRICTNESS_MIN",
    "STRICTNESS_STEP",
    "THRESHOLD_MAX",
    "THRESHOLD_MIN",
    "THRESHOLD_STEP",
    "AlbumStatus",
    "AppConfig",
    "EndpointSearch",
    "Library",
    "Match",
    "PeopleStore",
    "Reference",
    "ReferencePhotoError",
    "ReferenceReader",
    "SearchSession",
    "StartRefused",
    "User",
    "adopt_legacy_people",
    "album_of_index",
    "check_startable",
    "click_to_photo",
    "copy_destination",
    "copy_matches",
    "copy_to_folder",
    "default_strictness",
    "endpoint_from",
    "face_at",
    "find_matches",
    "hash_password",
    "is_loopback",
    "is_password_hash",
    "known_albums",
    "match_caption",
    "page_of",
    "page_user",
    "password_hash_from",
    "people_location",
    "strictness_words",
    "threshold_words",
    "verify_password",
    "zip_bytes",
    "zip_name",
]

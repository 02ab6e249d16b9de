"""Everything the web app does, without Streamlit, so it can be tested on its own.

The page script (page.py) only lays out widgets and calls into this module. Sections:

1. configuration and login (password hashed, refusal to serve the network without one);
2. the album and its index (the committed part, reloaded when a commit lands);
3. the search call: ONE function, `find_matches`, the single place that talks to the search code;
4. reference photos (faces found, face thumbnails, which face is the person);
5. a browser session's search state (references, threshold, "not me" exclusions);
6. results (pages of matches, thumbnails with the matched face boxed);
7. acting on results (zip download, copy to a folder);
8. saved people (descriptors and exclusions on disk, "forget" deletes them);
9. background indexing with progress, which never blocks searching the committed part.

Privacy: an uploaded reference photo is decoded in memory and only its face descriptors and
small face thumbnails are kept, for the browser session; nothing reaches the disk unless the
user saves the person, and then only descriptors, one face thumbnail and exclusions.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import ipaddress
import json
import os
import re
import secrets as secrets_module
import shutil
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from PIL import Image, ImageDraw

from photosearch.faces.base import EngineWrapper, Face, FaceFinder
from photosearch.faces.images import ImageLoadError, LoadedImage, load_image
from photosearch.index.album import Album, AlbumError
from photosearch.index.store import IndexReader, IndexStoreError
from photosearch.search.match import Match
from photosearch.search.query import (
    DEFAULT_THRESHOLD,
    IndexView,
    ReferencePhotoError,
    SearchableIndex,
    find_matches,
)
from photosearch.search.results import UNREADABLE_LIST_NAME as UNREADABLE_LIST_NAME
from photosearch.search.results import CopyReport as CopyReport
from photosearch.search.results import copy_matches as copy_matches
from photosearch.search.results import write_zip as write_zip
from photosearch.search.results import zip_bytes as zip_bytes
from photosearch.search.results import zip_name as zip_name
from photosearch.storage import canonical_location

# ----------------------------------------------------------------------------------------------
# 1. Configuration and login

# The launcher (`photosearch app`) hands its options to the page through these variables.
ENV_ALBUM = "PHOTOSEARCH_APP_ALBUM"
ENV_INDEX = "PHOTOSEARCH_APP_INDEX"
ENV_PUBLIC = "PHOTOSEARCH_APP_PUBLIC"
# The password: plain (hashed as soon as it is read) or already hashed (see `hash_password`).
ENV_PASSWORD = "PHOTOSEARCH_APP_PASSWORD"
ENV_PASSWORD_HASH = "PHOTOSEARCH_APP_PASSWORD_HASH"
# In Streamlit secrets (.streamlit/secrets.toml): [photosearch] password = "..." (or
# password_hash = "scrypt$..."), or the two variable names above at the top level.
SECRETS_SECTION = "photosearch"

_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**14, 8, 1


class StartRefused(RuntimeError):
    """The app must not start as configured (e.g. network access without a password)."""


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    """A salted scrypt hash, ``scrypt$N$r$p$<salt>$<hash>`` (base64): what the app keeps."""
    if not password:
        raise ValueError("the password is empty")
    salt = salt if salt is not None else secrets_module.token_bytes(16)
    digest = hashlib.scrypt(
        password.encode(), salt=salt, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P, dklen=32
    )
    encode = lambda raw: base64.b64encode(raw).decode()  # noqa: E731
    return f"scrypt${_SCRYPT_N}${_SCRYPT_R}${_SCRYPT_P}${encode(salt)}${encode(digest)}"


def verify_password(password: str, stored_hash: str | None) -> bool:
    """True when `password` matches `stored_hash` (constant-time comparison)."""
    if not password or not stored_hash:
        return False
    try:
        scheme, n, r, p, salt, expected = stored_hash.split("$")
        if scheme != "scrypt":
            return False
        digest = hashlib.scrypt(
            password.encode(),
            salt=base64.b64decode(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=len(base64.b64decode(expected)),
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(digest, base64.b64decode(expected))


def is_password_hash(value: str) -> bool:
    return value.startswith("scrypt$") and value.count("$") == 5


def password_hash_from(
    environ: Mapping[str, str] | None = None, secrets: Mapping[str, Any] | None = None
) -> str | None:
    """The password hash to check logins against, from the environment or Streamlit secrets.

    A plain password is hashed here, so only the hash is kept in memory.
    """
    environ = os.environ if environ is None else environ
    candidates: list[tuple[str | None, bool]] = [
        (environ.get(ENV_PASSWORD_HASH), True),
        (environ.get(ENV_PASSWORD), False),
    ]
    if secrets is not None:
        section = _mapping_get(secrets, SECRETS_SECTION)
        if isinstance(section, Mapping):
            candidates += [
                (_mapping_get(section, "password_hash"), True),
                (_mapping_get(section, "password"), False),
            ]
        candidates += [
            (_mapping_get(secrets, ENV_PASSWORD_HASH), True),
            (_mapping_get(secrets, ENV_PASSWORD), False),
        ]
    for value, hashed in candidates:
        if not value:
            continue
        value = str(value)
        if hashed:
            if not is_password_hash(value):
                raise StartRefused(
                    "the password hash is not in photosearch's format (scrypt$N$r$p$salt$hash); "
                    "make one with `photosearch app --hash-password`"
                )
            return value
        return hash_password(value)
    return None


def _mapping_get(mapping: Mapping[str, Any], key: str) -> Any:
    try:
        return mapping.get(key)
    except Exception:  # Streamlit secrets raise their own errors when no secrets file exists
        return None


def is_loopback(address: str | None) -> bool:
    """True for addresses only this machine can reach (127.0.0.0/8, ::1, localhost)."""
    if not address:
        return False  # Streamlit's default (no address) listens on every interface
    if address.strip("[]").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(address.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: may resolve to anything


def check_startable(public: bool, address: str | None, password_hash: str | None) -> None:
    """Refuse to serve the network without a password (raises StartRefused)."""
    if (public or not is_loopback(address)) and not password_hash:
        raise StartRefused(
            f"refusing to serve photos on the network ({address or 'all interfaces'}) without a "
            f"password: set {ENV_PASSWORD} (or {ENV_PASSWORD_HASH}, or `password` under "
            f"[{SECRETS_SECTION}] in .streamlit/secrets.toml)"
        )


@dataclass(frozen=True)
class AppConfig:
    """What the page was started with."""

    album: str | None  # album location (folder or URL); None: the user picks one
    index: str | None  # index location; None: the album's default index
    public: bool  # started for network access: login required, album fixed, no server copies
    password_hash: str | None

    @classmethod
    def from_environment(
        cls, environ: Mapping[str, str] | None = None, secrets: Mapping[str, Any] | None = None
    ) -> AppConfig:
        environ = os.environ if environ is None else environ
        return cls(
            album=environ.get(ENV_ALBUM) or None,
            index=environ.get(ENV_INDEX) or None,
            public=environ.get(ENV_PUBLIC, "").lower() in ("1", "true", "yes"),
            password_hash=password_hash_from(environ, secrets),
        )

    def login_required(self, server_address: str | None) -> bool:
        """Login is needed when started public or bound to an address others can reach."""
        return self.public or not is_loopback(server_address)


# ----------------------------------------------------------------------------------------------
# 2. The album and its index


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


# ----------------------------------------------------------------------------------------------
# 3. The search call (the one place that talks to the search code)

# Distances are Euclidean between 128-D descriptors; dlib's models call two faces the same
# person below 0.6 (99.38% on LFW pairs).

THRESHOLD_MIN = 0.30
THRESHOLD_MAX = 0.80
THRESHOLD_STEP = 0.01

# The two ways to match (query.find_matches). Automatic is the adaptive search the CLI uses by
# default: each reference is judged against the album's own strangers, which holds up as the
# album grows (LFW: F1 0.876 against 0.133 for a fixed distance of 0.6). Its slider is the
# strictness margin, higher is stricter; its default depends on the album's size.
MATCH_AUTOMATIC = "Automatic (recommended)"
MATCH_DISTANCE = "Fixed face distance"
MATCH_MODES = (MATCH_AUTOMATIC, MATCH_DISTANCE)
STRICTNESS_MIN = 0.00
STRICTNESS_MAX = 0.30
STRICTNESS_STEP = 0.01


def default_strictness(index: SearchableIndex | None) -> float:
    """The calibrated margin for this album's size, rounded to the slider's step."""
    from photosearch.search.calibration import default_threshold

    faces = len(index.descriptors) if index is not None else 0
    return round(default_threshold(faces), 2)


def strictness_words(strictness: float, default: float) -> str:
    """What the automatic mode's strictness means for the results, in plain words."""
    if strictness > default + 0.03:
        return (
            "Stricter than usual: only photos where the face clearly stands out from the "
            "album's other people; some photos of them may be missed."
        )
    if strictness < default - 0.03:
        return (
            "Looser than usual: more of their photos are found, but look-alikes and "
            "strangers start to appear."
        )
    return (
        "The usual setting: each face is compared with the album's other people, and a "
        "photo matches when this face is clearly closer to yours than theirs are."
    )


def threshold_words(threshold: float) -> str:
    """What the threshold means for the results, in plain words."""
    if threshold < DEFAULT_THRESHOLD - 0.04:
        return (
            "Stricter than usual: fewer photos, nearly all of them really this person, "
            "but some photos of them may be missed."
        )
    if threshold > DEFAULT_THRESHOLD + 0.04:
        return (
            "Looser than usual: more of their photos are found, but look-alikes and "
            "strangers start to appear."
        )
    return "The usual setting: a good balance between finding every photo and avoiding others."


# ----------------------------------------------------------------------------------------------
# 4. Reference photos

FACE_THUMBNAIL_SIDE = 160


@dataclass
class Reference:
    """A reference photo's faces; `chosen` is the one the user says is the person."""

    name: str
    descriptors: np.ndarray  # (N, 128) float32, one per face found
    boxes: list[tuple[int, int, int, int]]  # original pixels
    face_thumbnails: list[bytes]  # JPEG crop of each face
    chosen: int  # index of the person's face (default: the largest)

    @property
    def descriptor(self) -> np.ndarray:
        return self.descriptors[self.chosen]

    @property
    def face_count(self) -> int:
        return len(self.boxes)


class ReferenceReader:
    """Finds the faces of uploaded reference photos with the same engine settings as the CLI."""

    def __init__(self, engine_factory: Callable[[], FaceFinder] | None = None) -> None:
        self._engine_factory = engine_factory or _default_engine
        self._engine: FaceFinder | None = None
        self._lock = threading.Lock()  # one photo at a time: the engine is shared by sessions

    @property
    def engine(self) -> FaceFinder:
        if self._engine is None:
            self._engine = self._engine_factory()
        return self._engine

    @property
    def model_id(self) -> str:
        return self.engine.model_id

    def read(self, data: bytes, name: str) -> Reference:
        """The faces of one photo; raises ReferencePhotoError whose `str()` is a sentence for
        the user."""
        from photosearch.search import query

        try:
            with self._lock:
                found = query.read_reference(self.engine, data, name=name)
        except ReferencePhotoError as error:
            if error.kind == "unreadable":
                raise ReferencePhotoError(
                    f"“{name}” can't be used: {error.reason}. "
                    "Upload a photo (JPEG, PNG, WEBP or HEIC).",
                    error.kind,
                    error.reason,
                ) from None
            raise ReferencePhotoError(
                f"No face found in “{name}”. Try a photo where the face is clearly visible.",
                error.kind,
                error.reason,
            ) from None
        return Reference(
            name=name,
            descriptors=np.stack([face.descriptor for face in found.faces]).astype(np.float32),
            boxes=[face.box for face in found.faces],
            face_thumbnails=[face_thumbnail(found.image, face.box) for face in found.faces],
            chosen=found.chosen,
        )


def _default_engine() -> FaceFinder:
    from photosearch.faces.engine import FaceEngine

    return FaceEngine()


def _working_box(image: LoadedImage, box: Sequence[int]) -> tuple[float, float, float, float]:
    """An original-pixel box in the loaded (possibly shrunk) image's pixels."""
    scale_x, scale_y = image.axis_scales
    left, top, right, bottom = box
    return left / scale_x, top / scale_y, (right + 1) / scale_x, (bottom + 1) / scale_y


def face_thumbnail(
    image: LoadedImage, box: Sequence[int], side: int = FACE_THUMBNAIL_SIDE
) -> bytes:
    """A square JPEG crop around one face, with some margin (hair, chin) for recognition."""
    left, top, right, bottom = _working_box(image, box)
    size = max(right - left, bottom - top) * 1.6
    centre_x, centre_y = (left + right) / 2, (top + bottom) / 2
    height, width = image.pixels.shape[:2]
    crop = (
        max(0, round(centre_x - size / 2)),
        max(0, round(centre_y - size / 2)),
        min(width, round(centre_x + size / 2)),
        min(height, round(centre_y + size / 2)),
    )
    picture = Image.fromarray(image.pixels).crop(crop)
    picture.thumbnail((side, side), Image.Resampling.LANCZOS)
    return _jpeg(picture)


def _jpeg(picture: Image.Image, quality: int = 85) -> bytes:
    buffer = io.BytesIO()
    picture.convert("RGB").save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


# ----------------------------------------------------------------------------------------------
# 5. A browser session's search


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
        for file in files:
            if file.file_id in self.uploads:
                continue
            try:
                self.uploads[file.file_id] = reader.read(file.getvalue(), file.name)
            except ReferencePhotoError as error:
                self.uploads[file.file_id] = str(error)

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

    def matches(self, library: Library, store: PeopleStore) -> list[Match]:
        index = library.searchable()
        if index is None:
            return []
        return find_matches(
            self.descriptors(store),
            index,
            threshold=None if self.automatic else self.threshold,
            strictness=self.strictness if self.automatic else None,
            exclude=self.exclusions(store, library.album.location),
        )

    def mark_not_me(self, match: Match, store: PeopleStore, album: str) -> None:
        """Exclude this face from this person's results, for good if the person is saved."""
        person = self.person(store)
        if person is not None:
            store.add_exclusion(person.id, album, match.photo, match.face_index)
        else:
            self.session_exclusions.add((match.photo, match.face_index))

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


# ----------------------------------------------------------------------------------------------
# 6. Results

PER_PAGE = 24
RESULT_THUMBNAIL_SIZE = (480, 360)
CANVAS_COLOUR = (240, 242, 246)  # Streamlit's light secondary background
BOX_COLOUR = (255, 196, 0)  # amber: visible on skin, sky and foliage alike


@dataclass(frozen=True)
class ResultPage:
    matches: list[Match]
    number: int  # 1-based
    pages: int
    first: int  # 1-based position of the first match on this page (0 when empty)
    last: int
    total: int


def page_of(matches: Sequence[Match], number: int, per_page: int = PER_PAGE) -> ResultPage:
    """Page `number` (1-based, clamped to the pages that exist) of the matches."""
    pages = max(1, -(-len(matches) // per_page))
    number = min(max(1, int(number)), pages)
    start = (number - 1) * per_page
    chosen = list(matches[start : start + per_page])
    return ResultPage(
        matches=chosen,
        number=number,
        pages=pages,
        first=start + 1 if chosen else 0,
        last=start + len(chosen),
        total=len(matches),
    )


def match_caption(match: Match) -> str:
    return f"{match.photo} · distance {match.distance:.2f}"


def boxed_thumbnail(
    data: bytes, box: Sequence[int], name: str, size: tuple[int, int] = RESULT_THUMBNAIL_SIZE
) -> bytes:
    """A JPEG of the photo fitted into a `size` canvas, with the matched face boxed.

    Every thumbnail has the same shape (the photo centred on a light background), so the
    result grid stays tidy whatever the photos' orientation.
    """
    loaded = load_image(data, max_side=max(size), name=name)
    picture = Image.fromarray(loaded.pixels)
    left, top, right, bottom = _working_box(loaded, box)
    width = max(3, round(max(picture.size) / 70))
    draw = ImageDraw.Draw(picture)
    # A dark outline around the bright box keeps it visible on light backgrounds.
    draw.rectangle((left - width, top - width, right + width, bottom + width), outline=(0, 0, 0))
    draw.rectangle(
        (left - width + 1, top - width + 1, right + width - 1, bottom + width - 1),
        outline=BOX_COLOUR,
        width=width - 1,
    )
    picture.thumbnail(size, Image.Resampling.LANCZOS)
    canvas = Image.new("RGB", size, CANVAS_COLOUR)
    canvas.paste(picture, ((size[0] - picture.width) // 2, (size[1] - picture.height) // 2))
    return _jpeg(canvas, quality=82)


class ThumbnailCache:
    """Boxed thumbnails of one album, made once and kept (bounded, least recently used)."""

    def __init__(self, album: Album, capacity: int = 600) -> None:
        self.album = album
        self.capacity = capacity
        self._items: OrderedDict[tuple, bytes | str] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, match: Match, size: tuple[int, int] = RESULT_THUMBNAIL_SIZE) -> bytes | str:
        """JPEG bytes, or a one-line reason when the photo cannot be shown."""
        key = (match.photo, match.box, size)
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        try:
            value: bytes | str = boxed_thumbnail(
                self.album.read(match.photo), match.box, match.photo, size
            )
        except ImageLoadError as error:
            value = error.reason
        except OSError as error:
            value = f"cannot read the photo ({error.__class__.__name__})"
        with self._lock:
            self._items[key] = value
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)
        return value


# ----------------------------------------------------------------------------------------------
# 7. Acting on results

# The zip and copy-to-folder live in photosearch.search.results (shared with the CLI).


# ----------------------------------------------------------------------------------------------
# 8. Saved people


@dataclass
class SavedPerson:
    id: str
    name: str
    created: str
    model_id: str
    descriptors: np.ndarray  # (R, 128) float32
    exclusions: dict[str, list[tuple[str, int]]]  # album location -> (photo, face) "not me"
    face: bytes | None = None  # JPEG thumbnail of the first reference face

    def exclusions_for(self, album: str) -> list[tuple[str, int]]:
        return [(photo, int(face)) for photo, face in self.exclusions.get(album, [])]


class PeopleStore:
    """Saved people, one folder each: person.json (descriptors, exclusions) and face.jpg.

    Lives in the data dir (``PHOTOSEARCH_DATA_DIR`` overrides it); "forget" deletes the folder.
    """

    def __init__(self, root: str | Path | None = None) -> None:
        if root is None:
            from photosearch.index.indexer import data_dir

            root = data_dir() / "people"
        self.root = Path(root)
        self._lock = threading.Lock()

    def _folder(self, person_id: str) -> Path:
        if not re.fullmatch(r"[0-9a-f]{12}", person_id or ""):
            raise KeyError(person_id)
        return self.root / person_id

    def list(self) -> list[SavedPerson]:
        if not self.root.is_dir():
            return []
        people = [self.get(folder.name) for folder in sorted(self.root.iterdir())]
        return sorted((p for p in people if p is not None), key=lambda p: p.name.lower())

    def get(self, person_id: str | None) -> SavedPerson | None:
        try:
            folder = self._folder(person_id or "")
            data = json.loads((folder / "person.json").read_text())
        except (KeyError, OSError, ValueError):
            return None
        face_path = folder / "face.jpg"
        return SavedPerson(
            id=person_id or "",
            name=str(data["name"]),
            created=str(data["created"]),
            model_id=str(data["model_id"]),
            descriptors=np.asarray(data["descriptors"], dtype=np.float32).reshape(-1, 128),
            exclusions={
                album: [(str(p), int(f)) for p, f in pairs]
                for album, pairs in data.get("exclusions", {}).items()
            },
            face=face_path.read_bytes() if face_path.exists() else None,
        )

    def create(
        self,
        name: str,
        descriptors: np.ndarray,
        *,
        model_id: str,
        face: bytes | None = None,
        exclusions: Mapping[str, Iterable[tuple[str, int]]] | None = None,
    ) -> SavedPerson:
        person = SavedPerson(
            id=uuid.uuid4().hex[:12],
            name=name.strip() or "Unnamed",
            created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            model_id=model_id,
            descriptors=np.asarray(descriptors, dtype=np.float32).reshape(-1, 128),
            exclusions={album: list(pairs) for album, pairs in (exclusions or {}).items()},
            face=face,
        )
        self.update(person)
        return person

    def update(self, person: SavedPerson) -> None:
        folder = self._folder(person.id)
        folder.mkdir(parents=True, exist_ok=True)
        record = {
            "name": person.name,
            "created": person.created,
            "model_id": person.model_id,
            # float32 -> float64 -> JSON round-trips exactly
            "descriptors": person.descriptors.astype(np.float64).tolist(),
            "exclusions": {
                album: sorted({(photo, int(face)) for photo, face in pairs})
                for album, pairs in person.exclusions.items()
                if pairs
            },
        }
        with self._lock:
            _write_atomic(folder / "person.json", json.dumps(record).encode())
            if person.face is not None:
                _write_atomic(folder / "face.jpg", person.face)

    def add_exclusion(self, person_id: str, album: str, photo: str, face: int) -> None:
        person = self.get(person_id)
        if person is None:
            raise KeyError(person_id)
        person.exclusions.setdefault(album, []).append((photo, int(face)))
        self.update(person)

    def forget(self, person_id: str) -> bool:
        """Delete the person: descriptors, face thumbnail and exclusions. True if it existed."""
        try:
            folder = self._folder(person_id)
        except KeyError:
            return False
        if not folder.exists():
            return False
        shutil.rmtree(folder)
        return True


def _write_atomic(path: Path, data: bytes) -> None:
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    temporary.write_bytes(data)
    os.replace(temporary, path)


# ----------------------------------------------------------------------------------------------
# 9. Background indexing

IDLE, RUNNING, DONE, FAILED = "idle", "running", "done", "failed"


@dataclass(frozen=True)
class IndexingProgress:
    state: str  # idle | running | done | failed
    done: int = 0  # photos processed in this run
    total: int = 0  # photos this run has to process (new or changed)
    started: float | None = None  # time.monotonic()
    finished: float | None = None
    message: str = ""  # summary when done, reason when failed
    problems: tuple[str, ...] = ()  # one line per unreadable photo

    @property
    def fraction(self) -> float:
        return min(1.0, self.done / self.total) if self.total else 1.0

    @property
    def rate(self) -> float | None:
        """Photos per second so far."""
        if self.started is None or self.done == 0:
            return None
        elapsed = (self.finished or time.monotonic()) - self.started
        return self.done / elapsed if elapsed > 0 else None

    @property
    def eta_seconds(self) -> float | None:
        rate = self.rate
        if rate is None or self.state != RUNNING:
            return None
        return max(0.0, (self.total - self.done) / rate)

    def label(self) -> str:
        """One line for the progress bar."""
        if self.state != RUNNING:
            return self.message
        if self.total == 0:
            return "Looking for new photos…"
        parts = [f"Indexing {self.done} of {self.total} photos"]
        if self.rate is not None:
            parts.append(f"{self.rate:.1f} photos/s")
        if self.eta_seconds is not None:
            parts.append(f"about {format_duration(self.eta_seconds)} left")
        return " · ".join(parts)


def format_duration(seconds: float) -> str:
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


class _CountingEngine(EngineWrapper):
    """Passes photos to the real engine and counts them, for the progress bar (its settings,
    detection included, are the real engine's: the index records them as the CLI does)."""

    def __init__(self, engine: FaceFinder, on_photos: Callable[[int], None]) -> None:
        super().__init__(engine)
        self.on_photos = on_photos

    def faces_for_images(self, images: Sequence[LoadedImage]) -> list[list[Face]]:
        found = self.engine.faces_for_images(images)
        self.on_photos(len(images))
        return found


class BackgroundIndexer:
    """Runs the indexer in a thread; searching the committed part goes on meanwhile.

    Commits come every `commit_photos` photos or `commit_seconds` seconds, so the search sees
    newly indexed photos while the run goes on.
    """

    def __init__(
        self,
        album: Album,
        index_location: str,
        *,
        engine_factory: Callable[[], FaceFinder] | None = None,
        view: IndexView | None = None,
        commit_photos: int = 50,
        commit_seconds: float = 10.0,
    ) -> None:
        self.album = album
        self.index_location = index_location
        self.engine_factory = engine_factory or _default_engine
        self.view = view
        self.commit_photos = commit_photos
        self.commit_seconds = commit_seconds
        self._engine: FaceFinder | None = None
        self._lock = threading.Lock()
        self._progress = IndexingProgress(IDLE)
        self._thread: threading.Thread | None = None

    def progress(self) -> IndexingProgress:
        with self._lock:
            return self._progress

    @property
    def running(self) -> bool:
        return self.progress().state == RUNNING

    def start(self) -> bool:
        """Start indexing new and changed photos; False if a run is already going."""
        with self._lock:
            if self._progress.state == RUNNING:
                return False
            self._progress = IndexingProgress(RUNNING, started=time.monotonic())
            self._thread = threading.Thread(target=self._run, name="photosearch-index", daemon=True)
            self._thread.start()
            return True

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the current run to end; True when it has."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
        return not self.running

    def _update(self, **changes: Any) -> None:
        with self._lock:
            values = {**self._progress.__dict__, **changes}
            self._progress = IndexingProgress(**values)

    def _advance(self, count: int) -> None:
        with self._lock:
            progress = self._progress
            done = min(progress.total, progress.done + count)
            self._progress = IndexingProgress(**{**progress.__dict__, "done": done})

    def _run(self) -> None:
        from photosearch.index.indexer import Indexer

        problems: list[str] = []
        try:
            todo = self._plan()
            self._update(total=len(todo))
            keys = set(todo)

            def report(line: str) -> None:
                problems.append(line)
                if line.split(": ", 1)[0] in keys:  # an unreadable photo is processed too
                    self._advance(1)
                self._update(problems=tuple(problems))

            if self._engine is None:
                self._engine = self.engine_factory()
            indexer = Indexer(
                self.album,
                self.index_location,
                _CountingEngine(self._engine, self._advance),
                commit_photos=self.commit_photos,
                commit_seconds=self.commit_seconds,
                report=report,
            )
            stats = indexer.run()
        except Exception as error:  # shown in the panel; the page goes on
            self._update(state=FAILED, finished=time.monotonic(), message=_indexing_failure(error))
        else:
            message = (
                f"Indexed {stats.indexed} new photo{'s' if stats.indexed != 1 else ''} "
                f"({stats.faces} face{'s' if stats.faces != 1 else ''}) in "
                f"{format_duration(stats.seconds)}"
            )
            extras = [
                f"{stats.reused} renamed or copied" if stats.reused else "",
                f"{stats.deleted} removed" if stats.deleted else "",
                f"{stats.unreadable} unreadable" if stats.unreadable else "",
            ]
            extras = [extra for extra in extras if extra]
            if stats.indexed == 0:
                message = "No new photos: the index is up to date"
            if extras:
                message += f" ({', '.join(extras)})"
            self._update(
                state=DONE,
                done=self.progress().total,
                finished=time.monotonic(),
                message=message + ".",
                problems=tuple(problems),
            )
        finally:
            if self.view is not None:
                self.view.refresh()

    def _plan(self) -> list[str]:
        """Album keys the indexer will process: new, changed, or never indexed."""
        files = self.album.files()
        reader = IndexReader(self.index_location)
        known: dict[str, tuple[int | None, str | None]] = {}
        if reader.manifest() is not None:
            photos = reader.photos()
            known = dict(
                zip(
                    photos.column("photo").to_pylist(),
                    zip(
                        photos.column("size").to_pylist(),
                        photos.column("stamp").to_pylist(),
                        strict=True,
                    ),
                    strict=True,
                )
            )
        return [
            item.key
            for item in files
            if not item.stamp or known.get(item.key) != (item.size, item.stamp)
        ]


def _indexing_failure(error: Exception) -> str:
    from photosearch.index.store import IndexBusyError

    if isinstance(error, IndexBusyError):
        return "Another photosearch process is indexing this album right now; try again later."
    if isinstance(error, AlbumError):
        return f"Cannot read the album: {error}"
    text = " ".join(str(error).split()) or error.__class__.__name__
    return f"Indexing stopped: {text}"

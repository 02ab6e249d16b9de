"""Album sources: the photo files under a local folder or an fsspec URL (e.g. ``s3://bucket/prefix``).

One code path serves every storage: the location is resolved by fsspec, listed recursively with
``find`` and read with ``cat_file``. A photo is identified by its album-relative key (a POSIX
path under the album root) and by a fingerprint of its bytes, so a renamed photo is recognised
by content and an edited one by its changed fingerprint.

Files are picked by extension only (cheap, no reads); whether a file really is an image is left
to the decoder, so a mislabelled file (a WEBP named ``.jpg``) still works and a broken one is
reported by the indexer.

A listing that fails is never mistaken for an empty folder: `Album.listing` names every folder
it could not list (permissions, a failing drive), and whoever decides which photos left the
album (`AlbumListing.gone`) keeps the records under those folders. Local albums follow
symlinked files and folders (each real folder once, so a link loop ends); names that are not
valid UTF-8 get a lossless escaped key (`photo_key`, docs/index-format.md).
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import PurePosixPath
from typing import Any

from photosearch.storage import (
    canonical_location,
    is_local,
    is_object_store,
    open_filesystem,
    storage_failure,
)

__all__ = [
    "FINGERPRINT_ALGORITHM",
    "IMAGE_EXTENSIONS",
    "Album",
    "AlbumError",
    "AlbumFile",
    "AlbumListing",
    "fingerprint",
    "is_image_name",
    "name_of",
    "photo_key",
]

IMAGE_EXTENSIONS = frozenset(
    {
        ".jpg",
        ".jpeg",
        ".jpe",
        ".jfif",
        ".png",
        ".webp",
        ".heic",
        ".heif",
        ".avif",
        ".bmp",
        ".gif",
        ".tif",
        ".tiff",
    }
)

FINGERPRINT_ALGORITHM = "blake2b-128"

# Listing fields that change whenever an object's content does (local mtime, S3 ETag and
# LastModified, GCS generation/md5, Azure etag...). Together with the size they form a cheap
# "stamp": an unchanged stamp lets a re-run skip reading the file, like git's index.
_STAMP_FIELDS = (
    "mtime",
    "LastModified",
    "last_modified",
    "ETag",
    "etag",
    "md5Hash",
    "generation",
    "version_id",
    "created",
)


class AlbumError(RuntimeError):
    """The album location does not exist or cannot be listed."""


# -- keys: album-relative names as index keys (UTF-8 strings), losslessly ----------------------

_ESCAPE = re.compile(r"%[0-9A-Fa-f]{2}")


def photo_key(name: str) -> str:
    """The index key of an album-relative name (a POSIX path; local names that are not valid
    UTF-8 arrive from the OS with surrogate escapes, as os.fsdecode makes them).

    Almost every name is its own key. A name that is not valid UTF-8, or that already contains
    a "%" followed by two hex digits, is written with its undecodable bytes and every "%" as
    %XX (RFC 3986 style): b"caf\xe9.jpg" -> "caf%E9.jpg", "a%41.jpg" -> "a%2541.jpg". Since
    every escaped key contains a %XX and no plain key does, `name_of` undoes it exactly.
    """
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        pass
    else:
        if not _ESCAPE.search(name):
            return name
    raw = os.fsencode(name) if os.name != "nt" else name.encode("utf-8", "surrogatepass")
    out = []
    for char in raw.decode("utf-8", "surrogateescape"):
        code = ord(char)
        if char == "%":
            out.append("%25")
        elif 0xDC80 <= code <= 0xDCFF:  # an undecodable byte
            out.append(f"%{code - 0xDC00:02X}")
        else:
            out.append(char)
    return "".join(out)


def name_of(key: str) -> str:
    """The album-relative name of an index key (the inverse of `photo_key`)."""
    if not _ESCAPE.search(key):
        return key
    raw = bytearray()
    position = 0
    for match in _ESCAPE.finditer(key):
        raw += key[position : match.start()].encode("utf-8")
        raw.append(int(match.group()[1:], 16))
        position = match.end()
    raw += key[position:].encode("utf-8")
    return bytes(raw).decode("utf-8", "surrogateescape")


def _safe_name(key: str) -> str:
    """`name_of(key)`, refused when it could leave the album (a key from a foreign index)."""
    name = name_of(key)
    parts = name.split("/")
    if not name or name.startswith("/") or "\0" in name or (os.name == "nt" and "\\" in name):
        raise ValueError(f"not an album-relative photo key: {key!r}")
    if any(part in ("", ".", "..") for part in parts):
        raise ValueError(f"not an album-relative photo key: {key!r}")
    return name


@dataclass(frozen=True)
class AlbumFile:
    """One candidate photo, as listed (nothing read yet)."""

    key: str  # album-relative POSIX path, e.g. "2023/rome/IMG_0420.HEIC"
    size: int  # bytes
    stamp: str  # listing fields that change with the content; "" when the storage gives none


@dataclass(frozen=True)
class AlbumListing:
    """What one listing of the album found, and what it could not see."""

    files: list[AlbumFile]
    unlisted: tuple[str, ...] = ()  # album-relative folders ("" for the root) not listable
    notes: list[str] = field(default_factory=list)  # one line per problem (with `unlisted`)

    def covers(self, key: str) -> bool:
        """Whether the listing could see `key` (it lies under no unlisted folder)."""
        name = name_of(key)
        return not any(folder == "" or name.startswith(folder + "/") for folder in self.unlisted)

    def gone(self, known: Iterable[str]) -> list[str]:
        """The known keys that really left the album: not listed, and not under a folder the
        listing could not see. Sorted."""
        present = {item.key for item in self.files}
        return sorted(key for key in known if key not in present and self.covers(key))


def fingerprint(data: bytes) -> str:
    """Content fingerprint of a photo's bytes: 32 hex digits of BLAKE2b-128."""
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def is_image_name(key: str) -> bool:
    """True for names with an image extension, skipping hidden files such as macOS ``._x.jpg``."""
    parts = PurePosixPath(key).parts
    if any(part.startswith(".") for part in parts):
        return False
    return PurePosixPath(key).suffix.lower() in IMAGE_EXTENSIONS


def _stamp(info: dict[str, Any]) -> str:
    values = []
    for name in _STAMP_FIELDS:
        value = info.get(name)
        if value is None:
            continue
        if isinstance(value, datetime):
            value = value.isoformat()
        values.append(f"{name}={value}")
    return ";".join(values)


class Album:
    """A folder of photos on any fsspec filesystem (local folders included)."""

    def __init__(self, location: str | os.PathLike, **storage_options: Any) -> None:
        self.location = canonical_location(location)
        self.fs, root = open_filesystem(self.location, storage_options)
        self.root = root.rstrip("/") or "/"

    def __repr__(self) -> str:
        return f"Album({self.location!r})"

    def files(self) -> list[AlbumFile]:
        """Every photo-named file under the album, recursively, sorted by key. Raises
        AlbumError when any folder could not be listed (use `listing` to go on without it)."""
        listing = self.listing()
        if listing.unlisted:
            raise AlbumError("; ".join(listing.notes))
        return listing.files

    def listing(self) -> AlbumListing:
        """Every photo-named file under the album, and the folders that could not be listed.
        Raises AlbumError when the album itself is missing or cannot be listed at all."""
        try:
            if not self.fs.isdir(self.root):
                raise AlbumError(self._why_not_a_folder())
            listing = _walk_local(self.root) if is_local(self.fs) else self._list_remote()
        except AlbumError:
            raise
        except Exception as exc:
            message = storage_failure(exc, self.location)
            if message is None and isinstance(exc, OSError | ValueError):
                message = f"{self.location}: {exc}"
            if message is None:
                raise
            raise AlbumError(f"cannot list album: {message}") from exc
        if "" in listing.unlisted:
            raise AlbumError(f"cannot list album: {listing.notes[0]}")
        listing.files.sort(key=lambda item: item.key)
        return listing

    def _list_remote(self) -> AlbumListing:
        prefix = self.root.rstrip("/") + "/"
        if is_object_store(self.fs):
            # One flat listing: a denied or failed request raises (never an empty result).
            entries = self.fs.find(self.root, detail=True).items()
            unlisted: list[str] = []
            notes: list[str] = []
        else:
            # Other fsspec filesystems walk folder by folder: record each one that fails.
            unlisted, notes, entries = [], [], []

            def failed(error: OSError) -> None:
                path = str(getattr(error, "filename", "") or "").rstrip("/")
                folder = path[len(prefix) :] if path.startswith(prefix) else ""
                unlisted.append(folder)
                notes.append(f"cannot list folder {folder or self.location}: {error}")

            for _, _, files in self.fs.walk(self.root, detail=True, on_error=failed):
                entries += [(info["name"], info) for info in files.values()]
        found = []
        for path, info in entries:
            if info.get("type", "file") != "file" or not path.startswith(prefix):
                continue
            key = photo_key(path[len(prefix) :])
            if is_image_name(key):
                found.append(
                    AlbumFile(key=key, size=int(info.get("size") or 0), stamp=_stamp(info))
                )
        return AlbumListing(found, tuple(unlisted), notes)

    def _why_not_a_folder(self) -> str:
        # On S3 a missing bucket (or a denied listing) looks like a missing folder to isdir:
        # listing the root directly says which.
        try:
            self.fs.ls(self.root)
        except Exception as exc:
            message = storage_failure(exc, self.location)
            if message is not None:
                return message
        return f"album not found or not a folder: {self.location}"

    def path_of(self, key: str) -> str:
        """The storage path of a photo (for fsspec calls; a plain path for local albums).
        ValueError for a key that could leave the album ("..", absolute): keys come from
        indexes, and an index copied from someone else must not read outside its album."""
        return f"{self.root.rstrip('/')}/{_safe_name(key)}"

    def url_of(self, key: str) -> str:
        """A location that opens the photo: a local path, or a protocol URL."""
        path = self.path_of(key)
        return path if is_local(self.fs) else self.fs.unstrip_protocol(path)

    def read(self, key: str) -> bytes:
        """The photo's bytes (raises OSError / FileNotFoundError like the storage does)."""
        return self.fs.cat_file(self.path_of(key))


def _walk_local(root: str) -> AlbumListing:
    """A local album, folder by folder with os.scandir: symlinked files and folders are followed
    (each real folder once: a link loop ends), hidden names skipped, and every folder that
    cannot be listed is named instead of silently looking empty (as fsspec's walk would)."""
    found: list[AlbumFile] = []
    unlisted: list[str] = []
    notes: list[str] = []
    seen: set[tuple[int, int]] = set()
    pending = [("", root)]
    while pending:
        relative, path = pending.pop()
        try:
            status = os.stat(path)
            if (status.st_dev, status.st_ino) in seen:
                notes.append(f"{relative}: symlinked folder already listed (a link loop?): skipped")
                continue
            seen.add((status.st_dev, status.st_ino))
            with os.scandir(path) as entries:
                listed = list(entries)
        except OSError as exc:
            unlisted.append(relative)
            where = photo_key(relative) if relative else root
            notes.append(f"cannot list folder {where}: {exc.strerror or exc} (its photos are kept)")
            continue
        for entry in listed:
            if entry.name.startswith("."):
                continue
            name = f"{relative}/{entry.name}" if relative else entry.name
            try:
                if entry.is_dir():  # follows symlinks
                    pending.append((name, entry.path))
                    continue
                if not is_image_name(entry.name):
                    continue
                if not entry.is_file():
                    if entry.is_symlink():
                        notes.append(f"{photo_key(name)}: broken symlink: skipped")
                    continue
                info = entry.stat()  # the target's, for a symlink
            except OSError as exc:
                # Listed but not stat-able: kept as present, so its record stays; reading it
                # will report why.
                found.append(AlbumFile(photo_key(name), 0, ""))
                notes.append(f"{photo_key(name)}: {exc.strerror or exc}")
                continue
            stamp = f"mtime={info.st_mtime};created={getattr(info, 'st_birthtime', info.st_ctime)}"
            found.append(AlbumFile(photo_key(name), int(info.st_size), stamp))
    return AlbumListing(found, tuple(unlisted), notes)

"""Album sources: the photo files under a local folder or an fsspec URL (e.g. ``s3://bucket/prefix``).

One code path serves every storage: the location is resolved by fsspec, listed recursively with
``find`` and read with ``cat_file``. A photo is identified by its album-relative key (a POSIX
path under the album root) and by a fingerprint of its bytes, so a renamed photo is recognised
by content and an edited one by its changed fingerprint.

Files are picked by extension only (cheap, no reads); whether a file really is an image is left
to the decoder, so a mislabelled file (a WEBP named ``.jpg``) still works and a broken one is
reported by the indexer.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import PurePosixPath
from typing import Any

from photosearch.storage import canonical_location, is_local, open_filesystem, storage_failure

__all__ = [
    "FINGERPRINT_ALGORITHM",
    "IMAGE_EXTENSIONS",
    "Album",
    "AlbumError",
    "AlbumFile",
    "fingerprint",
    "is_image_name",
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


@dataclass(frozen=True)
class AlbumFile:
    """One candidate photo, as listed (nothing read yet)."""

    key: str  # album-relative POSIX path, e.g. "2023/rome/IMG_0420.HEIC"
    size: int  # bytes
    stamp: str  # listing fields that change with the content; "" when the storage gives none


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
    for field in _STAMP_FIELDS:
        value = info.get(field)
        if value is None:
            continue
        if isinstance(value, datetime):
            value = value.isoformat()
        values.append(f"{field}={value}")
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
        """Every photo-named file under the album, recursively, sorted by key."""
        try:
            if not self.fs.isdir(self.root):
                raise AlbumError(self._why_not_a_folder())
            listing = self.fs.find(self.root, detail=True)
        except AlbumError:
            raise
        except Exception as exc:
            message = storage_failure(exc, self.location)
            if message is None and isinstance(exc, OSError | ValueError):
                message = f"{self.location}: {exc}"
            if message is None:
                raise
            raise AlbumError(f"cannot list album: {message}") from exc
        prefix = self.root.rstrip("/") + "/"
        found = []
        for path, info in listing.items():
            if info.get("type", "file") != "file" or not path.startswith(prefix):
                continue
            key = path[len(prefix) :]
            if is_image_name(key):
                found.append(
                    AlbumFile(key=key, size=int(info.get("size") or 0), stamp=_stamp(info))
                )
        found.sort(key=lambda item: item.key)
        return found

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
        """The storage path of a photo (for fsspec calls; a plain path for local albums)."""
        return f"{self.root.rstrip('/')}/{key}"

    def url_of(self, key: str) -> str:
        """A location that opens the photo: a local path, or a protocol URL."""
        path = self.path_of(key)
        return path if is_local(self.fs) else self.fs.unstrip_protocol(path)

    def read(self, key: str) -> bytes:
        """The photo's bytes (raises OSError / FileNotFoundError like the storage does)."""
        return self.fs.cat_file(self.path_of(key))

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
from pathlib import Path, PurePosixPath
from typing import Any

import fsspec
from fsspec.core import url_to_fs
from fsspec.implementations.local import LocalFileSystem

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


def canonical_location(location: str | os.PathLike) -> str:
    """An album or index location in one spelling: an absolute path, or a protocol URL."""
    text = os.fspath(location)
    if "://" not in text or text.startswith("file://"):
        if text.startswith("file://"):
            text = text[len("file://") :]
        return str(Path(text).expanduser().resolve())
    fs, path = url_to_fs(text)
    return fs.unstrip_protocol(path).rstrip("/")


def is_local(fs: fsspec.AbstractFileSystem) -> bool:
    return isinstance(fs, LocalFileSystem)


# Object stores: no real folders (nothing to create before a write; s3fs's makedirs would even
# create a missing *bucket*), and one PUT replaces an object atomically.
OBJECT_STORE_PROTOCOLS = frozenset({"s3", "s3a", "gs", "gcs", "abfs", "abfss", "az", "adl"})
S3_PROTOCOLS = frozenset({"s3", "s3a"})


def _protocols(fs: fsspec.AbstractFileSystem) -> tuple[str, ...]:
    return (fs.protocol,) if isinstance(fs.protocol, str) else tuple(fs.protocol)


def is_object_store(fs: fsspec.AbstractFileSystem) -> bool:
    return any(protocol in OBJECT_STORE_PROTOCOLS for protocol in _protocols(fs))


def open_filesystem(
    location: str, storage_options: dict[str, Any] | None = None
) -> tuple[fsspec.AbstractFileSystem, str]:
    """The fsspec filesystem and root path of a canonical location: the one place albums and
    indexes resolve storage. S3 gets its retry, timeout and cache settings from the standard AWS
    configuration (`photosearch.aws.clients.s3fs_options`); explicit options win."""
    protocol = location.split("://", 1)[0] if "://" in location else "file"
    options = dict(storage_options or {})
    if protocol in S3_PROTOCOLS:
        try:
            from photosearch.aws.clients import s3fs_options
        except ImportError:  # boto3 missing: s3fs's own defaults still work
            pass
        else:
            options = {**s3fs_options(), **options}
    return url_to_fs(location, **options)


def storage_failure(exc: BaseException, location: str) -> str | None:
    """One line for a storage failure at `location` (credentials, missing bucket, network,
    permissions), or None when `exc` is none of these; a plain missing file is None too: the
    caller knows what that means."""
    if location.split("://", 1)[0] in S3_PROTOCOLS:
        try:
            from photosearch.aws.clients import describe_s3_failure
        except ImportError:
            pass
        else:
            message = describe_s3_failure(exc, location)
            if message is not None or isinstance(exc, FileNotFoundError):
                return message
    if isinstance(exc, FileNotFoundError):
        return None
    if isinstance(exc, PermissionError):
        return f"permission denied: {location} ({exc.strerror or exc})"
    if isinstance(exc, OSError):
        return f"{location}: {exc.strerror or exc}"
    return None


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

"""Locations: local paths and fsspec URLs in one spelling, and the filesystem behind each."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import fsspec
from fsspec.core import url_to_fs
from fsspec.implementations.local import LocalFileSystem

__all__ = [
    "OBJECT_STORE_PROTOCOLS",
    "S3_PROTOCOLS",
    "canonical_location",
    "is_local",
    "is_object_store",
    "open_filesystem",
    "protocol_of",
]


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
    configuration (`photosearch.storage.s3.s3fs_options`); explicit options win."""
    protocol = protocol_of(location)
    options = dict(storage_options or {})
    if protocol in S3_PROTOCOLS:
        try:
            from photosearch.storage.s3 import s3fs_options
        except ImportError:  # boto3 missing: s3fs's own defaults still work
            pass
        else:
            options = {**s3fs_options(), **options}
    return url_to_fs(location, **options)


def protocol_of(location: str) -> str:
    """The protocol of a canonical location: "file" for a local path, else the URL's scheme."""
    return location.split("://", 1)[0] if "://" in location else "file"

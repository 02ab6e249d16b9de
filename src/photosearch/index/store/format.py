"""Format constants, the shard SCHEMA, the row statuses and the index errors.

The lowest floor of the store: every other store module reads its column names and raises its
errors from here. FORMAT_NAME and FORMAT_VERSION are written into every manifest; a reader meets
any other pair with UnsupportedIndexError rather than guessing (docs/index-format.md).
"""

from __future__ import annotations

import pyarrow as pa

__all__ = [
    "ADDED_COLUMNS",
    "CHECKSUM_ALGORITHM",
    "DECODED_STATUSES",
    "DESCRIPTOR_SIZE",
    "DESCRIPTOR_TYPE",
    "DICTIONARY_COLUMNS",
    "FACE_COLUMNS",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "LOCK_NAME",
    "MANIFESTS_DIR",
    "MANIFEST_NAME",
    "PHOTO_COLUMNS",
    "SCHEMA",
    "SHARDS_DIR",
    "STATUSES",
    "STATUS_DELETED",
    "STATUS_ERROR",
    "STATUS_FACES",
    "STATUS_NO_FACE",
    "ConcurrentWriteError",
    "DamagedShardError",
    "IndexBusyError",
    "IndexFormatError",
    "IndexStorageError",
    "IndexStoreError",
    "UnsafeIndexError",
    "UnsupportedIndexError",
]

FORMAT_NAME = "photosearch-index"
FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
MANIFESTS_DIR = "manifests"
SHARDS_DIR = "shards"
LOCK_NAME = "writer.lock"
# The shard checksum recorded in the manifest (added to format version 1 later: older
# manifests' shards have none, and are read unchecked).
CHECKSUM_ALGORITHM = "sha256"
DESCRIPTOR_SIZE = 128
DESCRIPTOR_TYPE = pa.binary(DESCRIPTOR_SIZE * 4)

STATUS_FACES = "faces"
STATUS_NO_FACE = "no_face"
STATUS_ERROR = "error"
STATUS_DELETED = "deleted"
STATUSES = (STATUS_FACES, STATUS_NO_FACE, STATUS_ERROR, STATUS_DELETED)
DECODED_STATUSES = (STATUS_FACES, STATUS_NO_FACE)
# Few distinct values: read as dictionaries (faster to read and to compare).
DICTIONARY_COLUMNS = ("status", "model_id", "detection")

SCHEMA = pa.schema(
    [
        pa.field("photo", pa.string(), nullable=False),  # album-relative key
        pa.field("fingerprint", pa.string()),  # BLAKE2b-128 hex of the bytes (null: deleted)
        pa.field("status", pa.string(), nullable=False),  # faces | no_face | error | deleted
        pa.field("error", pa.string()),  # one-line message for status "error"
        pa.field("size", pa.int64()),  # file size in bytes
        pa.field("stamp", pa.string()),  # listing fields that change with the content
        pa.field("width", pa.int32()),  # original image size (null when not decoded)
        pa.field("height", pa.int32()),
        pa.field("face_count", pa.int32(), nullable=False),  # faces in this photo
        pa.field("face", pa.int32()),  # 0-based face number within the photo; null: no face row
        pa.field("left", pa.int32()),  # box in original pixels, right/bottom inclusive
        pa.field("top", pa.int32()),
        pa.field("right", pa.int32()),
        pa.field("bottom", pa.int32()),
        pa.field("score", pa.float32()),  # detector confidence
        pa.field("landmarks", pa.list_(pa.float32(), 10)),  # x0, y0, ... x4, y4, original pixels
        # 128 little-endian float32 as 512 bytes: Parquet reads it as one flat copy, where a
        # list<float32> column costs a repetition level per float (4x slower to load).
        pa.field("descriptor", DESCRIPTOR_TYPE),
        pa.field("model_id", pa.string(), nullable=False),
        # The engine's detection settings (FaceEngine.detection_settings): which faces were
        # looked for. Null in rows written before it was recorded.
        pa.field("detection", pa.string()),
    ]
)
# Columns added to format version 1 after its first release: older shards lack them, and they
# read as nulls.
ADDED_COLUMNS = ("detection",)
FACE_COLUMNS = (
    "photo",
    "face",
    "left",
    "top",
    "right",
    "bottom",
    "score",
    "landmarks",
)
PHOTO_COLUMNS = (
    "photo",
    "fingerprint",
    "status",
    "error",
    "size",
    "stamp",
    "width",
    "height",
    "face_count",
    "detection",
)


class IndexStoreError(RuntimeError):
    """Base of the index errors (named with a trailing underscore: IndexError is a builtin)."""


class IndexFormatError(IndexStoreError):
    """The location holds something that is not a readable index of this format."""


class UnsupportedIndexError(IndexFormatError):
    """A well-formed file of another format or format version: never silently ignored."""


class DamagedShardError(IndexFormatError):
    """A shard of the index is unreadable: truncated, empty, bytes changed (its checksum in the
    manifest differs), not Parquet, or not this schema. `photosearch index --repair` drops it
    and indexes its photos again."""

    def __init__(self, message: str, path: str) -> None:
        super().__init__(message)
        self.path = path


class UnsafeIndexError(IndexFormatError):
    """The index names a file outside itself (a ".." or absolute path, a symlink out): never
    read, written or deleted, and never silently skipped for an older manifest."""


class IndexBusyError(IndexStoreError):
    """Another process is writing this index."""


class IndexStorageError(IndexStoreError):
    """The storage under the index failed: credentials, a missing bucket, the network, access."""


class ConcurrentWriteError(IndexStoreError):
    """The manifest changed under this writer (two writers on one object-store index)."""

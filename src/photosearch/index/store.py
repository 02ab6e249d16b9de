"""The on-disk face index: immutable Parquet shards plus a JSON manifest (docs/index-format.md).

Layout under the index location (a local folder or any fsspec URL)::

    manifest.json                   the current snapshot: shard list, model id, counts
    manifests/0000000042.json       an immutable copy of every committed manifest (recent ones)
    shards/0000000042-<hex>.parquet rows written by one commit, never modified
    writer.lock                     local indexes only: one writer at a time

The shards form a log: each commit appends one shard holding the complete current record of
every photo it touches (one row per face, or one row for a photo with no face, an unreadable
photo, or a deletion). A photo's live record is the one in the *last* shard of the manifest
that mentions it; a "deleted" record hides it. Readers read one manifest and only the shards it
lists, so a writer committing meanwhile never disturbs them.

Crash safety: a commit writes (and fsyncs) its shard first, then the manifest: locally via a
temp file and ``os.replace`` (atomic), elsewhere as one object PUT (atomic on object stores),
after writing the versioned copy. A crash leaves either the old or the new manifest; shards no
manifest references are removed by the next writer. Shards dropped by compaction are kept for a
grace period so readers holding an older manifest can finish.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, NamedTuple

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from fsspec.spec import AbstractBufferedFile

from photosearch.index.album import FINGERPRINT_ALGORITHM
from photosearch.storage import (
    canonical_location,
    is_local,
    is_object_store,
    open_filesystem,
    storage_failure,
)

__all__ = [
    "ADDED_COLUMNS",
    "DECODED_STATUSES",
    "DESCRIPTOR_SIZE",
    "DESCRIPTOR_TYPE",
    "DICTIONARY_COLUMNS",
    "FACE_COLUMNS",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "GC_GRACE_SECONDS",
    "KEEP_MANIFESTS",
    "LOCK_NAME",
    "MANIFESTS_DIR",
    "MANIFEST_NAME",
    "MAX_DEAD_FRACTION",
    "MAX_SHARDS",
    "PHOTO_COLUMNS",
    "PHOTO_STATE_COLUMNS",
    "SCHEMA",
    "SHARDS_DIR",
    "STATUSES",
    "STATUS_DELETED",
    "STATUS_ERROR",
    "STATUS_FACES",
    "STATUS_NO_FACE",
    "CommitResult",
    "ConcurrentWriteError",
    "IndexBusyError",
    "IndexFormatError",
    "IndexReader",
    "IndexSnapshot",
    "IndexStats",
    "IndexStorageError",
    "IndexStoreError",
    "IndexWriter",
    "Manifest",
    "PhotoState",
    "Retired",
    "ShardInfo",
    "UnsupportedIndexError",
    "descriptors_of",
    "detection_counts",
    "landmarks_of",
    "photo_rows",
    "read_manifest",
    "tombstone_rows",
    "utc_now",
]

FORMAT_NAME = "photosearch-index"
FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
MANIFESTS_DIR = "manifests"
SHARDS_DIR = "shards"
LOCK_NAME = "writer.lock"
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

# Compaction policy: rewrite everything once the log has too many shards or mostly dead rows.
MAX_SHARDS = 16
MAX_DEAD_FRACTION = 0.5
# Versioned manifests kept for recovery and inspection.
KEEP_MANIFESTS = 20
# How long files dropped from the manifest stay readable for readers of an older snapshot.
GC_GRACE_SECONDS = 600.0

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


class IndexBusyError(IndexStoreError):
    """Another process is writing this index."""


class IndexStorageError(IndexStoreError):
    """The storage under the index failed: credentials, a missing bucket, the network, access."""


class ConcurrentWriteError(IndexStoreError):
    """The manifest changed under this writer (two writers on one object-store index)."""


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


# ----------------------------------------------------------------------------------------------
# Manifest


@dataclass(frozen=True)
class ShardInfo:
    path: str  # relative to the index root, e.g. "shards/0000000003-1a2b3c4d.parquet"
    rows: int
    bytes: int


@dataclass(frozen=True)
class Retired:
    path: str
    since: float  # unix time it was dropped from the manifest


@dataclass(frozen=True)
class IndexStats:
    photos: int = 0  # live photos (any status)
    faces: int = 0
    no_face: int = 0  # photos decoded without a face
    errors: int = 0  # unreadable photos

    def plus(self, state: PhotoState | None, sign: int) -> IndexStats:
        if state is None or state.status == STATUS_DELETED:
            return self
        return IndexStats(
            photos=self.photos + sign,
            faces=self.faces + sign * state.face_count,
            no_face=self.no_face + sign * (state.status == STATUS_NO_FACE),
            errors=self.errors + sign * (state.status == STATUS_ERROR),
        )


@dataclass(frozen=True)
class Manifest:
    generation: int  # commit number, 1 for the first commit; 0 for a never-committed index
    created: str
    updated: str
    album: str | None
    model_id: str | None
    shards: tuple[ShardInfo, ...] = ()
    stats: IndexStats = IndexStats()
    retired: tuple[Retired, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "generation": self.generation,
            "created": self.created,
            "updated": self.updated,
            "album": self.album,
            "model_id": self.model_id,
            "fingerprint": FINGERPRINT_ALGORITHM,
            "descriptor_size": DESCRIPTOR_SIZE,
            "stats": vars(self.stats),
            "shards": [vars(shard) for shard in self.shards],
            "retired": [vars(item) for item in self.retired],
        }

    @classmethod
    def from_json(cls, data: Any) -> Manifest:
        if not isinstance(data, dict) or data.get("format") != FORMAT_NAME:
            raise UnsupportedIndexError("not a photosearch index manifest")
        if data.get("format_version") != FORMAT_VERSION:
            raise UnsupportedIndexError(
                f"index format version {data.get('format_version')!r} is not supported "
                f"(this photosearch reads version {FORMAT_VERSION})"
            )
        try:
            return cls(
                generation=int(data["generation"]),
                created=str(data["created"]),
                updated=str(data["updated"]),
                album=data.get("album"),
                model_id=data.get("model_id"),
                shards=tuple(
                    ShardInfo(str(s["path"]), int(s["rows"]), int(s["bytes"]))
                    for s in data["shards"]
                ),
                stats=IndexStats(**{k: int(v) for k, v in data["stats"].items()}),
                retired=tuple(
                    Retired(str(r["path"]), float(r["since"])) for r in data.get("retired", [])
                ),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise IndexFormatError(f"malformed index manifest: {exc}") from exc

    @classmethod
    def empty(cls, album: str | None, model_id: str | None) -> Manifest:
        now = utc_now()
        return cls(generation=0, created=now, updated=now, album=album, model_id=model_id)


# ----------------------------------------------------------------------------------------------
# Storage helpers (one code path for local folders and fsspec URLs)


class _Storage:
    """The index root on its filesystem: paths, atomic writes, Parquet I/O.

    Storage failures (credentials, a missing bucket, the network, permissions) leave here as
    IndexStorageError, one line naming the index; a missing file keeps its own meaning.
    """

    def __init__(self, location: str | os.PathLike, storage_options: dict | None = None) -> None:
        self.location = canonical_location(location)
        self.fs: fsspec.AbstractFileSystem
        self.fs, root = open_filesystem(self.location, storage_options)
        self.root = root.rstrip("/") or "/"
        self.local = is_local(self.fs)
        self.object_store = is_object_store(self.fs)
        self._arrow_fs = None

    def path(self, relative: str) -> str:
        return f"{self.root}/{relative}"

    @contextlib.contextmanager
    def _failures(self, action: str):
        try:
            yield
        except IndexStoreError:
            raise
        except Exception as exc:
            message = storage_failure(exc, self.location)
            if message is None:
                raise
            raise IndexStorageError(f"{action}: {message}") from exc

    @property
    def arrow_fs(self):
        if self._arrow_fs is None:
            from pyarrow import fs as pafs

            # Arrow's own local filesystem reads fastest; anything else goes through fsspec.
            self._arrow_fs = (
                pafs.LocalFileSystem()
                if self.local
                else pafs.PyFileSystem(pafs.FSSpecHandler(self.fs))
            )
        return self._arrow_fs

    def read_bytes(self, relative: str) -> bytes | None:
        try:
            with self._failures(f"reading {relative}"):
                return self.fs.cat_file(self.path(relative))
        except FileNotFoundError:
            return None

    def write_atomic(self, relative: str, data: bytes) -> None:
        """Readers see the old content or the new, never a mix."""
        target = self.path(relative)
        with self._failures(f"writing {relative}"):
            if not self.local:
                # A single PUT: object stores make the whole object visible at once.
                self.fs.pipe_file(target, data)
                return
            os.makedirs(os.path.dirname(target), exist_ok=True)
            temporary = f"{target}.tmp-{uuid.uuid4().hex[:8]}"
            with open(temporary, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, target)
            _fsync_dir(os.path.dirname(target))

    def write_parquet(self, relative: str, table: pa.Table) -> int:
        """Write a whole shard; returns its size. Raises (leaving no visible object on an object
        store, at most an unreferenced file elsewhere) if any part of the write fails."""
        target = self.path(relative)
        with self._failures(f"writing {relative}"):
            if self.local:
                os.makedirs(os.path.dirname(target), exist_ok=True)
                with open(target, "wb") as handle:
                    _write_table(table, handle)
                    handle.flush()
                    os.fsync(handle.fileno())
                _fsync_dir(os.path.dirname(target))
                return int(os.path.getsize(target))
            if not self.object_store:  # object stores have no folders to make
                self.fs.makedirs(self.fs._parent(target), exist_ok=True)
            handle = self.fs.open(target, "wb")
            try:
                _write_table(table, handle)
                handle.close()  # uploads (the last part of) the object; raises if that fails
            except BaseException:
                _abandon(handle)
                raise
            return int(self.fs.size(target))

    def read_parquet(self, relative: str, columns: Sequence[str], filters: Any = None) -> pa.Table:
        try:
            with self._failures(f"reading {relative}"):
                try:
                    return self._read_columns(relative, columns, filters)
                except pa.ArrowInvalid as error:
                    if "No match for FieldRef" not in str(error):
                        raise
                # A shard written before a column was added: read what it has, nulls for the rest.
                present = set(pq.read_schema(self.path(relative), filesystem=self.arrow_fs).names)
                missing = [name for name in columns if name not in present]
                if not set(missing) <= set(ADDED_COLUMNS):
                    raise IndexFormatError(
                        f"the index at {self.location} is damaged: {relative} lacks the "
                        f"column(s) {', '.join(missing)}"
                    )
                table = self._read_columns(relative, [c for c in columns if c in present], filters)
                for name in missing:
                    kind = SCHEMA.field(name).type
                    if name in DICTIONARY_COLUMNS:  # as the shards that have it read
                        kind = pa.dictionary(pa.int32(), kind)
                    table = table.append_column(name, pa.nulls(table.num_rows, kind))
                return table.select(list(columns))
        except FileNotFoundError:
            raise IndexFormatError(
                f"the index at {self.location} is damaged: {relative} is missing "
                "(delete the index and run `photosearch index` again)"
            ) from None

    def _read_columns(self, relative: str, columns: Sequence[str], filters: Any) -> pa.Table:
        return pq.read_table(
            self.path(relative),
            columns=list(columns),
            filesystem=self.arrow_fs,
            filters=filters,
            read_dictionary=[c for c in DICTIONARY_COLUMNS if c in columns],
        )

    def listdir(self, relative: str) -> dict[str, dict]:
        """Files directly under a folder: name -> info (empty when the folder does not exist)."""
        try:
            with self._failures(f"listing {relative}"):
                entries = self.fs.ls(self.path(relative), detail=True)
        except FileNotFoundError:
            return {}
        return {
            entry["name"].rstrip("/").rsplit("/", 1)[-1]: entry
            for entry in entries
            if entry.get("type", "file") == "file"
        }

    def remove(self, relative: str) -> None:
        """Delete a file no snapshot needs any more. Best effort where deleting is not allowed:
        the least-privilege AWS roles have no s3:DeleteObject (versioning keeps what they
        overwrite), and the leftovers are harmless, as readers only read what a manifest names."""
        with (
            self._failures(f"removing {relative}"),
            contextlib.suppress(FileNotFoundError, PermissionError),
        ):
            self.fs.rm_file(self.path(relative))


def _abandon(handle) -> None:
    """Drop a half-written fsspec file without publishing it: abort its S3 multipart upload
    (no parts left behind), and keep its close() from uploading what was buffered as if it were
    the whole file."""
    with contextlib.suppress(Exception):
        handle.discard()
    if isinstance(handle, AbstractBufferedFile):
        handle.closed = True
    else:
        with contextlib.suppress(Exception):
            handle.close()


def _fsync_dir(path: str) -> None:
    # Makes the rename itself durable on POSIX; not possible (nor needed) everywhere.
    with contextlib.suppress(OSError):
        descriptor = os.open(path, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


def _write_table(table: pa.Table, handle) -> None:
    # Floats barely compress: store them plain so loading is a straight copy; zstd the rest.
    compression = {name: "zstd" for name in table.column_names}
    compression.update(descriptor="none", landmarks="none", score="none")
    pq.write_table(
        table,
        handle,
        compression=compression,
        use_dictionary=["status", "model_id", "error", "detection"],
        row_group_size=128 * 1024,
    )


def _info_age(info: dict, now: float) -> float | None:
    """Seconds since a listed file was written, when the storage says."""
    for key in ("mtime", "LastModified", "last_modified", "created"):
        value = info.get(key)
        if isinstance(value, datetime):
            return now - value.timestamp()
        if isinstance(value, int | float):
            return now - float(value)
    return None


def read_manifest(storage: _Storage) -> Manifest | None:
    """The current manifest: manifest.json, or (if that is unreadable) the newest valid copy."""
    data = storage.read_bytes(MANIFEST_NAME)
    if data is not None:
        try:
            return Manifest.from_json(json.loads(data))
        except UnsupportedIndexError:
            raise
        except (ValueError, IndexFormatError):
            pass  # damaged: try the versioned copies
    # manifest.json is missing or damaged (only possible on stores without atomic writes, or
    # if someone edited it): fall back to the newest versioned copy whose shards all exist.
    shards_present = set(storage.listdir(SHARDS_DIR))
    for name in sorted(storage.listdir(MANIFESTS_DIR), reverse=True):
        raw = storage.read_bytes(f"{MANIFESTS_DIR}/{name}")
        try:
            manifest = Manifest.from_json(json.loads(raw or b""))
        except (ValueError, IndexFormatError):
            continue
        if all(shard.path.rsplit("/", 1)[-1] in shards_present for shard in manifest.shards):
            return manifest
    if data is not None:
        raise IndexFormatError(f"unreadable index manifest at {storage.path(MANIFEST_NAME)}")
    return None


# ----------------------------------------------------------------------------------------------
# Rows


def photo_rows(
    key: str,
    fingerprint: str,
    *,
    model_id: str,
    size: int | None,
    stamp: str | None,
    faces: Sequence[Any] = (),
    error: str | None = None,
    image_size: tuple[int, int] | None = None,
    detection: str | None = None,
) -> pa.Table:
    """The rows recording one photo: one per face, or one for a face-less or unreadable photo.

    `faces` are objects with `box`, `score`, `landmarks` (5, 2) and `descriptor` (128,) (the
    engine's Face); `image_size` is the original (width, height); `detection` the engine's
    detection settings.
    """
    status = STATUS_ERROR if error is not None else STATUS_FACES if faces else STATUS_NO_FACE
    count = max(1, len(faces))
    width, height = image_size if image_size is not None else (None, None)
    columns: dict[str, Any] = {
        "photo": [key] * count,
        "fingerprint": [fingerprint] * count,
        "status": [status] * count,
        "error": [error] * count,
        "size": [size] * count,
        "stamp": [stamp] * count,
        "width": [width] * count,
        "height": [height] * count,
        "face_count": [len(faces)] * count,
        "model_id": [model_id] * count,
        "detection": [detection] * count,
    }
    if faces:
        boxes = np.array([face.box for face in faces], dtype=np.int64).reshape(-1, 4)
        columns.update(
            face=np.arange(len(faces), dtype=np.int32),
            left=boxes[:, 0].astype(np.int32),
            top=boxes[:, 1].astype(np.int32),
            right=boxes[:, 2].astype(np.int32),
            bottom=boxes[:, 3].astype(np.int32),
            score=np.array([face.score for face in faces], dtype=np.float32),
            landmarks=_fixed_lists(
                np.stack([np.asarray(face.landmarks, np.float32).reshape(10) for face in faces]),
            ),
            descriptor=_descriptor_array(np.stack([face.descriptor for face in faces])),
        )
    return _table(columns, count)


def tombstone_rows(key: str, *, model_id: str) -> pa.Table:
    """The record of a photo that left the album."""
    return _table(
        {"photo": [key], "status": [STATUS_DELETED], "face_count": [0], "model_id": [model_id]}, 1
    )


def _fixed_lists(matrix: np.ndarray) -> pa.FixedSizeListArray:
    matrix = np.ascontiguousarray(matrix, dtype=np.float32)
    return pa.FixedSizeListArray.from_arrays(pa.array(matrix.reshape(-1)), matrix.shape[1])


def _descriptor_array(matrix: np.ndarray) -> pa.FixedSizeBinaryArray:
    """(N, 128) float32 -> N values of 512 bytes (little-endian float32, no copy on read)."""
    matrix = np.ascontiguousarray(matrix, dtype="<f4").reshape(-1, DESCRIPTOR_SIZE)
    return pa.FixedSizeBinaryArray.from_buffers(
        DESCRIPTOR_TYPE, len(matrix), [None, pa.py_buffer(matrix.tobytes())]
    )


def _table(columns: dict[str, Any], rows: int) -> pa.Table:
    arrays = []
    for schema_field in SCHEMA:
        values = columns.get(schema_field.name)
        if values is None:
            arrays.append(pa.nulls(rows, schema_field.type))
        elif isinstance(values, pa.Array):
            arrays.append(values)
        else:
            arrays.append(pa.array(values, type=schema_field.type))
    return pa.Table.from_arrays(arrays, schema=SCHEMA)


def _live_mask(tables: Sequence[pa.Table], keep_tombstones: bool = False) -> np.ndarray:
    """Which rows of the concatenated shards (manifest order) are their photo's last record."""
    sizes = [table.num_rows for table in tables]
    starts = np.cumsum([0, *sizes])[:-1]
    mask = np.ones(sum(sizes), dtype=bool)
    # Walk from the newest shard back, hiding rows of photos that a later shard records again.
    # Usually the big shards come first and the later ones are small, so each probe is cheap.
    later: pa.Array | None = None
    for position in range(len(tables) - 1, -1, -1):
        photos = tables[position].column("photo")
        start = starts[position]
        if later is not None and len(later):
            superseded = _bools(pc.is_in(photos, value_set=later))
            mask[start : start + len(photos)] &= ~superseded
        if position > 0:
            mine = pc.unique(photos)
            later = mine if later is None else pc.unique(pa.concat_arrays([later, mine]))
    if not keep_tombstones:
        for start, table in zip(starts, tables, strict=True):
            deleted = pc.equal(table.column("status"), STATUS_DELETED)
            mask[start : start + table.num_rows] &= ~_bools(deleted)
    return mask


def _bools(array: pa.ChunkedArray | pa.Array) -> np.ndarray:
    return np.asarray(pc.fill_null(array, False).to_numpy(zero_copy_only=False), dtype=bool)


def _filter(table: pa.Table, mask: np.ndarray) -> pa.Table:
    return table if mask.all() else table.filter(pa.array(mask))


def _concat(tables: Sequence[pa.Table], columns: Sequence[str]) -> pa.Table:
    if not tables:
        return SCHEMA.empty_table().select(list(columns))
    return pa.concat_tables([table.select(list(columns)) for table in tables])


def _live_rows(tables: Sequence[pa.Table], keep_tombstones: bool = False) -> pa.Table:
    """Concatenated shards (in manifest order) reduced to each photo's last record."""
    if not tables:
        return SCHEMA.empty_table()
    return _filter(pa.concat_tables(tables), _live_mask(tables, keep_tombstones))


def descriptors_of(
    column: pa.ChunkedArray | pa.Array,
    mask: np.ndarray | None = None,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """(F, 128) float32 matrix of a `descriptor` column (only the rows in `mask`, if given),
    written into `out` when given."""
    chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
    total = len(column) if mask is None else int(mask.sum())
    if out is None:
        out = np.empty((total, DESCRIPTOR_SIZE), dtype=np.float32)
    start = filled = 0
    for chunk in chunks:
        rows = len(chunk)
        keep = None if mask is None else mask[start : start + rows]
        start += rows
        count = rows if keep is None else int(keep.sum())
        if count == 0:
            continue
        data = chunk.buffers()[1]
        values = np.frombuffer(data, dtype="<f4", count=(chunk.offset + rows) * DESCRIPTOR_SIZE)
        values = values[chunk.offset * DESCRIPTOR_SIZE :].reshape(rows, DESCRIPTOR_SIZE)
        target = out[filled : filled + count]
        if keep is None:
            target[:] = values
        else:
            np.compress(keep, values, axis=0, out=target)
        filled += count
    return out


def landmarks_of(faces: pa.Table) -> np.ndarray:
    """(F, 5, 2) float32 landmarks from a faces table."""
    if faces.num_rows == 0:
        return np.zeros((0, 5, 2), dtype=np.float32)
    column = faces.column("landmarks").combine_chunks()
    return column.flatten().to_numpy(zero_copy_only=False).reshape(-1, 5, 2)


# ----------------------------------------------------------------------------------------------
# Reader


@dataclass(frozen=True)
class IndexSnapshot:
    """Everything one manifest describes, loaded."""

    manifest: Manifest
    location: str
    descriptors: np.ndarray  # (F, 128) float32; row i belongs to faces row i
    faces: pa.Table  # F rows: FACE_COLUMNS
    photos: pa.Table  # one row per photo (any status): PHOTO_COLUMNS

    def errors(self) -> list[tuple[str, str]]:
        """(photo, one-line error) for every unreadable photo, sorted by photo."""
        return _errors(self.photos)


def detection_counts(photos: pa.Table) -> dict[str | None, int]:
    """How many decoded photos (with or without faces) each detection setting found, most
    used first; None: recorded before the settings were."""
    decoded = photos.filter(pc.is_in(photos.column("status"), pa.array(DECODED_STATUSES)))
    counts = Counter(decoded.column("detection").to_pylist())
    return dict(counts.most_common())


def _errors(photos: pa.Table) -> list[tuple[str, str]]:
    rows = photos.filter(pc.equal(photos.column("status"), STATUS_ERROR))
    return sorted(
        zip(rows.column("photo").to_pylist(), rows.column("error").to_pylist(), strict=True)
    )


class IndexReader:
    """Loads one consistent snapshot of an index (the manifest current when `load` starts)."""

    def __init__(self, location: str | os.PathLike, **storage_options: Any) -> None:
        self.storage = _Storage(location, storage_options)
        self.location = self.storage.location

    def manifest(self) -> Manifest | None:
        """The current manifest, or None when there is no index at the location."""
        return read_manifest(self.storage)

    def exists(self) -> bool:
        return self.manifest() is not None

    def load(self) -> tuple[np.ndarray, pa.Table]:
        """(descriptors (F, 128) float32, faces table: FACE_COLUMNS), row i <-> face row i."""
        snapshot = self.snapshot(with_photos=False)
        return snapshot.descriptors, snapshot.faces

    def _current(self, manifest: Manifest | None) -> Manifest:
        if manifest is None:
            manifest = self.manifest()
        if manifest is None:
            raise IndexFormatError(f"no photosearch index at {self.location}")
        return manifest

    def photos(self, manifest: Manifest | None = None) -> pa.Table:
        """One row per photo (PHOTO_COLUMNS), without reading faces or descriptors."""
        manifest = self._current(manifest)
        columns = sorted({*PHOTO_COLUMNS, "face"})
        tables = [self.storage.read_parquet(shard.path, columns) for shard in manifest.shards]
        combined = _concat(tables, columns)
        first = _bools(pc.fill_null(pc.equal(combined.column("face"), 0), True))
        return _filter(combined.select(list(PHOTO_COLUMNS)), _live_mask(tables) & first)

    def errors(self, manifest: Manifest | None = None) -> list[tuple[str, str]]:
        """(photo, one-line error) for every unreadable photo, sorted by photo."""
        return _errors(self.photos(manifest))

    def snapshot(
        self, manifest: Manifest | None = None, *, with_photos: bool = True
    ) -> IndexSnapshot:
        """Faces, descriptors and photos of one manifest (the current one by default).

        `with_photos=False` skips the per-photo columns (`photos` is then an empty table).
        """
        manifest = self._current(manifest)
        columns = sorted({*FACE_COLUMNS, "status", *(PHOTO_COLUMNS if with_photos else ())})
        tables = [self.storage.read_parquet(shard.path, columns) for shard in manifest.shards]
        live = _live_mask(tables)
        combined = _concat(tables, columns)
        is_face = live & _bools(pc.equal(combined.column("status"), STATUS_FACES))
        # A photo's first row (its only one unless it has several faces) describes the photo.
        is_photo = live & _bools(pc.fill_null(pc.equal(combined.column("face"), 0), True))
        return IndexSnapshot(
            manifest=manifest,
            location=self.location,
            descriptors=self._read_descriptors(manifest, is_face),
            faces=_filter(combined.select(list(FACE_COLUMNS)), is_face),
            photos=_filter(combined.select(list(PHOTO_COLUMNS)), is_photo)
            if with_photos
            else SCHEMA.empty_table().select(list(PHOTO_COLUMNS)),
        )

    def _read_descriptors(self, manifest: Manifest, mask: np.ndarray) -> np.ndarray:
        """The descriptors of the rows in `mask`, read row group by row group straight into
        one (F, 128) array (half the memory traffic of reading the whole column first)."""
        out = np.empty((int(mask.sum()), DESCRIPTOR_SIZE), dtype=np.float32)
        row = filled = 0
        for shard in manifest.shards:
            with self.storage.arrow_fs.open_input_file(self.storage.path(shard.path)) as handle:
                parquet = pq.ParquetFile(handle)
                for group in range(parquet.num_row_groups):
                    rows = parquet.metadata.row_group(group).num_rows
                    keep = mask[row : row + rows]
                    row += rows
                    count = int(keep.sum())
                    if count == 0:
                        continue
                    column = parquet.read_row_group(group, columns=["descriptor"]).column(0)
                    descriptors_of(column, keep, out=out[filled : filled + count])
                    filled += count
        if row != len(mask) or filled != len(out):
            raise IndexFormatError(f"the index at {self.location} changed while being read")
        return out


# ----------------------------------------------------------------------------------------------
# Writer


class PhotoState(NamedTuple):
    """What the index holds for one photo key, and where its rows are.

    (A NamedTuple: the writer builds one per photo of the index when it opens.)
    """

    key: str
    fingerprint: str | None
    status: str
    face_count: int
    size: int | None
    stamp: str | None
    error: str | None
    detection: str | None  # the detection settings its faces were found with (None: unknown)
    shard: str  # shard path holding the rows


# The index columns behind each PhotoState field but the last (the shard).
PHOTO_STATE_COLUMNS = ("photo", *PhotoState._fields[1:-1])


@dataclass
class _Reuse:
    key: str
    size: int | None
    stamp: str | None
    source: PhotoState


@dataclass
class CommitResult:
    generation: int
    photos: int  # photo records written (including deletions)
    shard: str | None


class IndexWriter:
    """Adds, replaces and deletes photo records; `commit()` makes them visible atomically.

    One writer per index at a time (enforced with a lock file for local indexes). Use as a
    context manager, or call `close()`; uncommitted changes are dropped on close.
    """

    def __init__(
        self,
        location: str | os.PathLike,
        *,
        model_id: str,
        album: str | None = None,
        storage_options: dict | None = None,
        gc_grace_seconds: float = GC_GRACE_SECONDS,
    ) -> None:
        self.storage = _Storage(location, storage_options)
        self.location = self.storage.location
        self.model_id = model_id
        self.gc_grace_seconds = gc_grace_seconds
        self._lock_handle = self._acquire_lock()
        try:
            self._open(album)
        except BaseException:
            self.close()
            raise

    # -- opening ------------------------------------------------------------------------------

    def _acquire_lock(self):
        if not self.storage.local:
            return None
        os.makedirs(self.storage.root, exist_ok=True)
        handle = open(self.storage.path(LOCK_NAME), "a+")  # noqa: SIM115 (held until close)
        try:
            import fcntl

            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except ImportError:  # no fcntl (Windows): single writer by convention
            pass
        except OSError:
            handle.close()
            raise IndexBusyError(
                f"another photosearch process is writing the index at {self.location}"
            ) from None
        return handle

    def _open(self, album: str | None) -> None:
        current = read_manifest(self.storage)
        self.reset_reason: str | None = None
        if current is None:
            self.manifest = Manifest.empty(album, self.model_id)
        elif current.model_id != self.model_id:
            # Descriptors of another model set are not comparable: start over, keeping the old
            # shards readable for the grace period.
            self.reset_reason = (
                f"index was built with model {current.model_id!r}, now {self.model_id!r}: "
                "re-indexing every photo"
            )
            now = time.time()
            self.manifest = replace(
                Manifest.empty(album, self.model_id),
                generation=current.generation,
                created=current.created,
                retired=current.retired + tuple(Retired(s.path, now) for s in current.shards),
            )
        else:
            self.manifest = current
        if album is not None and self.manifest.album != album:
            self.manifest = replace(self.manifest, album=album)
        self._committed_generation = current.generation if current is not None else 0
        versions = [
            int(name.split(".")[0])
            for name in self.storage.listdir(MANIFESTS_DIR)
            if name.split(".")[0].isdigit()
        ]
        self._next_generation = max([self.manifest.generation, *versions]) + 1
        self._pending: dict[str, pa.Table | _Reuse] = {}
        self._manifest_changed = (
            album is not None and current is not None and current.album != album
        )
        self._load_state()
        self._collect_garbage()

    def _load_state(self) -> None:
        columns = (*PHOTO_STATE_COLUMNS, "face")
        tables = []
        if not self.manifest.shards:
            self.photos = {}
            self._index_fingerprints()
            return
        for shard in self.manifest.shards:
            table = self.storage.read_parquet(shard.path, columns)
            # Only one row per photo is needed: its first (or only) row.
            table = table.filter(pc.fill_null(pc.equal(table.column("face"), 0), True))
            tables.append(table.append_column("shard", pa.repeat(shard.path, table.num_rows)))
        live = _live_rows(tables)
        names = ("photo", *PhotoState._fields[1:])
        # Millions of small objects: the cyclic GC would rescan them over and over meanwhile.
        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            columns = [live.column(name).to_pylist() for name in names]
            self.photos: dict[str, PhotoState] = {
                row[0]: row for row in map(PhotoState._make, zip(*columns, strict=True))
            }
            self._index_fingerprints()
        finally:
            if gc_was_enabled:
                gc.enable()

    def _index_fingerprints(self) -> None:
        self._by_fingerprint: dict[str, PhotoState] = {
            state.fingerprint: state for state in self.photos.values() if state.fingerprint
        }

    def _collect_garbage(self) -> None:
        """Delete retired shards past their grace period and shards no commit ever referenced."""
        now = time.time()
        keep = []
        for item in self.manifest.retired:
            if now - item.since >= self.gc_grace_seconds:
                self.storage.remove(item.path)
            else:
                keep.append(item)
        if len(keep) != len(self.manifest.retired):
            self.manifest = replace(self.manifest, retired=tuple(keep))
            self._manifest_changed = True
        known = {s.path for s in self.manifest.shards} | {r.path for r in keep}
        for name, info in self.storage.listdir(SHARDS_DIR).items():
            relative = f"{SHARDS_DIR}/{name}"
            if relative in known:
                continue
            # Locally we hold the lock, so an unreferenced shard is a crashed writer's leftover;
            # on object stores it might be another writer's work in progress, so wait.
            age = _info_age(info, now)
            if self.storage.local or (age is not None and age >= self.gc_grace_seconds):
                self.storage.remove(relative)

    # -- state ----------------------------------------------------------------------------------

    def state(self, key: str) -> PhotoState | None:
        """The committed record of a photo (None if unknown or deleted)."""
        return self.photos.get(key)

    def source_for(self, fingerprint: str) -> PhotoState | None:
        """A record (possibly of another key, possibly deleted since) with these exact bytes."""
        return self._by_fingerprint.get(fingerprint)

    @property
    def pending(self) -> int:
        """Photo records waiting for the next commit."""
        return len(self._pending)

    # -- changes --------------------------------------------------------------------------------

    def put(self, rows: pa.Table) -> None:
        """Record one photo (rows from `photo_rows`), replacing any record of the same key."""
        keys = pc.unique(rows.column("photo"))
        if len(keys) != 1:
            raise ValueError("put() takes the rows of exactly one photo")
        self._pending[keys[0].as_py()] = rows

    def reuse(self, key: str, source: PhotoState, *, size: int | None, stamp: str | None) -> None:
        """Record `key` with the faces of `source` (same bytes): no decoding, no embedding."""
        self._pending[key] = _Reuse(key, size, stamp, source)

    def delete(self, key: str) -> None:
        self._pending[key] = tombstone_rows(key, model_id=self.model_id)

    def commit(self) -> CommitResult | None:
        """Write pending records as one shard, then switch the manifest to include it."""
        if not self._pending and self.reset_reason is None and not self._manifest_changed:
            return None
        tables = [v for v in self._pending.values() if isinstance(v, pa.Table)]
        tables += self._resolve_reuses([v for v in self._pending.values() if isinstance(v, _Reuse)])
        generation = self._next_generation
        shards = list(self.manifest.shards)
        shard_path = None
        if tables:
            table = pa.concat_tables(tables)
            shard_path = f"{SHARDS_DIR}/{generation:010d}-{uuid.uuid4().hex[:8]}.parquet"
            size = self.storage.write_parquet(shard_path, table)
            shards.append(ShardInfo(shard_path, table.num_rows, size))
            new_states = self._states_of(table, shard_path)
        else:
            new_states = {}
        stats = self.manifest.stats
        for key, state in new_states.items():
            stats = stats.plus(self.photos.get(key), -1).plus(state, +1)
        manifest = replace(
            self.manifest,
            generation=generation,
            updated=utc_now(),
            shards=tuple(shards),
            stats=stats,
            model_id=self.model_id,
        )
        self._publish(manifest)
        for key, state in new_states.items():
            if state.status == STATUS_DELETED:
                self.photos.pop(key, None)
            else:
                self.photos[key] = state
                if state.fingerprint:
                    self._by_fingerprint[state.fingerprint] = state
        written = len(self._pending)
        self._pending.clear()
        self.reset_reason = None
        return CommitResult(generation, written, shard_path)

    def _resolve_reuses(self, reuses: list[_Reuse]) -> list[pa.Table]:
        """Copy the source rows of each reuse under its new key (one read per source shard)."""
        by_shard: dict[str, list[_Reuse]] = defaultdict(list)
        for item in reuses:
            by_shard[item.source.shard].append(item)
        tables = []
        for shard, items in by_shard.items():
            wanted = sorted({item.source.key for item in items})
            source = self.storage.read_parquet(
                shard, SCHEMA.names, filters=pc.field("photo").isin(wanted)
            )
            rows_of: dict[str, list[int]] = defaultdict(list)
            for index, photo in enumerate(source.column("photo").to_pylist()):
                rows_of[photo].append(index)
            take, photos, sizes, stamps = [], [], [], []
            for item in items:
                rows = rows_of.get(item.source.key, [])
                if not rows:
                    raise IndexFormatError(f"rows of {item.source.key!r} missing from {shard}")
                take += rows
                photos += [item.key] * len(rows)
                sizes += [item.size] * len(rows)
                stamps += [item.stamp] * len(rows)
            copied = source.take(pa.array(take, type=pa.int64()))
            for name, values in (("photo", photos), ("size", sizes), ("stamp", stamps)):
                index = SCHEMA.get_field_index(name)
                copied = copied.set_column(
                    index, SCHEMA.field(name), pa.array(values, SCHEMA.field(name).type)
                )
            tables.append(copied.cast(SCHEMA))
        return tables

    def _states_of(self, table: pa.Table, shard: str) -> dict[str, PhotoState]:
        first = table.filter(pc.fill_null(pc.equal(table.column("face"), 0), True))
        names = PHOTO_STATE_COLUMNS
        return {
            row[0]: PhotoState(*row, shard)
            for row in zip(*(first.column(n).to_pylist() for n in names), strict=True)
        }

    def _publish(self, manifest: Manifest) -> None:
        """Make `manifest` current: versioned copy, then the atomic switch of manifest.json."""
        if not self.storage.local:
            # No lock on object stores: refuse to overwrite another writer's commit.
            current = read_manifest(self.storage)
            current_generation = current.generation if current else 0
            if current_generation != self._committed_generation:
                raise ConcurrentWriteError(
                    f"the index at {self.location} was changed by another writer "
                    f"(generation {current_generation}, expected {self._committed_generation})"
                )
        data = json.dumps(manifest.to_json(), indent=1).encode()
        self.storage.write_atomic(f"{MANIFESTS_DIR}/{manifest.generation:010d}.json", data)
        self.storage.write_atomic(MANIFEST_NAME, data)
        self.manifest = manifest
        self._manifest_changed = False
        self._committed_generation = manifest.generation
        self._next_generation = manifest.generation + 1
        self._prune_manifests()

    def _prune_manifests(self) -> None:
        names = sorted(self.storage.listdir(MANIFESTS_DIR))
        for name in names[:-KEEP_MANIFESTS]:
            if name.endswith(".json") and name.split(".")[0].isdigit():
                self.storage.remove(f"{MANIFESTS_DIR}/{name}")

    # -- compaction -----------------------------------------------------------------------------

    def needs_full_compaction(self) -> bool:
        shards = self.manifest.shards
        if len(shards) > MAX_SHARDS:
            return True
        rows = sum(shard.rows for shard in shards)
        # Live rows: one per face plus one per photo without faces.
        live = self.manifest.stats.faces + sum(1 for s in self.photos.values() if s.face_count == 0)
        return rows > 0 and (rows - live) / rows > MAX_DEAD_FRACTION

    def compact(self, start: int = 0) -> CommitResult | None:
        """Merge the shards from position `start` on into one (all of them by default).

        Merging a suffix keeps last-record-wins semantics; only a full merge can drop deletion
        records. Commits pending changes first.
        """
        self.commit()
        shards = self.manifest.shards
        merged = shards[start:]
        if len(merged) < 1 or (len(merged) == 1 and start > 0):
            return None
        tables = [self.storage.read_parquet(shard.path, SCHEMA.names) for shard in merged]
        live = _live_rows(tables, keep_tombstones=start > 0).cast(SCHEMA)
        generation = self._next_generation
        kept = list(shards[:start])
        shard_path = None
        if live.num_rows:
            shard_path = f"{SHARDS_DIR}/{generation:010d}-{uuid.uuid4().hex[:8]}.parquet"
            size = self.storage.write_parquet(shard_path, live)
            kept.append(ShardInfo(shard_path, live.num_rows, size))
        if len(kept) == len(shards) and [s.rows for s in kept] == [s.rows for s in shards]:
            # A single shard with nothing to drop: rewriting it would change nothing.
            if shard_path:
                self.storage.remove(shard_path)
            return None
        now = time.time()
        manifest = replace(
            self.manifest,
            generation=generation,
            updated=utc_now(),
            shards=tuple(kept),
            retired=self.manifest.retired + tuple(Retired(s.path, now) for s in merged),
        )
        self._publish(manifest)
        merged_paths = {s.path for s in merged}
        for key, state in self.photos.items():
            if state.shard in merged_paths:
                self.photos[key] = state._replace(shard=shard_path or "")
        self._index_fingerprints()
        return CommitResult(generation, 0, shard_path)

    def close(self) -> None:
        self._pending = {}
        if self._lock_handle is not None:
            self._lock_handle.close()
            self._lock_handle = None

    def __enter__(self) -> IndexWriter:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

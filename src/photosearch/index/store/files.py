"""The index's files on their filesystem: one code path for local folders and fsspec URLs.

IndexFiles knows the index root and does every read and write of it: atomic writes (locally a
fsynced temp file and ``os.replace``, elsewhere one object PUT), whole-shard Parquet writes that
leave no visible object when they fail, Parquet reads that fill columns added after a shard was
written with nulls, listings and best-effort removal. Storage failures leave here as
IndexStorageError. read_manifest finds the current manifest, falling back to the newest
versioned copy whose shards all exist when manifest.json is damaged.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import threading
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
from fsspec.spec import AbstractBufferedFile

from photosearch.index.store.format import (
    ADDED_COLUMNS,
    CHECKSUM_ALGORITHM,
    DICTIONARY_COLUMNS,
    MANIFEST_NAME,
    MANIFESTS_DIR,
    SCHEMA,
    SHARDS_DIR,
    DamagedShardError,
    IndexFormatError,
    IndexStorageError,
    IndexStoreError,
    UnsafeIndexError,
    UnsupportedIndexError,
)
from photosearch.index.store.manifest import Manifest, ShardInfo
from photosearch.storage import (
    canonical_location,
    is_local,
    is_object_store,
    open_filesystem,
    storage_failure,
)

__all__ = ["IndexFiles", "info_age", "read_manifest"]

# Shards are immutable: one whose checksum was verified once in this process (same location,
# path and checksum) is not read twice for it.
_VERIFIED: set[tuple[str, str, str]] = set()
_VERIFIED_LOCK = threading.Lock()
_BLOCK = 8 << 20


class IndexFiles:
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
        """The storage path of a file of the index. UnsafeIndexError for anything that would
        leave the index root: "..", an absolute path, or (locally) a symlink pointing out, so
        a foreign index can neither read nor delete outside itself."""
        parts = relative.split("/")
        if relative.startswith("/") or "\0" in relative or any(p in ("", ".", "..") for p in parts):
            raise UnsafeIndexError(f"the index at {self.location} names {relative!r}: refused")
        target = f"{self.root}/{relative}"
        if self.local:
            root = os.path.realpath(self.root)
            real = os.path.realpath(target)
            if real != root and not real.startswith(root.rstrip(os.sep) + os.sep):
                raise UnsafeIndexError(
                    f"the index at {self.location}: {relative} leads outside the index "
                    f"(to {real}): refused"
                )
        return target

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

    def open_local(self, relative: str):
        """Open (creating the index folder and the file if needed) a local file of the index for
        appending, e.g. the writer's lock; an --index that is a file or not writable leaves as
        IndexStorageError."""
        with self._failures(f"opening {relative}"):
            try:
                os.makedirs(self.root, exist_ok=True)
            except FileExistsError:
                raise NotADirectoryError(20, "not a folder", self.root) from None
            return open(self.path(relative), "a+")

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

    def write_parquet(self, relative: str, table: pa.Table) -> ShardInfo:
        """Write a whole shard; returns its ShardInfo (rows, size, checksum of the bytes written).
        Raises (leaving no visible object on an object store, at most an unreferenced file
        elsewhere) if any part of the write fails."""
        target = self.path(relative)
        with self._failures(f"writing {relative}"):
            if self.local:
                os.makedirs(os.path.dirname(target), exist_ok=True)
                with open(target, "wb") as handle:
                    hashing = _Hashing(handle)
                    _write_table(table, hashing)
                    handle.flush()
                    os.fsync(handle.fileno())
                _fsync_dir(os.path.dirname(target))
                size = int(os.path.getsize(target))
            else:
                if not self.object_store:  # object stores have no folders to make
                    self.fs.makedirs(self.fs._parent(target), exist_ok=True)
                handle = self.fs.open(target, "wb")
                try:
                    hashing = _Hashing(handle)
                    _write_table(table, hashing)
                    handle.close()  # uploads (the last part of) the object; raises if that fails
                except BaseException:
                    _abandon(handle)
                    raise
                size = int(self.fs.size(target))
        if size != hashing.size:
            raise IndexStorageError(f"writing {relative}: {size} bytes stored, {hashing.size} sent")
        checksum = f"{CHECKSUM_ALGORITHM}:{hashing.digest.hexdigest()}"
        with _VERIFIED_LOCK:
            _VERIFIED.add((self.location, relative, checksum))
        return ShardInfo(relative, table.num_rows, size, checksum)

    def damaged(self, relative: str, why: str) -> DamagedShardError:
        return DamagedShardError(
            f"the index at {self.location} is damaged: {relative} {why} "
            "(run `photosearch index ALBUM --repair` to drop it and index its photos again)",
            relative,
        )

    def verify(self, shard: ShardInfo) -> None:
        """Check a shard's bytes against the manifest (size and checksum): DamagedShardError
        when they differ. Shards of older manifests (no checksum) are only size-checked when
        read. Each shard is read for this once per process."""
        key = (self.location, shard.path, shard.checksum or "")
        with _VERIFIED_LOCK:
            if key in _VERIFIED:
                return
        if shard.checksum is None:
            # No checksum to compare (an older manifest): check at least the schema, from the
            # file's footer, so `info` too reports a foreign or mangled shard.
            self._check_schema(shard.path)
            with _VERIFIED_LOCK:
                _VERIFIED.add(key)
            return
        algorithm, _, expected = shard.checksum.partition(":")
        if algorithm != CHECKSUM_ALGORITHM:
            return  # a newer photosearch's algorithm: not ours to judge
        digest = hashlib.new(CHECKSUM_ALGORITHM)
        size = 0
        try:
            with self._failures(f"reading {shard.path}"), self.fs.open(self.path(shard.path)) as f:
                while block := f.read(_BLOCK):
                    digest.update(block)
                    size += len(block)
        except FileNotFoundError:
            raise self.damaged(shard.path, "is missing") from None
        if size != shard.bytes:
            raise self.damaged(shard.path, f"has {size} bytes, {shard.bytes} were written")
        if digest.hexdigest() != expected:
            raise self.damaged(shard.path, "has changed bytes (checksum differs)")
        with _VERIFIED_LOCK:
            _VERIFIED.add(key)

    def read_parquet(self, relative: str, columns: Sequence[str], filters: Any = None) -> pa.Table:
        try:
            with self._failures(f"reading {relative}"), self.damage_of(relative):
                try:
                    return self._read_columns(relative, columns, filters)
                except pa.ArrowInvalid as error:
                    if "No match for FieldRef" not in str(error):
                        raise
                # A shard written before a column was added: read what it has, nulls for the rest.
                present = set(pq.read_schema(self.path(relative), filesystem=self.arrow_fs).names)
                missing = [name for name in columns if name not in present]
                if not set(missing) <= set(ADDED_COLUMNS):
                    raise self.damaged(relative, f"lacks the column(s) {', '.join(missing)}")
                table = self._read_columns(relative, [c for c in columns if c in present], filters)
                for name in missing:
                    kind = SCHEMA.field(name).type
                    if name in DICTIONARY_COLUMNS:  # as the shards that have it read
                        kind = pa.dictionary(pa.int32(), kind)
                    table = table.append_column(name, pa.nulls(table.num_rows, kind))
                return table.select(list(columns))
        except FileNotFoundError:
            raise self.damaged(relative, "is missing") from None

    @contextlib.contextmanager
    def damage_of(self, relative: str):
        """Parquet's complaints about a shard's bytes (truncated, empty, not Parquet, another
        schema) as DamagedShardError: one line, never pyarrow's traceback. Failures of the
        storage itself (an errno: permissions, the network) keep their own meaning."""
        try:
            yield
        except IndexStoreError:
            raise
        except (pa.ArrowException, OSError, ValueError, TypeError, IndexError) as exc:
            if isinstance(exc, FileNotFoundError) or (
                isinstance(exc, OSError) and exc.errno is not None
            ):
                raise
            if not self.local and storage_failure(exc, self.location) is not None:
                raise  # the network or the credentials, not the bytes
            text = " ".join(str(exc).split())[:200]
            raise self.damaged(relative, f"is not a readable shard ({text})") from exc

    def _check_schema(self, relative: str) -> None:
        try:
            with self._failures(f"reading {relative}"), self.damage_of(relative):
                schema = pq.read_schema(self.path(relative), filesystem=self.arrow_fs)
        except FileNotFoundError:
            raise self.damaged(relative, "is missing") from None
        for expected in SCHEMA:
            if expected.name not in schema.names:
                if expected.name in ADDED_COLUMNS:
                    continue
                raise self.damaged(relative, f"lacks the column {expected.name}")
            found = schema.field(expected.name).type
            if found != expected.type and found != pa.dictionary(pa.int32(), expected.type):
                raise self.damaged(relative, f"has column {expected.name} of type {found}")

    def read_shard(self, shard: ShardInfo, columns: Sequence[str]) -> pa.Table:
        """A shard's columns, its bytes checked against the manifest first."""
        self.verify(shard)
        return self.read_parquet(shard.path, columns)

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


class _Hashing:
    """A write-only file that hashes what passes through (the shard checksum, computed while
    writing: no second read)."""

    def __init__(self, handle) -> None:
        self.handle = handle
        self.digest = hashlib.new(CHECKSUM_ALGORITHM)
        self.size = 0
        self.closed = False

    def write(self, data) -> int:
        self.digest.update(data)
        self.size += len(memoryview(data).cast("B"))
        return self.handle.write(data)

    def tell(self) -> int:
        return self.size

    def flush(self) -> None:
        self.handle.flush()

    def writable(self) -> bool:
        return True


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


def info_age(info: dict, now: float) -> float | None:
    """Seconds since a listed file was written, when the storage says."""
    for key in ("mtime", "LastModified", "last_modified", "created"):
        value = info.get(key)
        if isinstance(value, datetime):
            return now - value.timestamp()
        if isinstance(value, int | float):
            return now - float(value)
    return None


def read_manifest(storage: IndexFiles) -> Manifest | None:
    """The current manifest: manifest.json, or (if that is unreadable) the newest valid copy."""
    data = storage.read_bytes(MANIFEST_NAME)
    if data is not None:
        try:
            return Manifest.from_json(json.loads(data))
        except (UnsupportedIndexError, UnsafeIndexError):
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

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

The package, one module a job (each imports only the ones above it):

- `format`: format constants, the shard SCHEMA, the row statuses and the index errors;
- `manifest`: the manifest (ShardInfo, Retired, IndexStats, Manifest) and its JSON form;
- `files`: the index's files on their filesystem (IndexFiles: atomic writes, Parquet I/O,
  listings) and read_manifest;
- `rows`: building a photo's rows, live-row masks over the shard log, descriptors and landmarks
  as arrays;
- `reader`: IndexReader and IndexSnapshot, one consistent snapshot of a manifest;
- `writer`: IndexWriter (put, reuse, delete, commit, compaction, garbage collection), PhotoState
  and the compaction and retention policy.
"""

from __future__ import annotations

from photosearch.index.store.files import read_manifest
from photosearch.index.store.format import (
    ADDED_COLUMNS,
    CHECKSUM_ALGORITHM,
    DECODED_STATUSES,
    DESCRIPTOR_SIZE,
    DESCRIPTOR_TYPE,
    DICTIONARY_COLUMNS,
    FACE_COLUMNS,
    FORMAT_NAME,
    FORMAT_VERSION,
    LOCK_NAME,
    MANIFEST_NAME,
    MANIFESTS_DIR,
    PHOTO_COLUMNS,
    SCHEMA,
    SHARDS_DIR,
    STATUS_DELETED,
    STATUS_ERROR,
    STATUS_FACES,
    STATUS_NO_FACE,
    STATUSES,
    ConcurrentWriteError,
    DamagedShardError,
    IndexBusyError,
    IndexFormatError,
    IndexStorageError,
    IndexStoreError,
    UnsafeIndexError,
    UnsupportedIndexError,
)
from photosearch.index.store.manifest import IndexStats, Manifest, Retired, ShardInfo, utc_now
from photosearch.index.store.reader import IndexReader, IndexSnapshot, detection_counts
from photosearch.index.store.rows import descriptors_of, landmarks_of, photo_rows, tombstone_rows
from photosearch.index.store.writer import (
    GC_GRACE_SECONDS,
    KEEP_MANIFESTS,
    MAX_DEAD_FRACTION,
    MAX_SHARDS,
    PHOTO_STATE_COLUMNS,
    CommitResult,
    IndexWriter,
    PhotoState,
)

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
    "DamagedShardError",
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
    "UnsafeIndexError",
    "UnsupportedIndexError",
    "descriptors_of",
    "detection_counts",
    "landmarks_of",
    "photo_rows",
    "read_manifest",
    "tombstone_rows",
    "utc_now",
]

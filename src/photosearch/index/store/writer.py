"""The writer: adds, replaces and deletes photo records; commit() makes them visible atomically.

A commit appends one shard holding the complete current record of every photo it touches, then
publishes a manifest that includes it (versioned copy first, then the atomic switch of
manifest.json). One writer per index at a time: a lock file for local indexes; on object stores
a commit refuses to overwrite another writer's (ConcurrentWriteError). Opening a writer removes
shards no manifest references and retired shards past their grace period. Compaction rewrites
the log once it has too many shards or mostly dead rows.
"""

from __future__ import annotations

import gc
import json
import os
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, replace
from typing import NamedTuple

import pyarrow as pa
import pyarrow.compute as pc

from photosearch.index.store.files import IndexFiles, info_age, read_manifest
from photosearch.index.store.format import (
    LOCK_NAME,
    MANIFEST_NAME,
    MANIFESTS_DIR,
    SCHEMA,
    SHARDS_DIR,
    STATUS_DELETED,
    ConcurrentWriteError,
    DamagedShardError,
    IndexBusyError,
    IndexFormatError,
)
from photosearch.index.store.manifest import IndexStats, Manifest, Retired, utc_now
from photosearch.index.store.rows import live_rows, tombstone_rows

__all__ = [
    "GC_GRACE_SECONDS",
    "KEEP_MANIFESTS",
    "MAX_DEAD_FRACTION",
    "MAX_SHARDS",
    "PHOTO_STATE_COLUMNS",
    "CommitResult",
    "IndexWriter",
    "PhotoState",
]

# Compaction policy: rewrite everything once the log has too many shards or mostly dead rows.
MAX_SHARDS = 16
MAX_DEAD_FRACTION = 0.5
# Versioned manifests kept for recovery and inspection.
KEEP_MANIFESTS = 20
# How long files dropped from the manifest stay readable for readers of an older snapshot.
GC_GRACE_SECONDS = 600.0


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
        repair: bool = False,
    ) -> None:
        self.storage = IndexFiles(location, storage_options)
        # With repair, damaged shards (DamagedShardError) are dropped from the manifest at the
        # next commit instead of stopping the writer: their photos fall back to their earlier
        # records (or none), and the indexer redoes them from the album. One line each here.
        self.repair = repair
        self.repaired: list[str] = []
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
        handle = self.storage.open_local(LOCK_NAME)
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
        damaged = []
        for shard in self.manifest.shards:
            try:
                table = self.storage.read_shard(shard, columns)
            except DamagedShardError as error:
                if not self.repair:
                    raise
                damaged.append(shard)
                self.repaired.append(f"dropped: {error.args[0].split(' (run ')[0]}")
                continue
            # Only one row per photo is needed: its first (or only) row.
            table = table.filter(pc.fill_null(pc.equal(table.column("face"), 0), True))
            tables.append(table.append_column("shard", pa.repeat(shard.path, table.num_rows)))
        live = live_rows(tables)
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
        if damaged:
            self._drop_damaged(damaged)

    def _drop_damaged(self, damaged: list) -> None:
        """Drop damaged shards from the manifest (retired: removed after the grace period) and
        recount the live photos, which the dropped shards' records no longer shadow."""
        stats = IndexStats()
        for state in self.photos.values():
            stats = stats.plus(state, +1)
        now = time.time()
        self.manifest = replace(
            self.manifest,
            shards=tuple(s for s in self.manifest.shards if s not in damaged),
            retired=self.manifest.retired + tuple(Retired(s.path, now) for s in damaged),
            stats=stats,
        )
        self._manifest_changed = True

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
            age = info_age(info, now)
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
            shards.append(self.storage.write_parquet(shard_path, table))
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
        tables = [self.storage.read_shard(shard, SCHEMA.names) for shard in merged]
        live = live_rows(tables, keep_tombstones=start > 0).cast(SCHEMA)
        generation = self._next_generation
        kept = list(shards[:start])
        shard_path = None
        if live.num_rows:
            shard_path = f"{SHARDS_DIR}/{generation:010d}-{uuid.uuid4().hex[:8]}.parquet"
            kept.append(self.storage.write_parquet(shard_path, live))
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

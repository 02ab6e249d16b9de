"""The reader: one consistent snapshot of an index, the manifest current when loading starts.

Readers read one manifest and only the shards it lists, so a writer committing meanwhile never
disturbs them. Descriptors are read row group by row group straight into one (F, 128) array.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from photosearch.index.store.files import IndexFiles, read_manifest
from photosearch.index.store.format import (
    DECODED_STATUSES,
    DESCRIPTOR_SIZE,
    DESCRIPTOR_TYPE,
    FACE_COLUMNS,
    PHOTO_COLUMNS,
    SCHEMA,
    STATUS_ERROR,
    STATUS_FACES,
    IndexFormatError,
)
from photosearch.index.store.manifest import Manifest
from photosearch.index.store.rows import (
    as_bools,
    concat_columns,
    descriptors_of,
    filter_rows,
    live_mask,
)

__all__ = ["IndexReader", "IndexSnapshot", "detection_counts"]


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
        self.storage = IndexFiles(location, storage_options)
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
        tables = [self.storage.read_shard(shard, columns) for shard in manifest.shards]
        combined = concat_columns(tables, columns)
        first = as_bools(pc.fill_null(pc.equal(combined.column("face"), 0), True))
        return filter_rows(combined.select(list(PHOTO_COLUMNS)), live_mask(tables) & first)

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
        tables = [self.storage.read_shard(shard, columns) for shard in manifest.shards]
        live = live_mask(tables)
        combined = concat_columns(tables, columns)
        is_face = live & as_bools(pc.equal(combined.column("status"), STATUS_FACES))
        # A photo's first row (its only one unless it has several faces) describes the photo.
        is_photo = live & as_bools(pc.fill_null(pc.equal(combined.column("face"), 0), True))
        return IndexSnapshot(
            manifest=manifest,
            location=self.location,
            descriptors=self._read_descriptors(manifest, is_face),
            faces=filter_rows(combined.select(list(FACE_COLUMNS)), is_face),
            photos=filter_rows(combined.select(list(PHOTO_COLUMNS)), is_photo)
            if with_photos
            else SCHEMA.empty_table().select(list(PHOTO_COLUMNS)),
        )

    def _read_descriptors(self, manifest: Manifest, mask: np.ndarray) -> np.ndarray:
        """The descriptors of the rows in `mask`, read row group by row group straight into
        one (F, 128) array (half the memory traffic of reading the whole column first)."""
        out = np.empty((int(mask.sum()), DESCRIPTOR_SIZE), dtype=np.float32)
        row = filled = 0
        for shard in manifest.shards:
            path = self.storage.path(shard.path)
            with (
                self.storage.damage_of(shard.path),
                self.storage.arrow_fs.open_input_file(path) as handle,
            ):
                parquet = pq.ParquetFile(handle)
                for group in range(parquet.num_row_groups):
                    rows = parquet.metadata.row_group(group).num_rows
                    keep = mask[row : row + rows]
                    row += rows
                    count = int(keep.sum())
                    if count == 0:
                        continue
                    column = parquet.read_row_group(group, columns=["descriptor"]).column(0)
                    if column.type != DESCRIPTOR_TYPE:
                        raise TypeError(f"descriptor column of type {column.type}")
                    descriptors_of(column, keep, out=out[filled : filled + count])
                    filled += count
        if row != len(mask) or filled != len(out):
            raise IndexFormatError(f"the index at {self.location} changed while being read")
        return out

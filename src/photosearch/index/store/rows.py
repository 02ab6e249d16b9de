"""Rows: building a photo's record, and reducing the shard log to each photo's live record.

photo_rows / tombstone_rows build the rows one commit appends for a photo (one per face, or one
for a face-less, unreadable or deleted photo), always in SCHEMA. The live-row masks apply the
log's rule: a photo's live record is the one in the *last* shard of the manifest that mentions
it, and a "deleted" record hides it. descriptors_of and landmarks_of turn columns back into
numpy arrays without a per-row copy.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from photosearch.index.store.format import (
    DESCRIPTOR_SIZE,
    DESCRIPTOR_TYPE,
    SCHEMA,
    STATUS_DELETED,
    STATUS_ERROR,
    STATUS_FACES,
    STATUS_NO_FACE,
)

# The store re-exports descriptors_of, landmarks_of, photo_rows and tombstone_rows; the others
# are the shard-log helpers its reader and writer share.
__all__ = [
    "as_bools",
    "concat_columns",
    "descriptors_of",
    "filter_rows",
    "landmarks_of",
    "live_mask",
    "live_rows",
    "photo_rows",
    "tombstone_rows",
]


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


def live_mask(tables: Sequence[pa.Table], keep_tombstones: bool = False) -> np.ndarray:
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
            superseded = as_bools(pc.is_in(photos, value_set=later))
            mask[start : start + len(photos)] &= ~superseded
        if position > 0:
            mine = pc.unique(photos)
            later = mine if later is None else pc.unique(pa.concat_arrays([later, mine]))
    if not keep_tombstones:
        for start, table in zip(starts, tables, strict=True):
            deleted = pc.equal(table.column("status"), STATUS_DELETED)
            mask[start : start + table.num_rows] &= ~as_bools(deleted)
    return mask


def as_bools(array: pa.ChunkedArray | pa.Array) -> np.ndarray:
    return np.asarray(pc.fill_null(array, False).to_numpy(zero_copy_only=False), dtype=bool)


def filter_rows(table: pa.Table, mask: np.ndarray) -> pa.Table:
    return table if mask.all() else table.filter(pa.array(mask))


def concat_columns(tables: Sequence[pa.Table], columns: Sequence[str]) -> pa.Table:
    if not tables:
        return SCHEMA.empty_table().select(list(columns))
    return pa.concat_tables([table.select(list(columns)) for table in tables])


def live_rows(tables: Sequence[pa.Table], keep_tombstones: bool = False) -> pa.Table:
    """Concatenated shards (in manifest order) reduced to each photo's last record."""
    if not tables:
        return SCHEMA.empty_table()
    return filter_rows(pa.concat_tables(tables), live_mask(tables, keep_tombstones))


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

"""The on-disk index format: shards + manifest, last record wins, crash safety, compaction.

These tests exercise the storage layer alone, with face records made up on the spot (the
storage must round-trip any values exactly); tests/test_indexer.py runs the real engine.
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass
from pathlib import Path

import fsspec
import numpy as np
import pyarrow.parquet as pq
import pytest
from index_checks import assert_consistent

from photosearch.index.store import (
    MANIFEST_NAME,
    SCHEMA,
    ConcurrentWriteError,
    IndexBusyError,
    IndexFormatError,
    IndexReader,
    IndexWriter,
    landmarks_of,
    photo_rows,
)

MODEL = "test-model"


@dataclass(frozen=True)
class FaceRecord:
    box: tuple[int, int, int, int]
    score: float
    landmarks: np.ndarray
    descriptor: np.ndarray


def make_faces(rng: np.random.Generator, count: int) -> list[FaceRecord]:
    faces = []
    for _ in range(count):
        left, top = (int(v) for v in rng.integers(0, 3000, 2))
        size = int(rng.integers(20, 400))
        faces.append(
            FaceRecord(
                box=(left, top, left + size - 1, top + size - 1),
                score=float(rng.uniform(0, 2)),
                landmarks=rng.uniform(0, 4000, (5, 2)),
                descriptor=rng.normal(0, 0.1, 128).astype(np.float32),
            )
        )
    return faces


def put(writer: IndexWriter, key: str, faces=(), *, error=None, fingerprint=None) -> None:
    writer.put(
        photo_rows(
            key,
            fingerprint or f"fp-{key}-{len(faces)}-{error}",
            model_id=writer.model_id,
            size=1000,
            stamp="mtime=1",
            faces=faces,
            error=error,
            image_size=(4000, 3000),
        )
    )


def faces_by_photo(location) -> dict[str, np.ndarray]:
    descriptors, faces = IndexReader(location).load()
    photos = faces.column("photo").to_pylist()
    order = faces.column("face").to_pylist()
    grouped: dict[str, list] = {}
    for row, (photo, number) in enumerate(zip(photos, order, strict=True)):
        grouped.setdefault(photo, []).append((number, descriptors[row]))
    return {
        photo: np.stack([d for _, d in sorted(rows, key=lambda r: r[0])])
        for photo, rows in grouped.items()
    }


def test_round_trip_is_exact(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    two = make_faces(rng, 2)
    one = make_faces(rng, 1)
    with IndexWriter(tmp_path / "index", model_id=MODEL, album="/album") as writer:
        put(writer, "a/two.jpg", two)
        put(writer, "one.jpg", one)
        put(writer, "none.jpg")
        put(writer, "bad.jpg", error="not an image (text file)")
        result = writer.commit()
    assert result is not None and result.generation == 1 and result.photos == 4

    snapshot = IndexReader(tmp_path / "index").snapshot()
    assert snapshot.manifest.model_id == MODEL
    assert snapshot.manifest.album == "/album"
    assert vars(snapshot.manifest.stats) == {"photos": 4, "faces": 3, "no_face": 1, "errors": 1}
    assert snapshot.descriptors.dtype == np.float32 and snapshot.descriptors.shape == (3, 128)
    assert snapshot.descriptors.flags.c_contiguous and snapshot.descriptors.flags.writeable
    expected = {("a/two.jpg", 0): two[0], ("a/two.jpg", 1): two[1], ("one.jpg", 0): one[0]}
    landmarks = landmarks_of(snapshot.faces)
    for row, face in enumerate(snapshot.faces.to_pylist()):
        original = expected.pop((face["photo"], face["face"]))
        assert (face["left"], face["top"], face["right"], face["bottom"]) == original.box
        assert face["score"] == pytest.approx(original.score, rel=1e-6)
        np.testing.assert_array_equal(snapshot.descriptors[row], original.descriptor)
        np.testing.assert_allclose(landmarks[row], original.landmarks, rtol=1e-6)
    assert not expected
    photos = {row["photo"]: row for row in snapshot.photos.to_pylist()}
    assert photos["none.jpg"]["status"] == "no_face" and photos["none.jpg"]["face_count"] == 0
    assert photos["a/two.jpg"]["face_count"] == 2
    assert (photos["one.jpg"]["width"], photos["one.jpg"]["height"]) == (4000, 3000)
    assert snapshot.errors() == [("bad.jpg", "not an image (text file)")]
    # The shard is plain Parquet with the documented schema.
    shard = tmp_path / "index" / snapshot.manifest.shards[0].path
    assert pq.read_schema(shard).remove_metadata().equals(SCHEMA)


def test_last_record_wins_and_deletions_hide_photos(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    location = tmp_path / "index"
    first, second = make_faces(rng, 2), make_faces(rng, 1)
    with IndexWriter(location, model_id=MODEL) as writer:
        put(writer, "x.jpg", first)
        put(writer, "y.jpg", make_faces(rng, 1))
        writer.commit()
        put(writer, "x.jpg", second)  # edited: one face now
        writer.commit()
        writer.delete("y.jpg")
        writer.commit()
        assert set(writer.photos) == {"x.jpg"}
    found = faces_by_photo(location)
    assert list(found) == ["x.jpg"]
    np.testing.assert_array_equal(found["x.jpg"], [second[0].descriptor])
    assert_consistent(location)
    # A reopened writer sees the same state as the one that wrote it.
    with IndexWriter(location, model_id=MODEL) as writer:
        assert set(writer.photos) == {"x.jpg"}
        assert writer.state("x.jpg").face_count == 1


def test_reuse_copies_a_record_under_a_new_key(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    location = tmp_path / "index"
    faces = make_faces(rng, 3)
    with IndexWriter(location, model_id=MODEL) as writer:
        put(writer, "old/name.jpg", faces, fingerprint="f1")
        put(writer, "other.jpg", make_faces(rng, 1), fingerprint="f2")
        writer.commit()
        source = writer.source_for("f1")
        assert source is not None and source.key == "old/name.jpg"
        writer.delete("old/name.jpg")
        writer.commit()  # the source rows stay readable after the deletion
        writer.reuse("new/name.jpg", source, size=1000, stamp="mtime=2")
        writer.reuse("copy.jpg", source, size=1000, stamp="mtime=3")
        writer.commit()
        assert writer.state("new/name.jpg").fingerprint == "f1"
    found = faces_by_photo(location)
    assert set(found) == {"new/name.jpg", "copy.jpg", "other.jpg"}
    expected = np.stack([face.descriptor for face in faces])
    np.testing.assert_array_equal(found["new/name.jpg"], expected)
    np.testing.assert_array_equal(found["copy.jpg"], expected)
    photos = {r["photo"]: r for r in IndexReader(location).snapshot().photos.to_pylist()}
    assert photos["copy.jpg"]["stamp"] == "mtime=3"
    assert_consistent(location)


def test_compaction_keeps_the_snapshot_and_retires_shards(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    location = tmp_path / "index"
    with IndexWriter(location, model_id=MODEL, gc_grace_seconds=3600) as writer:
        for round_ in range(4):
            for number in range(5):
                put(writer, f"p{number}.jpg", make_faces(rng, round_ % 3))
            put(writer, f"only{round_}.jpg", make_faces(rng, 1))
            writer.commit()
        writer.delete("only0.jpg")
        writer.commit()
        before = faces_by_photo(location)
        old_manifest = IndexReader(location).manifest()
        assert len(old_manifest.shards) == 5
        assert writer.needs_full_compaction()  # most rows are superseded
        writer.compact()
        manifest = IndexReader(location).manifest()
        assert len(manifest.shards) == 1
        compacted = pq.read_schema(location / manifest.shards[0].path)
        assert compacted.remove_metadata().equals(SCHEMA)
        assert manifest.stats == old_manifest.stats
        assert {r.path for r in manifest.retired} == {s.path for s in old_manifest.shards}
        after = faces_by_photo(location)
        assert before.keys() == after.keys()
        for key in before:
            np.testing.assert_array_equal(before[key], after[key])
        # A reader still holding the old manifest can load it during the grace period.
        old = IndexReader(location).snapshot(old_manifest)
        assert len(old.descriptors) == old_manifest.stats.faces
        # Writing continues on the compacted shard.
        put(writer, "late.jpg", make_faces(rng, 2))
        writer.commit()
    assert_consistent(location)
    # Past the grace period the next writer deletes the retired shards.
    with IndexWriter(location, model_id=MODEL, gc_grace_seconds=0) as writer:
        for shard in old_manifest.shards:
            assert not (location / shard.path).exists()
        writer.commit()  # records the cleanup
    assert IndexReader(location).manifest().retired == ()
    assert "late.jpg" in faces_by_photo(location)


def test_merging_a_suffix_keeps_deletions_of_older_shards(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    location = tmp_path / "index"
    with IndexWriter(location, model_id=MODEL) as writer:
        put(writer, "keep.jpg", make_faces(rng, 1))
        put(writer, "gone.jpg", make_faces(rng, 1))
        writer.commit()
        writer.delete("gone.jpg")
        writer.commit()
        put(writer, "new.jpg", make_faces(rng, 2))
        writer.commit()
        writer.compact(start=1)  # merges the last two shards; the deletion must survive
        assert len(writer.manifest.shards) == 2
    assert set(faces_by_photo(location)) == {"keep.jpg", "new.jpg"}
    assert_consistent(location)


def test_uncommitted_shards_are_invisible_and_cleaned_up(tmp_path: Path) -> None:
    rng = np.random.default_rng(6)
    location = tmp_path / "index"
    with IndexWriter(location, model_id=MODEL) as writer:
        put(writer, "a.jpg", make_faces(rng, 1))
        writer.commit()
    # A writer that died between writing its shard and switching the manifest:
    orphan = location / "shards" / "0000000002-deadbeef.parquet"
    pq.write_table(photo_rows("b.jpg", "fb", model_id=MODEL, size=1, stamp="s"), orphan)
    (location / "shards" / "0000000003-cafecafe.parquet").write_bytes(b"PAR1 half written")
    assert set(faces_by_photo(location)) == {"a.jpg"}
    with IndexWriter(location, model_id=MODEL) as writer:
        assert set(writer.photos) == {"a.jpg"}
        assert sorted(p.name for p in (location / "shards").iterdir()) == [
            Path(s.path).name for s in writer.manifest.shards
        ]


def test_a_damaged_manifest_falls_back_to_the_last_good_version(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    location = tmp_path / "index"
    with IndexWriter(location, model_id=MODEL) as writer:
        put(writer, "a.jpg", make_faces(rng, 1))
        writer.commit()
        put(writer, "b.jpg", make_faces(rng, 1))
        writer.commit()
    manifest_file = location / MANIFEST_NAME
    data = manifest_file.read_bytes()
    manifest_file.write_bytes(data[: len(data) // 2])  # as a non-atomic store could leave it
    assert IndexReader(location).manifest().generation == 2
    assert set(faces_by_photo(location)) == {"a.jpg", "b.jpg"}
    # A manifest of another format version is refused, not misread.
    manifest_file.write_text(json.dumps({**json.loads(data), "format_version": 99}))
    with pytest.raises(IndexFormatError, match="version 99"):
        IndexReader(location).load()
    with pytest.raises(IndexFormatError, match="no photosearch index"):
        IndexReader(tmp_path / "nothing").load()


def test_model_change_starts_a_fresh_index(tmp_path: Path) -> None:
    rng = np.random.default_rng(8)
    location = tmp_path / "index"
    with IndexWriter(location, model_id=MODEL) as writer:
        put(writer, "a.jpg", make_faces(rng, 1))
        writer.commit()
    with IndexWriter(location, model_id="other-model") as writer:
        assert writer.reset_reason and "other-model" in writer.reset_reason
        assert writer.photos == {}
        writer.commit()
    manifest = IndexReader(location).manifest()
    assert manifest.model_id == "other-model" and manifest.shards == ()
    assert len(IndexReader(location).load()[0]) == 0


def test_one_writer_at_a_time(tmp_path: Path) -> None:
    location = tmp_path / "index"
    with IndexWriter(location, model_id=MODEL), pytest.raises(IndexBusyError):
        IndexWriter(location, model_id=MODEL)
    IndexWriter(location, model_id=MODEL).close()  # released


def test_fsspec_index_location(tmp_path: Path) -> None:
    # The same format through a non-local fsspec filesystem (as S3 will be).
    rng = np.random.default_rng(9)
    location = f"memory:///index-{uuid.uuid4().hex[:8]}"
    memory = fsspec.filesystem("memory")
    try:
        faces = make_faces(rng, 2)
        with IndexWriter(location, model_id=MODEL) as writer:
            put(writer, "a.jpg", faces, fingerprint="fa")
            writer.commit()
            writer.reuse("b.jpg", writer.source_for("fa"), size=1, stamp="s")
            writer.delete("a.jpg")
            writer.commit()
            writer.compact()
        found = faces_by_photo(location)
        assert list(found) == ["b.jpg"]
        np.testing.assert_array_equal(found["b.jpg"], np.stack([f.descriptor for f in faces]))
        assert_consistent(location)
        # Without a lock, a second writer's commit is detected instead of overwritten.
        first = IndexWriter(location, model_id=MODEL)
        second = IndexWriter(location, model_id=MODEL)
        put(first, "c.jpg", make_faces(rng, 1))
        first.commit()
        put(second, "d.jpg", make_faces(rng, 1))
        with pytest.raises(ConcurrentWriteError):
            second.commit()
        assert set(faces_by_photo(location)) == {"b.jpg", "c.jpg"}
    finally:
        memory.rm(location.removeprefix("memory://"), recursive=True)


def test_manifest_file_is_plain_json(tmp_path: Path) -> None:
    location = tmp_path / "index"
    with IndexWriter(location, model_id=MODEL, album="/photos") as writer:
        put(writer, "a.jpg", make_faces(np.random.default_rng(10), 1))
        writer.commit()
    manifest = json.loads((location / MANIFEST_NAME).read_text())
    assert manifest["format"] == "photosearch-index" and manifest["format_version"] == 1
    assert manifest["model_id"] == MODEL and manifest["album"] == "/photos"
    assert manifest["stats"] == {"photos": 1, "faces": 1, "no_face": 0, "errors": 0}
    (shard,) = manifest["shards"]
    assert os.path.getsize(location / shard["path"]) == shard["bytes"]
    assert (location / "manifests" / "0000000001.json").read_text() == json.dumps(
        manifest, indent=1
    )

"""The indexing pipeline on real photos with the real engine: incremental updates, renames,
edits, deletions, bad files, a real SIGKILL mid-run, reading while indexing, and `info`.

The album is a handful of small shared photos copied into tmp_path (at most 640 px of work
each). In-process runs share one real engine that remembers its answer per decoded image, so
the same pixels are described once per test session (the engine itself is tested elsewhere;
here it must only be real, and a changed photo is always computed afresh).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from index_checks import assert_consistent
from PIL import Image
from remembering_engine import MAX_SIDE, RememberingEngine

from photosearch.cli.index import index as index_command
from photosearch.cli.index import info as info_command
from photosearch.faces.base import EngineWrapper
from photosearch.faces.engine import FaceEngine
from photosearch.faces.images import load_image
from photosearch.index.album import Album, fingerprint
from photosearch.index.indexer import Indexer, RunStats, default_index_location
from photosearch.index.store import IndexReader, IndexWriter, detection_counts

LFW = "multires/lfw_funneled_250_vs_150"
# album key -> shared photo (kept small: the engine's time dominates these tests)
ALBUM = {
    "lfw/Rob_Lowe.jpg": f"{LFW}/Rob_Lowe_0001_250px.jpg",
    "lfw/Mary_Katherine_Smart.jpg": f"{LFW}/Mary_Katherine_Smart_0001_250px.jpg",
    "lfw/Nathalie_Baye.jpg": f"{LFW}/Nathalie_Baye_0002_250px.jpg",
    "people/img12.jpg": "people/deepface/img12.jpg",
    "people/webp_named_jpg.jpg": "people/deepface/img47.jpg",  # really WEBP
    "people/Tom_Hanks.png": "people/insightface/lfw_named/Tom_Hanks/Tom_Hanks_54745.png",
    "group/two.jpg": "group/dlib/2008_001009.jpg",
    "group/no_face.jpg": "group/compreface/017_0.jpg",
}
EXTRA = f"{LFW}/Teresa_Williams_0001_250px.jpg"


class CountingEngine(EngineWrapper):
    """The real engine, recording which photos reach it (to prove what was re-embedded)."""

    def __init__(self, engine) -> None:
        super().__init__(engine)
        self.seen: list[str] = []

    def faces_for_images(self, images):
        self.seen += [image.source for image in images]
        return self.engine.faces_for_images(images)


@pytest.fixture(scope="module")
def engine() -> RememberingEngine:
    return RememberingEngine()


@pytest.fixture(scope="module")
def reference(engine, shared_data: Path) -> dict[str, list]:
    """Faces of every test photo, straight from the engine (no indexer involved)."""
    sources = {**ALBUM, "extra.jpg": EXTRA}
    return {
        key: engine.faces(load_image(shared_data / "photos" / path, max_side=MAX_SIDE))
        for key, path in sources.items()
    }


@pytest.fixture
def album(tmp_path: Path, shared_data: Path) -> Path:
    root = tmp_path / "album"
    for key, path in ALBUM.items():
        (root / key).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shared_data / "photos" / path, root / key)
    (root / "notes.txt").write_text("not a photo: ignored by extension")
    return root


def run_index(album: Path, index: Path, engine, **options) -> tuple[RunStats, CountingEngine]:
    counting = CountingEngine(engine)
    messages: list[str] = []
    options.setdefault("workers", 2)
    stats = Indexer(Album(album), index, counting, report=messages.append, **options).run()
    assert stats.messages == messages
    return stats, counting


def indexed_faces(index: Path) -> dict[str, list[dict]]:
    """photo -> its face rows (with descriptors), from a fresh reader."""
    descriptors, faces = IndexReader(index).load()
    found: dict[str, list[dict]] = {}
    for row, face in enumerate(faces.to_pylist()):
        face["descriptor"] = descriptors[row]
        found.setdefault(face["photo"], []).append(face)
    return {photo: sorted(rows, key=lambda r: r["face"]) for photo, rows in found.items()}


def photo_record(index: Path, key: str) -> dict:
    (record,) = [row for row in IndexReader(index).photos().to_pylist() if row["photo"] == key]
    return record


def assert_matches_reference(index: Path, reference: dict, keys: dict[str, str]) -> None:
    """The index holds exactly the engine's faces for each album key (key -> reference key)."""
    found = indexed_faces(index)
    expected = {key: reference[source] for key, source in keys.items() if reference[source]}
    assert set(found) == set(expected)
    for key, faces in expected.items():
        assert len(found[key]) == len(faces), key
        for row, face in zip(found[key], faces, strict=True):
            assert (row["left"], row["top"], row["right"], row["bottom"]) == face.box
            np.testing.assert_allclose(row["descriptor"], face.descriptor, atol=2e-4)


def test_index_then_update_incrementally(album, tmp_path, engine, reference, shared_data) -> None:
    index = tmp_path / "index"
    stats, counting = run_index(album, index, engine, batch_size=3)
    assert stats.listed == len(ALBUM) and stats.indexed == len(ALBUM)
    assert sorted(counting.seen) == sorted(ALBUM)
    assert stats.faces == sum(len(faces) for faces in reference.values()) - len(
        reference["extra.jpg"]
    )
    assert_matches_reference(index, reference, {key: key for key in ALBUM})
    snapshot = assert_consistent(index)
    photos = {row["photo"]: row for row in snapshot.photos.to_pylist()}
    assert photos["group/no_face.jpg"]["status"] == "no_face"  # recorded: not re-processed
    assert photos["people/img12.jpg"]["fingerprint"] == fingerprint(
        (album / "people" / "img12.jpg").read_bytes()
    )
    assert (
        photos["people/webp_named_jpg.jpg"]["width"],
        photos["people/webp_named_jpg.jpg"]["height"],
    ) == (1350, 1800)

    # Nothing changed: nothing is read into the engine, nothing is written.
    generation = snapshot.manifest.generation
    stats, counting = run_index(album, index, engine)
    assert counting.seen == [] and stats.unchanged == len(ALBUM) and stats.processed == 0
    assert IndexReader(index).manifest().generation == generation

    # One new photo: only that photo is processed.
    shutil.copyfile(shared_data / "photos" / EXTRA, album / "extra.jpg")
    stats, counting = run_index(album, index, engine)
    assert counting.seen == ["extra.jpg"] and stats.indexed == 1
    assert stats.unchanged == len(ALBUM)
    assert_matches_reference(index, reference, {**{k: k for k in ALBUM}, "extra.jpg": "extra.jpg"})

    # A deleted photo leaves the index; the rest stays.
    (album / "lfw" / "Rob_Lowe.jpg").unlink()
    stats, counting = run_index(album, index, engine)
    assert stats.deleted == 1 and counting.seen == []
    keys = {k: k for k in ALBUM if k != "lfw/Rob_Lowe.jpg"} | {"extra.jpg": "extra.jpg"}
    assert_matches_reference(index, reference, keys)
    assert "lfw/Rob_Lowe.jpg" not in IndexReader(index).photos().column("photo").to_pylist()
    assert_consistent(index)


def test_rename_copy_and_touch_reuse_faces(album, tmp_path, engine, reference) -> None:
    index = tmp_path / "index"
    run_index(album, index, engine)
    (album / "renamed").mkdir()
    (album / "people" / "img12.jpg").rename(album / "renamed" / "img12 (moved).jpg")
    shutil.copyfile(album / "group" / "two.jpg", album / "group" / "two copy.jpg")
    touched = album / "lfw" / "Nathalie_Baye.jpg"
    os.utime(touched, (time.time() + 5, time.time() + 5))  # new mtime, same bytes

    stats, counting = run_index(album, index, engine)
    assert counting.seen == []  # nothing re-embedded
    assert stats.reused == 3 and stats.deleted == 1 and stats.indexed == 0
    keys = {k: k for k in ALBUM if k != "people/img12.jpg"}
    keys |= {"renamed/img12 (moved).jpg": "people/img12.jpg", "group/two copy.jpg": "group/two.jpg"}
    assert_matches_reference(index, reference, keys)
    assert_consistent(index)
    # The new stamps were recorded: the next run skips them without reading.
    stats, counting = run_index(album, index, engine)
    assert stats.unchanged == len(keys) and stats.processed == 0


def test_edited_photo_is_reindexed(album, tmp_path, engine) -> None:
    index = tmp_path / "index"
    run_index(album, index, engine)
    before = indexed_faces(index)["group/two.jpg"]
    old_fingerprint = photo_record(index, "group/two.jpg")["fingerprint"]
    path = album / "group" / "two.jpg"
    with Image.open(path) as image:
        width = image.width
        image.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(path, quality=95)

    stats, counting = run_index(album, index, engine)
    assert counting.seen == ["group/two.jpg"] and stats.indexed == 1
    after = indexed_faces(index)["group/two.jpg"]
    new_fingerprint = photo_record(index, "group/two.jpg")["fingerprint"]
    assert new_fingerprint == fingerprint(path.read_bytes()) != old_fingerprint
    # The mirrored photo's faces are the old boxes mirrored (to within a few pixels).
    mirrored = sorted((width - 1 - b["right"], b["top"]) for b in before)
    assert len(after) == len(before)
    for (left, top), face in zip(
        mirrored, sorted(after, key=lambda f: (f["left"], f["top"])), strict=True
    ):
        assert abs(face["left"] - left) <= 8 and abs(face["top"] - top) <= 8
    assert_consistent(index)


def test_bad_files_are_recorded_and_the_run_goes_on(
    album, tmp_path, engine, reference, shared_data
) -> None:
    index = tmp_path / "index"
    good = (album / "lfw" / "Rob_Lowe.jpg").read_bytes()
    (album / "broken.jpg").write_bytes(b"this is not an image at all\n")
    (album / "truncated.jpg").write_bytes(good[: len(good) // 3])
    (album / "empty.png").write_bytes(b"")

    stats, counting = run_index(album, index, engine)
    assert stats.unreadable == 3 and stats.indexed == len(ALBUM)
    bad = {"broken.jpg", "truncated.jpg", "empty.png"}
    assert not bad & set(counting.seen)
    # One line per bad file, naming it.
    assert len(stats.messages) == 3
    for name in bad:
        (line,) = [m for m in stats.messages if m.startswith(f"{name}: ")]
        assert "\n" not in line
    errors = dict(IndexReader(index).errors())
    assert set(errors) == bad
    assert "text" in errors["broken.jpg"] and "truncated" in errors["truncated.jpg"]
    assert "empty" in errors["empty.png"]
    assert_matches_reference(index, reference, {k: k for k in ALBUM})

    # Unchanged bad files are not retried, even when only their mtime changed.
    os.utime(album / "broken.jpg", (time.time() + 5, time.time() + 5))
    stats, counting = run_index(album, index, engine)
    assert stats.unreadable == 0 and stats.messages == [] and counting.seen == []
    assert stats.reused == 1  # same bytes: the recorded error is kept
    # Fixed (replaced by a photo not yet in the album): indexed.
    shutil.copyfile(shared_data / "photos" / EXTRA, album / "truncated.jpg")
    stats, counting = run_index(album, index, engine)
    assert counting.seen == ["truncated.jpg"] and stats.indexed == 1
    assert set(dict(IndexReader(index).errors())) == {"broken.jpg", "empty.png"}


class RecordingEngine(FaceEngine):
    """The real CPU engine, recording the album keys of the photos it is given and the threads
    it ran in; it raises on the photo `fail_on` (as a GPU out of memory would)."""

    def __init__(self, fail_on: str | None = None, workers: int = 1, **options) -> None:
        super().__init__(device="cpu", max_side=MAX_SIDE, workers=workers, **options)
        self.fail_on = fail_on
        self.seen: list[str] = []
        self.threads: set[str] = set()

    def faces_for_images(self, images):
        self.threads.add(threading.current_thread().name)
        self.seen += [image.source for image in images]
        if any(image.source == self.fail_on for image in images):
            raise RuntimeError("out of memory\n(simulated)")
        return super().faces_for_images(images)


def test_parallel_engine_streams_photos_through_its_threads(
    album, tmp_path, reference, shared_data
) -> None:
    """With several engine workers (a CPU), each photo goes through the engine in one of the
    engine's threads as soon as it is decoded: the index holds exactly the serial engine's
    faces, a bad file is recorded, and an engine failure on one photo is a one-line message
    (not recorded: retried next run) while the run goes on."""
    index = tmp_path / "index"
    (album / "broken.jpg").write_bytes(b"this is not an image at all\n")
    engine = RecordingEngine("group/two.jpg", workers=2)
    messages: list[str] = []
    stats = Indexer(Album(album), index, engine, workers=2, report=messages.append).run()
    assert engine.threads and all(name.startswith("faces") for name in engine.threads)
    assert stats.indexed == len(ALBUM) - 1 and stats.unreadable == 1
    assert stats.read_failures == 1
    assert len(messages) == 2 and messages == stats.messages
    (broken,) = [m for m in messages if m.startswith("broken.jpg: ")]
    assert "text" in broken and "\n" not in broken
    assert "group/two.jpg: face engine failed (out of memory (simulated))" in messages
    assert set(dict(IndexReader(index).errors())) == {"broken.jpg"}
    keys = {k: k for k in ALBUM if k != "group/two.jpg"}
    assert_matches_reference(index, reference, keys)
    assert "group/two.jpg" not in {r["photo"] for r in IndexReader(index).photos().to_pylist()}
    assert_consistent(index)

    # Next run: only the failed photo goes through the engine, and now it succeeds.
    engine.fail_on = None
    stats = Indexer(Album(album), index, engine, workers=2, report=messages.append).run()
    assert stats.indexed == 1 and stats.unchanged == len(ALBUM)
    assert_matches_reference(index, reference, {k: k for k in ALBUM})


class InterruptedIndexer(Indexer):
    """Ctrl-C in the main thread while the second photo is being recorded."""

    def _record(self, writer, prepared, stats, batch):
        if stats.processed == 1:
            raise KeyboardInterrupt
        return super()._record(writer, prepared, stats, batch)


def test_ctrl_c_keeps_what_finished_and_stops_the_rest(album, tmp_path, reference) -> None:
    """Interrupted, the run commits the photo it finished, lets the photos in flight end, and
    starts no other; the next run indexes the rest."""
    index = tmp_path / "index"
    engine = RecordingEngine(workers=2)
    seen = engine.seen
    with pytest.raises(KeyboardInterrupt):
        InterruptedIndexer(Album(album), index, engine, workers=2, batch_size=1).run()
    # The window holds 2 x 2 + 1 photos: at most 6 were ever handed out, of 8.
    assert 1 <= len(seen) <= 6
    (kept,) = IndexReader(index).photos().to_pylist()
    assert kept["photo"] in seen
    assert_consistent(index)
    seen.clear()
    stats = Indexer(Album(album), index, engine, workers=2).run()
    assert stats.indexed == len(ALBUM) - 1 and stats.unchanged == 1
    assert_matches_reference(index, reference, {k: k for k in ALBUM})


def lfw_album(root: Path, shared_data: Path) -> Path:
    """Three small LFW photos (the engine's cheapest real work)."""
    root.mkdir()
    for key in ("lfw/Rob_Lowe.jpg", "lfw/Mary_Katherine_Smart.jpg", "lfw/Nathalie_Baye.jpg"):
        shutil.copyfile(shared_data / "photos" / ALBUM[key], root / Path(key).name)
    return root


def stored_detection(index: Path, engine: FaceEngine) -> list[str | None]:
    """The detection settings the index records for each photo."""
    with IndexWriter(index, model_id=engine.model_id) as writer:
        return [state.detection for state in writer.photos.values()]


def test_rebuild_redoes_only_photos_detected_otherwise_and_resumes(tmp_path, shared_data):
    """Each photo records the engine's detection settings: `--rebuild` sends through the engine
    only the photos found with other settings, so an interrupted rebuild resumes; a run
    without it keeps them and says how many there are."""
    album = lfw_album(tmp_path / "album", shared_data)
    index = tmp_path / "index"
    first = RecordingEngine()
    assert Indexer(Album(album), index, first).run().indexed == 3
    assert set(stored_detection(index, first)) == {first.detection_settings}

    other = RecordingEngine(detector="mmod")  # the dlib-exact detector
    assert other.detection_settings != first.detection_settings
    with pytest.raises(KeyboardInterrupt):
        InterruptedIndexer(Album(album), index, other, rebuild=True, commit_photos=1).run()
    assert len(other.seen) == 1  # stopped as the second photo came up; the first committed
    other.seen.clear()
    stats = Indexer(Album(album), index, other, rebuild=True).run()
    assert stats.indexed == 2 and stats.unchanged == 1 and len(other.seen) == 2
    assert Indexer(Album(album), index, other, rebuild=True).run().indexed == 0  # all done

    notes: list[str] = []
    stats = Indexer(Album(album), index, first, report=notes.append).run()
    assert stats.indexed == 0 and stats.messages == []
    assert notes == [
        f"3 photo(s) in the index were searched for faces with other settings than this run's "
        f"({first.detection_settings}): they keep their faces; add --rebuild to detect them again"
    ]


def test_an_index_written_before_detection_settings_were_recorded(tmp_path, shared_data):
    """Shards without the `detection` column still load, search and compact; their photos
    count as detected with unknown settings, which --rebuild redoes."""
    import pyarrow.parquet as pq

    from photosearch.search.query import SearchableIndex

    album = lfw_album(tmp_path / "album", shared_data)
    index = tmp_path / "index"
    engine = RecordingEngine()
    Indexer(Album(album), index, engine).run()
    before = SearchableIndex.load(str(index))
    for shard in (index / "shards").glob("*.parquet"):
        pq.write_table(pq.read_table(shard).drop_columns(["detection"]), shard)
    assert "detection" not in pq.read_schema(next((index / "shards").glob("*.parquet"))).names

    old = SearchableIndex.load(str(index))
    np.testing.assert_array_equal(old.descriptors, before.descriptors)
    assert stored_detection(index, engine) == [None] * 3
    assert detection_counts(IndexReader(index).photos()) == {None: 3}  # what `info` shows

    # One photo re-detected: an old shard and a new one side by side, then merged.
    notes: list[str] = []
    engine.seen.clear()
    (album / "Rob_Lowe.jpg").write_bytes((album / "Rob_Lowe.jpg").read_bytes() + b"\0")
    stats = Indexer(Album(album), index, engine, report=notes.append).run()
    assert stats.indexed == 1 and notes[0].startswith("3 photo(s) in the index were searched")
    with IndexWriter(index, model_id=engine.model_id) as writer:
        writer.compact()
    assert_consistent(index)
    assert sorted(map(str, stored_detection(index, engine))) == sorted(
        [engine.detection_settings, "None", "None"]
    )
    engine.seen.clear()
    assert Indexer(Album(album), index, engine, rebuild=True).run().indexed == 2
    assert sorted(engine.seen) == ["Mary_Katherine_Smart.jpg", "Nathalie_Baye.jpg"]
    assert len(SearchableIndex.load(str(index)).descriptors) == len(before.descriptors)


def cli_index_process(album: Path, index: Path, *options: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "photosearch.cli.index", "index", str(album)]
    command += ["--index", str(index), "--device", "cpu", "--max-side", str(MAX_SIDE), "-q"]
    return subprocess.Popen(
        [*command, *options], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def assert_faces_are_the_engines(snapshot, reference) -> None:
    """Every face row of a snapshot carries the engine's descriptor for that photo and face."""
    for row, face in enumerate(snapshot.faces.to_pylist()):
        expected = reference[face["photo"]][face["face"]]
        assert (face["left"], face["top"], face["right"], face["bottom"]) == expected.box
        np.testing.assert_allclose(snapshot.descriptors[row], expected.descriptor, atol=2e-4)


def test_read_while_indexing_kill_and_resume(album, tmp_path, engine, reference) -> None:
    """A real indexer process, read continuously and SIGKILLed mid-run, twice; then resumed."""
    index = tmp_path / "index"
    committed: set[str] = set()
    generations: set[int] = set()
    for wanted in (2, 1):  # kill after this many more commits
        process = cli_index_process(album, index, "--commit-every", "1", "--workers", "1")
        manifest = IndexReader(index).manifest()
        start_generation = manifest.generation if manifest else 0
        deadline = time.monotonic() + 150
        try:
            while process.poll() is None and time.monotonic() < deadline:
                if IndexReader(index).manifest() is None:
                    time.sleep(0.02)
                    continue
                # Reading while the indexer writes: always one consistent, correct snapshot,
                # and photos only ever get added.
                snapshot = assert_consistent(index)
                assert_faces_are_the_engines(snapshot, reference)
                photos = set(snapshot.photos.column("photo").to_pylist())
                assert committed <= photos
                committed = photos
                generations.add(snapshot.manifest.generation)
                if snapshot.manifest.generation >= start_generation + wanted:
                    os.kill(process.pid, signal.SIGKILL)  # no cleanup of any kind
                    break
        finally:
            process.kill()
            _, stderr = process.communicate()
        assert process.returncode == -signal.SIGKILL, f"the indexer was not killed: {stderr}"
        after = set(assert_consistent(index).photos.column("photo").to_pylist())
        assert committed <= after < set(ALBUM)  # progress survived; it really was mid-run
        committed = after
    assert len(generations) >= 2  # several commits were read while the indexer ran

    # Resume: exactly the photos not yet committed are processed, nothing twice.
    stats, counting = run_index(album, index, engine)
    assert sorted(counting.seen) == sorted(set(ALBUM) - committed)
    assert stats.unchanged == len(committed) and stats.indexed == len(ALBUM) - len(committed)
    assert_matches_reference(index, reference, {k: k for k in ALBUM})
    assert_consistent(index)
    # The killed runs' unfinished shards are gone: only referenced (or retired) shards remain.
    manifest = IndexReader(index).manifest()
    listed = {f"shards/{p.name}" for p in (index / "shards").iterdir()}
    assert listed == {s.path for s in manifest.shards} | {r.path for r in manifest.retired}


def test_index_and_info_commands(tmp_path, monkeypatch, reference, shared_data) -> None:
    monkeypatch.setenv("PHOTOSEARCH_DATA_DIR", str(tmp_path / "data"))
    album = tmp_path / "small album"
    album.mkdir()
    for key in ("lfw/Rob_Lowe.jpg", "group/no_face.jpg"):
        shutil.copyfile(shared_data / "photos" / ALBUM[key], album / Path(key).name)
    (album / "broken.jpg").write_bytes(b"GIF89a but not really")
    runner = CliRunner()
    arguments = [str(album), "--device", "cpu", "--max-side", str(MAX_SIDE), "--workers", "2"]
    result = runner.invoke(index_command, arguments)
    assert result.exit_code == 1, result.output  # a photo failed, the run went on
    (error_line,) = [line for line in result.stderr.splitlines() if "broken.jpg" in line]
    assert error_line.startswith("broken.jpg: ")
    assert result.stdout.startswith("3 photos in the album: 2 indexed (1 face, ")
    assert "0 unchanged, 0 deleted, 1 unreadable in " in result.stdout
    # The default location is per album, under the data dir.
    location = default_index_location(album)
    assert location.startswith(str(tmp_path / "data" / "indexes" / "small_album-"))
    manifest = IndexReader(location).manifest()
    assert manifest.stats.faces == len(reference["lfw/Rob_Lowe.jpg"]) == 1

    result = runner.invoke(info_command, [])  # every index in the data dir: this one
    assert result.exit_code == 0, result.output
    settings = FaceEngine(device="cpu", max_side=MAX_SIDE).detection_settings
    assert settings.startswith(f"max side {MAX_SIDE}, detector cascade (MTCNN proposals from 2.0%")
    assert result.stdout.splitlines() == [
        f"index     {location}",
        f"album     {album}",
        f"model     {manifest.model_id}",
        f"updated   {manifest.updated} (commit {manifest.generation})",
        "photos    3: 1 with faces, 1 without, 1 unreadable",
        "faces     1",
        f"detection {settings}: 2 photos",
        f"storage   1 shards, {manifest.shards[0].bytes / 1000:.1f} kB",
        "unreadable photos:",
        f"  {error_line}",
    ]
    assert runner.invoke(info_command, [str(album)]).stdout == result.stdout

    summary = json.loads(runner.invoke(info_command, ["--index", location, "--json"]).stdout)
    assert summary["photos"] == 3 and summary["faces"] == 1 and summary["unreadable"] == 1
    assert summary["errors"] == [{"photo": "broken.jpg", "error": error_line.split(": ", 1)[1]}]
    assert summary["detection"] == [{"settings": settings, "photos": 2}]  # decoded photos

    # Re-running changes nothing.
    result = runner.invoke(index_command, arguments)
    assert "3 photos in the album: 0 indexed" in result.stdout and "3 unchanged" in result.stdout
    assert result.exit_code == 0, result.output  # nothing failed this time

    missing = runner.invoke(info_command, ["--index", str(tmp_path / "none")])
    assert missing.exit_code == 2 and "no photosearch index" in missing.stderr


def test_album_and_index_on_an_fsspec_filesystem(tmp_path, engine, reference, shared_data) -> None:
    # memory:// stands in for s3://: the album and the index go through fsspec only.
    import uuid

    import fsspec

    memory = fsspec.filesystem("memory")
    prefix = f"/test-{uuid.uuid4().hex[:8]}"
    keys = ["lfw/Rob_Lowe.jpg", "group/two.jpg", "group/no_face.jpg"]
    for key in keys:
        memory.pipe_file(
            f"{prefix}/album/{key}", (shared_data / "photos" / ALBUM[key]).read_bytes()
        )
    try:
        counting = CountingEngine(engine)
        stats = Indexer(
            Album(f"memory://{prefix}/album"), f"memory://{prefix}/index", counting
        ).run()
        assert stats.indexed == 3
        memory.mv(f"{prefix}/album/group/two.jpg", f"{prefix}/album/two.jpg")
        stats = Indexer(
            Album(f"memory://{prefix}/album"), f"memory://{prefix}/index", counting
        ).run()
        assert stats.reused == 1 and stats.deleted == 1 and len(counting.seen) == 3
        found = indexed_faces(f"memory://{prefix}/index")
        assert set(found) == {"lfw/Rob_Lowe.jpg", "two.jpg"}
        assert len(found["two.jpg"]) == len(reference["group/two.jpg"])
    finally:
        memory.rm(prefix, recursive=True)

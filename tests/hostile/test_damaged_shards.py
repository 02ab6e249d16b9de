"""Damaged shards: every kind ends in one line from info/search/index, never a pyarrow
traceback, and `index --repair` (or --rebuild) drops the damage and redoes its photos."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from index_checks import assert_consistent
from remembering_engine import RememberingEngine

from photosearch.cli.index import info as info_command
from photosearch.cli.search import search as search_command
from photosearch.index.album import Album
from photosearch.index.indexer import Indexer
from photosearch.index.store import DamagedShardError, IndexReader, IndexWriter

LFW = "multires/lfw_funneled_250_vs_150"
FIRST = {
    "a.jpg": f"{LFW}/Rob_Lowe_0001_150px.jpg",
    "b.jpg": f"{LFW}/Teresa_Williams_0001_150px.jpg",
}
SECOND = {"c.jpg": f"{LFW}/Nathalie_Baye_0002_150px.jpg"}


@pytest.fixture(scope="module")
def engine() -> RememberingEngine:
    return RememberingEngine()


def run(album: Path, index: Path, engine, **options):
    messages: list[str] = []
    indexer = Indexer(Album(album), index, engine, workers=2, report=messages.append, **options)
    return indexer.run(), messages


@pytest.fixture(scope="module")
def pristine(engine, shared_data, tmp_path_factory) -> Path:
    """An album indexed in two commits: two shards (the second holds c.jpg)."""
    work = tmp_path_factory.mktemp("pristine")
    album = work / "album"
    album.mkdir()
    for key, source in FIRST.items():
        shutil.copyfile(shared_data / "photos" / source, album / key)
    run(album, work / "index", engine)
    for key, source in SECOND.items():
        shutil.copyfile(shared_data / "photos" / source, album / key)
    run(album, work / "index", engine)
    assert len(IndexReader(work / "index").manifest().shards) == 2
    return work


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def zero(path: Path) -> None:
    path.write_bytes(b"")


def flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x40  # inside the raw float columns: Parquet itself notices nothing
    path.write_bytes(bytes(data))


def foreign(path: Path) -> None:
    pq.write_table(pa.table({"name": ["x"], "value": [1.5]}), path)


def wrong_schema(path: Path) -> None:
    table = pq.read_table(path)
    index = table.schema.get_field_index("descriptor")
    pq.write_table(table.set_column(index, "descriptor", pa.array([b"x"] * table.num_rows)), path)


def garbage(path: Path) -> None:
    path.write_bytes(b"PAR1" + b"\x00" * 100 + b"PAR1")


def missing(path: Path) -> None:
    path.unlink()


DAMAGE = [truncate, zero, flip, foreign, wrong_schema, garbage, missing]


def damaged_copy(pristine: Path, tmp_path: Path, damage, *, old_manifest: bool) -> Path:
    shutil.copytree(pristine, tmp_path / "work", symlinks=True)
    index = tmp_path / "work" / "index"
    manifest = json.loads((index / "manifest.json").read_text())
    if old_manifest:  # as written before checksums were recorded
        for shard in manifest["shards"]:
            shard.pop("checksum")
        (index / "manifest.json").write_text(json.dumps(manifest))
        shutil.rmtree(index / "manifests")
    damage(index / manifest["shards"][-1]["path"])
    return tmp_path / "work"


# Without a checksum (an index written before they were recorded) a flipped float is
# undetectable by design: that case is left out.
CASES = [(d, old) for old in (False, True) for d in DAMAGE if not (old and d is flip)]


@pytest.mark.parametrize(
    ("damage", "old_manifest"),
    CASES,
    ids=[f"{d.__name__}-{'old-manifest' if old else 'checksummed'}" for d, old in CASES],
)
def test_damaged_shard_is_one_line_and_repair_recovers(
    pristine, tmp_path, engine, damage, old_manifest
) -> None:
    work = damaged_copy(pristine, tmp_path, damage, old_manifest=old_manifest)
    index, album = work / "index", work / "album"
    runner = CliRunner()
    for command, arguments in (
        (info_command, ["--index", str(index)]),
        (search_command, [str(album / "a.jpg"), "--index", str(index), "--device", "cpu"]),
    ):
        result = runner.invoke(command, arguments)
        assert result.exit_code == 2, result.output
        (line,) = result.stderr.strip().splitlines()
        assert "is damaged" in line and "--repair" in line, line
    with pytest.raises(DamagedShardError):
        run(album, index, engine)
    stats, messages = run(album, index, engine, repair=True)
    assert any(line.startswith("dropped: ") for line in messages), messages
    assert stats.indexed == 1  # c.jpg, whose only record was in the damaged shard
    snapshot = assert_consistent(index)
    assert set(snapshot.photos.column("photo").to_pylist()) == {*FIRST, *SECOND}
    again, _ = run(album, index, engine)
    assert again.unchanged == 3 and again.indexed == 0


def test_rebuild_also_recovers(pristine, tmp_path, engine) -> None:
    work = damaged_copy(pristine, tmp_path, zero, old_manifest=False)
    stats, _ = run(work / "album", work / "index", engine, rebuild=True)
    assert_consistent(work / "index")
    assert stats.indexed >= 1


def test_old_manifests_load_and_new_shards_get_checksums(pristine, tmp_path, engine) -> None:
    work = damaged_copy(pristine, tmp_path, lambda path: None, old_manifest=True)
    index = work / "index"
    assert IndexReader(index).snapshot().manifest.stats.photos == 3
    with IndexWriter(index, model_id=engine.model_id) as writer:
        writer.delete("a.jpg")
        writer.commit()
    shards = json.loads((index / "manifest.json").read_text())["shards"]
    assert "checksum" not in shards[0] and shards[-1]["checksum"].startswith("sha256:")
    assert_consistent(index)

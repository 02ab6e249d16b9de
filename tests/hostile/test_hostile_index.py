"""Hostile albums and indexes: unreadable folders, odd names, manifests pointing outside.

Each case ends in a completed run or a one-line error; no indexed photo is lost and no file
outside the index is touched (a sentinel folder is snapshotted before and compared after).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from index_checks import assert_consistent
from remembering_engine import RememberingEngine

from photosearch.index.album import Album, name_of, photo_key
from photosearch.index.indexer import Indexer
from photosearch.index.store import IndexReader, IndexWriter, UnsafeIndexError

LFW = "multires/lfw_funneled_250_vs_150"
PHOTOS = {
    "a.jpg": f"{LFW}/Rob_Lowe_0001_150px.jpg",
    "sub/b.jpg": f"{LFW}/Teresa_Williams_0001_150px.jpg",
    "sub/deeper/c.jpg": f"{LFW}/Rob_Lowe_0001_250px.jpg",
}
NOBODY = 65534


@pytest.fixture(scope="module")
def engine() -> RememberingEngine:
    return RememberingEngine()


def make_album(root: Path, shared_data: Path, photos: dict[str, str] = PHOTOS) -> Path:
    for key, source in photos.items():
        (root / key).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shared_data / "photos" / source, root / key)
    return root


def run(album: Path, index: Path, engine, **options):
    messages: list[str] = []
    stats = Indexer(Album(album), index, engine, workers=2, report=messages.append, **options)
    return stats.run(), messages


def snapshot(folder: Path) -> dict[str, tuple[int, bytes]]:
    """Every file under `folder`: (mode, bytes), to prove nothing there was touched."""
    return {
        str(path.relative_to(folder)): (path.lstat().st_mode, path.read_bytes())
        for path in sorted(folder.rglob("*"))
        if path.is_file() and not path.is_symlink()
    }


def indexed(index: Path) -> set[str]:
    return set(IndexReader(index).photos().column("photo").to_pylist())


# -- defect 1: a folder that cannot be listed is not "all its photos deleted" ----------------


def as_nobody(command: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    """Run `command` as an unprivileged user (we are root here: chmod 000 denies only others)."""
    return subprocess.run(
        ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", *command],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root+setpriv")
def test_unreadable_folder_keeps_its_records_and_exits_1(engine, shared_data) -> None:
    work = Path(tempfile.mkdtemp(prefix="photosearch-unreadable-"))
    try:
        work.chmod(0o777)
        album = make_album(work / "album", shared_data)
        index = work / "index"
        stats, _ = run(album, index, engine)
        assert stats.indexed == 3
        subprocess.run(["chown", "-R", f"{NOBODY}:{NOBODY}", str(work)], check=True)
        (album / "sub").chmod(0o000)
        env = {
            "PATH": os.environ["PATH"],
            "HOME": str(work),
            "PHOTOSEARCH_CACHE_DIR": str(work / "cache"),
            "PHOTOSEARCH_DATA_DIR": str(work / "data"),
        }
        command = [sys.executable, "-m", "photosearch", "index", str(album), "--index", str(index)]
        result = as_nobody([*command, "--device", "cpu", "-q"], env)
        (album / "sub").chmod(0o755)
        assert result.returncode == 1, result.stderr
        problems = [line for line in result.stderr.splitlines() if "sub" in line]
        assert len(problems) == 1 and "cannot list folder sub" in problems[0], result.stderr
        assert "Traceback" not in result.stderr
        assert indexed(index) == set(PHOTOS)  # nothing under sub/ was deleted
    finally:
        subprocess.run(["chmod", "-R", "u+rwx", str(work)], check=False)
        shutil.rmtree(work, ignore_errors=True)


def test_a_listing_that_finds_nothing_deletes_nothing(engine, shared_data, tmp_path) -> None:
    """An emptied mount point (a drive not plugged in) looks like an empty album."""
    album = make_album(tmp_path / "album", shared_data)
    index = tmp_path / "index"
    run(album, index, engine)
    for key in PHOTOS:
        (album / key).unlink()
    stats, messages = run(album, index, engine)
    assert stats.deleted == 0 and stats.failed
    assert any("lists no photos" in line for line in messages)
    assert indexed(index) == set(PHOTOS)


# -- defect 2: names that are not UTF-8 ------------------------------------------------------


def test_keys_are_lossless_for_any_name() -> None:
    names = [
        "plain.jpg",
        "caf\udce9.jpg",  # b"caf\xe9.jpg" as the OS hands it over
        "\udcff\udcfe/x.jpg",
        "100%.jpg",
        "a%41.jpg",
        "%FF.jpg",  # a real "%FF" must not collide with the byte 0xFF
        "日本/写真.jpg",
        "tab\tand\nnewline.jpg",
        "back\\slash.jpg",
    ]
    keys = [photo_key(name) for name in names]
    assert len(set(keys)) == len(names)
    for name, key in zip(names, keys, strict=True):
        key.encode("utf-8")  # storable in Parquet
        assert name_of(key) == name
    assert photo_key("plain.jpg") == "plain.jpg" and photo_key("caf\udce9.jpg") == "caf%E9.jpg"


def test_non_utf8_names_are_indexed_and_the_run_goes_on(engine, shared_data, tmp_path) -> None:
    album = make_album(tmp_path / "album", shared_data, {"a.jpg": PHOTOS["a.jpg"]})
    source = shared_data / "photos" / PHOTOS["sub/b.jpg"]
    folder = os.path.join(os.fsencode(album), b"d\xe9j\xe0")
    os.mkdir(folder)
    shutil.copyfile(source, os.path.join(folder, b"\xff\xfe.jpg"))
    index = tmp_path / "index"
    stats, messages = run(album, index, engine)
    assert stats.indexed == 2 and not stats.failed, messages
    assert indexed(index) == {"a.jpg", "d%E9j%E0/%FF%FE.jpg"}
    assert Album(album).read("d%E9j%E0/%FF%FE.jpg") == source.read_bytes()
    again, _ = run(album, index, engine)
    assert again.unchanged == 2 and again.deleted == 0


# -- defect 3: paths from a manifest stay inside the index -----------------------------------


def hostile_manifest(index: Path, edit) -> None:
    manifest = json.loads((index / "manifest.json").read_text())
    edit(manifest)
    (index / "manifest.json").write_text(json.dumps(manifest))
    shutil.rmtree(index / "manifests")  # no clean older copy to fall back on


@pytest.fixture
def indexed_album(engine, shared_data, tmp_path) -> tuple[Path, Path, Path]:
    album = make_album(tmp_path / "album", shared_data)
    index = tmp_path / "index"
    run(album, index, engine)
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "precious.txt").write_text("do not delete")
    (victim / "0000000001-deadbeef.parquet").write_bytes(b"not yours")
    return album, index, victim


RETIRED_OUT = [
    "../victim/precious.txt",
    "shards/../../victim/precious.txt",
    "/ABS/victim/precious.txt",
]


@pytest.mark.parametrize("path", RETIRED_OUT)
def test_a_retired_path_outside_the_index_is_refused(indexed_album, engine, path) -> None:
    album, index, victim = indexed_album
    path = path.replace("/ABS/victim", str(victim))
    before = snapshot(victim)
    hostile_manifest(index, lambda m: m["retired"].append({"path": path, "since": 0}))
    with pytest.raises(UnsafeIndexError, match="outside the index"):
        run(album, index, engine)
    with pytest.raises(UnsafeIndexError):
        IndexReader(index).photos()
    assert snapshot(victim) == before


def test_a_shard_path_outside_the_index_is_refused(indexed_album) -> None:
    _, index, victim = indexed_album
    before = snapshot(victim)
    hostile_manifest(
        index, lambda m: m["shards"][0].update(path=str(victim / "0000000001-deadbeef.parquet"))
    )
    with pytest.raises(UnsafeIndexError):
        IndexReader(index).snapshot()
    assert snapshot(victim) == before


def test_symlinks_out_of_the_index_are_refused(indexed_album, engine) -> None:
    """shards/ or a shard replaced by a link to someone else's files: the writer's garbage
    collection would delete what it lists there; a reader would read it."""
    album, index, victim = indexed_album
    before = snapshot(victim)
    (index / "shards").rename(index / "shards-real")
    (index / "shards").symlink_to(victim)
    with pytest.raises(UnsafeIndexError, match="leads outside"):
        run(album, index, engine)
    with pytest.raises(UnsafeIndexError):
        IndexReader(index).snapshot()
    assert snapshot(victim) == before


def test_photo_keys_from_a_foreign_index_cannot_leave_the_album(tmp_path) -> None:
    album = Album(tmp_path)
    for key in ["../secret.jpg", "a/../../secret.jpg", "/etc/passwd", "", "a//b.jpg", "%2E%2E/x"]:
        with pytest.raises(ValueError, match="album-relative"):
            album.read(key)


def test_an_index_that_is_a_file_is_one_line(tmp_path) -> None:
    target = tmp_path / "index"
    target.write_text("a file")
    from photosearch.index.store import IndexStoreError

    with pytest.raises(IndexStoreError, match="not a folder"):
        IndexWriter(target, model_id="m")
    assert target.read_text() == "a file"


def test_consistent_after_hostile_runs(indexed_album) -> None:
    _, index, _ = indexed_album
    assert_consistent(index)


# -- bad files: each one line, recorded or skipped, and the run goes on ----------------------


def bad_files(album: Path, good: bytes) -> dict[str, bytes | None]:
    """name -> bytes written (None: something that is not a regular file)."""
    import zlib

    png_header = b"\x89PNG\r\n\x1a\n"
    files: dict[str, bytes | None] = {
        "empty.jpg": b"",
        "truncated.jpg": good[: len(good) // 3],
        "text.jpg": b"just some notes, not a photo\n",
        "page.png": b"<!DOCTYPE html><html><body>404</body></html>",
        "noise.webp": os.urandom(2048),
        "header-only.png": png_header,
        "corrupt-middle.jpg": good[:600] + bytes(200) + good[800:],
        "zip-named.heic": b"PK\x03\x04" + bytes(100),
        "bad-zlib.png": png_header + b"\x00\x00\x00\x0dIHDR" + bytes(13) + zlib.compress(b"x"),
        "UPPER.JPG": good,  # fine: extensions are case-blind
        "mislabelled.png": good,  # a JPEG named .png: decoded by content
        "dir.jpg": None,
        "fifo.jpg": None,
    }
    for name, data in files.items():
        if data is not None:
            (album / name).write_bytes(data)
    (album / "dir.jpg").mkdir()
    os.mkfifo(album / "fifo.jpg")  # would block a reader forever: must be skipped
    return files


def test_a_corpus_of_bad_files_ends_in_one_line_each(engine, shared_data, tmp_path) -> None:
    album = make_album(tmp_path / "album", shared_data, {"a.jpg": PHOTOS["a.jpg"]})
    files = bad_files(album, (album / "a.jpg").read_bytes())
    index = tmp_path / "index"
    stats, messages = run(album, index, engine)
    bad = {name for name, data in files.items() if data is not None} - {
        "UPPER.JPG",
        "mislabelled.png",
    }
    assert stats.unreadable == len(bad) and stats.failed
    for name in bad:
        (line,) = [m for m in messages if m.startswith(f"{name}: ")]
        assert "\n" not in line and "Traceback" not in line
    assert indexed(index) == {"a.jpg", "UPPER.JPG", "mislabelled.png", *bad}
    assert_consistent(index)

"""Album sources: one fsspec code path for local folders and object-store style URLs."""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import fsspec
import pytest

from photosearch.index.album import Album, AlbumError, fingerprint, is_image_name
from photosearch.storage import canonical_location

PHOTOS = [
    "multires/lfw_funneled_250_vs_150/Rob_Lowe_0001_250px.jpg",
    "multires/lfw_funneled_250_vs_150/Teresa_Williams_0001_150px.jpg",
    "people/deepface/img47.jpg",  # really a WEBP
]


@pytest.fixture
def album_dir(tmp_path: Path, shared_data: Path) -> Path:
    root = tmp_path / "album"
    (root / "2023" / "rome").mkdir(parents=True)
    (root / ".thumbnails").mkdir()
    shutil.copyfile(shared_data / "photos" / PHOTOS[0], root / "a.jpg")
    shutil.copyfile(shared_data / "photos" / PHOTOS[1], root / "2023" / "rome" / "b.JPEG")
    shutil.copyfile(shared_data / "photos" / PHOTOS[2], root / "2023" / "c.jpg")
    shutil.copyfile(shared_data / "photos" / PHOTOS[0], root / ".thumbnails" / "a.jpg")
    (root / "2023" / "._c.jpg").write_bytes(b"\x00\x05\x16\x07 AppleDouble")
    (root / "notes.txt").write_text("not a photo")
    (root / "broken.png").write_bytes(b"not really a png")
    return root


def test_local_listing_is_recursive_and_filters_by_extension(album_dir: Path) -> None:
    album = Album(album_dir)
    files = album.files()
    assert [f.key for f in files] == ["2023/c.jpg", "2023/rome/b.JPEG", "a.jpg", "broken.png"]
    for item in files:
        path = album_dir / item.key
        assert item.size == path.stat().st_size
        assert item.stamp  # local listings carry an mtime
        assert album.read(item.key) == path.read_bytes()
        assert Path(album.url_of(item.key)) == path


def test_stamp_changes_when_the_file_is_rewritten(album_dir: Path) -> None:
    album = Album(album_dir)
    before = {f.key: f for f in album.files()}
    path = album_dir / "a.jpg"
    data = path.read_bytes()
    path.write_bytes(data[:-10])
    after = {f.key: f for f in album.files()}
    assert after["a.jpg"].stamp != before["a.jpg"].stamp or after["a.jpg"].size != len(data)
    assert after["2023/c.jpg"] == before["2023/c.jpg"]


def test_fsspec_url_album_uses_the_same_code_path(album_dir: Path) -> None:
    # An in-memory fsspec filesystem stands in for s3://: nothing local-specific may be needed.
    memory = fsspec.filesystem("memory")
    prefix = f"/album-{uuid.uuid4().hex[:8]}"
    for path in album_dir.rglob("*"):
        if path.is_file():
            key = path.relative_to(album_dir).as_posix()
            memory.pipe_file(f"{prefix}/{key}", path.read_bytes())
    try:
        local = Album(album_dir)
        remote = Album(f"memory://{prefix}")
        assert remote.location == f"memory://{prefix}"
        assert [f.key for f in remote.files()] == [f.key for f in local.files()]
        for item in remote.files():
            assert item.size == (album_dir / item.key).stat().st_size
            assert fingerprint(remote.read(item.key)) == fingerprint(local.read(item.key))
        assert remote.url_of("a.jpg") == f"memory://{prefix}/a.jpg"
    finally:
        memory.rm(prefix, recursive=True)


def test_fingerprint_is_about_content_not_name(album_dir: Path) -> None:
    data = (album_dir / "a.jpg").read_bytes()
    assert fingerprint(data) == fingerprint(bytes(data))
    assert len(fingerprint(data)) == 32
    assert fingerprint(data) != fingerprint(data[:-1])
    assert fingerprint(data) != fingerprint((album_dir / "2023" / "c.jpg").read_bytes())


def test_image_names() -> None:
    assert is_image_name("x/IMG_1.HEIC")
    assert is_image_name("a.jpeg") and is_image_name("b.webp") and is_image_name("c.png")
    assert not is_image_name("notes.txt")
    assert not is_image_name("x/._IMG_1.jpg")  # macOS resource fork
    assert not is_image_name(".hidden/IMG_1.jpg")
    assert not is_image_name("movie.mov")


def test_missing_album_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(AlbumError, match="not found"):
        Album(tmp_path / "nope").files()
    (tmp_path / "file.jpg").write_bytes(b"x")
    with pytest.raises(AlbumError):
        Album(tmp_path / "file.jpg").files()


def test_canonical_location(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert canonical_location("album") == str(tmp_path / "album")
    assert canonical_location(tmp_path / "album" / ".." / "album") == str(tmp_path / "album")
    assert canonical_location(f"file://{tmp_path}/album") == str(tmp_path / "album")
    url = canonical_location("memory://bucket/prefix/")
    assert url.startswith("memory://") and url.endswith("/bucket/prefix")
    assert canonical_location(url) == url

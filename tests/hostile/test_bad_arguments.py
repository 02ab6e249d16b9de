"""Bad arguments and settings: refused before anything is done, one line, exit status 2; and
symlinked photos and folders inside an album are followed, each real folder once."""

from __future__ import annotations

import os
import shutil
import socket
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from photosearch.cli.main import main
from photosearch.index.album import Album

LFW = "multires/lfw_funneled_250_vs_150"


def invoke(*arguments: str):
    return CliRunner().invoke(main, list(arguments))


def assert_refused(result, *words: str) -> None:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert all(word in result.output for word in words), result.output


@pytest.fixture
def album(tmp_path: Path, shared_data: Path) -> Path:
    root = tmp_path / "album"
    root.mkdir()
    shutil.copyfile(shared_data / "photos" / LFW / "Rob_Lowe_0001_150px.jpg", root / "a.jpg")
    return root


@pytest.mark.parametrize("device", ["banana", "cuda:99", "tpu", ""])
def test_an_unusable_device_is_refused_before_indexing(album, tmp_path, device) -> None:
    result = invoke("index", str(album), "--index", str(tmp_path / "index"), "--device", device)
    assert_refused(result, "--device")
    assert not (tmp_path / "index").exists()  # nothing done


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "-0.1", "NaN"])
def test_a_threshold_that_is_not_a_distance_is_refused(album, value) -> None:
    assert_refused(invoke("search", str(album / "a.jpg"), "--threshold", value), "--threshold")
    if value != "-0.1":  # a negative strictness is meaningful (more lenient)
        result = invoke("search", str(album / "a.jpg"), "--strictness", value)
        assert_refused(result, "--strictness")


def test_an_index_that_is_a_file_or_unusable_is_one_line(album, tmp_path) -> None:
    target = tmp_path / "a-file"
    target.write_text("mine")
    result = invoke("index", str(album), "--index", str(target), "--device", "cpu", "-q")
    assert_refused(result, "not a folder")
    assert_refused(invoke("info", "--index", str(target)), "error:")
    assert target.read_text() == "mine"


def test_a_missing_album_is_one_line(tmp_path) -> None:
    result = invoke("index", str(tmp_path / "nowhere"), "--index", str(tmp_path / "i"), "-q")
    assert_refused(result, "album not found")


def test_an_s3_endpoint_that_refuses_connections_fails_fast(monkeypatch) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    started = time.monotonic()
    result = invoke("info", "--index", "s3://bucket/index")
    assert time.monotonic() - started < 8  # was ~16-45 s of retries with backoff
    assert_refused(result, f"cannot reach http://127.0.0.1:{port}")
    assert len(result.output.strip().splitlines()) == 1


def test_symlinked_photos_and_folders_are_followed_once(album, tmp_path) -> None:
    outside = tmp_path / "elsewhere"
    (outside / "trip").mkdir(parents=True)
    shutil.copyfile(album / "a.jpg", outside / "trip" / "b.jpg")
    (album / "linked-trip").symlink_to(outside / "trip")  # a folder on another drive
    (album / "c.jpg").symlink_to(album / "a.jpg")  # a linked photo
    (album / "loop").symlink_to(album)  # a link loop: listed once
    (album / "gone.jpg").symlink_to(tmp_path / "missing.jpg")  # broken: one note
    listing = Album(album).listing()
    assert [f.key for f in listing.files] == ["a.jpg", "c.jpg", "linked-trip/b.jpg"]
    assert any("gone.jpg: broken symlink" in note for note in listing.notes)
    assert any(note.startswith("loop:") for note in listing.notes)
    assert not listing.unlisted
    assert Album(album).read("linked-trip/b.jpg") == (album / "a.jpg").read_bytes()
    assert os.path.islink(album / "c.jpg")  # nothing changed

"""The crash matrix: `photosearch index` SIGKILLed at several points, alone or beside a second
writer, on a local index and on the loopback S3 server. Whatever the point, nothing indexed
before is lost, the index stays one consistent snapshot, and the next run completes."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import aws_server
import pytest
from index_checks import assert_consistent
from remembering_engine import MAX_SIDE, RememberingEngine

from photosearch.index.album import Album
from photosearch.index.indexer import Indexer
from photosearch.index.store import IndexReader

moto_endpoint = aws_server.moto_endpoint
aws_env = aws_server.aws_env

LFW = "multires/lfw_funneled_250_vs_150"
BEFORE = {
    "a.jpg": f"{LFW}/Rob_Lowe_0001_150px.jpg",
    "b.jpg": f"{LFW}/Teresa_Williams_0001_150px.jpg",
}
ADDED = {
    "c.jpg": f"{LFW}/Nathalie_Baye_0002_150px.jpg",
    "d.jpg": f"{LFW}/Mary_Katherine_Smart_0001_150px.jpg",
    "e.jpg": f"{LFW}/Rob_Lowe_0001_250px.jpg",
    "f.jpg": f"{LFW}/Teresa_Williams_0001_250px.jpg",
}
# When the writer is killed: as soon as it runs (loading), after its first commit, after two.
KILL_AFTER_COMMITS = [0, 1, 2]


@pytest.fixture(scope="module")
def engine() -> RememberingEngine:
    return RememberingEngine()


def run(album: Path, index: str, engine):
    stats = Indexer(Album(album), index, engine, workers=2, report=lambda line: None).run()
    return stats


def writer(album: Path, index: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "photosearch", "index", str(album), "--index", index]
    options = ["--device", "cpu", "--max-side", str(MAX_SIDE), "--workers", "1"]
    return subprocess.Popen(
        [*command, *options, "--commit-every", "1", "-q"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def generation(index: str) -> int:
    try:
        manifest = IndexReader(index).manifest()
    except Exception:
        return -1
    return manifest.generation if manifest else 0


def kill_after(
    processes: list[subprocess.Popen], index: str, commits: int, start: int
) -> list[tuple[int, str]]:
    """SIGKILL every process still running once `commits` new commits are visible; returns each
    one's (exit status, stderr)."""
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and any(p.poll() is None for p in processes):
        if generation(index) >= start + commits:
            break
        time.sleep(0.05)
    for process in processes:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
    errors = [p.communicate(timeout=30)[1] for p in processes]
    return [(p.returncode, error) for p, error in zip(processes, errors, strict=True)]


def prepared(tmp_path: Path, shared_data: Path, index: str, engine) -> Path:
    album = tmp_path / "album"
    album.mkdir()
    for key, source in BEFORE.items():
        shutil.copyfile(shared_data / "photos" / source, album / key)
    run(album, index, engine)
    for key, source in ADDED.items():
        shutil.copyfile(shared_data / "photos" / source, album / key)
    return album


def check_and_finish(album: Path, index: str, engine) -> None:
    snapshot = assert_consistent(index)
    assert set(BEFORE) <= set(snapshot.photos.column("photo").to_pylist())  # nothing lost
    stats = run(album, index, engine)  # the next run completes
    assert not stats.failed
    final = assert_consistent(index)
    assert set(final.photos.column("photo").to_pylist()) == {*BEFORE, *ADDED}


@pytest.mark.parametrize("commits", KILL_AFTER_COMMITS)
def test_sigkill_of_a_local_writer(tmp_path, shared_data, engine, commits) -> None:
    index = str(tmp_path / "index")
    album = prepared(tmp_path, shared_data, index, engine)
    start = generation(index)
    ((status, stderr),) = kill_after([writer(album, index)], index, commits, start)
    assert status == -signal.SIGKILL, stderr  # killed mid-run, not finished
    check_and_finish(album, index, engine)


def test_two_local_writers_one_killed(tmp_path, shared_data, engine) -> None:
    index = str(tmp_path / "index")
    album = prepared(tmp_path, shared_data, index, engine)
    start = generation(index)
    ended = kill_after([writer(album, index), writer(album, index)], index, 1, start)
    assert -signal.SIGKILL in [status for status, _ in ended]
    for status, stderr in ended:
        if status != -signal.SIGKILL:  # the one that found the lock taken said so, in one line
            assert status == 2 and "another photosearch process" in stderr, stderr
            assert len(stderr.strip().splitlines()) == 1, stderr
    check_and_finish(album, index, engine)


@pytest.fixture
def s3_index(aws_env) -> str:
    import boto3
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()
    aws_server.create_bucket(boto3.client("s3"), "crash-index")
    yield "s3://crash-index/index"
    s3fs.S3FileSystem.clear_instance_cache()


@pytest.mark.parametrize("commits", [1])
def test_sigkill_of_two_writers_on_s3(tmp_path, shared_data, engine, s3_index, commits) -> None:
    album = prepared(tmp_path, shared_data, s3_index, engine)
    start = generation(s3_index)
    ended = kill_after([writer(album, s3_index), writer(album, s3_index)], s3_index, commits, start)
    for status, stderr in ended:  # killed, or stopped by the other's commit in one line
        assert status in (-signal.SIGKILL, 0, 2), stderr
        assert "Traceback" not in stderr, stderr
    check_and_finish(album, s3_index, engine)

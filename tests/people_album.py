"""A small LFW-layout album for the people tests, indexed once per test run with the real engine.

Ten LFW DevTrain identities with 4-5 photos each, George W Bush's first eight photos and one
photo each of six more people: 57 photos, one folder per person, as LFW lays them out (the
labelled face of a photo is the one nearest its centre; the others are bystanders). Who is who
comes from the folder names, never from our own results.

`first` holds each person's first three photos (and the singles): the album before an update,
for the incremental tests; `rest` the photos added later. Built once per run, even with
pytest-xdist (a file lock guards the shared copy): tests that change it work on their own copy.
"""

from __future__ import annotations

import fcntl
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import SHARED_DATA

LFW = SHARED_DATA / "lfw-devtrain"
PEOPLE = {
    "Aaron_Peirsol": 4,
    "Bashar_Assad": 4,
    "Christina_Aguilera": 4,
    "Don_Siegelman": 4,
    "Grant_Hackett": 5,
    "John_Warner": 4,
    "Michael_Caine": 4,
    "Oswaldo_Paya": 5,
    "Roger_Moore": 5,
    "Tom_Craddick": 4,
    "George_W_Bush": 8,
}
SINGLES = ["Casey_Mears", "Dave_Robertson", "Emma_Nicholson", "Gwen_Stefani", "Jane_Russell"]
SINGLES.append("Larry_Tanenbaum")


def keys() -> tuple[list[str], list[str]]:
    """(first, rest): album keys of the photos indexed first and of those added later."""
    first, rest = [], []
    for name, count in PEOPLE.items():
        for number in range(1, count + 1):
            (first if number <= 3 else rest).append(f"{name}/{name}_{number:04d}.jpg")
    first += [f"{name}/{name}_0001.jpg" for name in SINGLES]
    return first, rest


@dataclass(frozen=True)
class PeopleAlbum:
    album: Path  # every photo
    index: Path  # its index
    first_album: Path  # the first photos only
    first_index: Path

    def copy_to(self, target: Path, *, first: bool = False) -> tuple[Path, Path]:
        """An independent (album, index) copy for tests that change them."""
        album, index = (self.first_album, self.first_index) if first else (self.album, self.index)
        shutil.copytree(album, target / "album")
        shutil.copytree(index, target / "index", ignore=shutil.ignore_patterns("*.lock"))
        return target / "album", target / "index"


def add_photos(album: Path, photo_keys) -> None:
    for key in photo_keys:
        target = album / key
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(LFW / key, target)


def index(album: Path, location: Path) -> None:
    from photosearch.faces.engine import FaceEngine
    from photosearch.index.indexer import index_album

    index_album(album, location, engine=FaceEngine(device="cpu"), workers=2, report=lambda _: 0)


def build(root: Path) -> PeopleAlbum:
    root.mkdir(parents=True, exist_ok=True)
    result = PeopleAlbum(root / "album", root / "index", root / "first", root / "first-index")
    with open(root / "build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (result.index / "manifest.json").exists():
            return result
        for path in (result.album, result.index, result.first_album, result.first_index):
            shutil.rmtree(path, ignore_errors=True)
        first, rest = keys()
        add_photos(result.first_album, first)
        index(result.first_album, result.first_index)
        # The whole album's index is the first one updated: the real incremental path.
        shutil.copytree(result.first_album, result.album)
        shutil.copytree(result.first_index, result.index, ignore=shutil.ignore_patterns("*.lock"))
        add_photos(result.album, rest)
        index(result.album, result.index)
    return result


def people_album(tmp_path_factory: pytest.TempPathFactory) -> PeopleAlbum:
    if not LFW.is_dir():
        pytest.skip(f"LFW photos not found at {LFW} (clone the project beside ../shared)")
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # shared by the workers of this run
    return build(base / "people-album")

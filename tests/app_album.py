"""A small real album for the web app's tests, indexed once per test run with the real engine.

Ten files: nine copied from ../shared/data/photos (three photos of Barack Obama, a group photo
of Obama and Joe Biden, photos of Biden, Kit Harington and Rose Leslie, a group photo of the
last two, a photo without any human face) and a text file named like a photo. Who is in each
photo comes from the dataset's labels (people.csv and group_photos.csv), never from our own
results.

The album is built and indexed once per run, even with pytest-xdist (a file lock guards the
shared copy): tests that change the album or the index work on their own copy.
"""

from __future__ import annotations

import csv
import fcntl
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import SHARED_DATA

PHOTOS = SHARED_DATA / "photos"

# album key -> file under ../shared/data/photos
ALBUM_FILES = {
    "obama/obama.jpg": "people/face_recognition/knn_train/Barack_Obama/obama.jpg",
    "obama/obama2.jpg": "people/face_recognition/knn_train/Barack_Obama/obama2.jpg",
    "2016/obama1.jpg": "people/face_recognition/knn_test/obama1.jpg",
    "2016/two_people.jpg": "group/face_recognition/two_people.jpg",
    "biden/biden2.jpg": "people/face_recognition/knn_train/Joe_Biden/biden2.jpg",
    "friends/john1.jpeg": "people/face_recognition/knn_train/Kit_Harington/john1.jpeg",
    "friends/rose.jpg": "people/face_recognition/knn_train/Rose_Leslie/img1.jpg",
    "friends/kit_with_rose.jpg": "group/face_recognition/kit_with_rose.jpg",
    "nature/no_face.jpg": "group/compreface/017_0.jpg",
}
INDEX_MAX_SIDE = 1000
BROKEN_KEY = "notes.jpg"  # a text file with a photo's name: indexed as unreadable

# Reference photos (not in the album).
OBAMA_REFERENCE = "people/face_recognition/examples/obama_small.jpg"
# Two faces (Obama, the larger, and Biden): the face-choice reference. It is also in the album,
# which is fine: a reference may come from the album itself.
TWO_FACES_REFERENCE = "group/face_recognition/two_people.jpg"


def labels() -> dict[str, set[str]]:
    """Shared photo path -> the people the dataset says it shows."""
    found: dict[str, set[str]] = {}
    with open(PHOTOS / "people" / "people.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            if row["identity"]:
                found.setdefault(row["path"], set()).add(row["identity"])
    with open(PHOTOS / "group" / "group_photos.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            people = {name for name in row["known_people"].split(";") if name}
            found.setdefault(row["relative_path"], set()).update(people)
    return found


def album_keys_showing(person: str) -> set[str]:
    """The album's photos labelled with `person`."""
    known = labels()
    return {key for key, source in ALBUM_FILES.items() if person in known.get(source, set())}


@dataclass(frozen=True)
class TestAlbum:
    album: Path
    index: Path

    def copy_to(self, target: Path) -> TestAlbum:
        """An independent copy (album and index) for tests that change them."""
        shutil.copytree(self.album, target / "album")
        shutil.copytree(self.index, target / "index", ignore=shutil.ignore_patterns("*.lock"))
        return TestAlbum(target / "album", target / "index")


def build(root: Path) -> TestAlbum:
    """Copy and index the album under `root` unless a previous worker already did."""
    root.mkdir(parents=True, exist_ok=True)
    result = TestAlbum(root / "album", root / "index")
    with open(root / "build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (result.index / "manifest.json").exists():
            return result
        shutil.rmtree(result.album, ignore_errors=True)
        shutil.rmtree(result.index, ignore_errors=True)
        for key, source in ALBUM_FILES.items():
            target = result.album / key
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(PHOTOS / source, target)
        (result.album / BROKEN_KEY).write_text("shopping list: milk, eggs\n")
        from photosearch.faces.engine import FaceEngine
        from photosearch.index.indexer import index_album

        # 1000 px: the largest working size that is never upsampled (see engine.py), the
        # cheapest real indexing of these photos; references still use the default engine.
        index_album(
            result.album,
            result.index,
            engine=FaceEngine(device="cpu", max_side=INDEX_MAX_SIDE),
            workers=2,
            report=lambda line: None,
        )
    return result


def shared_album(tmp_path_factory: pytest.TempPathFactory) -> TestAlbum:
    if not PHOTOS.is_dir():
        pytest.skip(f"test photos not found at {PHOTOS} (clone the project beside ../shared)")
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # shared by the workers of this run
    return build(base / "app-album")

"""Evaluation albums of many sizes for the search calibration (benchmarks/bench_search_sizes.py).

Two kinds of album, both built deterministically from `lfw-devtrain`:
- LFW albums: whole identities (every photo of each) drawn in a random order until the album
  holds N faces. Descriptors come from the engine with `--detector mmod` (the index the people
  benchmark keeps under $PHOTOSEARCH_BENCH_CACHE/lfw-devtrain; built once when missing).
- Group albums: synthetic group photos made as benchmarks/bench_group.py makes them (its
  `canvas`: 1-8 faces of 60 people on 1-12 MP canvases, faces 1.5-15% of the longer side, a
  quarter EXIF-rotated), indexed once with the default engine. An album of N faces is a random
  subset of a pool of such photos. The reference of each person is their first LFW photo, which
  is never pasted, indexed with the same engine.

Identities are split so that no person used to choose a constant is ever reported:
calibration people have `identity_half` 0 (the search split of docs/search.md) *and* are
outside bench_group's `reporting_half`; LFW albums report on `identity_half` 1, group albums on
`reporting_half` (bench_group's own people). Strangers in LFW albums are anyone, as in
docs/search.md's protocol; a group pool contains only its own half's people.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from bench_group import BINS, canvas, reporting_half

from photosearch.evaluate.retrieval import identity_half
from photosearch.search.adaptive import FaceSet

CACHE = Path(os.environ.get("PHOTOSEARCH_BENCH_CACHE", Path.home() / ".cache/photosearch-bench"))
GROUP_PEOPLE = 60
GROUP_PHOTOS = 450  # per pool: about 2,000 faces


def calibration_person(name: str) -> bool:
    return identity_half(name) == 0 and not reporting_half(name)


def reporting_person(kind: str) -> Callable[[str], bool]:
    if kind == "lfw":
        return lambda name: identity_half(name) == 1
    return reporting_half


@dataclass
class Album:
    """Faces of an album and, per query person, the reference and the photos that show them."""

    faces: FaceSet
    references: dict[str, np.ndarray]  # person -> (1, 128)
    positives: dict[str, frozenset[str]]  # person -> album photos showing them
    ignore: dict[str, str]  # person -> the reference's own photo when it is in the album


def _read_index(location: Path) -> tuple[np.ndarray, list[str], np.ndarray]:
    from photosearch.index.store import IndexReader

    descriptors, faces = IndexReader(str(location)).load()
    photos = faces.column("photo").to_pylist()
    boxes = np.stack([faces.column(c).to_numpy() for c in ("left", "top", "right", "bottom")], 1)
    return descriptors, photos, boxes


def _index(album: Path, location: Path, detector: str | None = None) -> None:
    from photosearch.faces.engine import FaceEngine
    from photosearch.index.indexer import index_album

    if (location / "manifest.json").exists():
        return
    print(f"indexing {album} into {location} (once)...", flush=True)
    engine = FaceEngine(device="cpu", detector=detector) if detector else None
    index_album(album, location, engine=engine, workers=2, report=lambda line: None)


# --- LFW albums -------------------------------------------------------------------------------


class LfwSource:
    """Every lfw-devtrain face (mmod descriptors), grouped by identity."""

    def __init__(self, data: Path) -> None:
        location = CACHE / "lfw-devtrain"
        _index(data / "lfw-devtrain", location, detector="mmod")
        self.descriptors, self.photos, self.boxes = _read_index(location)
        self.by_person: dict[str, list[int]] = {}
        for row, photo in enumerate(self.photos):
            self.by_person.setdefault(photo.split("/")[0], []).append(row)
        centre = (self.boxes[:, :2] + self.boxes[:, 2:]) / 2 - 124.5
        self.offset = np.hypot(centre[:, 0], centre[:, 1])

    def album(self, size: int, seed: int, wanted: Callable[[str], bool]) -> Album:
        rng = np.random.default_rng(seed)
        rows: list[int] = []
        for person in rng.permutation(sorted(self.by_person)):
            if len(rows) >= size:
                break
            rows.extend(self.by_person[str(person)])
        rows = sorted(rows)
        faces = FaceSet(self.descriptors[rows], [self.photos[r] for r in rows], self.boxes[rows])
        photos_of: dict[str, list[str]] = {}
        for photo in sorted(set(faces.photos)):
            photos_of.setdefault(photo.split("/")[0], []).append(photo)
        references, positives, ignore = {}, {}, {}
        for person, photos in photos_of.items():
            if len(photos) < 2 or not wanted(person):
                continue
            # The labelled face of the first photo is the one nearest the centre (250 px LFW).
            own = [r for r in self.by_person[person] if self.photos[r] == photos[0]]
            reference = min(own, key=lambda r: self.offset[r])
            references[person] = self.descriptors[reference][None].astype(np.float64)
            positives[person] = frozenset(photos[1:])
            ignore[person] = photos[0]
        return Album(faces, references, positives, ignore)


# --- Group albums -----------------------------------------------------------------------------


class GroupPool:
    """GROUP_PHOTOS synthetic group photos of GROUP_PEOPLE people of one half, indexed once."""

    def __init__(self, data: Path, half: str, seed: int) -> None:
        lfw = data / "lfw-devtrain"
        root = CACHE / f"search-sizes-{half}-{seed}"
        truth_file = root / "truth.json"
        if not truth_file.exists():
            self._build(lfw, root, half, seed)
        truth = json.loads(truth_file.read_text())
        self.people_in: dict[str, list[str]] = truth["people"]  # photo -> pasted people
        descriptors, photos, boxes = _read_index(root / "index-album")
        self.descriptors, self.photos, self.boxes = descriptors, photos, boxes
        known, known_photos, known_boxes = _read_index(root / "index-known")
        self.references: dict[str, np.ndarray] = {}
        areas = (known_boxes[:, 2] - known_boxes[:, 0]) * (known_boxes[:, 3] - known_boxes[:, 1])
        for row in np.argsort(-areas, kind="stable"):  # each reference's largest face
            self.references.setdefault(Path(known_photos[row]).stem, known[row][None])

    @staticmethod
    def _build(lfw: Path, root: Path, half: str, seed: int) -> None:
        from PIL import Image

        wanted = calibration_person if half == "calibration" else reporting_half
        names = []
        for line in (lfw / "peopleDevTrain.txt").read_text().splitlines()[1:]:
            name, images = line.split("\t")
            if int(images) >= 3 and wanted(name):
                names.append(name)
        rng = np.random.default_rng(seed)
        picked = rng.choice(sorted(names), size=GROUP_PEOPLE, replace=False)
        persons = {str(n): sorted((lfw / str(n)).glob("*.jpg")) for n in sorted(picked)}
        (root / "album").mkdir(parents=True, exist_ok=True)
        (root / "known").mkdir(exist_ok=True)
        for person, images in persons.items():
            Image.open(images[0]).save(root / "known" / f"{person}.jpg")
        people = {}
        for i in range(GROUP_PHOTOS):
            count = int(rng.integers(1, 9))
            made = canvas(rng, persons, root / "album", f"g{i:03d}", BINS[i % len(BINS)], count)
            people[f"g{i:03d}.jpg"] = made["people"]
        _index(root / "album", root / "index-album")
        _index(root / "known", root / "index-known")
        (root / "truth.json").write_text(json.dumps({"people": people}))

    def album(self, size: int, seed: int) -> Album:
        rng = np.random.default_rng(seed)
        rows_of: dict[str, list[int]] = {}
        for row, photo in enumerate(self.photos):
            rows_of.setdefault(Path(photo).name, []).append(row)
        rows: list[int] = []
        chosen: list[str] = []
        for photo in rng.permutation(sorted(self.people_in)):
            if len(rows) >= size:
                break
            chosen.append(str(photo))
            rows.extend(rows_of.get(str(photo), []))
        rows = sorted(rows)
        keys = [Path(self.photos[r]).name for r in rows]
        faces = FaceSet(self.descriptors[rows], keys, self.boxes[rows])
        shows: dict[str, set[str]] = {}
        for photo in chosen:
            for person in self.people_in[photo]:
                shows.setdefault(person, set()).add(photo)
        references = {p: self.references[p].astype(np.float64) for p in shows}
        return Album(faces, references, {p: frozenset(s) for p, s in shows.items()}, {})


def group_with_portraits(pool: GroupPool, lfw: LfwSource, size: int, seed: int) -> Album:
    """The whole group pool plus LFW photos of other people (strangers, each photo once) up to
    `size` faces: group photos inside a large album. The pool's own people's LFW photos stay
    out (they would be unlabelled photos of the query people)."""
    group = pool.album(len(pool.photos), seed)
    rng = np.random.default_rng(seed)
    rows: list[int] = []
    for person in rng.permutation(sorted(set(lfw.by_person) - set(pool.references))):
        if len(group.faces) + len(rows) >= size:
            break
        rows.extend(lfw.by_person[str(person)])
    rows = sorted(rows)
    faces = FaceSet(
        np.vstack([group.faces.descriptors, lfw.descriptors[rows]]),
        group.faces.photos + [lfw.photos[r] for r in rows],
        np.vstack([group.faces.boxes, lfw.boxes[rows]]),
    )
    return Album(faces, group.references, group.positives, {})

"""End to end: index an album and find people in it, Photosearch vs the face_recognition CLI.

The photo set is ../shared/data/photos: one reference photo per labelled person with at least two
photos is the "known" set; every other people/ photo and every group/ photo is the album. Both
tools run as their command lines, in this process's run, on the same files:
- face_recognition: `face_recognition --cpus N known/ album/` (its default HOG detector, tolerance
  0.6); it re-encodes the whole album on every run, since it keeps no index.
- photosearch: `photosearch index album/` once, then one `photosearch search --queries` run
  over the same references.
Recall and precision count (photo, person) pairs: a labelled person found in a photo that is
labelled with them (people.csv identity, group_photos.csv known_people).

Usage: python benchmarks/bench_album.py
"""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from common import machine_description, require_shared_data, search_matches

BIN = Path(sys.executable).parent


def labelled_photos(photos_root: Path) -> tuple[dict[str, set[str]], dict[str, list[str]]]:
    """(photo -> people in it, person -> their single-person photos), photo paths relative."""
    people_in: dict[str, set[str]] = defaultdict(set)
    photos_of: dict[str, list[str]] = defaultdict(list)
    with (photos_root / "people" / "people.csv").open() as handle:
        for row in csv.DictReader(handle):
            if row["identity"]:
                people_in[row["path"]].add(row["identity"])
                photos_of[row["identity"]].append(row["path"])
    with (photos_root / "group" / "group_photos.csv").open() as handle:
        for row in csv.DictReader(handle):
            people_in[row["relative_path"]].update(p for p in row["known_people"].split(";") if p)
    return people_in, photos_of


def build_sets(photos_root: Path, work: Path) -> tuple[dict[str, str], dict[str, set[str]]]:
    """Copy references to work/known/<person>.<ext> and the album to work/album/... (flat names).
    Returns (person -> known file, album file name -> people in it)."""
    people_in, photos_of = labelled_photos(photos_root)
    references = {p: sorted(paths)[0] for p, paths in photos_of.items() if len(paths) >= 2}
    (work / "known").mkdir(parents=True)
    (work / "album").mkdir()
    known = {}
    for person, path in sorted(references.items()):
        target = work / "known" / f"{person}{Path(path).suffix}"
        shutil.copy(photos_root / path, target)
        known[person] = str(target)
    truth: dict[str, set[str]] = {}
    reference_paths = set(references.values())
    for path in sorted(p.relative_to(photos_root).as_posix() for p in photos_root.rglob("*")):
        source = photos_root / path
        if path in reference_paths or source.suffix.lower() not in {".jpg", ".jpeg", ".png"}:
            continue
        if not path.startswith(("people/", "group/")):
            continue
        name = path.replace("/", "__")
        shutil.copy(source, work / "album" / name)
        truth[name] = {p for p in people_in.get(path, set()) if p in known}
    return known, truth


def score(found: set[tuple[str, str]], truth: dict[str, set[str]]) -> dict[str, float]:
    expected = {(photo, person) for photo, people in truth.items() for person in people}
    hits = len(found & expected)
    return {
        "recall": hits / len(expected) if expected else 0.0,
        "precision": hits / len(found) if found else 0.0,
        "expected": len(expected),
        "returned": len(found),
    }


def run_face_recognition(work: Path, cpus: int) -> tuple[float, set[tuple[str, str]]]:
    start = time.perf_counter()
    out = subprocess.run(
        [
            str(BIN / "face_recognition"),
            "--cpus",
            str(cpus),
            str(work / "known"),
            str(work / "album"),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    seconds = time.perf_counter() - start
    found = set()
    for line in out.splitlines():
        path, _, name = line.rpartition(",")
        if name not in ("unknown_person", "no_persons_found") and path:
            found.add((Path(path).name, name))
    return seconds, found


def run_photosearch(work: Path, known: dict[str, str]) -> tuple[float, float, set]:
    env = {**os.environ, "PHOTOSEARCH_DATA_DIR": str(work / "data")}
    index = work / "index"
    start = time.perf_counter()
    subprocess.run(
        [str(BIN / "photosearch"), "index", str(work / "album"), "--index", str(index), "-q"],
        check=True,
        env=env,
        stdout=subprocess.DEVNULL,
    )
    index_seconds = time.perf_counter() - start
    start = time.perf_counter()
    found = search_matches(BIN / "photosearch", index, known, work, env)
    search_seconds = time.perf_counter() - start
    return index_seconds, search_seconds, found


def main() -> None:
    photos_root = require_shared_data() / "photos"
    if not (BIN / "face_recognition").exists():
        sys.exit("the peer is missing: run `make bench` (installs face_recognition --no-deps)")
    cpus = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        known, truth = build_sets(photos_root, work)
        print(
            f"album: {len(truth)} photos, {len(known)} reference people; "
            f"machine: {machine_description()}"
        )
        fr_seconds, fr_found = run_face_recognition(work, cpus)
        ps_index, ps_search, ps_found = run_photosearch(work, known)
    fr, ps = score(fr_found, truth), score(ps_found, truth)
    group = {photo: people for photo, people in truth.items() if photo.startswith("group__")}
    fr_group = score({f for f in fr_found if f[0] in group}, group)
    ps_group = score({f for f in ps_found if f[0] in group}, group)
    ps_total = ps_index + ps_search
    print(
        f"face_recognition CLI: {fr_seconds:7.1f} s  {len(truth) / fr_seconds:6.2f} images/s  "
        f"recall {fr['recall']:.3f}  precision {fr['precision']:.3f}  "
        f"group photos: recall {fr_group['recall']:.3f} of {fr_group['expected']}"
    )
    print(
        f"photosearch:          {ps_total:7.1f} s  {len(truth) / ps_total:6.2f} images/s  "
        f"recall {ps['recall']:.3f}  precision {ps['precision']:.3f}  "
        f"group photos: recall {ps_group['recall']:.3f} of {ps_group['expected']}  "
        f"(index {ps_index:.1f} s, {len(known)} searches {ps_search:.1f} s)"
    )
    # The peer encodes the album and the references in one run; photosearch's index run
    # encodes only the album, so the indexing ratio is per image encoded.
    peer_rate = (len(truth) + len(known)) / fr_seconds
    print(
        f"indexing: photosearch {len(truth) / ps_index:.2f} images/s vs face_recognition "
        f"{peer_rate:.2f} images/s (album + references): {len(truth) / ps_index / peer_rate:.2f}x"
    )
    print(f"index + search vs face_recognition, wall time: {fr_seconds / ps_total:.2f}x")
    expected = {(photo, person) for photo, people in truth.items() for person in people}
    for label, pairs in (
        ("found by face_recognition only", (fr_found - ps_found) & expected),
        ("found by photosearch only", (ps_found - fr_found) & expected),
    ):
        print(f"{label}: {', '.join(f'{person} in {photo}' for photo, person in sorted(pairs))}")


if __name__ == "__main__":
    main()

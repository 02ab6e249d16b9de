"""How well `photosearch people` groups real faces: BCubed P/R/F1 against DBSCAN's best radius.

Albums: the lfw-devtrain identities split in two halves by a hash of the name (the grouping's
constants were calibrated on the "calibration" half; the "report" half is the held-out figure),
and the shared photos set (`photos/people` labels from people.csv; group photos' faces are
grouped but not scored). Each photo's labelled face is the one nearest its centre, the other
faces are bystanders, grouped like any face but not scored. DBSCAN (scikit-learn, min samples
3: Immich's and PhotoPrism's method) runs on the very same descriptors at radii 0.40-0.55, and
its best radius *on each album* is the peer (an advantage no real user has).

Indexes are built once (the real engine, about 7 minutes for LFW on 2 cores) and kept under
$PHOTOSEARCH_BENCH_CACHE (default ~/.cache/photosearch-bench).

    python benchmarks/bench_people_quality.py
"""

from __future__ import annotations

import csv
import hashlib
import os
import sys
import time
from pathlib import Path

import numpy as np
from common import REPO_ROOT, SHARED_DATA, machine_description, require_shared_data

sys.path.insert(0, str(REPO_ROOT / "src"))

CACHE = Path(os.environ.get("PHOTOSEARCH_BENCH_CACHE", Path.home() / ".cache/photosearch-bench"))
RADII = (0.40, 0.425, 0.45, 0.475, 0.50, 0.525, 0.55)


def half_of(identity: str) -> str:
    digest = hashlib.blake2b(identity.encode(), digest_size=4).digest()
    return "calibration" if digest[0] % 2 == 0 else "report"


def indexed(album: Path, name: str) -> str:
    from photosearch.index.indexer import index_album

    location = CACHE / name
    if not (location / "manifest.json").exists():
        print(f"indexing {album} into {location} (once)...", flush=True)
    index_album(album, location, workers=2, report=lambda line: None)
    return str(location)


def score(index, keep: np.ndarray, labels: list, sklearn_dbscan) -> str:
    from photosearch.people.grouping import DEFAULT_MIN_FACES, group_faces
    from photosearch.people.quality import bcubed

    photos = [p for p, k in zip(index.face_photos, keep, strict=True) if k]
    ids = {photo: number for number, photo in enumerate(dict.fromkeys(photos))}
    descriptors = index.descriptors[keep]
    labels = [label for label, k in zip(labels, keep, strict=True) if k]
    start = time.perf_counter()
    groups = group_faces(descriptors, [ids[p] for p in photos])
    seconds = time.perf_counter() - start
    _, inverse, counts = np.unique(groups, return_inverse=True, return_counts=True)
    groups = np.where(counts[inverse] >= DEFAULT_MIN_FACES, groups, -1)
    ours = bcubed(labels, groups.tolist())
    peers = []
    for radius in RADII:
        found = sklearn_dbscan(eps=radius, min_samples=3).fit(descriptors).labels_
        peers.append((bcubed(labels, found.tolist()), radius))
    best, radius = max(peers, key=lambda pair: pair[0].f1)
    at_half = next(s for s, r in peers if r == 0.50)
    return (
        f"{len(descriptors):>6} faces, {ours.faces} labelled | ours P {ours.precision:.3f} "
        f"R {ours.recall:.3f} F1 {ours.f1:.3f} ({seconds:.1f} s) | DBSCAN best radius "
        f"{radius:.3f}: P {best.precision:.3f} R {best.recall:.3f} F1 {best.f1:.3f} "
        f"(at 0.50: {at_half.f1:.3f}) | F1 ours - DBSCAN best {ours.f1 - best.f1:+.3f}"
    )


def main() -> None:
    from sklearn.cluster import DBSCAN

    from photosearch.people.quality import centre_labels
    from photosearch.search.query import SearchableIndex

    require_shared_data()
    print(machine_description())
    albums = {
        "lfw-devtrain": (SHARED_DATA / "lfw-devtrain", None),
        "photos": (SHARED_DATA / "photos", SHARED_DATA / "photos" / "people" / "people.csv"),
    }
    for name, (album, label_file) in albums.items():
        index = SearchableIndex.load(indexed(album, name))
        photos = index.snapshot.photos
        widths, heights = photos.column("width").to_pylist(), photos.column("height").to_pylist()
        sizes = {
            photo: (width, height)
            for photo, width, height in zip(
                photos.column("photo").to_pylist(), widths, heights, strict=True
            )
        }
        if label_file is None:
            labels = centre_labels(index.face_photos, index.boxes, sizes)
            for half in ("calibration", "report", "whole"):
                keep = np.array(
                    [half in ("whole", half_of(p.split("/")[0])) for p in index.face_photos]
                )
                print(f"{name} {half:<11}: {score(index, keep, labels, DBSCAN)}")
        else:
            with open(label_file, newline="") as handle:
                known = {row["path"]: row["identity"] or None for row in csv.DictReader(handle)}
            labels = centre_labels(index.face_photos, index.boxes, sizes, known.get)
            keep = np.ones(len(index.face_photos), dtype=bool)
            print(f"{name:<24}: {score(index, keep, labels, DBSCAN)}")


if __name__ == "__main__":
    main()

"""Grouping faces into people at scale: 100k faces in under 2 minutes, 1M in under 4 GB.

Synthetic descriptors shaped like dlib's (people's centres ~0.85 apart, a person's faces ~0.4
apart, people sizes from a long-tailed distribution, one face per photo): scale is about time
and memory, and benchmarks/bench_people_quality.py measures quality on real faces.
The peer is scikit-learn's DBSCAN (Immich's and PhotoPrism's method: min samples 3) on the same
descriptors, where it fits in the time (100k faces). Each size runs in a fresh process so its
peak memory (ru_maxrss) is its own.

    python benchmarks/bench_people.py [--sizes 100000,1000000]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np
from common import REPO_ROOT, machine_description

TARGET_SECONDS_100K = 120.0
TARGET_BYTES_1M = 4 * 2**30


def synthetic_faces(count: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(descriptors (F, 128) float32, person of each face, photo of each face)."""
    rng = np.random.default_rng(seed)
    sizes = np.minimum(rng.zipf(1.7, size=count), 2000)
    sizes = sizes[np.cumsum(sizes) <= count]
    sizes = np.append(sizes, count - sizes.sum()) if sizes.sum() < count else sizes
    person = np.repeat(np.arange(len(sizes)), sizes)[:count]
    centres = rng.normal(0, 0.053, size=(len(sizes), 128)).astype(np.float32) + 0.12
    faces = np.empty((count, 128), dtype=np.float32)
    for start in range(0, count, 65536):  # in slices: the peak memory is the grouping's
        part = slice(start, min(count, start + 65536))
        noise = rng.normal(0, 0.025, size=(part.stop - start, 128)).astype(np.float32)
        faces[part] = centres[person[part]] + noise
    return faces, person, rng.permutation(count)  # every face in its own photo


def run_one(count: int, with_peer: bool) -> dict:
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    sys.path.insert(0, str(REPO_ROOT / "src"))
    from photosearch.people.grouping import group_faces
    from photosearch.people.quality import bcubed

    faces, person, photos = synthetic_faces(count)
    start = time.perf_counter()
    labels = group_faces(faces, photos)
    seconds = time.perf_counter() - start
    sizes = np.bincount(np.unique(labels, return_inverse=True)[1])
    grouped = np.where(sizes[np.unique(labels, return_inverse=True)[1]] >= 3, labels, -1)
    result = {
        "faces": count,
        "seconds": round(seconds, 1),
        "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
        "bcubed_f1": round(bcubed(person.tolist(), grouped.tolist()).f1, 4),
    }
    if with_peer:
        from sklearn.cluster import DBSCAN

        start = time.perf_counter()
        peer = DBSCAN(eps=0.45, min_samples=3, n_jobs=2).fit(faces).labels_
        result["dbscan_seconds"] = round(time.perf_counter() - start, 1)
        result["dbscan_bcubed_f1"] = round(bcubed(person.tolist(), peer.tolist()).f1, 4)
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--peer", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one, args.peer)))
        return
    print(machine_description())
    for count in (int(size) for size in args.sizes.split(",")):
        command = [sys.executable, __file__, "--one", str(count)]
        if count <= 200_000:
            command.append("--peer")
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            print(f"{count} faces: failed\n{done.stderr[-2000:]}")
            continue
        result = json.loads(done.stdout.strip().splitlines()[-1])
        line = (
            f"{count:>9,} faces: grouped in {result['seconds']} s, peak memory "
            f"{result['peak_rss_gib']} GiB, BCubed F1 {result['bcubed_f1']}"
        )
        if "dbscan_seconds" in result:
            ratio = result["dbscan_seconds"] / max(result["seconds"], 1e-9)
            line += (
                f"; DBSCAN (eps 0.45, 2 jobs) {result['dbscan_seconds']} s "
                f"(ours {ratio:.1f}x faster), F1 {result['dbscan_bcubed_f1']}"
            )
        else:
            line += "; DBSCAN not run at this size (its radius search does not fit the time)"
        print(line)
        if count == 100_000:
            print(f"  target: under {TARGET_SECONDS_100K:.0f} s on 2 cores")
        if count == 1_000_000:
            print(f"  target: under {TARGET_BYTES_1M / 2**30:.0f} GiB")


if __name__ == "__main__":
    main()

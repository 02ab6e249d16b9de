"""Search latency over synthetic descriptors: 10k, 100k and 1M faces, exact, one reference.

Compared with the memory-bandwidth bound: an exact search must read every descriptor once
(F x 128 float32), so bytes scanned / time is set against this machine's measured copy
bandwidth (numpy copy of a large array), the peer measured in the same run. Also reports a
plain numpy float64 brute force (face_recognition's face_distance does the same) for contrast.

Usage: python benchmarks/bench_search.py
"""

from __future__ import annotations

import time

import numpy as np
from common import machine_description

from photosearch.search.adaptive import FaceSet, search


def best_of(function, repeat: int = 5) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    rng = np.random.default_rng(0)
    big = np.empty(256 * 2**20 // 4, np.float32)
    big[:] = 1.0
    copy_seconds = best_of(lambda: big.copy(), repeat=3)
    bandwidth = 2 * big.nbytes / copy_seconds  # read + write
    print(f"machine: {machine_description()}")
    print(f"memory copy bandwidth: {bandwidth / 1e9:.1f} GB/s (read+write)")
    for count in (10_000, 100_000, 1_000_000):
        descriptors = rng.normal(0, 0.09, (count, 128)).astype(np.float32)
        photos = [f"p{i}" for i in range(count)]
        build = best_of(lambda d=descriptors, p=photos: FaceSet(d, p), repeat=1)
        faces = FaceSet(descriptors, photos)
        reference = descriptors[count // 2][None] + 0.01
        seconds = best_of(lambda f=faces, r=reference: search(r, f))
        naive = best_of(
            lambda d=descriptors, r=reference: np.linalg.norm(
                d.astype(np.float64) - r.astype(np.float64), axis=1
            ),
            repeat=2,
        )
        scanned = descriptors.nbytes
        print(
            f"{count:>9,} faces: search {seconds * 1000:7.1f} ms "
            f"({scanned / seconds / 1e9:5.1f} GB/s scanned, bound {scanned / bandwidth * 1000:6.1f}"
            f" ms -> {seconds / (scanned / bandwidth):4.1f}x the bound); "
            f"numpy float64 brute force {naive * 1000:7.1f} ms ({naive / seconds:4.1f}x slower); "
            f"FaceSet build {build * 1000:.0f} ms once per index"
        )


if __name__ == "__main__":
    main()

"""The search default across album sizes: LFW albums of 200-10,610 faces and group-photo albums
of 200-2,000 faces, calibration half and reporting half (benchmarks/search_albums.py).

Scores, as docs/search.md defines them: mean precision/recall/F1 over queries (a query that
returns nothing has precision 1 and F1 0), and pooled over (photo, person) pairs as
bench_group.py counts them. Several random albums are drawn per size so that even the smallest
size has hundreds of queries; the figures are over all of them.

    python benchmarks/bench_search_sizes.py              # the default, reporting half
    python benchmarks/bench_search_sizes.py --calibrate  # threshold sweep, calibration half

The first run indexes two pools of 450 group photos with the default engine (about 7 minutes of
CPU on 2 cores) and, when missing, lfw-devtrain with `--detector mmod` (about 7 minutes); all
are kept under $PHOTOSEARCH_BENCH_CACHE. After that a report takes about 90 s.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from common import machine_description, require_shared_data
from search_albums import (
    Album,
    GroupPool,
    LfwSource,
    calibration_person,
    group_with_portraits,
    reporting_person,
)

from photosearch.search import calibration as cal
from photosearch.search.adaptive import search

LFW_SIZES = {200: 40, 500: 16, 1000: 8, 3000: 3, 20000: 1}  # size -> albums drawn (20000: all)
GROUP_SIZES = {200: 40, 500: 16, 1000: 8, 5000: 1}  # 5000: the whole pool
MIXED_SIZES = (5000, 20000)  # the whole pool plus LFW portraits of strangers (20000: all)
GRID = np.round(np.arange(0.04, 0.205, 0.01), 3)
SEEDS = {"calibration": 131, "reporting": 132}


def albums(data, half: str) -> dict[tuple[str, int], list[Album]]:
    """(kind, size) -> the albums drawn for it, for one half."""
    lfw = LfwSource(data)
    pool = GroupPool(data, half, SEEDS[half])
    wanted = calibration_person if half == "calibration" else reporting_person("lfw")
    seed = SEEDS[half] * 1000
    out: dict[tuple[str, int], list[Album]] = {}
    for size, draws in LFW_SIZES.items():
        out["lfw", size] = [lfw.album(size, seed + size + d, wanted) for d in range(draws)]
    for size, draws in GROUP_SIZES.items():
        out["group", size] = [pool.album(size, seed + size + d) for d in range(draws)]
    for size in MIXED_SIZES:
        out["group+lfw", size] = [group_with_portraits(pool, lfw, size, seed + size)]
    return out


def scores(album: Album, **options) -> np.ndarray:
    """One row per query: precision, recall, F1, true pairs, returned pairs, expected pairs."""
    rows = []
    for person, reference in album.references.items():
        found = {m.photo for m in search(reference, album.faces, **options)}
        found.discard(album.ignore.get(person, ""))
        expected = album.positives[person]
        true = len(found & expected)
        precision = true / len(found) if found else 1.0
        recall = true / len(expected)
        f1 = 2 * precision * recall / (precision + recall) if true else 0.0
        rows.append((precision, recall, f1, true, len(found), len(expected)))
    return np.array(rows).reshape(-1, 6)


def summary(rows: np.ndarray) -> dict[str, float]:
    true, returned, expected = rows[:, 3:].sum(axis=0)
    p = true / returned if returned else 1.0
    r = true / expected if expected else 0.0
    mean = rows[:, :3].mean(axis=0)
    return {
        "P": mean[0],
        "R": mean[1],
        "F1": mean[2],
        "pooled P": p,
        "pooled R": r,
        "pooled F1": 2 * p * r / (p + r) if p + r else 0.0,
        "queries": len(rows),
    }


def faces_of(drawn: list[Album]) -> int:
    return round(float(np.mean([len(a.faces) for a in drawn])))


def calibrate(drawn_by_size) -> None:
    """Mean F1 per threshold (the default's blend and rules), and the best threshold."""
    print(
        f"{'album':>12} {'faces':>6} {'queries':>7}  best  " + " ".join(f"{t:5.2f}" for t in GRID)
    )
    for (kind, _), drawn in drawn_by_size.items():
        curve = []
        for threshold in GRID:
            rows = np.concatenate([scores(a, threshold=float(threshold)) for a in drawn])
            curve.append(summary(rows))
        f1 = np.array([c["F1"] for c in curve])
        best = GRID[int(np.argmax(f1))]
        print(
            f"{kind:>12} {faces_of(drawn):6d} {curve[0]['queries']:7d}  {best:4.2f}  "
            + " ".join(f"{v:5.3f}" for v in f1),
            flush=True,
        )
        pooled = np.array([c["pooled F1"] for c in curve])
        recall = np.array([c["R"] for c in curve])
        print(
            f"{'pooled F1':>12} {'':6} {'':7}  {GRID[int(np.argmax(pooled))]:4.2f}  "
            + " ".join(f"{v:5.3f}" for v in pooled)
        )
        print(f"{'mean R':>12} {'':6} {'':7}  {'':4}  " + " ".join(f"{v:5.3f}" for v in recall))


def previous_default(faces: int) -> float:
    """The rule this calibration replaced (0.14 at 10,000 faces, 0.025 per tenfold, 0.10-0.20):
    the peer measured in the same run."""
    return min(0.20, max(0.10, 0.14 + 0.025 * np.log10(faces / 10_000)))


def report(drawn_by_size) -> None:
    print(
        f"{'album':>9} {'faces':>6} {'queries':>7} {'default':>7}  {'P':>5} {'R':>5} {'F1':>5}"
        f"  {'pooled P':>8} {'R':>5} {'F1':>5}   previous default: threshold, R, F1, pooled F1"
    )
    for (kind, _), drawn in drawn_by_size.items():
        faces = faces_of(drawn)
        new = summary(np.concatenate([scores(a) for a in drawn]))
        old = summary(
            np.concatenate([scores(a, threshold=previous_default(len(a.faces))) for a in drawn])
        )
        print(
            f"{kind:>9} {faces:6d} {new['queries']:7d} {cal.default_threshold(faces):7.3f}  "
            f"{new['P']:.3f} {new['R']:.3f} {new['F1']:.3f}  {new['pooled P']:8.3f} "
            f"{new['pooled R']:.3f} {new['pooled F1']:.3f}   {previous_default(faces):.3f} "
            f"{old['R']:.3f} {old['F1']:.3f} {old['pooled F1']:.3f}",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calibrate", action="store_true", help="sweep the calibration half")
    args = parser.parse_args()
    data = require_shared_data()
    half = "calibration" if args.calibrate else "reporting"
    print(f"{half} half; {machine_description()}")
    start = time.perf_counter()
    drawn = albums(data, half)
    (calibrate if args.calibrate else report)(drawn)
    print(f"({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()

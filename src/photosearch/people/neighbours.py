"""The neighbour graph: each face's nearest faces, the only pairs the grouping ever compares.

faiss (faiss-cpu) finds them. Up to `EXACT_LIMIT` faces exactly (IndexFlatL2: blocked matrix
products with a fused top-k, 4.5x faster than torch products + top-k at 20k faces on 2 cores);
beyond, with an inverted-file index (IVF-Flat: faces are bucketed around k-means centroids and
each face is compared with the faces of its `PROBES` nearest buckets), which finds nearly the
same graph in a fraction of the time, in memory linear in the faces. Either way the k found are
re-measured in float64, so the grouping sees exact distances. benchmarks/bench_people.py
measures time, memory and the share of true neighbours found.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["EXACT_LIMIT", "PROBES", "NeighbourGraph", "neighbour_graph"]

EXACT_LIMIT = 200_000  # faces; past this the inverted-file index
PROBES = 24  # buckets searched per face by the inverted-file index


@dataclass(frozen=True)
class NeighbourGraph:
    """For each face i, up to k other faces `indices[i]` at `distances[i]` (ascending); -1 pads
    rows with fewer neighbours within the cut-off."""

    indices: np.ndarray  # (F, k) int64
    distances: np.ndarray  # (F, k) float32, Euclidean; inf where indices == -1
    exact: bool

    def edges(self) -> tuple[np.ndarray, np.ndarray]:
        """(a, b) arrays of every graph edge, each undirected pair once, a < b."""
        count = len(self.indices)
        rows = np.repeat(np.arange(count), self.indices.shape[1])
        cols = self.indices.ravel()
        keep = cols >= 0
        a, b = rows[keep], cols[keep]
        pairs = np.unique(np.minimum(a, b) * count + np.maximum(a, b))
        return pairs // count, pairs % count


def neighbour_graph(
    descriptors: np.ndarray, k: int = 10, max_distance: float = 1.0, *, exact: bool | None = None
) -> NeighbourGraph:
    """The k nearest other faces of every face, at most `max_distance` away.

    exact=None chooses: exact up to EXACT_LIMIT faces, the inverted-file index beyond.
    """
    descriptors = np.ascontiguousarray(descriptors, dtype=np.float32)
    count = len(descriptors)
    k = max(0, min(k, count - 1))
    if exact is None:
        exact = count <= EXACT_LIMIT
    if count == 0 or k == 0:
        empty = np.full((count, max(k, 1)), -1, dtype=np.int64)
        return NeighbourGraph(empty, np.full(empty.shape, np.inf, np.float32), True)
    found = _exact(descriptors, k) if exact else _approximate(descriptors, k)
    indices, squared = _refined(descriptors, found, k)
    distances = np.sqrt(np.maximum(squared, 0.0)).astype(np.float32)
    far = (distances > max_distance) | (indices < 0)
    indices[far] = -1
    distances[far] = np.inf
    return NeighbourGraph(indices, distances, exact)


def _exact(descriptors: np.ndarray, k: int) -> np.ndarray:
    import faiss

    index = faiss.IndexFlatL2(descriptors.shape[1])
    index.add(descriptors)
    return index.search(descriptors, k + 1)[1]


def _approximate(descriptors: np.ndarray, k: int) -> np.ndarray:
    import faiss

    count, size = descriptors.shape
    # About 4 sqrt(F) buckets (faiss's guidance), k-means trained on a fixed sample.
    buckets = int(4 * np.sqrt(count))
    quantizer = faiss.IndexFlatL2(size)
    index = faiss.IndexIVFFlat(quantizer, size, buckets)
    rng = np.random.default_rng(0)
    index.train(descriptors[np.sort(rng.choice(count, min(count, 64 * buckets), replace=False))])
    index.add(descriptors)
    index.nprobe = PROBES
    found = np.empty((count, k + 1), dtype=np.int64)
    for start in range(0, count, 65536):  # bounded result buffers
        found[start : start + 65536] = index.search(descriptors[start : start + 65536], k + 1)[1]
    return found


def _refined(descriptors: np.ndarray, found: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Drop each face itself from its hits (normally the first; not always with duplicates),
    then float64 distances of the k kept, ties broken by row: the same graph on every run."""
    count = len(descriptors)
    own = found == np.arange(count)[:, None]
    own[:, -1] |= ~own.any(axis=1)  # no self hit: drop the farthest instead
    chosen = found[~own].reshape(count, k).astype(np.int64)
    indices = np.empty((count, k), dtype=np.int64)
    squared = np.empty((count, k), dtype=np.float64)
    for start in range(0, count, 8192):
        rows = chosen[start : start + 8192]
        difference = descriptors[np.maximum(rows, 0)].astype(np.float64)
        difference -= descriptors[start : start + len(rows), None, :]
        # faiss pads with -1 when the probed buckets hold too few faces.
        exact = np.where(rows >= 0, np.einsum("ijk,ijk->ij", difference, difference), np.inf)
        order = np.lexsort((rows, exact), axis=1)
        indices[start : start + len(rows)] = np.take_along_axis(rows, order, axis=1)
        squared[start : start + len(rows)] = np.take_along_axis(exact, order, axis=1)
    return indices, squared

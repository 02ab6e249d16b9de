"""The neighbour graph: each face's nearest faces, the only pairs the grouping ever compares.

Up to `EXACT_LIMIT` faces the graph is exact: blocked float32 matrix products (a block of
queries against every face at a time, so memory stays bounded), then float64 distances for the
k chosen. Beyond it, when faiss-cpu is installed, an inverted-file index (IVF-Flat: faces are
bucketed around k-means centroids and each face is compared with the faces of its nearest
buckets) gives nearly the same graph in a fraction of the time and bounded memory; without
faiss the exact graph is used at any size (slow past a few hundred thousand faces, but right).
benchmarks/bench_people.py measures both.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["EXACT_LIMIT", "NeighbourGraph", "neighbour_graph"]

EXACT_LIMIT = 200_000  # faces; past this the approximate graph (faiss) when available
_BLOCK = 2048  # query rows per matrix product: 2048 x F float32 scores at a time


@dataclass(frozen=True)
class NeighbourGraph:
    """For each face i, up to k other faces `indices[i]` at `distances[i]` (ascending); -1 pads
    rows with fewer neighbours within the cut-off."""

    indices: np.ndarray  # (F, k) int64
    distances: np.ndarray  # (F, k) float32, Euclidean; inf where indices == -1
    exact: bool

    def edges(self) -> tuple[np.ndarray, np.ndarray]:
        """(a, b) arrays of every graph edge, each undirected pair once, a < b."""
        rows = np.repeat(np.arange(len(self.indices)), self.indices.shape[1])
        cols = self.indices.ravel()
        keep = cols >= 0
        a, b = rows[keep], cols[keep]
        a, b = np.minimum(a, b), np.maximum(a, b)
        pairs = np.unique(a * len(self.indices) + b)
        return pairs // len(self.indices), pairs % len(self.indices)


def neighbour_graph(
    descriptors: np.ndarray, k: int = 10, max_distance: float = 1.0, *, exact: bool | None = None
) -> NeighbourGraph:
    """The k nearest other faces of every face, at most `max_distance` away.

    exact=None chooses: exact up to EXACT_LIMIT faces (or when faiss is missing).
    """
    descriptors = np.ascontiguousarray(descriptors, dtype=np.float32)
    count = len(descriptors)
    k = max(0, min(k, count - 1))
    if exact is None:
        exact = count <= EXACT_LIMIT or not _have_faiss()
    if count == 0 or k == 0:
        empty = np.full((count, max(k, 1)), -1, dtype=np.int64)
        return NeighbourGraph(empty, np.full(empty.shape, np.inf, np.float32), True)
    if exact:
        indices, squared = _exact(descriptors, k)
    else:
        indices, squared = _approximate(descriptors, k)
    distances = np.sqrt(np.maximum(squared, 0.0)).astype(np.float32)
    far = (distances > max_distance) | (indices < 0)
    indices[far] = -1
    distances[far] = np.inf
    return NeighbourGraph(indices, distances, exact)


def _exact(descriptors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    count = len(descriptors)
    norms = np.einsum("ij,ij->i", descriptors, descriptors)
    indices = np.empty((count, k), dtype=np.int64)
    squared = np.empty((count, k), dtype=np.float64)
    for start in range(0, count, _BLOCK):
        stop = min(count, start + _BLOCK)
        block = descriptors[start:stop]
        # Squared distance up to the query's own norm, which does not change the ranking.
        scores = norms[None, :] - 2.0 * (block @ descriptors.T)
        scores[np.arange(stop - start), np.arange(start, stop)] = np.inf  # not its own neighbour
        chosen = np.argpartition(scores, k - 1, axis=1)[:, :k]
        # float64 distances of the chosen few: exact, and ties broken the same on every run.
        difference = descriptors[chosen].astype(np.float64) - block[:, None, :]
        exact = np.einsum("ijk,ijk->ij", difference, difference)
        order = np.lexsort((chosen, exact), axis=1)
        indices[start:stop] = np.take_along_axis(chosen, order, axis=1)
        squared[start:stop] = np.take_along_axis(exact, order, axis=1)
    return indices, squared


def _have_faiss() -> bool:
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def _approximate(descriptors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    import faiss

    count, size = descriptors.shape
    # About 4 sqrt(F) buckets (faiss's guidance), trained on a sample; 24 buckets probed
    # finds ~99% of the true 10 nearest neighbours on face descriptors (bench_people.py).
    buckets = int(4 * np.sqrt(count))
    quantizer = faiss.IndexFlatL2(size)
    index = faiss.IndexIVFFlat(quantizer, size, buckets)
    rng = np.random.default_rng(0)
    sample = descriptors[rng.choice(count, size=min(count, 64 * buckets), replace=False)]
    index.train(sample)
    index.add(descriptors)
    index.nprobe = 24
    squared, indices = index.search(descriptors, k + 1)
    # Drop each face itself (normally its first hit; not always with duplicates).
    own = indices == np.arange(count)[:, None]
    own[:, -1] |= ~own.any(axis=1)  # no self hit: drop the farthest instead
    keep = ~own
    indices = indices[keep].reshape(count, k).astype(np.int64)
    squared = squared[keep].reshape(count, k).astype(np.float64)
    return indices, squared

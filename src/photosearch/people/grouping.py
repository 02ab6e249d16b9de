"""Grouping faces into people: average linkage over the neighbour graph, one face per photo.

Why average linkage: DBSCAN (Immich's and PhotoPrism's method) is single linkage with a density
rule, so one look-alike pair chains two people together and its radius has to stay small,
splitting people whose photos vary. Average linkage merges two groups only when their faces are
close *on average*, which keeps people apart and lets each grow with all its photos.

The linkage is the mean squared distance between the two groups' faces. It is exact from each
group's face count, descriptor sum and sum of squared norms:
    mean |a - b|^2 = Q_A/n_A + Q_B/n_B - 2 S_A.S_B / (n_A n_B)
so no pairwise matrix is kept: only pairs of groups joined by a neighbour-graph edge are ever
compared (candidates), each exactly. Groups are merged closest first until no pair is under
`threshold` squared (the linkage is reducible, so the order is the classic one).

Two faces of one photo are never the same person: groups sharing a photo never merge.
Seeds (people the user corrected) start as groups and are never merged with each other.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from photosearch.people.neighbours import EXACT_LIMIT, neighbour_graph

__all__ = [
    "DEFAULT_MIN_FACES",
    "DEFAULT_THRESHOLD",
    "GroupStats",
    "crowd_edges",
    "group_faces",
]

# Calibrated on one half of the lfw-devtrain identities (docs/people.md has the figures).
DEFAULT_THRESHOLD = 0.52  # root of the mean squared distance under which groups merge
DEFAULT_MIN_FACES = 3  # smaller groups stay unassigned (as Immich's minimum faces)
NEIGHBOURS = 10  # graph degree: candidates per face
NEIGHBOURS_HUGE = 6  # past neighbours.EXACT_LIMIT faces
# The crowd edge of a face: the 0.5% quantile of its distances beyond 0.5 to a fixed sample of
# the album, i.e. where strangers start around it (the same idea as the search's, own constants).
# The bar of a merge moves by EDGE_WEIGHT times the groups' mean edge minus EDGE_PRIOR (the
# typical edge on LFW): faces in a crowded corner of descriptor space (look-alike strangers
# closer than usual) need to be closer to merge.
EDGE_SAMPLE = 8192
EDGE_FLOOR = 0.5
EDGE_QUANTILE = 0.005
EDGE_PRIOR = 0.59
EDGE_MIN, EDGE_MAX = 0.45, 0.70
EDGE_WEIGHT = 1.0


@dataclass
class GroupStats:
    """Face count, descriptor sum and sum of squared norms of groups: the linkage's inputs."""

    count: np.ndarray  # (G,) float64
    sums: np.ndarray  # (G, 128) float64
    squares: np.ndarray  # (G,) float64

    @classmethod
    def of(cls, descriptors: np.ndarray, groups: Sequence[np.ndarray]) -> GroupStats:
        x = np.asarray(descriptors, dtype=np.float64)
        return cls(
            count=np.array([len(g) for g in groups], dtype=np.float64),
            sums=np.array([x[g].sum(axis=0) for g in groups]).reshape(-1, x.shape[1]),
            squares=np.array([np.einsum("ij,ij->", x[g], x[g]) for g in groups]),
        )

    def linkage_to_faces(self, descriptors: np.ndarray) -> np.ndarray:
        """(faces, groups) mean squared distance from each face to each group's faces."""
        x = np.asarray(descriptors, dtype=np.float64)
        if len(self.count) == 0:
            return np.empty((len(x), 0))
        norms = np.einsum("ij,ij->i", x, x)
        return (
            norms[:, None]
            + (self.squares / self.count)[None, :]
            - 2.0 * (x @ self.sums.T) / self.count[None, :]
        )


def crowd_edges(descriptors: np.ndarray, sample: np.ndarray | None = None) -> np.ndarray:
    """Each face's crowd edge against `sample` (default: an evenly strided EDGE_SAMPLE of the
    faces themselves); faces with no distance beyond the floor get EDGE_PRIOR."""
    # float32 is plenty here: the edges sit near 0.6, float32 Gram errors near 1e-6.
    x = np.asarray(descriptors, dtype=np.float32)
    if sample is None:
        take = np.linspace(0, len(x) - 1, min(len(x), EDGE_SAMPLE)).round().astype(np.int64)
        sample = x[np.unique(take)] if len(x) else x
    sample = np.asarray(sample, dtype=np.float32)
    edges = np.full(len(x), EDGE_PRIOR)
    if len(sample) == 0:
        return edges
    sample_norms = np.einsum("ij,ij->i", sample, sample)
    for start in range(0, len(x), 1024):
        block = x[start : start + 1024]
        squared = np.einsum("ij,ij->i", block, block)[:, None] + sample_norms - 2 * block @ sample.T
        distances = np.sqrt(np.maximum(squared, 0.0))
        distances[distances <= EDGE_FLOOR] = np.inf
        beyond = np.isfinite(distances).sum(axis=1)
        k = (EDGE_QUANTILE * beyond).astype(np.int64)
        top = int(k.max()) + 1  # only the lowest few distances matter: partition, then sort
        ordered = np.sort(np.partition(distances, top - 1, axis=1)[:, :top], axis=1)
        found = ordered[np.arange(len(block)), np.minimum(k, ordered.shape[1] - 1)]
        found = np.where(np.isfinite(found), found, EDGE_PRIOR)
        # Few distances (a small album): lean on the typical edge, as the search does.
        weight = beyond / (beyond + 500.0)
        edges[start : start + len(block)] = np.where(
            beyond > 0, weight * found + (1 - weight) * EDGE_PRIOR, EDGE_PRIOR
        )
    return edges


def group_faces(
    descriptors: np.ndarray,
    photos: Sequence[int] | np.ndarray,
    *,
    threshold: float = DEFAULT_THRESHOLD,
    edges: np.ndarray | None = None,
    edge_weight: float = EDGE_WEIGHT,
    seeds: Sequence[Sequence[int]] = (),
    neighbours: int | None = None,
    exact: bool | None = None,
) -> np.ndarray:
    """A group label (>= 0) for every face; faces of one group are one person.

    photos: an id of each face's photo (faces of one photo never share a group).
    seeds: groups of face rows to start from (corrected people), kept whole and apart.
    Labels are the smallest face row of each group, so the same input gives the same labels.
    """
    x = np.ascontiguousarray(descriptors, dtype=np.float32)
    count = len(x)
    photo = np.asarray(photos, dtype=np.int64)
    parent = np.arange(count)
    if neighbours is None:  # fewer edges for huge albums: memory (LFW F1 equal at k=5 and 10)
        neighbours = NEIGHBOURS if count <= EXACT_LIMIT else NEIGHBOURS_HUGE
    graph = neighbour_graph(x, neighbours, max_distance=max(1.0, 2 * threshold), exact=exact)

    size = np.ones(count)
    # float32 sums (half the memory at a million faces); the linkage itself is float64.
    sums = x.copy()
    squares = np.einsum("ij,ij->i", x, x, dtype=np.float64)
    if edges is None:
        edges = crowd_edges(x)
    edge_sum = np.clip(np.asarray(edges, np.float64), EDGE_MIN, EDGE_MAX) - EDGE_PRIOR
    # Only groups of two or more faces get a member list and a photo set (a million singletons'
    # sets would cost ~300 MB); a lone face is its own member and its photo is photo[face].
    members: dict[int, list[int]] = {}
    photo_sets: dict[int, set[int]] = {}
    pinned = np.zeros(count, dtype=bool)
    for seed in seeds:
        seed = [int(row) for row in seed]
        if not seed:
            continue
        root = seed[0]
        for row in seed[1:]:
            _absorb(root, row, parent, size, edge_sum, sums, squares, members, photo_sets, photo)
        pinned[root] = True

    # Candidate pairs: the graph's edges between groups, as adjacency sets of group roots.
    a, b = graph.edges()
    a, b = parent[a], parent[b]
    keep = a != b
    adjacency: dict[int, set[int]] = {}
    for left, right in zip(a[keep].tolist(), b[keep].tolist(), strict=True):
        adjacency.setdefault(left, set()).add(right)
        adjacency.setdefault(right, set()).add(left)

    # One heap entry per group: its best partner (lowest linkage over its bar). An entry goes
    # stale when either group changes; a stale partner is found again when the entry comes up.
    # Average linkage is reducible (a merged group is never closer to a third than the nearer of
    # its parts), so a group's best partner only changes when it or that partner changes.
    def best(group: int) -> None:
        near = adjacency.get(group)
        if not near:
            return
        others = np.fromiter(near, dtype=np.int64, count=len(near))
        linkage = (
            squares[group] / size[group]
            + squares[others] / size[others]
            - 2.0
            * (sums[others].astype(np.float64) @ sums[group].astype(np.float64))
            / (size[group] * size[others])
        )
        # Where strangers start around these faces moves the bar (module docstring).
        bars = threshold + edge_weight * (edge_sum[group] + edge_sum[others]) / (
            size[group] + size[others]
        )
        ratio = linkage / (bars * bars)
        if pinned[group]:
            ratio[pinned[others]] = np.inf  # corrected people never merge with each other
        pick = int(np.argmin(ratio))
        if ratio[pick] <= 1.0:
            other = int(others[pick])
            heapq.heappush(
                heap, (float(ratio[pick]), group, other, int(version[group]), int(version[other]))
            )

    heap: list[tuple[float, int, int, int, int]] = []
    version = np.zeros(count, dtype=np.int64)
    for group in list(adjacency):
        best(group)
    while heap:
        _, left, right, left_version, right_version = heapq.heappop(heap)
        if version[left] != left_version:
            continue  # `left` changed (or is gone): its fresh entry was pushed then
        if version[right] != right_version:
            best(left)  # the partner changed: look again
            continue
        small, big = sorted(
            (
                photo_sets.get(left) or {int(photo[left])},
                photo_sets.get(right) or {int(photo[right])},
            ),
            key=len,
        )
        if any(p in big for p in small):
            _forget(adjacency, left, right)  # they share a photo: never one person
            best(left)
            continue
        root, other = (left, right) if size[left] >= size[right] else (right, left)
        _absorb(root, other, parent, size, edge_sum, sums, squares, members, photo_sets, photo)
        pinned[root] |= pinned[other]
        near = adjacency.pop(root, set()) | adjacency.pop(other, set())
        near -= {root, other}
        for neighbour in near:
            links = adjacency[neighbour]
            links.discard(other)
            links.add(root)
        adjacency[root] = near
        version[root] += 1
        version[other] = -1
        best(root)

    labels = np.arange(count, dtype=np.int64)
    for group in members.values():
        labels[group] = min(group)
    return labels


def _absorb(root, other, parent, size, edge_sum, sums, squares, members, photo_sets, photo):
    """Group `other` joins group `root`."""
    size[root] += size[other]
    edge_sum[root] += edge_sum[other]
    sums[root] += sums[other]
    squares[root] += squares[other]
    moved = members.pop(other, None) or [other]
    members.setdefault(root, [root]).extend(moved)
    parent[moved] = root
    photos = photo_sets.setdefault(root, {int(photo[root])})
    photos |= photo_sets.pop(other, None) or {int(photo[other])}


def _forget(adjacency: dict[int, set[int]], left: int, right: int) -> None:
    adjacency.get(left, set()).discard(right)
    adjacency.get(right, set()).discard(left)

"""Find every photo of a person: exact search over all album faces, normalised per reference.

A fixed distance threshold (face_recognition's 0.6) drowns a person in look-alikes once the album
holds thousands of strangers: some faces sit in crowded parts of descriptor space and have many
strangers within 0.6, others have none. So each reference is judged against the album itself:

1. Crowd edge. Nearly every album face is a stranger, so the low end of a reference's distances
   to the album shows where strangers start *for that face*: the 0.5% quantile of its distances
   to a fixed sample of the album (distances under 0.5, likely the person's own photos, are left
   out so a person who fills half the album does not pull the edge down).
2. Margin = crowd edge - distance: how much closer than the stranger crowd a face is. A face
   matches when its margin is at least the threshold (the one user-facing knob).
3. Each reference's closest face gets a slightly lower bar (the closest face is much more often
   the person than any other face at the same margin), shared by faces tied with it.
4. Query expansion: confident matches become extra references (each with its own crowd edge),
   with a stricter bar and a leash to the original references against drift.

Everything is exact: one float32 pass over all faces (||a||^2 + ||b||^2 - 2ab with precomputed
norms, chunked so temporaries stay small) picks candidates with a safety margin, and every
decision is then made on float64 distances recomputed for those candidates. No index, no top-N.
"""

from __future__ import annotations

from collections.abc import Collection, Hashable, Sequence
from functools import cached_property

import numpy as np

from photosearch.search import calibration as cal
from photosearch.search.match import Match

__all__ = [
    "DESCRIPTOR_SIZE",
    "FaceId",
    "FaceSet",
    "candidates_within",
    "exact_distances",
    "search",
    "search_arrays",
]

DESCRIPTOR_SIZE = 128
# Rows per chunk of the float32 pass: (chunk x R) temporaries stay in cache.
_CHUNK = 65536
# float32 squared distances are within ~1e-5 of the exact value for descriptor norms < 2; the
# candidate bound is widened by this much so no face near a boundary is lost before the exact
# float64 re-check.
_FLOAT32_SLACK = 1e-3

FaceId = tuple[str, int]


class FaceSet:
    """The album's faces prepared for search: float32 descriptors, their squared norms, the photo
    and box of each face. Build it once per album (it computes norms over all faces) and reuse it.
    face_numbers: each face's number within its photo (as an index stores it); defaults to the row.
    """

    def __init__(
        self,
        descriptors: np.ndarray,
        photos: Sequence[str],
        boxes: np.ndarray | Sequence[Sequence[int]] | None = None,
        face_numbers: Sequence[int] | np.ndarray | None = None,
    ) -> None:
        descriptors = np.ascontiguousarray(descriptors, dtype=np.float32)
        if descriptors.ndim != 2 or descriptors.shape[1] != DESCRIPTOR_SIZE:
            raise ValueError(f"descriptors must be (F, 128), not {descriptors.shape}")
        if len(photos) != len(descriptors):
            raise ValueError(f"{len(photos)} photo keys for {len(descriptors)} faces")
        self.descriptors = descriptors
        self.photos = list(photos)
        if boxes is None:
            boxes = np.zeros((len(descriptors), 4), np.int64)
        self.boxes = np.asarray(boxes, dtype=np.int64).reshape(len(descriptors), 4)
        self.sq_norms = np.einsum("ij,ij->i", descriptors, descriptors)
        if face_numbers is None:
            face_numbers = np.arange(len(descriptors))
        self.face_numbers = np.asarray(face_numbers, dtype=np.int64).reshape(len(descriptors))

    def __len__(self) -> int:
        return len(self.descriptors)

    @cached_property
    def stats_sample(self) -> np.ndarray:
        """float64 copy of an evenly strided sample of the faces (all of them in small albums)."""
        count = len(self)
        if count <= cal.STATS_SAMPLE:
            index = np.arange(count)
        else:
            index = np.linspace(0, count - 1, cal.STATS_SAMPLE).round().astype(np.int64)
        return self.descriptors[index].astype(np.float64)

    @cached_property
    def sample_sq_norms(self) -> np.ndarray:
        return np.einsum("ij,ij->i", self.stats_sample, self.stats_sample)

    def crowd_edges(self, references: np.ndarray) -> np.ndarray:
        """Crowd edge of each reference: where strangers start (see module docstring)."""
        references = np.asarray(references, np.float64).reshape(-1, DESCRIPTOR_SIZE)
        sample = self.stats_sample
        edges = np.full(len(references), cal.PRIOR_EDGE)
        if len(sample) == 0:
            return edges
        # float64 Gram form (error ~1e-15, far below any decision scale) keeps this a single
        # matrix product even for the ten expansion helpers.
        squared = (
            np.einsum("ij,ij->i", references, references)[:, None]
            + self.sample_sq_norms[None, :]
            - 2.0 * (references @ sample.T)
        )
        distances = np.sqrt(np.maximum(squared, 0.0))
        for row, found in enumerate(distances):
            beyond = found[found > cal.CROWD_FLOOR]
            if len(beyond) == 0:
                continue
            k = int(cal.CROWD_QUANTILE * len(beyond))
            estimate = float(np.partition(beyond, k)[k])
            weight = len(beyond) / (len(beyond) + cal.PRIOR_WEIGHT)
            edges[row] = weight * estimate + (1 - weight) * cal.PRIOR_EDGE
        return np.clip(edges, cal.EDGE_MIN, cal.EDGE_MAX)


def exact_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(len(a), len(b)) Euclidean distances in float64 via differences (no cancellation)."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    out = np.empty((len(a), len(b)))
    for i, row in enumerate(a):
        diff = b - row
        out[i] = np.sqrt(np.einsum("ij,ij->i", diff, diff))
    return out


def candidates_within(faces: FaceSet, references: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    """Indices of faces whose distance to some reference r may be < bounds[r] (a superset: the
    float32 pass keeps a safety slack; callers re-check exactly)."""
    refs32 = np.asarray(references, np.float32).reshape(-1, DESCRIPTOR_SIZE)
    ref_sq = np.einsum("ij,ij->i", refs32, refs32)
    # ||x - r||^2 < b^2  <=>  ||x||^2 - 2 x.r - (b^2 - ||r||^2) < 0
    limit = ((np.asarray(bounds, np.float64) + _FLOAT32_SLACK) ** 2 - ref_sq).astype(np.float32)
    hit = np.zeros(len(faces), bool)
    if len(refs32) == 1:
        # One reference: a matrix-vector product into a reused buffer (memory-bound, one read).
        minus_two_ref = -2.0 * refs32[0]
        buffer = np.empty(_CHUNK, np.float32)
        for start in range(0, len(faces), _CHUNK):
            stop = min(start + _CHUNK, len(faces))
            partial = np.matmul(
                faces.descriptors[start:stop], minus_two_ref, out=buffer[: stop - start]
            )
            partial += faces.sq_norms[start:stop]
            hit[start:stop] = partial < limit[0]
    else:
        # Several: one (R x 128) @ (128 x n) product per chunk, still a single read of the album.
        minus_two_refs = -2.0 * refs32
        for start in range(0, len(faces), _CHUNK):
            stop = min(start + _CHUNK, len(faces))
            partial = minus_two_refs @ faces.descriptors[start:stop].T
            partial -= limit[:, None]
            closest = partial.min(axis=0)
            closest += faces.sq_norms[start:stop]
            hit[start:stop] = closest < 0
    return np.flatnonzero(hit)


def _excluded_mask(faces: FaceSet, index: np.ndarray, exclude: Collection[Hashable]) -> np.ndarray:
    if not exclude:
        return np.zeros(len(index), bool)
    return np.array(
        [
            faces.photos[i] in exclude or (faces.photos[i], int(faces.face_numbers[i])) in exclude
            for i in index
        ],
        dtype=bool,
    )


def search(
    references: np.ndarray,
    faces: FaceSet,
    *,
    threshold: float | None = None,
    exclude: Collection[Hashable] = (),
    expand: bool = True,
) -> list[Match]:
    """Every photo with a face of the person shown by `references`, best first.

    references: (R, 128) descriptors of the person (one or more reference faces); a face counts
        if it matches any of them (each judged against its own crowd edge).
    threshold: minimum margin (crowd edge - distance); higher is stricter. None: the calibrated
        default for an album of this size (calibration.default_threshold: 0.12 at 10,000 faces).
    exclude: photo keys and/or (photo key, face number) pairs marked "not me": never returned and
        never used for expansion.
    expand: use confident matches as extra references (better recall for people with many photos).
    Returns one Match per photo (its best face), sorted by score, highest first.
    """
    threshold = cal.default_threshold(len(faces)) if threshold is None else float(threshold)
    refs = np.asarray(references, np.float64).reshape(-1, DESCRIPTOR_SIZE)
    if len(refs) == 0 or len(faces) == 0:
        return []
    edges = faces.crowd_edges(refs)
    # Loosest margin any rule accepts for the original references; nothing beyond can match.
    loosest = threshold - max(cal.BEST_ALLOWANCE, cal.EXPANSION_LEASH if expand else 0.0)
    pool = candidates_within(faces, refs, edges - loosest)
    pool = pool[~_excluded_mask(faces, pool, exclude)]
    if len(pool) == 0:
        return []
    distances = exact_distances(refs, faces.descriptors[pool])  # (R, P)
    margins_all = edges[:, None] - distances
    best_ref = np.argmax(margins_all, axis=0)
    margin = margins_all[best_ref, np.arange(len(pool))]
    distance = distances.min(axis=0)
    is_reference = distance < cal.SAME_FACE_DISTANCE

    accepted = margin >= threshold
    reason = np.where(is_reference, "reference", "match").astype(object)
    # Each reference's closest face (other than a reference itself) gets the allowance, with its
    # near-ties; so a face found by one reference alone is still found when more are given.
    if (~is_reference).any():
        closest = np.zeros(len(pool), bool)
        for ref_margin in margins_all:
            best = ref_margin[~is_reference].max()
            closest |= (ref_margin >= threshold - cal.BEST_ALLOWANCE) & (
                ref_margin >= best - cal.BEST_TIE
            )
        closest &= ~is_reference & ~accepted
        accepted |= closest
        reason[closest] = "closest"

    if expand:
        confident = np.flatnonzero((margin >= threshold) & ~is_reference)
        if len(confident):
            confident = confident[np.argsort(-margin[confident], kind="stable")]
            confident = confident[: cal.EXPANSION_REFERENCES]
            helpers = faces.descriptors[pool[confident]].astype(np.float64)
            helper_edges = faces.crowd_edges(helpers)
            leashed = np.flatnonzero(~accepted & (margin >= threshold - cal.EXPANSION_LEASH))
            if len(leashed):
                helper_dist = exact_distances(helpers, faces.descriptors[pool[leashed]])
                helper_margin = (helper_edges[:, None] - helper_dist).max(axis=0)
                found = helper_margin >= threshold + cal.EXPANSION_STRICTER
                accepted[leashed[found]] = True
                reason[leashed[found]] = "expansion"

    return _best_per_photo(faces, pool, accepted, distance, margin, reason)


def _best_per_photo(
    faces: FaceSet,
    pool: np.ndarray,
    accepted: np.ndarray,
    distance: np.ndarray,
    margin: np.ndarray,
    reason: np.ndarray,
) -> list[Match]:
    chosen = np.flatnonzero(accepted)
    # Highest margin first; ties broken by face index so results are deterministic.
    chosen = chosen[np.lexsort((pool[chosen], -margin[chosen]))]
    seen: set[str] = set()
    matches: list[Match] = []
    for j in chosen:
        face = int(pool[j])
        photo = faces.photos[face]
        if photo in seen:
            continue
        seen.add(photo)
        left, top, right, bottom = (int(v) for v in faces.boxes[face])
        matches.append(
            Match(
                photo=photo,
                distance=float(distance[j]),
                box=(left, top, right, bottom),
                face_index=int(faces.face_numbers[face]),
                score=float(margin[j]),
                reason=str(reason[j]),
                row=face,
            )
        )
    return matches


def search_arrays(
    references: np.ndarray,
    descriptors: np.ndarray,
    face_photos: Sequence[str],
    boxes: np.ndarray | Sequence[Sequence[int]] | None = None,
    **options,
) -> list[Match]:
    """One-off search over raw arrays (prepare a FaceSet instead when searching repeatedly)."""
    return search(references, FaceSet(descriptors, face_photos, boxes), **options)

"""Strays: faces the linkage left in no person join a large person whose centre is near.

Why a second pass: average linkage compares a face with *every* face of a person, so the
person's own spread counts against it; a big person's centre is known well, and a face near it
is most likely theirs even when its mean distance to their faces is over the bar. On the
calibration half of lfw-devtrain, most faces of grouped people left unassigned by the linkage
were within 0.44 of their person's centre, while faces of people with one or two photos rarely
were, and when they were, two people's centres were about as near.

So a stray (a face of a group smaller than the minimum) joins a person when:
- the person has at least `STRAY_MIN_PERSON` faces (a centre worth trusting);
- the face is within `STRAY_DISTANCE` of the person's centre (mean descriptor);
- every other person it may join is at least `STRAY_MARGIN` farther (no look-alike contest);
- the person has no face of its photo yet; of two strays of one photo, the nearer one joins.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "STRAY_DISTANCE",
    "STRAY_MARGIN",
    "STRAY_MIN_PERSON",
    "attach_strays",
    "nearest_allowed",
    "stray_choices",
]

# Chosen on the calibration half of lfw-devtrain (docs/people.md has the figures).
STRAY_DISTANCE = 0.44
STRAY_MARGIN = 0.04
STRAY_MIN_PERSON = 10
_CANDIDATES = 8  # nearest centres looked at per stray (some may hold a face of its photo)
_BLOCK = 8192  # strays measured at once: 64 MB of float64 gaps


def stray_choices(
    first: np.ndarray, second: np.ndarray, distance: np.ndarray, photos: np.ndarray
) -> np.ndarray:
    """The person (column) each stray joins, or -1: under the distance, ahead by the margin,
    and of two strays of one photo choosing the same person only the nearer one.

    first, second: each stray's nearest allowed person (-1: none) and the distance to the
    second one (inf: none); distance: to the first; photos: each stray's photo id.
    """
    near = np.where(first >= 0, distance, np.inf)
    ahead = np.where(near < STRAY_DISTANCE, second - np.minimum(near, STRAY_DISTANCE), 0.0)
    chosen = np.where((near < STRAY_DISTANCE) & (ahead >= STRAY_MARGIN), first, -1)
    taken: dict[tuple[int, int], int] = {}
    for stray in np.flatnonzero(chosen >= 0)[np.argsort(distance[chosen >= 0], kind="stable")]:
        slot = (int(photos[stray]), int(chosen[stray]))
        if slot in taken:
            chosen[stray] = -1  # a nearer face of this photo joins that person
        else:
            taken[slot] = int(stray)
    return chosen


def nearest_allowed(
    strays: np.ndarray,
    stray_photos: np.ndarray,
    centres: np.ndarray,
    person_photos: list[set[int]],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each stray descriptor: its nearest centre among the people with no face of its
    photo, the (float64) distance to it and to the second such centre (inf: none).

    faiss finds the `_CANDIDATES` nearest centres; the distances are re-measured in float64.
    """
    import faiss

    count = len(strays)
    first = np.full(count, -1, dtype=np.int64)
    distance = np.full(count, np.inf)
    second = np.full(count, np.inf)
    if count == 0 or len(centres) == 0:
        return first, second, distance
    centres = np.ascontiguousarray(centres, dtype=np.float32)
    index = faiss.IndexFlatL2(centres.shape[1])
    index.add(centres)
    k = min(_CANDIDATES, len(centres))
    x = np.ascontiguousarray(strays, dtype=np.float32)
    for start in range(0, count, _BLOCK):  # bounded buffers (gaps: _BLOCK x k x 128 float64)
        block = slice(start, start + _BLOCK)
        found = index.search(x[block], k)[1]
        gaps = centres[np.maximum(found, 0)].astype(np.float64) - x[block, None, :]
        exact = np.sqrt(np.einsum("ijk,ijk->ij", gaps, gaps))
        for offset, (people, measured) in enumerate(zip(found, exact, strict=True)):
            stray = start + offset
            allowed = [
                (d, p)
                for d, p in zip(measured.tolist(), people.tolist(), strict=True)
                if p >= 0 and int(stray_photos[stray]) not in person_photos[p]
            ]
            allowed.sort()
            if allowed:
                distance[stray], first[stray] = allowed[0]
            if len(allowed) > 1:
                second[stray] = allowed[1][0]
            elif k < len(centres):  # the second is beyond the k seen: at least the farthest
                second[stray] = float(measured.max())
    return first, second, distance


def attach_strays(
    x: np.ndarray, photo: np.ndarray, labels: np.ndarray, min_faces: int
) -> np.ndarray:
    """New labels (the smallest face row of each group) after the faces of groups under
    `min_faces` joined a large group whose centre is near; `photo`: each face's photo id."""
    _, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    size = counts[inverse]
    strays = np.flatnonzero(size < min_faces)
    big = np.flatnonzero(size >= max(STRAY_MIN_PERSON, min_faces))
    if len(strays) == 0 or len(big) == 0:
        return labels
    people, which = np.unique(labels[big], return_inverse=True)
    # One dimension at a time (float64 sums, no float64 copy of every face: 1 GB at 1M faces).
    counts = np.bincount(which, minlength=len(people))
    centres = np.stack(
        [np.bincount(which, weights=x[big, d], minlength=len(people)) for d in range(x.shape[1])],
        axis=1,
    )
    centres /= counts[:, None]
    person_photos: list[set[int]] = [set() for _ in people]
    for person, face_photo in zip(which.tolist(), photo[big].tolist(), strict=True):
        person_photos[person].add(face_photo)
    first, second, distance = nearest_allowed(x[strays], photo[strays], centres, person_photos)
    chosen = stray_choices(first, second, distance, photo[strays])
    joined = chosen >= 0
    labels = labels.copy()
    labels[strays[joined]] = people[chosen[joined]]
    # Labels stay the smallest face row of each group.
    _, first_rows, inverse = np.unique(labels, return_index=True, return_inverse=True)
    return first_rows[inverse].astype(np.int64)

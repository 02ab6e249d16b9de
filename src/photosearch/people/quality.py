"""How good a grouping is: BCubed precision, recall and F1 over labelled faces.

BCubed (Bagga & Baldwin; Amigó et al. 2009) scores each labelled face: precision is the share
of its group that has its label, recall the share of its label's faces that are in its group;
both are averaged over faces. An unassigned face counts as a group of its own (precision 1,
recall 1/n of its person's n faces), so leaving faces out costs recall, never precision.

LFW-layout albums (one folder per person, each photo centred on that person) are labelled by
`centre_labels`: each photo's labelled face is the one nearest its centre; the other faces of
the photo (bystanders) are grouped like every face but not scored.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import PurePosixPath

import numpy as np

__all__ = ["BCubed", "bcubed", "centre_labels", "folder_name"]


@dataclass(frozen=True)
class BCubed:
    precision: float
    recall: float
    f1: float
    faces: int  # labelled faces scored

    def to_json(self) -> dict:
        return {
            key: round(value, 4) if isinstance(value, float) else value
            for key, value in asdict(self).items()
        }


def bcubed(labels: Sequence, groups: Sequence[int | None]) -> BCubed:
    """BCubed over faces with a label (None labels are skipped); a None group is unassigned."""
    pairs = [
        (label, group) for label, group in zip(labels, groups, strict=True) if label is not None
    ]
    if not pairs:
        return BCubed(0.0, 0.0, 0.0, 0)
    singles = iter(range(-1, -len(pairs) - 1, -1))  # each unassigned face: a group of its own
    pairs = [
        (label, group if group is not None and group >= 0 else ("u", next(singles)))
        for label, group in pairs
    ]
    per_label = Counter(label for label, _ in pairs)
    per_group = Counter(group for _, group in pairs)
    both = Counter(pairs)
    precision = sum(both[pair] / per_group[pair[1]] for pair in pairs) / len(pairs)
    recall = sum(both[pair] / per_label[pair[0]] for pair in pairs) / len(pairs)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return BCubed(precision, recall, f1, len(pairs))


def folder_name(photo: str) -> str | None:
    """An LFW-layout album's label of a photo: its folder's name."""
    return PurePosixPath(photo).parent.name or None


def centre_labels(
    photos: Sequence[str],
    boxes: np.ndarray,
    sizes: dict[str, tuple[int, int]],
    label_of: Callable[[str], str | None] = folder_name,
) -> list[str | None]:
    """The person of each face of a labelled album: the photo's label (by default its folder
    name, as LFW lays albums out) for the face nearest the photo's centre, None for the others
    (bystanders) and for photos without a label.

    photos: each face's album key; boxes: (F, 4) left, top, right, bottom; sizes: photo ->
    (width, height).
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    best: dict[str, tuple[float, int]] = {}
    for row, photo in enumerate(photos):
        width, height = sizes.get(photo, (0, 0))
        centre_x = (boxes[row, 0] + boxes[row, 2]) / 2
        centre_y = (boxes[row, 1] + boxes[row, 3]) / 2
        distance = (centre_x - width / 2) ** 2 + (centre_y - height / 2) ** 2
        if photo not in best or distance < best[photo][0]:
            best[photo] = (distance, row)
    labels: list[str | None] = [None] * len(photos)
    for photo, (_, row) in best.items():
        labels[row] = label_of(photo)
    return labels

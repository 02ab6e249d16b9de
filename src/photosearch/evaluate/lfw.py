"""LFW face verification: the standard 10-fold protocol over an LFW-format pairs file.

A pairs file starts with a header line ("1100" for View 1, "10 300" for View 2: folds, pairs per
fold per class) followed by matched pairs ``name n1 n2`` and mismatched pairs
``name1 n1 name2 n2``. Each image's descriptor is that of the face nearest the image centre (LFW
images are centred on the labelled person; other faces are bystanders). A pair with an image in
which no face was found counts as predicted "different person".
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "DEFAULT_THRESHOLD",
    "Pair",
    "VerificationReport",
    "best_threshold",
    "central_descriptor",
    "evaluate_pairs",
    "fold_ids",
    "lfw_image_name",
    "read_pairs",
    "verification_report",
]

DEFAULT_THRESHOLD = 0.6  # dlib's trained same-person distance


@dataclass(frozen=True)
class Pair:
    first: str  # image path relative to the images folder, e.g. "Name/Name_0001.jpg"
    second: str
    same: bool


@dataclass(frozen=True)
class VerificationReport:
    pairs: int
    accuracy_10fold: float
    std_10fold: float
    accuracy_default: float
    threshold_default: float
    threshold_10fold_mean: float
    no_face: int  # images in which no face was found

    def to_json(self) -> dict:
        return asdict(self)


def lfw_image_name(name: str, number: str) -> str:
    return f"{name}/{name}_{int(number):04d}.jpg"


def read_pairs(path: str | Path) -> list[Pair]:
    """Parse an LFW pairs file (View 1 or View 2 layout)."""
    lines = [line.split() for line in Path(path).read_text().splitlines() if line.strip()]
    pairs: list[Pair] = []
    for number, fields in enumerate(lines[1:], start=2):
        if len(fields) == 3:
            name, first, second = fields
            pairs.append(Pair(lfw_image_name(name, first), lfw_image_name(name, second), True))
        elif len(fields) == 4:
            pairs.append(
                Pair(
                    lfw_image_name(fields[0], fields[1]),
                    lfw_image_name(fields[2], fields[3]),
                    False,
                )
            )
        else:
            raise ValueError(f"{path}:{number}: not an LFW pair line: {' '.join(fields)!r}")
    if not pairs:
        raise ValueError(f"{path}: no pairs found")
    return pairs


def fold_ids(pairs: list[Pair], folds: int = 10) -> np.ndarray:
    """Fold of each pair: matched and mismatched pairs are each cut into `folds` contiguous runs,
    as View 2 lays its folds out, so every fold holds both classes in equal measure."""
    ids = np.empty(len(pairs), dtype=np.int64)
    for same in (True, False):
        members = [i for i, pair in enumerate(pairs) if pair.same == same]
        for rank, index in enumerate(members):
            ids[index] = rank * folds // len(members)
    return ids


def best_threshold(distances: np.ndarray, same: np.ndarray) -> float:
    """The distance threshold with the highest accuracy (midpoint between neighbouring values)."""
    order = np.argsort(distances, kind="stable")
    sorted_distances = distances[order]
    sorted_same = same[order]
    # Threshold just above position k: pairs 0..k predicted same.
    correct_same = np.concatenate([[0], np.cumsum(sorted_same)])
    correct_diff = (~sorted_same).sum() - np.concatenate([[0], np.cumsum(~sorted_same)])
    accuracy = correct_same + correct_diff
    finite = np.isfinite(np.concatenate([[0.0], sorted_distances]))
    accuracy = np.where(finite, accuracy, -1)
    k = int(np.argmax(accuracy))
    if k == 0:
        return float(sorted_distances[0]) - 1e-6
    if k == len(sorted_distances) or not np.isfinite(sorted_distances[k]):
        return float(sorted_distances[k - 1]) + 1e-6
    return float((sorted_distances[k - 1] + sorted_distances[k]) / 2)


def verification_report(
    distances: np.ndarray,
    same: np.ndarray,
    folds: np.ndarray,
    no_face: int,
    threshold_default: float = DEFAULT_THRESHOLD,
) -> VerificationReport:
    """10-fold accuracy (threshold chosen on the other 9 folds) and accuracy at a fixed threshold.

    distances: one per pair, +inf where a face is missing (always predicted "different").
    """
    accuracies, thresholds = [], []
    for fold in np.unique(folds):
        train, test = folds != fold, folds == fold
        threshold = best_threshold(distances[train], same[train])
        thresholds.append(threshold)
        accuracies.append(float(np.mean((distances[test] < threshold) == same[test])))
    return VerificationReport(
        pairs=len(distances),
        accuracy_10fold=float(np.mean(accuracies)),
        std_10fold=float(np.std(accuracies)),
        accuracy_default=float(np.mean((distances < threshold_default) == same)),
        threshold_default=threshold_default,
        threshold_10fold_mean=float(np.mean(thresholds)),
        no_face=no_face,
    )


def central_descriptor(faces, image_size: tuple[int, int]) -> np.ndarray | None:
    """Descriptor of the face whose box centre is nearest the image centre (None: no face)."""
    if not faces:
        return None
    width, height = image_size
    centre = np.array([(width - 1) / 2, (height - 1) / 2])

    def offset(face) -> float:
        left, top, right, bottom = face.box
        return float(np.hypot(*(np.array([(left + right) / 2, (top + bottom) / 2]) - centre)))

    return min(faces, key=offset).descriptor


def evaluate_pairs(
    pairs: list[Pair],
    describe: Callable[[list[str]], dict[str, np.ndarray | None]],
    threshold_default: float = DEFAULT_THRESHOLD,
) -> VerificationReport:
    """Run the protocol; `describe` maps image names to a descriptor (None when no face)."""
    names = sorted({name for pair in pairs for name in (pair.first, pair.second)})
    descriptors = describe(names)
    distances = np.array(
        [
            np.inf
            if descriptors[p.first] is None or descriptors[p.second] is None
            else float(np.linalg.norm(descriptors[p.first] - descriptors[p.second]))
            for p in pairs
        ]
    )
    same = np.array([p.same for p in pairs])
    no_face = sum(descriptors[name] is None for name in names)
    return verification_report(distances, same, fold_ids(pairs), no_face, threshold_default)

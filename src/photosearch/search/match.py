"""A match: one photo that shows the person, represented by its best face.

The one result type of every search: the adaptive search, the fixed-distance search, the
SageMaker endpoint's answers and the evaluation all return it, so the CLI, the app and the
endpoint show the same fields.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["Match"]


@dataclass(frozen=True)
class Match:
    """One photo that shows the person: its best face.

    score says how sure the match is, higher is surer: in the adaptive search the margin by
    which the face is closer than the album's stranger crowd; with a fixed distance threshold
    T, ``1 - distance / T`` in [0, 1].
    reason: why it matched: "reference" (a reference face itself), "match", "closest" or
    "expansion" (adaptive search), "threshold" (fixed distance).
    row: the face's row in the searched FaceSet; -1 when the match came from elsewhere (an
    endpoint's answer).
    """

    photo: str  # album key
    distance: float  # Euclidean distance to the closest reference (lower is more alike)
    box: tuple[int, int, int, int]  # the matched face, original pixels, inclusive
    face_index: int  # face number within the photo (as stored in the index)
    score: float
    reason: str = "match"
    row: int = -1

    def to_json(self) -> dict[str, Any]:
        return {
            "photo": self.photo,
            "distance": round(self.distance, 6),
            "box": list(self.box),
            "face_index": self.face_index,
            "score": round(self.score, 6),
        }

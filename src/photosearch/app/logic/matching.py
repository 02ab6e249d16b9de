"""The search call: `find_matches`, the one function the app searches with, and its settings.

`find_matches` is photosearch.search.query's, re-exported here so the session searches through
this one place. Distances are Euclidean between 128-D descriptors; dlib's models call two faces
the same person below 0.6 (99.38% on LFW pairs).
"""

from __future__ import annotations

from photosearch.search.query import DEFAULT_THRESHOLD, SearchableIndex, find_matches

__all__ = [
    "DEFAULT_THRESHOLD",
    "MATCH_AUTOMATIC",
    "MATCH_DISTANCE",
    "MATCH_MODES",
    "STRICTNESS_MAX",
    "STRICTNESS_MIN",
    "STRICTNESS_STEP",
    "THRESHOLD_MAX",
    "THRESHOLD_MIN",
    "THRESHOLD_STEP",
    "default_strictness",
    "find_matches",
    "strictness_words",
    "threshold_words",
]


THRESHOLD_MIN = 0.30
THRESHOLD_MAX = 0.80
THRESHOLD_STEP = 0.01

# The two ways to match (query.find_matches). Automatic is the adaptive search the CLI uses by
# default: each reference is judged against the album's own strangers, which holds up as the
# album grows (LFW: F1 0.876 against 0.133 for a fixed distance of 0.6). Its slider is the
# strictness margin, higher is stricter; its default depends on the album's size.
MATCH_AUTOMATIC = "Automatic (recommended)"
MATCH_DISTANCE = "Fixed face distance"
MATCH_MODES = (MATCH_AUTOMATIC, MATCH_DISTANCE)
STRICTNESS_MIN = 0.00
STRICTNESS_MAX = 0.30
STRICTNESS_STEP = 0.01


def default_strictness(index: SearchableIndex | None) -> float:
    """The calibrated margin for this album's size, rounded to the slider's step."""
    from photosearch.search.calibration import default_threshold

    faces = len(index.descriptors) if index is not None else 0
    return round(default_threshold(faces), 2)


def strictness_words(strictness: float, default: float) -> str:
    """What the automatic mode's strictness means for the results, in plain words."""
    if strictness > default + 0.03:
        return (
            "Stricter than usual: only photos where the face clearly stands out from the "
            "album's other people; some photos of them may be missed."
        )
    if strictness < default - 0.03:
        return (
            "Looser than usual: more of their photos are found, but look-alikes and "
            "strangers start to appear."
        )
    return (
        "The usual setting: each face is compared with the album's other people, and a "
        "photo matches when this face is clearly closer to yours than theirs are."
    )


def threshold_words(threshold: float) -> str:
    """What the threshold means for the results, in plain words."""
    if threshold < DEFAULT_THRESHOLD - 0.04:
        return (
            "Stricter than usual: fewer photos, nearly all of them really this person, "
            "but some photos of them may be missed."
        )
    if threshold > DEFAULT_THRESHOLD + 0.04:
        return (
            "Looser than usual: more of their photos are found, but look-alikes and "
            "strangers start to appear."
        )
    return "The usual setting: a good balance between finding every photo and avoiding others."

"""Calibrated constants of the face search (see docs/search.md for how each was measured).

All distances are Euclidean distances between dlib's 128-D face descriptors (mirror-averaged, as
the engine computes them by default). The values were fitted on the calibration half of the LFW
DevTrain identities and checked on the held-out half; the scripts and figures are summarised in
docs/search.md.
"""

from __future__ import annotations

import math

__all__ = [
    "BEST_ALLOWANCE",
    "BEST_TIE",
    "CROWD_FLOOR",
    "CROWD_QUANTILE",
    "DEFAULT_THRESHOLD",
    "DEFAULT_THRESHOLD_FACES",
    "DEFAULT_THRESHOLD_RANGE",
    "EXPANSION_LEASH",
    "EXPANSION_REFERENCES",
    "EXPANSION_STRICTER",
    "PRIOR_EDGE",
    "PRIOR_WEIGHT",
    "SAME_FACE_DISTANCE",
    "STATS_SAMPLE",
    "THRESHOLD_PER_DECADE",
    "default_threshold",
]

# --- The stranger crowd -------------------------------------------------------------------------
# For each reference face we look at its distances to (a sample of) the album: nearly all album
# faces are strangers, so the low end of that distribution tells where strangers start for this
# particular face (some faces sit in a crowded part of descriptor space, others in an empty one).
# The "crowd edge" is the 0.5% quantile of those distances, counting only distances beyond 0.5 so
# that the person's own photos (typically 0.3-0.5 away) do not drag the edge down when they make
# up a large share of the album.
CROWD_QUANTILE = 0.005
CROWD_FLOOR = 0.5
# Stats come from a fixed, evenly strided sample of the album, which keeps the cost independent
# of album size; 8192 faces put the 0.5% quantile at the ~40th nearest face.
STATS_SAMPLE = 8192
# Small albums give a noisy quantile: it is blended with the typical edge (the mean over the
# LFW DevTrain album, 0.590; 90% of faces lie in 0.534-0.641), weighing the album's own estimate
# by n / (n + PRIOR_WEIGHT) where n is the number of sampled distances beyond CROWD_FLOOR.
PRIOR_EDGE = 0.590
PRIOR_WEIGHT = 500
# Never let one odd face move the edge far from plausible values.
EDGE_MIN, EDGE_MAX = 0.45, 0.70

# --- Decision rules (all in "margin" units: crowd edge minus distance) ---------------------------
# A face matches when it is at least `threshold` closer to the reference than the crowd edge.
# The default depends on the album's size: the more strangers an album holds, the more of them
# reach any given margin. It was chosen for mean F1 on the calibration people, over albums of
# 200-12,000 faces of two kinds weighed equally (benchmarks/bench_search_sizes.py --calibrate;
# docs/search.md has the table): LFW albums of whole identities (the best threshold rose from
# 0.08 at 200 faces to 0.13 at 10,610) and group-photo albums, where each person is in dozens of
# photos, some with 20-40 px faces (best 0.05 from 200 to 2,250 faces, 0.09 with 10,000 LFW
# portraits added). The compromise is 0.12 at 10,000 faces, 0.04 per tenfold, never below 0.06:
# small albums get the lower, recall-keeping end (where the F1 curves are flat), and above
# 12,000 faces the rule is an extrapolation (lfw-devtrain has no more faces).
DEFAULT_THRESHOLD = 0.12
DEFAULT_THRESHOLD_FACES = 10_000
THRESHOLD_PER_DECADE = 0.04
DEFAULT_THRESHOLD_RANGE = (0.06, 0.20)
# Each reference's closest face (other than a reference itself) gets a looser bar: the closest
# face is far more often the person than a random face at the same margin is. Faces whose margin
# is within BEST_TIE of that closest face share the allowance.
BEST_ALLOWANCE = 0.08
BEST_TIE = 0.02
# Query expansion: up to EXPANSION_REFERENCES confident matches (margin >= threshold) act as extra
# references; a face they find needs a stricter margin (threshold + EXPANSION_STRICTER) to that
# match and must still be within threshold - EXPANSION_LEASH of the original reference, so the
# search cannot drift to a look-alike of a look-alike.
EXPANSION_REFERENCES = 10
EXPANSION_STRICTER = 0.02
EXPANSION_LEASH = 0.14
# A face this close to a reference is that reference (the photo it was taken from, or a copy).
SAME_FACE_DISTANCE = 1e-3


def default_threshold(face_count: int) -> float:
    """The calibrated default margin for an album of `face_count` faces."""
    shift = THRESHOLD_PER_DECADE * math.log10(max(face_count, 1) / DEFAULT_THRESHOLD_FACES)
    low, high = DEFAULT_THRESHOLD_RANGE
    return min(high, max(low, DEFAULT_THRESHOLD + shift))

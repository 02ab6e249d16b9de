"""The default detector: MTCNN proposals, each verified by dlib's MMOD net at the face's scale.

MMOD alone finds faces from its 80 px window up, so finding small faces means enlarging the
whole photo, and its cost grows with pixels. Here MTCNN (proposals.py) proposes candidates at
a cost that does not grow with the smallest face, then every candidate is cut out with a margin
and resampled so that the face is about `FACE_PX` pixels, and MMOD runs on that crop alone
(all crops of a photo share one batch). A face counts only where MMOD finds one in the crop,
near the candidate, and MMOD's box is the one kept: boxes stay in dlib's convention, so the
shape predictor, the alignment and the descriptor see what they were trained on. Work grows
with the number of faces, not with pixels; a false MTCNN candidate (a dog, a texture) must
also fool MMOD to count.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image

from photosearch.faces.detector import FaceDetector
from photosearch.faces.proposals import FaceProposer, nms

__all__ = [
    "CROP_PX",
    "FACE_PX",
    "MIN_FACE_FRACTION",
    "MIN_FACE_PX",
    "SMALL_SIDE",
    "CascadeDetector",
    "smallest_face",
]

# The smallest face looked for: MIN_FACE_FRACTION of the working image's longer side (80 px in
# a 4032 px photo, 40 px at the 2000 px working size), and MIN_FACE_PX in photos up to
# SMALL_SIDE px (crowd photos of the web are often 500-800 px with 20-30 px faces). Measured on
# 16 synthetic + 32 real group photos: 1.5% of the longer side found one more real face than 2%
# at 0.69x the speed. On the 32 real group photos (118 faces) + 9 no-face + 20 LFW images,
# MIN_FACE_PX 10, 12 and 14 all found 116 faces, 16 and 20 found 115 (a 28 px face of a 500 px
# PASCAL crowd photo, which O-Net then scores under its threshold, even at 0.4); 14 took 0.89x
# the time of 10 on these photos, 20 0.71x (the P-Net pyramid starts at 12/MIN_FACE_PX). But
# 14 also changes the boxes of LFW-sized (250 px) reference photos (other candidates, so other
# crop scales for MMOD), and the 24-canvas group benchmark's best-threshold search F1 fell from
# 0.923 to 0.899 with the references encoded at 14: 10 stays until that is understood.
MIN_FACE_FRACTION = 0.02
MIN_FACE_PX = 10
SMALL_SIDE = 1000
# A candidate is resampled so that its box is FACE_PX wide, on a CROP_PX square: MMOD's 80 px
# window and its 5/6 pyramid then find the face even when MTCNN's box is 25% too big. MMOD's
# box over O-Net's candidate side measured 0.77-1.15 on 1303 faces (two 120-canvas group albums
# and the real group photos), so the face never needs a 2x margin: crops of 224, 176, 160 and
# 144 px found the same faces (526/526 pasted, 504/504 on the calibration album, 116/118 real,
# no false face) with search F1 within noise (0.921-0.933), and MMOD took 23.7, 11.2, 9.3 and
# 8.1 ms a crop on one thread. 160 keeps a 30 px margin around a 100 px face.
FACE_PX = 100
CROP_PX = 160
# MMOD's boxes placed between its score cells (detector._subcell_box): the crops put faces
# anywhere on MMOD's 8 px score grid, and dlib's cell-centred boxes then jump by a cell.
SUBCELL = True
MAX_SCORE_DISTANCE = 0.5  # MMOD's box centre within half a candidate's side of its centre


def smallest_face(rows: int, cols: int) -> float:
    """The smallest face, in pixels, the cascade looks for in an image of this size."""
    longer = max(rows, cols)
    return MIN_FACE_PX if longer <= SMALL_SIDE else MIN_FACE_FRACTION * longer


class CascadeDetector:
    """(box, score) of faces, boxes as dlib's MMOD gives them; models load on first use."""

    def __init__(self, mmod: FaceDetector, proposer: FaceProposer) -> None:
        self.mmod = mmod
        self.proposer = proposer

    def detect(self, pixels: np.ndarray) -> list[tuple[tuple[int, int, int, int], float]]:
        rows, cols = pixels.shape[:2]
        candidates = self.proposer.propose(pixels, smallest_face(rows, cols))
        if len(candidates) == 0:
            return []
        crops, origins, scales = _crops(pixels, candidates)
        boxes, scores = [], []
        for candidate, origin, scale, found in zip(
            candidates, origins, scales, self.mmod.detect_many(crops, subcell=SUBCELL), strict=True
        ):
            best = _nearest(found, candidate, origin, scale)
            if best is not None:
                boxes.append(best[0])
                scores.append(best[1])
        if not boxes:
            return []
        box_array = np.asarray(boxes, np.float64)
        kept = nms(box_array, np.asarray(scores), 0.4, by_min=True)
        return [(tuple(int(v) for v in boxes[i]), float(scores[i])) for i in kept]


def _crops(
    pixels: np.ndarray, candidates: np.ndarray
) -> tuple[list[np.ndarray], list[tuple[float, float]], list[float]]:
    """A CROP_PX square per candidate, the face resampled to FACE_PX; black outside the image.
    Returns the crops, each crop's top-left corner in the image and its scale (crop px per
    image px)."""
    image = Image.fromarray(np.ascontiguousarray(pixels))
    crops, origins, scales = [], [], []
    for x1, y1, x2, y2, _ in candidates:
        side = max(x2 - x1, y2 - y1, 1.0)  # O-Net's boxes are taller than wide, not square
        scale = FACE_PX / side
        half = CROP_PX / scale / 2
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        left, top = cx - half, cy - half
        box = (round(left), round(top), round(cx + half), round(cy + half))
        region = image.crop(box)  # PIL fills outside the image with black
        resample = Image.Resampling.BILINEAR if scale >= 1 else Image.Resampling.LANCZOS
        crops.append(np.asarray(region.resize((CROP_PX, CROP_PX), resample)))
        origins.append((float(box[0]), float(box[1])))
        scales.append(CROP_PX / (box[2] - box[0]))
    return crops, origins, scales


def _nearest(
    found: Sequence, candidate: np.ndarray, origin: tuple[float, float], scale: float
) -> tuple[tuple[int, int, int, int], float] | None:
    """The MMOD detection of a crop nearest the candidate's centre (mapped to image pixels),
    or None when none lies close enough to be that face."""
    cx, cy = (candidate[0] + candidate[2]) / 2, (candidate[1] + candidate[3]) / 2
    limit = MAX_SCORE_DISTANCE * max(candidate[2] - candidate[0], candidate[3] - candidate[1], 1.0)
    best, best_distance = None, limit
    for detection in found:
        left, top, right, bottom = detection.box
        box = (
            round(left / scale + origin[0]),
            round(top / scale + origin[1]),
            round((right + 1) / scale + origin[0]) - 1,
            round((bottom + 1) / scale + origin[1]) - 1,
        )
        distance = float(np.hypot((box[0] + box[2]) / 2 - cx, (box[1] + box[3]) / 2 - cy))
        if distance <= best_distance:
            best, best_distance = (box, float(detection.score)), distance
    return best

"""Which face of a reference photo is the person: the largest, counting only what is inside."""

from __future__ import annotations

import numpy as np

from photosearch.faces.base import Face, largest_face
from photosearch.faces.engine import FaceEngine
from photosearch.search.query import read_reference

# An LFW portrait with a second, bigger box: a face cut by the photo's left edge (its box starts
# at x < 0). The person of the photo is the face in the middle.
CUT_AT_THE_EDGE = "lfw-devtrain/Boris_Becker/Boris_Becker_0001.jpg"


def _face(box: tuple[int, int, int, int]) -> Face:
    return Face(box=box, score=1.0, landmarks=np.zeros((5, 2)), descriptor=np.zeros(128))


def test_the_part_inside_the_photo_decides():
    centre, cut = _face((85, 83, 179, 177)), _face((-25, 116, 71, 212))
    assert cut.area > centre.area
    assert largest_face([cut, centre]) is cut  # without the photo's size: box area alone
    assert largest_face([cut, centre], (250, 250)) is centre
    # A face wholly inside keeps its full area: the bigger one still wins.
    big = _face((10, 10, 200, 200))
    assert largest_face([centre, big], (250, 250)) is big
    assert largest_face([], (250, 250)) is None


def test_reference_photo_with_a_face_cut_by_its_edge(shared_data):
    reference = read_reference(FaceEngine(device="cpu"), shared_data / CUT_AT_THE_EDGE)
    width, height = reference.image.original_size
    left, top, right, bottom = reference.faces[reference.chosen].box
    assert left >= 0 and top >= 0 and right < width and bottom < height
    # The chosen face is the portrait's own, in the middle of the photo.
    assert width / 3 < (left + right) / 2 < 2 * width / 3

"""The numpy 5-point shape predictor returns exactly dlib's landmarks.

Oracle: dlib.shape_predictor on the same model file and the same RGB array. Faces come from
dlib's HOG detector on every shared photo, plus synthetic boxes around them (shifted, rescaled,
partly or mostly outside the image), a rotated photo and faces cut by the image border.
"""

from __future__ import annotations

from functools import cache

import numpy as np
import pytest
from conftest import load_rgb_for_oracle, shared_photos
from PIL import Image

from photosearch.faces.landmarks import ShapePredictor, parse_shape_predictor
from photosearch.faces.models.dlib_format import DlibFormatError
from photosearch.faces.models.registry import model_path

MAX_SIDE = 1000  # oracle images are shrunk to this; dlib and we see the same array
UPSAMPLE_BELOW = 600  # HOG upsamples small images once, to find their smaller faces
PHOTOS = shared_photos()


@cache
def predictor() -> ShapePredictor:
    return ShapePredictor()


@pytest.fixture(scope="module")
def oracle(dlib):
    return dlib.shape_predictor(str(model_path("landmarks5")))


@pytest.fixture(scope="module")
def hog(dlib):
    return dlib.get_frontal_face_detector()


def detect_boxes(hog, image: np.ndarray) -> list[tuple[int, int, int, int]]:
    upsample = 1 if max(image.shape[:2]) < UPSAMPLE_BELOW else 0
    return [(r.left(), r.top(), r.right(), r.bottom()) for r in hog(image, upsample)]


def synthetic_boxes(
    boxes: list[tuple[int, int, int, int]], height: int, width: int
) -> list[tuple[int, int, int, int]]:
    """Boxes a real detector could give too: shifted, rescaled, and reaching off the image."""
    out = []
    for left, top, right, bottom in boxes:
        size = right - left
        out += [
            (left + size // 7, top - size // 9, right + size // 7, bottom - size // 9),
            (left - size // 5, top - size // 5, right + size // 5, bottom + size // 5),
            (left + size // 8, top + size // 8, right - size // 8, bottom - size // 6),
            (left - width // 2, top, right - width // 2, bottom),  # mostly off the left edge
            (left, top + height // 2, right, bottom + height // 2),  # off the bottom
        ]
    side = max(16, min(height, width) // 3)
    out += [
        (-side // 2, -side // 3, side // 2, 2 * side // 3),  # across the top-left corner
        (width - side // 2, height - side // 2, width + side // 2, height + side // 2),
        (width // 2, height // 2, width // 2 + 11, height // 2 + 13),  # tiny
    ]
    return out


def oracle_landmarks(dlib, oracle, image: np.ndarray, boxes) -> np.ndarray:
    shapes = [oracle(image, dlib.rectangle(*box)) for box in boxes]
    return np.array([[(p.x, p.y) for p in shape.parts()] for shape in shapes], np.int64)


def assert_same_landmarks(dlib, oracle, image: np.ndarray, boxes) -> None:
    expected = oracle_landmarks(dlib, oracle, image, boxes)
    got = predictor().predict_many(image, boxes)
    assert got.shape == (len(boxes), 5, 2) and got.dtype == np.int64
    differing = [box for box, e, g in zip(boxes, expected, got, strict=True) if not (e == g).all()]
    assert not differing, f"{len(differing)} of {len(boxes)} faces differ, e.g. box {differing[0]}"


@pytest.mark.parametrize("path", PHOTOS or [None], ids=[p.name for p in PHOTOS] or ["no-photos"])
def test_landmarks_match_dlib_on_every_photo(shared_data, dlib, oracle, hog, path):
    image = load_rgb_for_oracle(path, max_side=MAX_SIDE)
    boxes = detect_boxes(hog, image)
    boxes += synthetic_boxes(boxes, *image.shape[:2])
    assert_same_landmarks(dlib, oracle, image, boxes)


@pytest.fixture(scope="module")
def face_photo(shared_data, hog) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """A shared photo with one clearly detected face, and that face's box."""
    for path in PHOTOS:
        if "people" not in path.parts:
            continue
        image = load_rgb_for_oracle(path, max_side=640)
        boxes = detect_boxes(hog, image)
        if len(boxes) == 1 and boxes[0][2] - boxes[0][0] >= 80:
            return image, boxes[0]
    raise AssertionError("no shared photo with one clearly detected face")


def test_landmarks_match_dlib_on_a_rotated_photo(face_photo, dlib, oracle, hog):
    image, (left, top, right, bottom) = face_photo
    angle = 25.0
    rotated = np.asarray(
        Image.fromarray(image).rotate(angle, Image.Resampling.BILINEAR, expand=True)
    )
    # Where the face centre lands after PIL's counter-clockwise rotation about the image centre.
    height, width = image.shape[:2]
    cx, cy = (left + right) / 2 - width / 2, (top + bottom) / 2 - height / 2
    theta = np.deg2rad(angle)
    rx = cx * np.cos(theta) + cy * np.sin(theta) + rotated.shape[1] / 2
    ry = -cx * np.sin(theta) + cy * np.cos(theta) + rotated.shape[0] / 2
    half = (right - left) // 2
    box = (round(rx) - half, round(ry) - half, round(rx) + half, round(ry) + half)
    boxes = [box, *detect_boxes(hog, rotated)]
    boxes += synthetic_boxes(boxes, *rotated.shape[:2])
    assert_same_landmarks(dlib, oracle, rotated, boxes)
    # The predictor follows the rotation: the eye line tilts by roughly the rotation angle.
    points = predictor().predict(rotated, box).astype(float)
    # Point 0 is the subject's left eye (image right), point 2 the right eye (image left); PIL
    # turns counter-clockwise, so the image-right eye rises.
    on_right, on_left = points[0], points[2]
    tilt = np.degrees(np.arctan2(on_left[1] - on_right[1], on_right[0] - on_left[0]))
    assert 10 < tilt < 40


def test_landmarks_match_dlib_for_faces_cut_by_the_border(face_photo, dlib, oracle, hog):
    image, (left, top, right, bottom) = face_photo
    mid_x, mid_y = (left + right) // 2, (top + bottom) // 2
    # Each crop cuts the face in half; (dx, dy) is where the crop starts in the photo.
    crops = [
        (image[:, mid_x:], mid_x, 0),
        (image[mid_y:, :], 0, mid_y),
        (image[:, : mid_x + 5], 0, 0),
        (image[: mid_y - 3, :], 0, 0),
    ]
    for crop, dx, dy in crops:
        crop = np.ascontiguousarray(crop)
        box = (left - dx, top - dy, right - dx, bottom - dy)
        boxes = [box, *detect_boxes(hog, crop)]
        boxes += synthetic_boxes(boxes, *crop.shape[:2])
        assert_same_landmarks(dlib, oracle, crop, boxes)


def test_grey_images_and_single_predictions_match_dlib(face_photo, dlib, oracle, hog):
    image, box = face_photo
    grey = np.ascontiguousarray(np.asarray(Image.fromarray(image).convert("L")))
    boxes = [box, *synthetic_boxes([box], *grey.shape[:2])]
    assert_same_landmarks(dlib, oracle, grey, boxes)
    many = predictor().predict_many(image, boxes)
    for one_box, expected in zip(boxes, many, strict=True):
        np.testing.assert_array_equal(predictor().predict(image, one_box), expected)
    assert predictor().predict_many(image, []).shape == (0, 5, 2)


def test_model_is_parsed_into_flat_arrays():
    arrays = predictor().model
    cascades, trees, splits = arrays["split_idx1"].shape
    assert (cascades, trees, splits) == (15, 500, 15)
    assert arrays["leaf_values"].shape == (15, 500, 16, 10)
    assert arrays["initial_shape"].shape == (10,)
    assert arrays["anchor_idx"].shape == (15, 800) and arrays["deltas"].shape == (15, 800, 2)
    assert arrays["split_idx1"].max() < 800 and arrays["anchor_idx"].max() < 5
    assert arrays["split_thresh"].dtype == np.float32 and arrays["leaf_values"].dtype == np.float32
    # Leaves are small shape corrections in box units; thresholds are grey-level differences.
    assert np.abs(arrays["leaf_values"]).max() < 0.1
    assert np.abs(arrays["split_thresh"]).max() <= 255


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="uint8"):
        predictor().predict(np.zeros((10, 10, 3), np.float32), (0, 0, 5, 5))
    data = bytearray(model_path("landmarks5").read_bytes())
    assert data[:2] == b"\x01\x01"  # version 1
    data[1] = 2
    with pytest.raises(DlibFormatError, match="version"):
        parse_shape_predictor(bytes(data))

"""Aligned face chips are pixel-identical to dlib.get_face_chip.

Oracle: dlib.get_face_chip (get_face_chip_details + extract_image_chip) on the same RGB array and
the same 5 landmarks (dlib's own, from its shape predictor). Faces come from dlib's HOG detector on
every shared photo, plus boxes reaching off the image, a rotated photo, faces cut by the border
and an enlarged face that needs several pyramid levels.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import load_rgb_for_oracle, shared_photos
from PIL import Image

from photosearch.faces.align import (
    TEMPLATE5,
    extract_image_chip,
    face_chip,
    face_chip_details,
    face_chips,
    pyramid_down2,
)
from photosearch.faces.models.registry import model_path

MAX_SIDE = 1000
UPSAMPLE_BELOW = 600
PHOTOS = shared_photos()


@pytest.fixture(scope="module")
def shape_predictor(dlib):
    return dlib.shape_predictor(str(model_path("landmarks5")))


@pytest.fixture(scope="module")
def hog(dlib):
    return dlib.get_frontal_face_detector()


def detect(hog, image: np.ndarray) -> list:
    return list(hog(image, 1 if max(image.shape[:2]) < UPSAMPLE_BELOW else 0))


def off_image_boxes(dlib, image: np.ndarray, faces: list) -> list:
    """Boxes reaching past the image edges, so their chips fall partly outside the image."""
    height, width = image.shape[:2]
    boxes = []
    for face in faces:
        size = face.width()
        boxes += [
            dlib.translate_rect(face, dlib.point(-face.left() - size // 2, 0)),  # across left
            dlib.translate_rect(face, dlib.point(0, height - face.top() - size // 3)),  # bottom
        ]
    side = max(20, min(height, width) // 3)
    boxes += [
        dlib.rectangle(-side // 2, -side // 2, side // 2, side // 2),
        dlib.rectangle(width - side // 2, height - side // 3, width + side // 2, height + side),
    ]
    return boxes


def assert_chips_match(dlib, shape_predictor, image: np.ndarray, boxes: list) -> int:
    """Chips of the faces in ``boxes`` (landmarks by dlib) equal dlib's; returns how many."""
    for box in boxes:
        shape = shape_predictor(image, box)
        points = np.array([(p.x, p.y) for p in shape.parts()])
        expected = np.asarray(dlib.get_face_chip(image, shape, size=150, padding=0.25))
        got = face_chip(image, points)
        assert got.shape == (150, 150, 3) and got.dtype == np.uint8
        differing = int((got != expected).any(-1).sum())
        assert differing == 0, f"box {box}: {differing} of 22500 chip pixels differ"
    return len(boxes)


@pytest.mark.parametrize("path", PHOTOS or [None], ids=[p.name for p in PHOTOS] or ["no-photos"])
def test_chips_match_dlib_on_every_photo(shared_data, dlib, shape_predictor, hog, path):
    image = load_rgb_for_oracle(path, max_side=MAX_SIDE)
    faces = detect(hog, image)
    assert_chips_match(dlib, shape_predictor, image, faces + off_image_boxes(dlib, image, faces))


@pytest.fixture(scope="module")
def face_photo(shared_data, hog):
    """A shared photo with one clearly detected face, and that face's dlib rectangle."""
    for path in PHOTOS:
        if "people" not in path.parts:
            continue
        image = load_rgb_for_oracle(path, max_side=640)
        faces = detect(hog, image)
        if len(faces) == 1 and faces[0].width() >= 80:
            return image, faces[0]
    raise AssertionError("no shared photo with one clearly detected face")


def test_chips_match_dlib_on_a_rotated_photo(face_photo, dlib, shape_predictor, hog):
    image, face = face_photo
    angle = 25.0
    rotated = np.asarray(
        Image.fromarray(image).rotate(angle, Image.Resampling.BILINEAR, expand=True)
    )
    # Where the face centre lands after PIL's counter-clockwise turn about the image centre.
    height, width = image.shape[:2]
    cx, cy = face.center().x - width / 2, face.center().y - height / 2
    theta = np.deg2rad(angle)
    rx = cx * np.cos(theta) + cy * np.sin(theta) + rotated.shape[1] / 2
    ry = -cx * np.sin(theta) + cy * np.cos(theta) + rotated.shape[0] / 2
    box = dlib.centered_rect(dlib.point(round(rx), round(ry)), face.width(), face.height())
    assert_chips_match(dlib, shape_predictor, rotated, [box, *detect(hog, rotated)])
    # The chip undoes the rotation: its angle is about the photo's turn (y points down).
    points = np.array([(p.x, p.y) for p in shape_predictor(rotated, box).parts()])
    assert -40 < np.degrees(face_chip_details(points).angle) < -10


def test_chips_match_dlib_for_faces_cut_by_the_border(face_photo, dlib, shape_predictor):
    image, face = face_photo
    mid_x, mid_y = face.center().x, face.center().y
    crops = [  # each cuts the face in half; (dx, dy) is where the crop starts in the photo
        (image[:, mid_x:], mid_x, 0),
        (image[mid_y:, :], 0, mid_y),
        (image[:, : mid_x + 7], 0, 0),
        (image[: mid_y - 2, :], 0, 0),
    ]
    for crop, dx, dy in crops:
        crop = np.ascontiguousarray(crop)
        box = dlib.translate_rect(face, dlib.point(-dx, -dy))
        assert_chips_match(dlib, shape_predictor, crop, [box])
        chip = face_chip(crop, [(p.x, p.y) for p in shape_predictor(crop, box).parts()])
        assert (chip == 0).all(-1).sum() > 1000  # a large black part lies outside the crop


def test_chips_match_dlib_for_large_faces(face_photo, dlib, shape_predictor):
    """An enlarged face is taken from a deeper pyramid level (two or more levels down)."""
    image, face = face_photo
    scale = 4
    large = np.asarray(
        Image.fromarray(image).resize(
            (image.shape[1] * scale, image.shape[0] * scale), Image.Resampling.BILINEAR
        )
    )
    box = dlib.rectangle(
        face.left() * scale, face.top() * scale, face.right() * scale, face.bottom() * scale
    )
    assert_chips_match(dlib, shape_predictor, large, [box])
    points = np.array([(p.x, p.y) for p in shape_predictor(large, box).parts()])
    left, _, right, _ = face_chip_details(points).rect
    assert right - left > 4 * 150  # halved at least twice before sampling


def test_chip_details_agree_with_dlib(face_photo, dlib, shape_predictor):
    """The chip rectangle and angle agree with dlib's to rounding error (dlib fits by SVD)."""
    image, face = face_photo
    for box in [face, dlib.translate_rect(face, dlib.point(9, -4)), dlib.grow_rect(face, 15)]:
        shape = shape_predictor(image, box)
        expected = dlib.get_face_chip_details(shape, 150, 0.25)
        got = face_chip_details([(p.x, p.y) for p in shape.parts()])
        rect = expected.rect
        expected_rect = (rect.left(), rect.top(), rect.right(), rect.bottom())
        np.testing.assert_allclose(got.rect, expected_rect, rtol=0, atol=1e-9)
        assert got.angle == pytest.approx(expected.angle, abs=1e-12)
        assert (got.rows, got.cols) == (expected.rows, expected.cols) == (150, 150)


def test_pyramid_down_matches_dlib(dlib):
    rng = np.random.default_rng(7)
    for rows, cols in [(9, 9), (10, 23), (57, 31), (120, 97), (8, 40), (3, 3)]:
        image = rng.integers(0, 256, (rows, cols, 3), dtype=np.uint8)
        expected = np.asarray(dlib.pyramid_down(2)(image))
        got = pyramid_down2(image)
        assert got.shape == expected.shape or (got.size == 0 and expected.size == 0)
        np.testing.assert_array_equal(got, expected.reshape(got.shape))
    saturated = np.full((40, 40, 3), 255, np.uint8)  # largest sums must not overflow
    assert (pyramid_down2(saturated) == 255).all()


def test_batch_chips_and_chip_to_image(face_photo, dlib, shape_predictor):
    image, face = face_photo
    boxes = [face, dlib.translate_rect(face, dlib.point(6, 3)), dlib.grow_rect(face, -10)]
    landmarks = [
        np.array([(p.x, p.y) for p in shape_predictor(image, box).parts()]) for box in boxes
    ]
    batch = face_chips(image, landmarks)
    assert batch.shape == (3, 150, 150, 3) and batch.dtype == np.uint8
    for chip, points in zip(batch, landmarks, strict=True):
        np.testing.assert_array_equal(chip, face_chip(image, points))
    assert face_chips(image, []).shape == (0, 150, 150, 3)
    # chip_to_image maps the chip's template points onto (near) the detected landmarks.
    details = face_chip_details(landmarks[0])
    template = (np.asarray(TEMPLATE5) + 0.25) / 1.5 * 150
    mapped = details.chip_to_image() @ np.column_stack([template, np.ones(5)]).T
    assert np.abs(mapped.T - landmarks[0]).max() < 0.15 * (face.width())
    np.testing.assert_array_equal(extract_image_chip(image, details), batch[0])


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="5 landmarks"):
        face_chip(np.zeros((50, 50, 3), np.uint8), np.zeros((4, 2)))
    with pytest.raises(ValueError, match="uint8"):
        face_chip(np.zeros((50, 50, 3), np.float32), np.arange(10).reshape(5, 2))

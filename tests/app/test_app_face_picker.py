"""Picking a face of a crowd reference by clicking it, on a real group photo's faces."""

from __future__ import annotations

import csv
import io

import pytest
from app_album import PHOTOS
from PIL import Image

from photosearch.app import logic
from photosearch.app.logic.face_picker import numbered_picture
from photosearch.faces.images import load_image

CROWD = "group/compreface/015_6.jpg"  # six people in a row, 800x533


@pytest.fixture(scope="module")
def crowd():
    if not (PHOTOS / CROWD).is_file():
        pytest.skip(f"test photos not found at {PHOTOS} (clone the project beside ../shared)")
    return logic.ReferenceReader().read((PHOTOS / CROWD).read_bytes(), "crowd.jpg")


def _expected_faces(relative: str) -> int:
    with open(PHOTOS / "group" / "group_photos.csv", newline="") as table:
        for row in csv.DictReader(table):
            if row["relative_path"] == relative:
                return int(row["expected_faces"])
    raise LookupError(relative)


def test_every_face_of_the_crowd_is_offered(crowd):
    # The reader keeps every face the engine finds: no cap, no size filter, one button each.
    assert crowd.face_count == _expected_faces(CROWD) == 6
    assert len(crowd.face_thumbnails) == len(crowd.descriptors) == 6
    assert crowd.photo_size == (800, 533)
    picture = Image.open(io.BytesIO(crowd.picture))
    assert max(picture.size) <= 1200 and picture.size[0] / picture.size[1] == pytest.approx(
        800 / 533, rel=0.01
    )


def test_a_click_on_each_face_picks_that_face(crowd):
    display = (400, 267)  # the column shows the photo at half size
    for number, (left, top, right, bottom) in enumerate(crowd.boxes):
        centre = ((left + right) / 2, (top + bottom) / 2)
        click = {
            "x": centre[0] * display[0] / 800,
            "y": centre[1] * display[1] / 533,
            "width": display[0],
            "height": display[1],
        }
        point = logic.click_to_photo(click, crowd.photo_size)
        assert logic.face_at(point, crowd.boxes) == number
    # A corner of a box still counts, and a slightly off click picks the nearest face.
    left, top, right, bottom = crowd.boxes[2]
    assert logic.face_at((left + 1, bottom - 1), crowd.boxes) == 2
    assert logic.face_at((right + 3, (top + bottom) / 2), crowd.boxes) in (2, 3)
    assert logic.face_at(((left + right) / 2, bottom + 10), crowd.boxes) == 2


def test_a_click_far_from_every_face_picks_nothing(crowd):
    assert logic.face_at((400, 520), crowd.boxes) is None  # bottom of the photo: clothes
    assert logic.face_at((10, 10), crowd.boxes) is None  # top-left corner
    assert logic.click_to_photo({"x": 5, "y": 5, "width": 0, "height": 0}, (800, 533)) is None
    assert logic.click_to_photo({"x": 5}, (800, 533)) is None


def test_overlapping_boxes_pick_the_nearest_centre():
    boxes = [(0, 0, 99, 99), (60, 0, 159, 99)]
    assert logic.face_at((65, 50), boxes) == 0
    assert logic.face_at((95, 50), boxes) == 1


def test_the_picture_boxes_every_face_where_it_is(crowd):
    image = load_image((PHOTOS / CROWD).read_bytes(), max_side=1000, name=CROWD)
    plain = Image.fromarray(image.pixels).convert("RGB")
    drawn = Image.open(io.BytesIO(numbered_picture(image, crowd.boxes))).convert("RGB")
    assert drawn.size == plain.size
    for left, top, right, _ in crowd.boxes:
        # The box's top edge, half way along, is the amber of the results' boxes.
        red, green, blue = drawn.getpixel(((left + right) // 2, top + 1))
        assert red > 200 and 150 < green < 230 and blue < 90


@pytest.mark.parametrize(
    "relative", ["group/dlib/2007_007763.jpg", "group/deepface/selfie-many-people.jpg"]
)
def test_the_reader_keeps_every_face_the_engine_finds(crowd, relative):
    # The "4 of 7" of the issue: the reader offers exactly what the detector finds in the photo
    # at full resolution (no cap, no size filter, no shrunk copy). In the 7-person PASCAL photo
    # that is all 7; in the deepface selfie the default detector itself finds 4 of the 7, a
    # detector limit (faces/), not the reader's.
    reader = logic.ReferenceReader()
    data = (PHOTOS / relative).read_bytes()
    reference = reader.read(data, relative)
    full_size = reader.engine.faces(load_image(data, max_side=None, name=relative))
    assert reference.face_count == len(full_size) == len(reference.face_thumbnails)
    assert sorted(reference.boxes) == sorted(face.box for face in full_size)
    if relative.startswith("group/dlib/"):
        assert reference.face_count == _expected_faces(relative) == 7

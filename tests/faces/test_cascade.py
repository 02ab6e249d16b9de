"""The default detector (MTCNN proposals verified by MMOD at each face's scale) on real photos."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from photosearch.faces.engine import FaceEngine
from photosearch.faces.images import load_image
from photosearch.faces.models import registry

CROWDS = {  # group_photos.csv: every expected face is found
    "group/compreface/016_8.jpg": 8,  # 800x533, faces of 40-48 px
    "group/dlib/2008_002079.jpg": 6,  # 500x375 PASCAL VOC crowd, faces of 26-52 px
    "group/dlib/2007_007763.jpg": 7,
}


@pytest.fixture(scope="module")
def engine() -> FaceEngine:
    return FaceEngine(device="cpu", workers=1)


def iou(a, b) -> float:
    width = min(a[2], b[2]) - max(a[0], b[0]) + 1
    height = min(a[3], b[3]) - max(a[1], b[1]) + 1
    if width <= 0 or height <= 0:
        return 0.0
    inter = width * height
    area = (a[2] - a[0] + 1) * (a[3] - a[1] + 1) + (b[2] - b[0] + 1) * (b[3] - b[1] + 1)
    return inter / (area - inter)


@pytest.mark.parametrize("photo", sorted(CROWDS))
def test_every_face_of_a_crowd_photo_is_found(shared_data, engine, photo):
    assert len(engine.faces(shared_data / "photos" / photo)) == CROWDS[photo]


def test_boxes_are_in_dlib_convention(shared_data, engine):
    """Each face MMOD finds on the whole (doubled) photo is found by the cascade with nearly the
    same box: the shape predictor and the alignment see the boxes they were trained on."""
    image = load_image(shared_data / "photos" / "group/compreface/016_8.jpg")
    exact = engine.detector.detect(image.pixels, upsample=1)
    found = [box for box, _ in engine.detect(image.pixels)]
    assert len(exact) == 6  # MMOD misses two that the cascade finds
    for detection in exact:
        assert max(iou(detection.box, box) for box in found) > 0.7


def test_no_face_on_animals_cartoons_and_textures(shared_data, engine):
    folder = shared_data / "photos" / "people" / "photoprism" / "no_face_expected"
    photos = [*sorted(folder.iterdir()), shared_data / "photos" / "group/dlib/dogs.jpg"]
    assert len(photos) == 10
    assert {photo.name: len(engine.faces(photo)) for photo in photos} == {
        photo.name: 0 for photo in photos
    }


def test_a_face_at_two_percent_of_a_12_megapixel_photo_is_found(shared_data, engine):
    """An LFW face pasted 80 px wide (2% of 4032 px) in a 4032x3024 photo."""
    lfw = shared_data / "lfw-devtrain" / "Aaron_Peirsol" / "Aaron_Peirsol_0001.jpg"
    rng = np.random.default_rng(0)
    canvas = Image.fromarray(rng.normal(128, 8, (3024, 4032, 3)).clip(0, 255).astype(np.uint8))
    tile = round(80 / 0.45)  # an LFW image's face is ~45% of its width
    canvas.paste(Image.open(lfw).convert("RGB").resize((tile, tile)), (2900, 700))
    data = io.BytesIO()
    canvas.save(data, format="JPEG", quality=92)
    faces = engine.faces(data.getvalue())
    assert len(faces) == 1
    left, top, right, bottom = faces[0].box
    assert 2900 < left < (left + right) / 2 < 2900 + tile and 700 < top < bottom < 700 + tile
    assert 60 <= right - left <= 110


def test_detector_choice_and_its_record():
    assert FaceEngine().detector_name == "cascade"
    assert FaceEngine(upsample=1).detector_name == "mmod"  # dlib's own upsampling: dlib-exact
    assert FaceEngine(detector="mmod").detection_settings != FaceEngine().detection_settings
    assert "cascade" in FaceEngine().detection_settings
    with pytest.raises(ValueError, match="mmod detector only"):
        FaceEngine(detector="cascade", upsample=1)
    with pytest.raises(ValueError, match="detector must be one of"):
        FaceEngine(detector="hog")


def test_mtcnn_weights_are_pinned(tmp_path, monkeypatch):
    """An altered proposal-net file is refused with how to reinstall it."""
    good = registry.model_path("mtcnn_pnet")
    altered = bytearray(good.read_bytes())
    altered[-1] ^= 1
    (tmp_path / "pnet.pt").write_bytes(bytes(altered))
    monkeypatch.setenv("PHOTOSEARCH_MODELS_DIR", str(tmp_path))
    registry.model_path.cache_clear()
    try:
        with pytest.raises(registry.ModelError, match=r"facenet-pytorch==2\.6\.0"):
            registry.model_path("mtcnn_pnet")
    finally:
        registry.model_path.cache_clear()

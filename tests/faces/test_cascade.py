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
    """Each face MMOD finds on the whole (doubled) photo is found by the cascade with a box of
    MMOD's kind: about the same centre, and the size within two of MMOD's pyramid steps (5/6)
    either way (a 40 px face found on the doubled photo is at MMOD's 80 px limit, on a crop it
    is found at 100 px, one or two pyramid levels apart: here 0.78-0.87x as wide)."""
    image = load_image(shared_data / "photos" / "group/compreface/016_8.jpg")
    exact = engine.detector.detect(image.pixels, upsample=1)
    found = [box for box, _ in engine.detect(image.pixels)]
    assert len(exact) == 6  # MMOD misses two that the cascade finds
    for detection in exact:
        left, top, right, bottom = detection.box
        width = right - left + 1
        box = max(found, key=lambda box: iou(detection.box, box))
        assert abs((box[0] + box[2]) - (left + right)) / 2 < 0.15 * width
        assert abs((box[1] + box[3]) - (top + bottom)) / 2 < 0.15 * width
        assert 0.69 < (box[2] - box[0] + 1) / width < 1.44


def test_no_face_on_animals_cartoons_and_textures(shared_data, engine):
    folder = shared_data / "photos" / "people" / "photoprism" / "no_face_expected"
    photos = [*sorted(folder.iterdir()), shared_data / "photos" / "group/dlib/dogs.jpg"]
    assert len(photos) == 10
    assert {photo.name: len(engine.faces(photo)) for photo in photos} == {
        photo.name: 0 for photo in photos
    }


def pasted_face(lfw, face_px: int, size=(4032, 3024)) -> bytes:
    """A JPEG photo of `size` holding the LFW image scaled so its face is `face_px` wide."""
    rng = np.random.default_rng(0)
    canvas = Image.fromarray(
        rng.normal(128, 8, (size[1], size[0], 3)).clip(0, 255).astype(np.uint8)
    )
    tile = round(face_px / 0.45)  # an LFW image's face is ~45% of its width
    canvas.paste(Image.open(lfw).convert("RGB").resize((tile, tile)), (2900, 700))
    data = io.BytesIO()
    canvas.save(data, format="JPEG", quality=92)
    return data.getvalue()


def test_a_face_at_two_percent_of_a_12_megapixel_photo_is_found(shared_data, engine):
    """An LFW face pasted 80 px wide (2% of 4032 px) in a 4032x3024 photo."""
    lfw = shared_data / "lfw-devtrain" / "Aaron_Peirsol" / "Aaron_Peirsol_0001.jpg"
    faces = engine.faces(pasted_face(lfw, 80))
    assert len(faces) == 1
    left, top, right, bottom = faces[0].box
    tile = round(80 / 0.45)
    assert 2900 < left < (left + right) / 2 < 2900 + tile and 700 < top < bottom < 700 + tile
    assert 60 <= right - left <= 110


def test_a_small_face_of_a_big_photo_is_described_from_its_full_detail(shared_data, engine):
    """A 50 px face of a 4032 px photo is 25 px at the 2000 px working size: described from
    there it lies 0.25-0.44 from the same picture described at its own size; from the finer
    decode, as close as the face at full size (0.05-0.15)."""
    lfw = shared_data / "lfw-devtrain" / "Angelina_Jolie" / "Angelina_Jolie_0001.jpg"
    reference = max(engine.faces(lfw), key=lambda face: face.box[2] - face.box[0])
    photo = pasted_face(lfw, 50)
    (small,) = engine.faces(photo)
    assert engine.max_side == 2000 and small.box[2] - small.box[0] < 60
    assert np.linalg.norm(small.descriptor - reference.descriptor) < 0.2
    # The landmarks of the finer decode are in original pixels, on the face.
    left, top, right, bottom = small.box
    assert (left - 5 <= small.landmarks[:, 0]).all() and (small.landmarks[:, 0] <= right + 5).all()
    assert (top - 5 <= small.landmarks[:, 1]).all() and (small.landmarks[:, 1] <= bottom + 5).all()
    # From the working image alone (what a file object, whose bytes are not kept, gets).
    (coarse,) = engine.faces(io.BytesIO(photo))
    assert coarse.box == small.box
    assert np.linalg.norm(coarse.descriptor - reference.descriptor) > 0.2


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


def test_cascade_boxes_do_not_jump_with_mmods_score_grid(shared_data, engine, monkeypatch):
    """Where a crop puts a face on MMOD's 8 px score grid is arbitrary (it moves with the crop
    size); dlib's cell-centred boxes then jump by a cell, the boxes placed at the score peak
    much less. Same LFW faces, two crop sizes: boxes moving by more than 5 px."""
    from photosearch.faces import cascade

    photos = sorted((shared_data / "lfw-devtrain").glob("*/*_0001.jpg"))[::20][:60]
    pixels = [load_image(path).pixels for path in photos]

    def central_boxes() -> list:
        boxes = []
        for image in pixels:
            found = [box for box, _ in engine.detect(image)]
            boxes.append(min(found, key=lambda b: abs(b[0] + b[2] - 250) + abs(b[1] + b[3] - 250)))
        return boxes

    def moved(subcell: bool) -> int:
        monkeypatch.setattr(cascade, "SUBCELL", subcell)
        monkeypatch.setattr(cascade, "CROP_PX", 224)
        wide = central_boxes()
        monkeypatch.setattr(cascade, "CROP_PX", 160)
        tight = central_boxes()
        return sum(np.abs(np.subtract(a, b)).max() > 5 for a, b in zip(wide, tight, strict=True))

    on_cells, at_peaks = moved(False), moved(True)
    assert len(photos) == 60 and on_cells >= 15  # 107 of 250 such faces measured
    assert at_peaks <= on_cells / 2  # 36 of 250 measured

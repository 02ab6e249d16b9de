"""The MMOD CNN face detector against dlib itself: same boxes (exact integers), same scores."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import SHARED_DATA, load_rgb_for_oracle, shared_photos
from PIL import Image

from photosearch.faces.detector import Detection, FaceDetector, parse_detector
from photosearch.faces.models.dlib_format import DlibFormatError
from photosearch.faces.models.registry import model_path
from photosearch.faces.pyramid import (
    build_tiled_pyramid,
    pyramid_up,
    pyramid_up_size,
    tiled_pyramid_layout,
)

# Every photo at upsample 0, shrunk to this size so dlib's slow CNN fits the time budget.
SWEEP_MAX_SIDE = 300
# Small photos at upsample 1 (4x the pixels for dlib), with the longer side they are shrunk
# to: LFW thumbnails at their own size, a 240p frame, group photos whose faces are ~20-40 px.
UPSAMPLE_PHOTOS = {
    **{
        f"multires/lfw_funneled_250_vs_150/{name}_{size}px.jpg": size
        for name in (
            "Mary_Katherine_Smart_0001",
            "Nathalie_Baye_0002",
            "Rob_Lowe_0001",
            "Rob_Lowe_0002",
            "Teresa_Williams_0001",
        )
        for size in (150, 250)
    },
    "multires/face_recognition/obama-240p.jpg": 300,
    "group/deepface/selfie-many-people.jpg": 300,
    "group/dlib/2008_002079.jpg": 400,
    "group/dlib/2008_007676.jpg": 400,
}
SCORE_TOLERANCE = 1e-3


def _photo_id(path: Path) -> str:
    return path.relative_to(SHARED_DATA / "photos").as_posix()


def _photos_named(names: tuple[str, ...]) -> list[Path]:
    root = SHARED_DATA / "photos"
    return [root / name for name in names if (root / name).is_file()]


@pytest.fixture(scope="module", autouse=True)
def one_thread_per_worker():
    """pytest -n 2 on 2 cores: a second OpenMP thread per worker only oversubscribes."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def detector() -> FaceDetector:
    return FaceDetector()


@pytest.fixture(scope="module")
def oracle(dlib):
    return dlib.cnn_face_detection_model_v1(str(model_path("detector")))


def dlib_detections(oracle, image: np.ndarray, upsample: int = 0) -> list[Detection]:
    return [
        Detection((r.rect.left(), r.rect.top(), r.rect.right(), r.rect.bottom()), r.confidence)
        for r in oracle(image, upsample)
    ]


def assert_same_detections(ours: list[Detection], theirs: list[Detection]) -> None:
    """Identical boxes in the same order, scores within SCORE_TOLERANCE."""
    assert [d.box for d in ours] == [d.box for d in theirs]
    for mine, reference in zip(ours, theirs, strict=True):
        assert mine.score == pytest.approx(reference.score, abs=SCORE_TOLERANCE)


# ---------------------------------------------------------------------------------------------
# Against dlib on real photos


@pytest.mark.parametrize("photo", shared_photos(), ids=_photo_id)
def test_matches_dlib_on_every_photo(shared_data, oracle, detector, photo):
    image = load_rgb_for_oracle(photo, SWEEP_MAX_SIDE)
    assert_same_detections(detector.detect(image), dlib_detections(oracle, image))


@pytest.mark.parametrize("photo", _photos_named(tuple(UPSAMPLE_PHOTOS)), ids=_photo_id)
def test_matches_dlib_with_upsampling(shared_data, oracle, detector, photo):
    image = load_rgb_for_oracle(photo, UPSAMPLE_PHOTOS[_photo_id(photo)])
    ours = detector.detect(image, upsample=1)
    assert_same_detections(ours, dlib_detections(oracle, image, upsample=1))
    assert ours, "every photo of this subset has a face that upsampling finds"


def test_upsampling_finds_the_small_faces(shared_data, detector):
    """The group photos' ~20-40 px faces: missed at upsample 0, found at upsample 1."""
    photos = [p for p in _photos_named(tuple(UPSAMPLE_PHOTOS)) if p.parts[-3] == "group"]
    images = [load_rgb_for_oracle(p, UPSAMPLE_PHOTOS[_photo_id(p)]) for p in photos]
    plain = sum(len(found) for found in detector.detect_many(images))
    upsampled = sum(len(found) for found in detector.detect_many(images, upsample=1))
    assert upsampled >= 12
    assert upsampled >= plain + 8


def test_large_photo_through_memory_saving_strips(shared_data, oracle):
    """An 853x480 photo with the strip-wise convs forced on: still dlib's exact boxes."""
    photo = SHARED_DATA / "photos/multires/face_recognition/obama-480p.jpg"
    image = load_rgb_for_oracle(photo)
    detector = FaceDetector()
    detector.STRIP_ABOVE_PIXELS = 0
    detector.STRIP_ROWS = 7
    ours = detector.detect(image)
    assert len(ours) == 1
    assert_same_detections(ours, dlib_detections(oracle, image))


def test_rounds_negative_half_coordinates_like_dlib(shared_data, oracle, detector):
    """Finest-level boxes sit on .5 coordinates; dlib rounds -4.5 to -5 (away from zero)."""
    photo = SHARED_DATA / "photos/multires/lfw_funneled_250_vs_150/Rob_Lowe_0001_150px.jpg"
    base = load_rgb_for_oracle(photo)
    negative_corners = 0
    for dx, dy in ((39, 0), (36, 45), (45, 45), (48, 35), (30, 45)):
        image = np.ascontiguousarray(base[dy:, dx:])
        ours = detector.detect(image)
        assert_same_detections(ours, dlib_detections(oracle, image))
        negative_corners += sum(1 for d in ours for v in d.box[:2] if v < 0)
    assert negative_corners >= 5


def test_grey_image_matches_dlib(shared_data, oracle, detector):
    photo = SHARED_DATA / "photos/multires/lfw_funneled_250_vs_150/Teresa_Williams_0001_250px.jpg"
    with Image.open(photo) as img:
        grey = np.asarray(img.convert("L"), dtype=np.uint8).copy()
    ours = detector.detect(grey)
    assert len(ours) == 1
    assert_same_detections(ours, dlib_detections(oracle, grey))


def test_blank_images_have_no_faces(oracle, detector):
    for value in (0, 128, 255):
        image = np.full((240, 320, 3), value, dtype=np.uint8)
        assert detector.detect(image) == []
        assert detector.detect(image, upsample=1) == []
        assert dlib_detections(oracle, image) == []


@pytest.mark.parametrize("shape", [(1, 1), (1, 5), (5, 1), (2, 3), (10, 10), (100, 3), (3, 100)])
def test_tiny_images_do_not_crash(detector, shape):
    # dlib itself raises on most of these; we simply find nothing.
    image = np.full((*shape, 3), 90, dtype=np.uint8)
    for upsample in (0, 1, 2):
        assert detector.detect(image, upsample=upsample) == []


# ---------------------------------------------------------------------------------------------
# API behaviour


def test_detect_many_batches_and_keeps_order(shared_data, detector):
    names = tuple(
        f"multires/lfw_funneled_250_vs_150/{n}"
        for n in ("Rob_Lowe_0001_250px.jpg", "Rob_Lowe_0002_250px.jpg", "Rob_Lowe_0001_150px.jpg")
    )
    images = [load_rgb_for_oracle(p) for p in _photos_named(names)]
    images.insert(1, np.full((250, 250, 3), 128, dtype=np.uint8))  # same size, no face
    one_by_one = [detector.detect(image) for image in images]
    small_batches = FaceDetector(max_batch_pixels=1)  # one image per forward pass
    for batched in (detector.detect_many(images), small_batches.detect_many(images)):
        for found, expected in zip(batched, one_by_one, strict=True):
            assert_same_detections(found, expected)
    assert [len(found) for found in one_by_one] == [1, 0, 1, 1]


def test_threshold_trades_recall_for_precision(shared_data, detector):
    image = load_rgb_for_oracle(SHARED_DATA / "photos/group/deepface/selfie-many-people.jpg", 400)
    default = detector.detect(image)
    permissive = detector.detect(image, threshold=-1.0)
    assert default and all(d.score > 0 for d in default)
    assert all(d.score > -1.0 for d in permissive)
    assert len(permissive) > len(default)
    # Greedy NMS sees the same higher-scoring windows first, so those results are kept as is.
    assert permissive[: len(default)] == default
    assert [d.score for d in permissive] == sorted((d.score for d in permissive), reverse=True)
    assert detector.detect(image, threshold=100.0) == []


def test_rejects_what_it_cannot_read(detector):
    with pytest.raises(TypeError):
        detector.detect(np.zeros((20, 20, 3), dtype=np.float32))
    with pytest.raises(ValueError):
        detector.detect(np.zeros((20, 20, 4), dtype=np.uint8))
    with pytest.raises(ValueError):
        detector.detect(np.zeros((20, 20, 3), dtype=np.uint8), upsample=-1)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu(shared_data, detector):
    on_gpu = FaceDetector(device="cuda")
    for photo in _photos_named(tuple(UPSAMPLE_PHOTOS)):
        image = load_rgb_for_oracle(photo, UPSAMPLE_PHOTOS[_photo_id(photo)])
        for upsample in (0, 1):
            assert_same_detections(
                on_gpu.detect(image, upsample=upsample), detector.detect(image, upsample=upsample)
            )


# ---------------------------------------------------------------------------------------------
# The model file and the pieces


def test_parses_the_model_file():
    arrays = parse_detector(model_path("detector").read_bytes())
    assert arrays["window"].tolist() == [80, 80]
    assert arrays["nms"].tolist() == pytest.approx([0.3383, 1.0], abs=1e-4)
    assert arrays["means"].tolist() == pytest.approx([122.782, 117.001, 104.298], abs=1e-3)
    assert arrays["pyramid"].tolist() == [6, 10, 11]
    shapes = [arrays[f"conv{i}.weight"].shape for i in range(7)]
    assert shapes == [
        (16, 3, 5, 5),
        (32, 16, 5, 5),
        (32, 32, 5, 5),
        (45, 32, 5, 5),
        (45, 45, 5, 5),
        (45, 45, 5, 5),
        (1, 45, 9, 9),
    ]
    assert all(np.isfinite(a).all() for a in arrays.values())


def test_damaged_model_files_are_refused():
    data = model_path("detector").read_bytes()
    for damaged in (
        data[: len(data) // 2],  # truncated
        data[:-1],
        data + b"\x01\x00",  # trailing bytes
        data.replace(b"bn_con2", b"bn_fc_2", 1),  # a layer that does not belong there
        data.replace(b"loss_mmod_", b"loss_mmoX_", 1),
        b"",
    ):
        with pytest.raises(DlibFormatError, match="mmod face detector file"):
            parse_detector(damaged)


def test_pyramid_up_is_bit_exact_with_dlib(dlib):
    rng = np.random.default_rng(7)
    for trial in range(30):
        rows, cols = (int(v) for v in rng.integers(1, 90, size=2))
        if trial % 2:
            image = rng.integers(0, 256, (rows, cols, 3), dtype=np.uint8)
        else:  # flat patches: interpolations land exactly on integers, where truncation bites
            patches = rng.integers(0, 256, (rows // 4 + 1, cols // 4 + 1, 3), dtype=np.uint8)
            image = np.ascontiguousarray(patches.repeat(4, 0).repeat(4, 1)[:rows, :cols])
        out_rows, out_cols = pyramid_up_size(rows, cols)
        expected = dlib.resize_image(image, out_rows, out_cols)
        np.testing.assert_array_equal(pyramid_up(torch.from_numpy(image)).numpy(), expected)


def test_strips_and_bands_compute_the_same_scores(shared_data, detector):
    """The memory-saving paths (strip-wise downsampling, banded score layer) change nothing
    but the summation order inside oneDNN."""
    image = load_rgb_for_oracle(SHARED_DATA / "photos/group/dlib/2008_002079.jpg", 400)
    model = detector._model
    layout = tiled_pyramid_layout(*image.shape[:2], 6, 10, 11)
    with torch.inference_mode():
        canvas = build_tiled_pyramid(torch.from_numpy(image.copy())[None], model.means, layout)
        whole = model.net.downsample(canvas)
        strips = model.net.downsample(canvas, strip_rows=5)
        torch.testing.assert_close(strips, whole, rtol=0, atol=1e-5)
        features = whole
        for conv in model.net.convs[3:-1]:
            features = torch.relu(conv(features))
        banded = model.net._score(features, chunk_pixels=300)
        torch.testing.assert_close(banded, model.net._score(features), rtol=0, atol=1e-5)

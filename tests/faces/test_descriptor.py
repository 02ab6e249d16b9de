"""The PyTorch port of dlib's face descriptor ResNet gives dlib's descriptors on real faces.

dlib (dlib-bin) is the oracle: it finds the faces (HOG detector, 5-point landmarks), cuts the
150x150 chips, and computes the reference descriptors; our net must reproduce them.
"""

from __future__ import annotations

import shutil
from functools import cache
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import SHARED_DATA, load_rgb_for_oracle, shared_photos

from photosearch.faces import descriptor
from photosearch.faces.descriptor import FaceDescriptor, zero_pad_add
from photosearch.faces.models import registry
from photosearch.faces.models.dlib_format import DlibFormatError
from photosearch.faces.models.resnet_parse import parse_descriptor_model

ORACLE_TOLERANCE = 1e-4  # max abs difference to dlib, per descriptor component
MIN_ORACLE_FACES = 60


@cache
def _dlib_models(dlib):
    detector = dlib.get_frontal_face_detector()
    landmarks = dlib.shape_predictor(str(registry.model_path("landmarks5")))
    recognizer = dlib.face_recognition_model_v1(str(registry.model_path("descriptor")))
    return detector, landmarks, recognizer


def _dlib_chips(dlib, paths: list[Path], max_side: int) -> tuple[np.ndarray, list[str]]:
    """dlib's aligned 150x150 chips of every face its HOG detector finds, with their source."""
    detector, landmarks, _ = _dlib_models(dlib)
    chips, sources = [], []
    for path in paths:
        image = load_rgb_for_oracle(path, max_side=max_side)
        for box in detector(image, 0):
            shape = landmarks(image, box)
            chips.append(dlib.get_face_chip(image, shape, size=150, padding=0.25))
            sources.append(f"{path.relative_to(SHARED_DATA)} {box}")
    return np.stack(chips), sources


def _dlib_descriptors(dlib, chips: np.ndarray) -> np.ndarray:
    _, _, recognizer = _dlib_models(dlib)
    return np.asarray(recognizer.compute_face_descriptor(list(chips)), dtype=np.float32)


@pytest.fixture(scope="module")
def face_descriptor() -> FaceDescriptor:
    return FaceDescriptor()


@pytest.fixture(scope="module")
def lfw_chips(shared_data, dlib) -> np.ndarray:
    """A dozen chips of different people from LFW (small images: cheap to detect)."""
    people = sorted(p for p in (shared_data / "lfw-devtrain").iterdir() if p.is_dir())[::300]
    paths = [sorted(person.glob("*.jpg"))[0] for person in people]
    chips, _ = _dlib_chips(dlib, paths, max_side=250)
    assert len(chips) >= 10
    return chips


def test_matches_dlib_on_real_faces(shared_data, dlib, face_descriptor):
    # Every other group photo and every fourth single-person photo (decoding the large ones is what
    # costs time); all faces dlib's HOG detector finds in them.
    photos = shared_photos()
    group = [p for p in photos if "group" in p.relative_to(shared_data).parts][::2]
    people = [p for p in photos if "people" in p.relative_to(shared_data).parts][::4]
    chips, sources = _dlib_chips(dlib, group + people, max_side=800)
    from_people = sum("people" in s.split("/") for s in sources)
    assert len(chips) >= MIN_ORACLE_FACES and 0 < from_people < len(chips)

    expected = _dlib_descriptors(dlib, chips)
    ours = face_descriptor.compute(chips)

    assert ours.shape == (len(chips), 128) and ours.dtype == np.float32
    errors = np.abs(ours - expected).max(axis=1)
    worst = int(errors.argmax())
    assert errors.max() <= ORACLE_TOLERANCE, f"{sources[worst]}: max abs error {errors[worst]}"
    # Not a degenerate match: the descriptors are dlib's unnormalized vectors of distinct faces.
    norms = np.linalg.norm(ours, axis=1)
    assert norms.min() > 0.5 and len(np.unique(ours.round(3), axis=0)) > len(chips) // 2


def test_batched_equals_one_by_one(face_descriptor, lfw_chips):
    one_by_one = np.concatenate([face_descriptor.compute(chip[None]) for chip in lfw_chips])
    for batch_size in (32, 5):  # one batch, and batches with a ragged last one
        batched = face_descriptor.compute(lfw_chips, batch_size=batch_size)
        np.testing.assert_allclose(batched, one_by_one, rtol=0, atol=1e-5)


def test_mirror_augmentation_is_deterministic_and_matches_dlib_average(
    dlib, face_descriptor, lfw_chips
):
    chips = lfw_chips[:4]
    plain = face_descriptor.compute(chips)
    mirrored = face_descriptor.compute(chips, mirror=True)
    np.testing.assert_array_equal(mirrored, face_descriptor.compute(chips, mirror=True))
    assert np.abs(mirrored - plain).max() > 1e-3
    # It is the mean of the chip's and its mirror image's descriptors, as dlib computes them.
    flipped = np.ascontiguousarray(chips[:, :, ::-1])
    expected = (_dlib_descriptors(dlib, chips) + _dlib_descriptors(dlib, flipped)) / 2
    np.testing.assert_allclose(mirrored, expected, rtol=0, atol=ORACLE_TOLERANCE)
    # A face and its mirror image are the same person: the average stays close to the plain one.
    assert np.linalg.norm(mirrored - plain, axis=1).max() < descriptor.MATCH_THRESHOLD / 2


def test_compute_validates_input(face_descriptor):
    empty = face_descriptor.compute(np.zeros((0, 150, 150, 3), dtype=np.uint8))
    assert empty.shape == (0, 128) and empty.dtype == np.float32
    with pytest.raises(ValueError, match="uint8"):
        face_descriptor.compute(np.zeros((1, 150, 150, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="150, 150, 3"):
        face_descriptor.compute(np.zeros((150, 150, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match="batch_size"):
        FaceDescriptor(batch_size=0)


def test_zero_pad_add_pads_channels_and_space_top_left():
    branch = torch.ones(1, 1, 1, 1)  # e.g. the 1x1 conv branch of the last down block
    shortcut = torch.full((1, 2, 2, 2), 10.0)
    total = zero_pad_add(branch, shortcut)
    expected = torch.full((1, 2, 2, 2), 10.0)
    expected[0, 0, 0, 0] = 11.0
    assert torch.equal(total, expected)
    assert torch.equal(zero_pad_add(shortcut, branch), expected)


@pytest.fixture(scope="module")
def model_bytes() -> bytes:
    return registry.model_path("descriptor").read_bytes()


def test_parser_reads_the_whole_network(model_bytes):
    arrays = parse_descriptor_model(model_bytes)
    convs = [k for k in arrays if k.endswith(".weight") and arrays[k].ndim == 4]
    affines = [k for k in arrays if k.endswith(".gamma")]
    assert len(convs) == len(affines) == 29
    assert arrays["fc.weight"].shape == (128, 256)
    assert all(v.dtype == np.float32 and np.isfinite(v).all() for v in arrays.values())
    # Channel means of RGB photos: positive, red > green > blue, in pixel units.
    means = arrays["input.means"]
    assert means.shape == (3,) and 90 < means[2] < means[1] < means[0] < 140


@pytest.mark.parametrize("keep", [0, 10, 20_000, None])
def test_truncated_model_is_rejected_clearly(model_bytes, keep):
    cut = model_bytes[: len(model_bytes) // 2 if keep is None else keep]
    with pytest.raises(DlibFormatError, match=r"descriptor model, .*(end of data|control byte)"):
        parse_descriptor_model(cut)


def test_corrupted_model_names_the_layer(model_bytes):
    data = bytearray(model_bytes)
    data[data.index(b"con_4") + 4] = ord("9")  # the stem conv's record name
    with pytest.raises(DlibFormatError, match=r"layer 0 \(con stem.conv\).*'con_9'"):
        parse_descriptor_model(bytes(data))
    data = bytearray(model_bytes)
    at = data.rindex(b"fc_2") + 4
    data[at : at + 2] = b"\x01\x40"  # fc outputs 128 -> 64
    with pytest.raises(DlibFormatError, match=r"\(fc fc\): fc outputs: expected 128, got 64"):
        parse_descriptor_model(bytes(data))
    with pytest.raises(DlibFormatError, match="trailing bytes"):
        parse_descriptor_model(model_bytes + b"\x00")


def test_damaged_model_file_fails_at_first_use(tmp_path, monkeypatch):
    models = tmp_path / "models"
    models.mkdir()
    target = models / registry.MODELS["descriptor"].filename
    shutil.copy(registry.model_path("descriptor"), target)
    target.write_bytes(target.read_bytes()[:-1000])
    monkeypatch.setenv("PHOTOSEARCH_MODELS_DIR", str(models))
    monkeypatch.setenv("PHOTOSEARCH_CACHE_DIR", str(tmp_path / "cache"))
    registry.model_path.cache_clear()
    descriptor.load_descriptor_arrays.cache_clear()
    try:
        lazy = FaceDescriptor()  # constructing loads nothing
        with pytest.raises(registry.ModelError, match="altered"):
            lazy.compute(np.zeros((1, 150, 150, 3), dtype=np.uint8))
    finally:
        registry.model_path.cache_clear()
        descriptor.load_descriptor_arrays.cache_clear()

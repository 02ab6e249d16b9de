"""Shared test fixtures: the real photos in ../shared/data and the dlib test oracle."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("PHOTOSEARCH_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".heic", ".heif", ".bmp"}


def shared_photos() -> list[Path]:
    """Every image file under ../shared/data/photos (people, group, multires), sorted."""
    root = SHARED_DATA / "photos"
    if not root.is_dir():
        return []
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread_per_worker():
    """pytest-xdist runs one worker per core: torch's own threads on top would oversubscribe the
    cores, and on a busy 2-core machine that is several times slower than one thread each."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        import torch

        torch.set_num_threads(1)
    yield


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"test photos not found at {SHARED_DATA} (clone the project beside ../shared)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def dlib():
    """dlib-bin, the test-only oracle that proves our port matches dlib."""
    return pytest.importorskip("dlib", reason="dlib-bin (test-only oracle) is not installed")


def load_rgb_for_oracle(path: Path, max_side: int | None = None) -> np.ndarray:
    """Decode a photo to an RGB uint8 array, optionally shrunk so its longer side <= max_side.

    Oracle tests feed the *same* array to dlib and to our port, so this only has to be
    deterministic; shrinking keeps dlib's slow CNN within the test-time budget.
    """
    with Image.open(path) as img:
        img = ImageOps.exif_transpose(img).convert("RGB")
        if max_side and max(img.size) > max_side:
            scale = max_side / max(img.size)
            size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
            img = img.resize(size, Image.Resampling.BILINEAR)
        return np.ascontiguousarray(np.asarray(img, dtype=np.uint8))

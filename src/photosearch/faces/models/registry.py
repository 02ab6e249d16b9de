"""Pinned model files: where they are, whether they are intact, and a cache of parsed tensors.

The weights are dlib's, shipped as data files in the PyPI package ``face_recognition_models``,
and MTCNN's (the proposal stage of the default detector), shipped as data files in the PyPI
package ``facenet-pytorch`` 2.6.0 (installed with ``--no-deps``: its pins would replace torch).
We locate each package without importing it (``face_recognition_models`` needs ``pkg_resources``,
``facenet_pytorch`` needs torchvision), check
each file against a pinned SHA-256 and parse it once; the parsed arrays are cached as ``.npz``
under the user cache directory, keyed by the file checksum and the parser version, so later
start-ups skip the (slow, pure-Python) parse.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

__all__ = [
    "INSTALL_HINT",
    "MODELS",
    "MODELS_PACKAGE",
    "MODEL_ID",
    "MTCNN_INSTALL_HINT",
    "MTCNN_PACKAGE",
    "ModelError",
    "ModelSpec",
    "Parser",
    "cache_dir",
    "load_parsed",
    "model_path",
    "models_dir",
]

MODELS_PACKAGE = "face_recognition_models"
INSTALL_HINT = "pip install --force-reinstall face_recognition_models==0.3.0"
MTCNN_PACKAGE = "facenet_pytorch"
MTCNN_INSTALL_HINT = "pip install --force-reinstall --no-deps facenet-pytorch==2.6.0"


class ModelError(RuntimeError):
    """A model file is missing, altered or unreadable; the message says how to fix it."""


@dataclass(frozen=True)
class ModelSpec:
    """One pinned weight file."""

    key: str
    filename: str
    sha256: str
    description: str
    package: str = MODELS_PACKAGE  # the PyPI package whose data folder holds the file
    folder: str = "models"  # that folder, inside the package

    @property
    def install_hint(self) -> str:
        return MTCNN_INSTALL_HINT if self.package == MTCNN_PACKAGE else INSTALL_HINT


MODELS: dict[str, ModelSpec] = {
    spec.key: spec
    for spec in (
        ModelSpec(
            "detector",
            "mmod_human_face_detector.dat",
            "4cb19393e2fbaf2b1609a9319ad5386618c886a6234ec1b971f3e87c85d87fe6",
            "MMOD CNN face detector",
        ),
        ModelSpec(
            "landmarks5",
            "shape_predictor_5_face_landmarks.dat",
            "c4b1e9804792707d3a405c2c16a80a20269e6675021f64a41d30fffafbc41888",
            "5-point face landmark predictor",
        ),
        ModelSpec(
            "descriptor",
            "dlib_face_recognition_resnet_model_v1.dat",
            "55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30",
            "128-D face descriptor ResNet",
        ),
        ModelSpec(
            "mtcnn_pnet",
            "pnet.pt",
            "a2a71925e0b9996a42f63e47efc1ca19043e69558b5c523b978d611dfae49c8f",
            "MTCNN proposal net",
            MTCNN_PACKAGE,
            "data",
        ),
        ModelSpec(
            "mtcnn_rnet",
            "rnet.pt",
            "bbb937de72efc9ef83b186c49f5f558467a1d7e3453a8ece0d71a886633f6a86",
            "MTCNN refinement net",
            MTCNN_PACKAGE,
            "data",
        ),
        ModelSpec(
            "mtcnn_onet",
            "onet.pt",
            "165bfbe42940416ccfb977545cf0e976d5bf321f67083ae2aaaa5c764280118d",
            "MTCNN output net",
            MTCNN_PACKAGE,
            "data",
        ),
    )
}

# Identifies the whole model set in stored indexes: descriptors from another set are not comparable.
MODEL_ID = "dlib-resnet-v1+mmod+sp5"


def models_dir(package: str = MODELS_PACKAGE, folder: str = "models") -> Path:
    """The folder holding a package's model files (``PHOTOSEARCH_MODELS_DIR`` overrides, for
    every package: put all the files there)."""
    override = os.environ.get("PHOTOSEARCH_MODELS_DIR")
    if override:
        return Path(override)
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        hint = MTCNN_INSTALL_HINT if package == MTCNN_PACKAGE else INSTALL_HINT
        raise ModelError(f"the model package {package!r} is not installed: {hint}")
    return Path(next(iter(spec.submodule_search_locations))) / folder


def cache_dir() -> Path:
    """Where parsed models are cached (``PHOTOSEARCH_CACHE_DIR`` overrides)."""
    override = os.environ.get("PHOTOSEARCH_CACHE_DIR")
    if override:
        return Path(override)
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("photosearch")) / "models"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@cache
def model_path(key: str) -> Path:
    """Path of a verified model file; raises ModelError if it is missing or altered."""
    spec = MODELS[key]
    path = models_dir(spec.package, spec.folder) / spec.filename
    if not path.is_file():
        raise ModelError(f"{spec.description} file not found at {path}: {spec.install_hint}")
    actual = _sha256(path)
    if actual != spec.sha256:
        raise ModelError(
            f"{spec.description} file {path} is altered (sha256 {actual[:12]}..., expected "
            f"{spec.sha256[:12]}...): {spec.install_hint}"
        )
    return path


Parser = Callable[[bytes], dict[str, np.ndarray]]


def load_parsed(key: str, parser: Parser, parser_version: int) -> dict[str, np.ndarray]:
    """The parsed arrays of a model file, from the cache when present, else parsed and cached.

    ``parser_version`` must be bumped whenever the parser's output changes.
    """
    spec = MODELS[key]
    path = model_path(key)
    cached = cache_dir() / f"{key}-{spec.sha256[:16]}-p{parser_version}.npz"
    if cached.is_file():
        try:
            with np.load(cached, allow_pickle=False) as stored:
                return {name: stored[name] for name in stored.files}
        except (OSError, ValueError):
            pass  # a damaged cache entry is simply rebuilt below
    arrays = parser(path.read_bytes())
    _write_cache(cached, arrays)
    return arrays


def _write_cache(target: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write atomically (temp file + rename) so a crash never leaves a half-written cache entry."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".tmp")
        with os.fdopen(fd, "wb") as handle:
            np.savez(handle, **arrays)
        os.replace(tmp, target)
    except OSError:
        pass  # an unwritable cache only costs start-up time

"""Model files are located without importing their package, verified, and cached once parsed."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from photosearch.faces.models import registry
from photosearch.faces.models.dlib_format import DlibFormatError, DlibReader


@pytest.fixture
def isolated_models(tmp_path, monkeypatch):
    """A private copy of the small detector file and an empty cache, for tampering."""
    models = tmp_path / "models"
    models.mkdir()
    shutil.copy(registry.model_path("detector"), models / registry.MODELS["detector"].filename)
    monkeypatch.setenv("PHOTOSEARCH_MODELS_DIR", str(models))
    monkeypatch.setenv("PHOTOSEARCH_CACHE_DIR", str(tmp_path / "cache"))
    registry.model_path.cache_clear()
    yield models
    registry.model_path.cache_clear()


def test_installed_models_match_pinned_checksums():
    for key in registry.MODELS:
        assert registry.model_path(key).is_file()


def test_altered_model_file_is_refused_with_fix(isolated_models):
    target = isolated_models / registry.MODELS["detector"].filename
    data = bytearray(target.read_bytes())
    data[1000] ^= 0xFF
    target.write_bytes(bytes(data))
    with pytest.raises(registry.ModelError, match=r"altered.*pip install --force-reinstall"):
        registry.model_path("detector")


def test_missing_model_file_is_reported(isolated_models):
    (isolated_models / registry.MODELS["detector"].filename).unlink()
    with pytest.raises(registry.ModelError, match="not found"):
        registry.model_path("detector")


def test_parsed_arrays_are_cached_and_reused(isolated_models, tmp_path):
    calls = []

    def parser(data: bytes) -> dict[str, np.ndarray]:
        calls.append(len(data))
        return {"head": np.frombuffer(data[:16], dtype=np.uint8).copy()}

    first = registry.load_parsed("detector", parser, parser_version=1)
    second = registry.load_parsed("detector", parser, parser_version=1)
    assert len(calls) == 1
    np.testing.assert_array_equal(first["head"], second["head"])
    # A new parser version invalidates the cache entry.
    registry.load_parsed("detector", parser, parser_version=2)
    assert len(calls) == 2
    # A damaged cache file is rebuilt instead of crashing.
    for cached in (tmp_path / "cache").glob("*.npz"):
        cached.write_bytes(b"garbage")
    registry.load_parsed("detector", parser, parser_version=2)
    assert len(calls) == 3


def test_reader_decodes_dlib_integers_and_floats():
    # 0 -> 01 00; -300 -> 82 2c 01; float 1.5 = 3 * 2**-1 -> mantissa 3, exponent -1
    reader = DlibReader(bytes([0x01, 0x00, 0x82, 0x2C, 0x01, 0x01, 0x03, 0x81, 0x01]))
    assert reader.int() == 0
    assert reader.int() == -300
    assert reader.float() == 1.5
    assert reader.remaining() == 0
    with pytest.raises(DlibFormatError, match="unexpected end"):
        reader.int()

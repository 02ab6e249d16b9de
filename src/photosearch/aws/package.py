"""The SageMaker model package: ``model.tar.gz`` with the weights, the code and its requirements.

One archive serves both containers (see docs/sagemaker.md):

    photosearch-package.json   what this is: model id, package version, file checksums
    models/*.dat, *.pt         dlib's and MTCNN's weight files (the registry checks SHA-256)
    cache/*.npz                the same weights parsed to numpy (fast start-up, no parsing)
    code/inference.py          the SageMaker PyTorch serving entry (model_fn ... output_fn)
    code/processing.py         the Processing job entry (indexes the instance's shard)
    code/requirements.txt      what the prebuilt PyTorch containers lack
    code/photosearch/...       this package's source

The endpoint's container unpacks it to /opt/ml/model and imports code/inference.py; a
Processing job gets it as an input and unpacks it itself (`PROCESSING_ENTRYPOINT`).

The archive is deterministic (sorted entries, zero timestamps and owners), so its version,
``<photosearch version>-<12 hex digits of the content digest>``, changes exactly when the
weights or the code do, and packaging twice uploads once.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.metadata
import json
import re
import shutil
import tarfile
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from photosearch import __version__
from photosearch.faces.models import registry

PACKAGE_FORMAT = "photosearch-sagemaker-package"
PACKAGE_FORMAT_VERSION = 1
MANIFEST_NAME = "photosearch-package.json"
PACKAGE_KEY_PREFIX = "packages"
# Requirements the prebuilt SageMaker PyTorch containers already satisfy (torch) or that the
# package itself replaces (the weights are inside it).
PROVIDED_BY_CONTAINER = {"torch", "face_recognition_models", "face-recognition-models"}
SOURCE_ROOT = Path(__file__).resolve().parents[1]  # the photosearch package
# The web app (streamlit) has no place in a container.
EXCLUDED_SOURCE_DIRS = {"app", "__pycache__"}
CHECKSUM_METADATA_KEY = "sha256"

INFERENCE_SHIM = '''"""SageMaker PyTorch serving entry: the handler is photosearch.aws.inference."""

from photosearch.aws.inference import input_fn, model_fn, output_fn, predict_fn

__all__ = ["input_fn", "model_fn", "output_fn", "predict_fn"]
'''

PROCESSING_SHIM = '''"""SageMaker Processing entry: indexes this instance's shard of the album."""

import sys

from photosearch.aws.processing import main

if __name__ == "__main__":
    sys.exit(main())
'''


@dataclass(frozen=True)
class PackageInfo:
    """What a built package holds (its photosearch-package.json)."""

    path: Path
    model_id: str
    package_version: str
    photosearch_version: str
    sha256: str  # of the archive file
    size: int
    files: dict[str, str]  # archive path -> sha256

    @property
    def model_slug(self) -> str:
        return model_slug(self.model_id)

    def s3_key(self, prefix: str = PACKAGE_KEY_PREFIX) -> str:
        """Where the package lives in the artifacts bucket: versioned by model and content."""
        return f"{prefix}/{self.model_slug}/{self.package_version}/model.tar.gz"

    def to_json(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "model_id": self.model_id,
            "package_version": self.package_version,
            "photosearch_version": self.photosearch_version,
            "sha256": self.sha256,
            "bytes": self.size,
        }


def model_slug(model_id: str) -> str:
    """A model id as one S3 path segment: 'dlib-resnet-v1+mmod+sp5+mirror' ->
    'dlib-resnet-v1-mmod-sp5-mirror'."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", model_id).strip("-")


def container_requirements() -> list[str]:
    """photosearch's own requirements minus what the container has or the package carries."""
    try:
        declared = importlib.metadata.requires("photosearch") or []
    except importlib.metadata.PackageNotFoundError:
        declared = []
    keep = []
    for requirement in declared:
        if ";" in requirement and "extra" in requirement.split(";", 1)[1]:
            continue
        name = re.split(r"[<>=!~\[ ;]", requirement, maxsplit=1)[0].strip()
        if name.lower() in PROVIDED_BY_CONTAINER:
            continue
        keep.append(requirement.split(";", 1)[0].strip())
    return sorted(keep, key=str.lower)


def _parsers() -> list[tuple[str, Callable[[bytes], dict], int]]:
    """(model key, parser, parser version) of each model, as its module loads it."""
    from photosearch.faces import detector, landmarks
    from photosearch.faces.models import resnet_parse

    return [
        ("detector", detector.parse_detector, detector.PARSER_VERSION),
        ("landmarks5", landmarks.parse_shape_predictor, landmarks.PARSER_VERSION),
        ("descriptor", resnet_parse.parse_descriptor_model, resnet_parse.PARSER_VERSION),
    ]


def _parsed_cache_name(key: str, version: int) -> str:
    # The registry's cache naming: <key>-<16 hex of the file's SHA-256>-p<parser version>.npz
    return f"{key}-{registry.MODELS[key].sha256[:16]}-p{version}.npz"


def _stage_weights(staging: Path) -> None:
    """models/* (every pinned weight file: dlib's and MTCNN's) and cache/*.npz under `staging`
    (parsing once if the user cache lacks it)."""
    import numpy as np

    (staging / "models").mkdir(parents=True)
    (staging / "cache").mkdir()
    parsed = {key for key, _, _ in _parsers()}
    for key, spec in registry.MODELS.items():
        if key not in parsed:  # loaded as they are (MTCNN's state dicts)
            shutil.copyfile(registry.model_path(key), staging / "models" / spec.filename)
    for key, parser, version in _parsers():
        shutil.copyfile(
            registry.model_path(key), staging / "models" / registry.MODELS[key].filename
        )
        arrays = registry.load_parsed(key, parser, version)  # fills the user cache if needed
        name = _parsed_cache_name(key, version)
        cached = registry.cache_dir() / name
        if cached.is_file():
            shutil.copyfile(cached, staging / "cache" / name)
        else:  # unwritable user cache: write the entry ourselves
            with (staging / "cache" / name).open("wb") as handle:
                np.savez(handle, **arrays)


def _stage_code(staging: Path) -> None:
    code = staging / "code"
    for source in sorted(SOURCE_ROOT.rglob("*.py")):
        relative = source.relative_to(SOURCE_ROOT)
        if EXCLUDED_SOURCE_DIRS & set(relative.parts[:-1]):
            continue
        target = code / "photosearch" / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
    (code / "inference.py").write_text(INFERENCE_SHIM)
    (code / "processing.py").write_text(PROCESSING_SHIM)
    (code / "requirements.txt").write_text("\n".join(container_requirements()) + "\n")


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _content_digest(files: dict[str, str]) -> str:
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(f"{name}\0{files[name]}\n".encode())
    return digest.hexdigest()


def _write_archive(staging: Path, output: Path, compresslevel: int) -> None:
    """A reproducible tar.gz: sorted entries, no timestamps, no owners."""

    def normalise(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.mtime = 0
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        info.mode = 0o755 if info.isdir() else 0o644
        return info

    with (
        output.open("wb") as raw,
        gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, compresslevel=compresslevel) as zipped,
        tarfile.open(fileobj=zipped, mode="w", format=tarfile.PAX_FORMAT) as archive,
    ):
        for path in sorted(staging.rglob("*")):
            relative = path.relative_to(staging).as_posix()
            archive.add(path, arcname=relative, recursive=False, filter=normalise)


def build_package(output: Path, *, compresslevel: int = 6) -> PackageInfo:
    """Build model.tar.gz at `output` (parent folders created) and describe it."""
    from photosearch.faces.engine import FaceEngine

    model_id = FaceEngine(device="cpu").model_id  # the default engine: what the index uses
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="photosearch-package-") as temporary:
        staging = Path(temporary) / "package"
        _stage_weights(staging)
        _stage_code(staging)
        files = {
            path.relative_to(staging).as_posix(): _sha256_file(path)
            for path in sorted(staging.rglob("*"))
            if path.is_file()
        }
        version = f"{__version__}-{_content_digest(files)[:12]}"
        manifest = {
            "format": PACKAGE_FORMAT,
            "format_version": PACKAGE_FORMAT_VERSION,
            "model_id": model_id,
            "package_version": version,
            "photosearch_version": __version__,
            "files": files,
        }
        (staging / MANIFEST_NAME).write_text(json.dumps(manifest, indent=1, sort_keys=True))
        _write_archive(staging, output, compresslevel)
    return PackageInfo(
        path=output,
        model_id=model_id,
        package_version=version,
        photosearch_version=__version__,
        sha256=_sha256_file(output),
        size=output.stat().st_size,
        files=files,
    )


def read_package_manifest(archive: Path) -> dict[str, Any]:
    """The photosearch-package.json of a built archive."""
    with tarfile.open(archive, "r:gz") as opened:
        member = opened.extractfile(MANIFEST_NAME)
        if member is None:
            raise ValueError(f"{archive} is not a photosearch package (no {MANIFEST_NAME})")
        return json.loads(member.read())


def unpack_package(archive: Path, target: Path) -> dict[str, Any]:
    """Extract a package (as SageMaker does into /opt/ml/model) and check every file's SHA-256."""
    target.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "r:gz") as opened:
        opened.extractall(target, filter="data")
    manifest = json.loads((target / MANIFEST_NAME).read_text())
    for name, expected in manifest["files"].items():
        if _sha256_file(target / name) != expected:
            raise ValueError(f"package file {name} does not match its checksum")
    return manifest


def package_environment(model_dir: Path) -> dict[str, str]:
    """Environment that makes photosearch use an unpacked package's weights."""
    return {
        "PHOTOSEARCH_MODELS_DIR": str(model_dir / "models"),
        "PHOTOSEARCH_CACHE_DIR": str(model_dir / "cache"),
    }


# ----------------------------------------------------------------------------------------------
# Upload


@dataclass(frozen=True)
class UploadedPackage:
    uri: str
    uploaded: bool  # False: the same archive was there already


def upload_package(s3: Any, package: PackageInfo, bucket: str) -> UploadedPackage:
    """Put the archive at its versioned key unless the identical archive is there already."""
    from botocore.exceptions import ClientError

    from photosearch.aws.clients import explained
    from photosearch.storage.s3 import error_code

    key = package.s3_key()
    uri = f"s3://{bucket}/{key}"
    with explained(f"uploading the model package to {uri}"):
        try:
            head = s3.head_object(Bucket=bucket, Key=key)
        except ClientError as exc:
            if error_code(exc) not in {"404", "NoSuchKey", "NotFound"}:
                raise
            head = None
        if head is not None and head.get("Metadata", {}).get(CHECKSUM_METADATA_KEY) == (
            package.sha256
        ):
            return UploadedPackage(uri, uploaded=False)
        s3.upload_file(
            str(package.path),
            bucket,
            key,
            ExtraArgs={
                "ContentType": "application/gzip",
                "Metadata": {
                    CHECKSUM_METADATA_KEY: package.sha256,
                    "model-id": package.model_id,
                    "package-version": package.package_version,
                },
            },
        )
    return UploadedPackage(uri, uploaded=True)

"""The search endpoint's handler, on the SageMaker PyTorch serving contract.

The prebuilt SageMaker PyTorch inference containers import ``code/inference.py`` from
model.tar.gz (a shim re-exporting this module) and call:

- ``model_fn(model_dir)`` once per worker: the face engine (weights from the package) and the
  index named by the ``PHOTOSEARCH_INDEX`` environment variable (set on the SageMaker Model);
- ``input_fn(body, content_type)``: raw image bytes (``image/*``, ``application/x-image``,
  ``application/octet-stream``), or JSON ``{"images": [base64, ...], "threshold": 0.6,
  "face": 0 | [0, null, ...], "exclude": [[photo, face], ...]}``;
- ``predict_fn(request, model)``: the faces of each reference photo (the chosen face of each,
  the largest by default, is the person) and every album photo with a face within the
  threshold of any of them;
- ``output_fn(prediction, accept)``: JSON.

Bad requests raise `RequestError` with an HTTP status (400 bad JSON or fields, 406 accept,
413 too large, 415 content type, 422 no usable face) and a sentence saying what to fix; the
serving toolkit answers with that status because the error derives from its
``BaseInferenceToolkitError`` when that is importable. The index is re-read when its manifest
changes (checked at most every ``PHOTOSEARCH_INDEX_RECHECK_SECONDS``, default 10 s).
"""

from __future__ import annotations

import base64
import binascii
import http
import json
import math
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from photosearch.faces.base import FaceFinder
from photosearch.search import query
from photosearch.search.query import SearchableIndex

__all__ = [
    "DEFAULT_MAX_IMAGES",
    "DEFAULT_MAX_REQUEST_BYTES",
    "DEFAULT_RECHECK_SECONDS",
    "DEFAULT_THRESHOLD",
    "IMAGE_TYPES",
    "INDEX_ENV",
    "JSON_TYPES",
    "MAX_IMAGES_ENV",
    "MAX_REQUEST_ENV",
    "MAX_THRESHOLD",
    "RECHECK_ENV",
    "REQUEST_FIELDS",
    "IndexCache",
    "InferenceError",
    "LoadedIndex",
    "RequestError",
    "S3Mirror",
    "SearchModel",
    "SearchRequest",
    "ServiceError",
    "find_matches",
    "handle",
    "input_fn",
    "model_fn",
    "output_fn",
    "predict_fn",
]

INDEX_ENV = "PHOTOSEARCH_INDEX"
RECHECK_ENV = "PHOTOSEARCH_INDEX_RECHECK_SECONDS"
MAX_REQUEST_ENV = "PHOTOSEARCH_MAX_REQUEST_BYTES"
MAX_IMAGES_ENV = "PHOTOSEARCH_MAX_REFERENCES"
DEFAULT_RECHECK_SECONDS = 10.0
# SageMaker's own payload limit for real-time endpoints (serverless: 4 MB, async: 1 GB).
DEFAULT_MAX_REQUEST_BYTES = 6 * 1024 * 1024
DEFAULT_MAX_IMAGES = 10
DEFAULT_THRESHOLD = 0.6  # dlib's trained same-person distance
MAX_THRESHOLD = 2.0  # descriptors have norm ~1.5: 2 already matches nearly anything
JSON_TYPES = {"application/json", "text/json"}
IMAGE_TYPES = {"application/x-image", "application/octet-stream"}
REQUEST_FIELDS = ("images", "descriptors", "threshold", "strictness", "face", "exclude")
MAX_STRICTNESS = 1.0  # the adaptive margin; the app's slider goes up to 0.3

try:  # inside the SageMaker containers: errors carry their HTTP status to the client
    from sagemaker_inference.errors import BaseInferenceToolkitError as _ToolkitError
except ImportError:  # anywhere else (the local runner reads `status_code` itself)
    _ToolkitError = Exception


class InferenceError(_ToolkitError):  # type: ignore[misc,valid-type]
    """A failed request: `status_code` and a one-sentence `message` for the caller."""

    def __init__(self, status_code: int, message: str) -> None:
        self.status_code = status_code
        self.message = message
        self.phrase = http.HTTPStatus(status_code).phrase
        Exception.__init__(self, message)

    def __str__(self) -> str:
        return self.message


class RequestError(InferenceError):
    """The request is wrong (4xx): the message says what to send instead."""


class ServiceError(InferenceError):
    """The endpoint cannot answer (5xx): missing or incompatible index."""


def _env_number(name: str, default: float) -> float:
    value = os.environ.get(name)
    try:
        return float(value) if value else default
    except ValueError:
        return default


# ----------------------------------------------------------------------------------------------
# The index, reloaded when its manifest changes


# The handler searches the same arrays as the CLI and the app (photosearch.search.query).
LoadedIndex = SearchableIndex


class S3Mirror:
    """A local copy of an S3 index: manifest.json plus the shards it lists.

    Shards are immutable, so a new manifest costs one GET plus the new shards only. boto3
    (present in every SageMaker container) does the reading: no s3fs in the container.
    """

    def __init__(self, location: str, folder: Path) -> None:
        bucket, _, prefix = location[len("s3://") :].partition("/")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.folder = folder
        self._s3: Any = None

    @property
    def s3(self) -> Any:
        if self._s3 is None:
            import boto3
            from botocore.config import Config

            config = Config(retries={"mode": "standard", "total_max_attempts": 5})
            self._s3 = boto3.session.Session().client("s3", config=config)
        return self._s3

    def key(self, relative: str) -> str:
        return f"{self.prefix}/{relative}" if self.prefix else relative

    def manifest_bytes(self) -> bytes | None:
        from botocore.exceptions import ClientError

        try:
            response = self.s3.get_object(Bucket=self.bucket, Key=self.key("manifest.json"))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in {"NoSuchKey", "404", "NotFound"}:
                return None
            raise
        return response["Body"].read()

    def fetch(self, relative_paths: Sequence[str]) -> None:
        """Download the listed files that are not here yet; drop shards no longer listed."""
        wanted = set(relative_paths)
        for relative in relative_paths:
            target = self.folder / relative
            if target.is_file():
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            partial = target.with_name(f".{target.name}.part")
            self.s3.download_file(self.bucket, self.key(relative), str(partial))
            os.replace(partial, target)
        shards = self.folder / "shards"
        if shards.is_dir():
            for path in shards.iterdir():
                if f"shards/{path.name}" not in wanted:
                    path.unlink(missing_ok=True)


class IndexCache:
    """The current snapshot of one index, re-read when a new manifest is committed."""

    def __init__(self, location: str, recheck_seconds: float = DEFAULT_RECHECK_SECONDS) -> None:
        self.location = location
        self.recheck_seconds = recheck_seconds
        self._lock = threading.Lock()
        self._loaded: LoadedIndex | None = None
        self._checked = -1e18
        self._mirror: S3Mirror | None = None
        self._mirror_dir: str | None = None
        if location.startswith("s3://"):
            self._mirror_dir = tempfile.mkdtemp(prefix="photosearch-index-")
            self._mirror = S3Mirror(location, Path(self._mirror_dir))

    def close(self) -> None:
        if self._mirror_dir:
            shutil.rmtree(self._mirror_dir, ignore_errors=True)

    def current(self) -> LoadedIndex:
        with self._lock:
            now = time.monotonic()
            if self._loaded is not None and now - self._checked < self.recheck_seconds:
                return self._loaded
            self._checked = now
            try:
                self._loaded = self._reload(self._loaded)
            except InferenceError:
                raise
            except Exception as exc:
                if self._loaded is not None:
                    return self._loaded  # a storage hiccup: keep answering from the last one
                raise ServiceError(
                    503, f"cannot read the index at {self.location}: {_one_line(exc)}"
                ) from exc
            return self._loaded

    def _reload(self, loaded: LoadedIndex | None) -> LoadedIndex:
        from photosearch.index.store import IndexReader, Manifest

        if self._mirror is not None:
            raw = self._mirror.manifest_bytes()
            manifest = Manifest.from_json(json.loads(raw)) if raw is not None else None
        else:
            reader = IndexReader(self.location)
            manifest = reader.manifest()
        if manifest is None:
            raise ServiceError(
                503,
                f"no photosearch index at {self.location} yet: build it with "
                "`photosearch aws index` (or `photosearch index`)",
            )
        if loaded is not None and loaded.generation == manifest.generation:
            return loaded
        if self._mirror is not None:
            self._mirror.fetch([shard.path for shard in manifest.shards])
            reader = IndexReader(self._mirror.folder)
        return LoadedIndex.from_snapshot(reader.snapshot(manifest, with_photos=False))


# ----------------------------------------------------------------------------------------------
# Requests


@dataclass
class SearchRequest:
    images: list[bytes]
    labels: list[str]  # how each image is named in messages
    threshold: float | None = None  # None: the adaptive search
    faces: list[int | None] = field(default_factory=list)  # chosen face per image (None: largest)
    exclude: set[tuple[str, int]] = field(default_factory=set)
    strictness: float | None = None  # the adaptive search's margin (None: calibrated default)
    descriptors: list[list[float]] = field(default_factory=list)  # references already described


def _media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def _megabytes(count: int) -> str:
    return f"{count / 2**20:.1f} MiB"


def input_fn(
    request_body: bytes | bytearray | str, request_content_type: str | None
) -> SearchRequest:
    """Parse a request; raises RequestError (4xx) with a clear message.

    Exactly two parameters: the serving toolkit counts them to decide how to call it. Limits
    come from the environment (PHOTOSEARCH_MAX_REQUEST_BYTES, PHOTOSEARCH_MAX_REFERENCES).
    """
    limit = int(_env_number(MAX_REQUEST_ENV, DEFAULT_MAX_REQUEST_BYTES))
    most = int(_env_number(MAX_IMAGES_ENV, DEFAULT_MAX_IMAGES))
    body = request_body.encode("utf-8") if isinstance(request_body, str) else bytes(request_body)
    if len(body) > limit:
        raise RequestError(
            413,
            f"request too large: {_megabytes(len(body))}, the limit is {_megabytes(limit)}; "
            "send smaller reference photos (about 2000 pixels on the longer side is plenty)",
        )
    if not body:
        raise RequestError(
            400,
            "empty request: send a photo (Content-Type image/jpeg, image/png ...) or JSON "
            '{"images": ["<base64 photo>", ...]}',
        )
    media = _media_type(request_content_type)
    if media in JSON_TYPES:
        return _parse_json(body, limit, most)
    if media.startswith("image/") or media in IMAGE_TYPES:
        return SearchRequest(images=[body], labels=["the request body"], faces=[None])
    raise RequestError(
        415,
        f"unsupported Content-Type {request_content_type!r}: send a photo as image/jpeg, "
        "image/png, image/webp, image/heic or application/x-image, or JSON as application/json",
    )


def _parse_json(body: bytes, limit: int, most: int) -> SearchRequest:
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RequestError(400, f"the request body is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise RequestError(
            400,
            f'expected a JSON object such as {{"images": ["<base64 photo>"]}}, '
            f"got a JSON {type(data).__name__}",
        )
    unknown = sorted(set(data) - set(REQUEST_FIELDS))
    if unknown:
        raise RequestError(
            400,
            f"unknown field(s) {', '.join(unknown)}: the fields are {', '.join(REQUEST_FIELDS)}",
        )
    images = data.get("images", [])
    descriptors = _parse_descriptors(data.get("descriptors"), most)
    if not isinstance(images, list) or not (images or descriptors):
        raise RequestError(
            400,
            '"images" must be a non-empty list of base64-encoded photos (JPEG, PNG ...), '
            'unless "descriptors" gives the references',
        )
    if len(images) + len(descriptors) > most:
        raise RequestError(
            400,
            f"too many references: {len(images) + len(descriptors)}, at most {most} per request",
        )
    decoded, labels = [], []
    for number, text in enumerate(images):
        label = f"images[{number}]"
        if not isinstance(text, str):
            raise RequestError(
                400, f"{label} must be a base64 string, not a JSON {type(text).__name__}"
            )
        try:
            decoded.append(base64.b64decode(text, validate=True))
        except (binascii.Error, ValueError):
            raise RequestError(400, f"{label} is not valid base64") from None
        labels.append(label)
    request = SearchRequest(images=decoded, labels=labels, faces=[None] * len(decoded))
    request.threshold = _parse_threshold(data.get("threshold"))
    request.strictness = _parse_strictness(data.get("strictness"))
    if request.threshold is not None and request.strictness is not None:
        raise RequestError(
            400,
            '"threshold" (a fixed distance) and "strictness" (the adaptive margin) are two '
            "ways to decide: send one of them",
        )
    request.faces = _parse_faces(data.get("face"), len(decoded))
    request.exclude = _parse_exclude(data.get("exclude"))
    request.descriptors = descriptors
    return request


def _parse_threshold(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RequestError(400, f'"threshold" must be a number, not {json.dumps(value)}')
    if not 0 < value <= MAX_THRESHOLD:
        raise RequestError(
            400,
            f'"threshold" must be above 0 and at most {MAX_THRESHOLD} '
            f"(a fixed face distance such as {DEFAULT_THRESHOLD}; leave it out for the "
            f"adaptive default), got {value}",
        )
    return float(value)


def _parse_strictness(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise RequestError(400, f'"strictness" must be a number, not {json.dumps(value)}')
    if not 0 <= value <= MAX_STRICTNESS:
        raise RequestError(
            400,
            f'"strictness" must be from 0 to {MAX_STRICTNESS} (the adaptive margin; higher is '
            f"stricter; leave it out for the calibrated default), got {value}",
        )
    return float(value)


def _parse_descriptors(value: Any, most: int) -> list[list[float]]:
    """ "descriptors": references already described (e.g. a saved person), 128 numbers each."""
    if value is None:
        return []
    problem = RequestError(
        400, '"descriptors" must be a list of face descriptors, each a list of 128 numbers'
    )
    if not isinstance(value, list) or len(value) > most:
        raise problem
    rows = []
    for row in value:
        if not isinstance(row, list) or len(row) != 128:
            raise problem
        if not all(
            isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x) for x in row
        ):
            raise problem
        rows.append([float(x) for x in row])
    return rows


def _is_face_number(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _parse_faces(value: Any, count: int) -> list[int | None]:
    """ "face": one number for every photo, or a list with one number (or null) per photo."""
    if value is None:
        return [None] * count
    if _is_face_number(value):
        return [int(value)] * count
    if (
        isinstance(value, list)
        and len(value) == count
        and all(item is None or _is_face_number(item) for item in value)
    ):
        return [None if item is None else int(item) for item in value]
    raise RequestError(
        400,
        '"face" must be a face number (0 = the first face found) or a list with one face '
        f"number or null per image ({count} here); null picks the largest face",
    )


def _parse_exclude(value: Any) -> set[tuple[str, int]]:
    """ "exclude": faces marked "not this person", as [photo, face] pairs or objects."""
    if value is None:
        return set()
    problem = RequestError(
        400,
        '"exclude" must be a list of [photo, face number] pairs or '
        '{"photo": ..., "face": ...} objects',
    )
    if not isinstance(value, list):
        raise problem
    pairs = set()
    for item in value:
        if isinstance(item, dict) and set(item) == {"photo", "face"}:
            photo, face = item["photo"], item["face"]
        elif isinstance(item, list) and len(item) == 2:
            photo, face = item
        else:
            raise problem
        if not isinstance(photo, str) or not _is_face_number(face):
            raise problem
        pairs.add((photo, int(face)))
    return pairs


# ----------------------------------------------------------------------------------------------
# The search


def find_matches(
    references: np.ndarray,
    index: SearchableIndex,
    *,
    threshold: float | None,
    exclude: Collection[tuple[str, int]] = (),
    strictness: float | None = None,
) -> list[dict[str, Any]]:
    """Every photo of the person of the references, best first, as dicts: exactly what a
    local search returns (photosearch.search.query.find_matches: adaptive with `strictness`,
    or every face under a fixed `threshold`)."""
    return [
        match.to_json()
        for match in query.find_matches(
            references, index, threshold=threshold, strictness=strictness, exclude=exclude
        )
    ]


class SearchModel:
    """What `model_fn` returns: the face engine and the index, shared by requests."""

    def __init__(
        self,
        index_location: str,
        *,
        engine: FaceFinder | None = None,
        recheck_seconds: float | None = None,
    ) -> None:
        if engine is None:
            from photosearch.faces.engine import FaceEngine

            engine = FaceEngine()
        self.engine = engine
        recheck = _env_number(RECHECK_ENV, DEFAULT_RECHECK_SECONDS)
        self.index = IndexCache(
            index_location, recheck if recheck_seconds is None else recheck_seconds
        )
        self._engine_lock = threading.Lock()  # one photo at a time through the networks

    @property
    def location(self) -> str:
        return self.index.location

    def close(self) -> None:
        self.index.close()

    def reference_faces(self, request: SearchRequest) -> tuple[np.ndarray, list[dict[str, Any]]]:
        """The chosen face descriptor of each reference photo, and what was found in each."""
        chosen, described = [], []
        for data, label, wanted in zip(request.images, request.labels, request.faces, strict=True):
            try:
                with self._engine_lock:
                    reference = query.read_reference(self.engine, data, name=label, face=wanted)
            except query.ReferencePhotoError as exc:
                if exc.kind == "unreadable":
                    raise RequestError(
                        400,
                        f"{label} cannot be read as a photo: {exc.reason}; "
                        "send a JPEG, PNG, WEBP or HEIC photo",
                    ) from None
                if exc.kind == "no_face":
                    raise RequestError(
                        422,
                        f"{label}: no face found; send a photo where the person's face is "
                        "clearly visible",
                    ) from None
                raise RequestError(
                    422,
                    f"{label} {exc.reason}: face {wanted} does not exist "
                    "(face numbers start at 0, left to right)",
                ) from None
            faces, pick = reference.faces, reference.chosen
            chosen.append(faces[pick].descriptor)
            described.append(
                {
                    "faces": [
                        {
                            "box": [int(v) for v in face.box],
                            "score": round(float(face.score), 6),
                            # float32 -> float: JSON round-trips it exactly
                            "descriptor": np.asarray(face.descriptor, np.float32).tolist(),
                        }
                        for face in faces
                    ],
                    "chosen": pick,
                }
            )
        return np.stack(chosen).astype(np.float32), described

    def search(self, request: SearchRequest) -> dict[str, Any]:
        index = self.index.current()
        if index.model_id is not None and index.model_id != self.engine.model_id:
            raise ServiceError(
                500,
                f"the index at {self.location} holds {index.model_id!r} descriptors but this "
                f"endpoint computes {self.engine.model_id!r}: re-index, or deploy the matching "
                "package",
            )
        references, described = (
            self.reference_faces(request) if request.images else (np.zeros((0, 128)), [])
        )
        if request.descriptors:
            given = np.asarray(request.descriptors, dtype=np.float32).reshape(-1, 128)
            references = np.concatenate([given, references.astype(np.float32)])
        matches = find_matches(
            references,
            index,
            threshold=request.threshold,
            strictness=request.strictness,
            exclude=request.exclude,
        )
        return {
            "matches": matches,
            "references": described,
            "threshold": request.threshold,
            "strictness": request.strictness,
            "index": {
                "generation": index.generation,
                "model_id": index.model_id,
                "photos": index.photo_count,
                "faces": len(index.descriptors),
            },
        }


# ----------------------------------------------------------------------------------------------
# The SageMaker PyTorch serving contract


def model_fn(model_dir: str | None = None) -> SearchModel:
    """Load once per worker: the package's weights and the index in $PHOTOSEARCH_INDEX."""
    if model_dir and (Path(model_dir) / "models").is_dir():
        from photosearch.aws.package import package_environment

        # Before any model file is located: the registry caches the paths it finds.
        for name, value in package_environment(Path(model_dir)).items():
            os.environ.setdefault(name, value)
    location = os.environ.get(INDEX_ENV)
    if not location:
        raise ServiceError(
            500, f"{INDEX_ENV} is not set: the SageMaker Model must name the index to search"
        )
    model = SearchModel(location)
    model.index.current()  # fail at start-up, visibly, when the index is missing
    return model


def predict_fn(request: SearchRequest, model: SearchModel) -> dict[str, Any]:
    return model.search(request)


def output_fn(prediction: dict[str, Any], accept: str | None) -> bytes:
    accepted = [_media_type(part) for part in (accept or "").split(",")]
    if not any(media in ("", "*/*", "application/*", "application/json") for media in accepted):
        raise RequestError(
            406, f"cannot answer as {accept!r}: the answer is JSON (Accept: application/json)"
        )
    return json.dumps(prediction).encode("utf-8")


def handle(
    model: SearchModel, body: bytes, content_type: str | None, accept: str | None
) -> tuple[int, bytes, str]:
    """One request through input_fn -> predict_fn -> output_fn: (status, body, content type).

    What the serving toolkit does around our functions; used by the local server.
    """
    try:
        request = input_fn(body, content_type)
        return 200, output_fn(predict_fn(request, model), accept), "application/json"
    except InferenceError as exc:
        return exc.status_code, exc.message.encode("utf-8"), "text/plain; charset=utf-8"
    except Exception as exc:  # as the toolkit does: anything else is a 500 with its message
        return 500, _one_line(exc).encode("utf-8"), "text/plain; charset=utf-8"


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."

"""Searching through the SageMaker endpoint instead of a face engine in the app.

With ``PHOTOSEARCH_APP_ENDPOINT`` set, the app holds no face models (the slim image has no
torch): an uploaded photo is sent to the endpoint once, which answers with every face it found
(box and descriptor); the app crops the face thumbnails itself, and every search after that
(strictness, fixed distance, face choice, saved people, "not me") sends only descriptors. The
endpoint runs the same `find_matches` over the same index, so the results are the local ones.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Collection, Mapping
from typing import Any

import numpy as np

from photosearch.app.logic.references import Reference, crowd_picture, face_thumbnail
from photosearch.search.match import Match
from photosearch.search.query import ReferencePhotoError

__all__ = [
    "ENV_ENDPOINT",
    "EndpointSearch",
    "endpoint_from",
]

ENV_ENDPOINT = "PHOTOSEARCH_APP_ENDPOINT"  # a SageMaker endpoint name (the app role may call
# <prefix>-* only); AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME reaches `photosearch aws serve-local`
THUMBNAIL_DECODE_SIDE = 1600  # the face crops need no more
RECENT_SECONDS = 60.0


def endpoint_from(environ: Mapping[str, str] | None = None) -> str | None:
    environ = os.environ if environ is None else environ
    return environ.get(ENV_ENDPOINT) or None


class EndpointSearch:
    """Reads reference photos and searches through one endpoint; `read` fits where the page
    uses a ReferenceReader, `matches` where it calls find_matches."""

    def __init__(self, endpoint_name: str, model_id: str | None = None, runtime: Any = None):
        self.endpoint_name = endpoint_name
        self._model_id = model_id
        self._runtime = runtime
        # A page reruns on every click: the same query within a minute is not sent again.
        self._recent: dict[tuple, tuple[float, list[Match]]] = {}
        self._lock = threading.Lock()

    @property
    def runtime(self) -> Any:
        if self._runtime is None:
            from photosearch.aws.endpoint_client import runtime_client

            self._runtime = runtime_client()
        return self._runtime

    @property
    def model_id(self) -> str:
        return self._model_id or "the endpoint's"

    def _invoke(self, images: list[bytes], **settings: Any) -> dict[str, Any]:
        from photosearch.aws.endpoint_client import invoke_search

        return invoke_search(self.endpoint_name, images, runtime=self.runtime, **settings)

    def read(self, data: bytes, name: str) -> Reference:
        """The faces of one photo, found by the endpoint; ReferencePhotoError as the local
        reader words it when the photo is unreadable or shows no face."""
        from photosearch.aws.clients import AwsError
        from photosearch.aws.endpoint_client import EndpointSearchError
        from photosearch.faces.images import ImageLoadError, load_image

        try:
            image = load_image(data, max_side=THUMBNAIL_DECODE_SIDE, name=name)
        except ImageLoadError as error:
            raise ReferencePhotoError(
                f"“{name}” can't be used: {error.reason}. Upload a photo (JPEG, PNG, WEBP or "
                "HEIC).",
                "unreadable",
                error.reason,
            ) from None
        try:
            answer = self._invoke([data])
        except EndpointSearchError as error:
            if error.status == 422:
                raise ReferencePhotoError(
                    f"No face found in “{name}”. Try a photo where the face is clearly visible.",
                    "no_face",
                    "no face found",
                ) from None
            raise ReferencePhotoError(
                f"“{name}” can't be used: {error}", "unreadable", str(error)
            ) from None
        except AwsError as error:
            raise ReferencePhotoError(
                f"The search service did not answer for “{name}”: {error}",
                "unreadable",
                str(error),
            ) from None
        self._model_id = answer.get("index", {}).get("model_id") or self._model_id
        (found,) = answer["references"]
        faces = found["faces"]
        boxes = [tuple(int(v) for v in face["box"]) for face in faces]
        return Reference(
            name=name,
            descriptors=np.asarray([face["descriptor"] for face in faces], dtype=np.float32),
            boxes=boxes,
            face_thumbnails=[face_thumbnail(image, box) for box in boxes],
            chosen=int(found["chosen"]),
            **crowd_picture(image, boxes),
        )

    def matches(
        self,
        references: np.ndarray,
        *,
        threshold: float | None = None,
        strictness: float | None = None,
        exclude: Collection[tuple[str, int]] = (),
    ) -> list[Match]:
        """The endpoint's find_matches for these descriptors."""
        rows = np.asarray(references, dtype=np.float32).reshape(-1, 128)
        if len(rows) == 0:
            return []
        key = (rows.tobytes(), threshold, strictness, tuple(sorted(exclude)))
        now = time.monotonic()
        with self._lock:
            recent = self._recent.get(key)
            if recent is not None and now - recent[0] < RECENT_SECONDS:
                return list(recent[1])
        answer = self._invoke(
            [],
            descriptors=rows.tolist(),
            threshold=threshold,
            strictness=strictness,
            exclude=sorted(exclude),
        )
        matches = [
            Match(
                found["photo"],
                float(found["distance"]),
                tuple(int(v) for v in found["box"]),
                int(found["face_index"]),
                float(found["score"]),
            )
            for found in answer["matches"]
        ]
        with self._lock:
            self._recent = {k: v for k, v in self._recent.items() if now - v[0] < RECENT_SECONDS}
            self._recent[key] = (now, matches)
        return list(matches)

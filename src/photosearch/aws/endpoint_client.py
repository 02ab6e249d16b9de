"""Searching through a deployed search endpoint: the request, the call, the answer or refusal.

`search_via_endpoint` sends reference photos to the endpoint's handler
(`photosearch.aws.inference`) and returns the local search's match dicts; a refused request
raises `EndpointSearchError` with the handler's status and sentence. Real-time and serverless
endpoints are called through InvokeEndpoint; async ones through S3 and InvokeEndpointAsync (at
`async_location_for`, the place `photosearch aws deploy` configures). This is the one AWS module
the main search CLI imports, so it stands alone: botocore, `photosearch.aws.clients` and
`photosearch.storage.s3` only, no deployment or job code.
"""

from __future__ import annotations

import base64
import contextlib
import json
import re
import time
import uuid
from collections.abc import Sequence
from typing import Any

from botocore.exceptions import ClientError

from photosearch.aws.clients import AwsError, explained
from photosearch.storage.s3 import error_code, error_message

__all__ = [
    "ASYNC_POLL_SECONDS",
    "ASYNC_TIMEOUT_SECONDS",
    "EndpointSearchError",
    "async_location_for",
    "invoke_search",
    "runtime_client",
    "search_payload",
    "search_via_endpoint",
]

ASYNC_TIMEOUT_SECONDS = 900.0  # covers an instance starting from zero
ASYNC_POLL_SECONDS = 2.0


class EndpointSearchError(AwsError):
    """The endpoint answered with an error: `status` is the handler's HTTP status."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def search_payload(
    reference_images: Sequence[bytes],
    threshold: float | None = None,
    face: int | Sequence[int | None] | None = None,
    exclude: Sequence[tuple[str, int]] = (),
    strictness: float | None = None,
    descriptors: Sequence[Sequence[float]] = (),
) -> bytes:
    """The JSON request the handler reads (photosearch.aws.inference.input_fn)."""
    payload: dict[str, Any] = {
        "images": [base64.b64encode(image).decode("ascii") for image in reference_images]
    }
    if len(descriptors):
        payload["descriptors"] = [[float(x) for x in row] for row in descriptors]
    if threshold is not None:
        payload["threshold"] = threshold
    if strictness is not None:
        payload["strictness"] = strictness
    if face is not None:
        payload["face"] = face if isinstance(face, int) else list(face)
    if exclude:
        payload["exclude"] = [[photo, int(number)] for photo, number in exclude]
    return json.dumps(payload).encode()


def runtime_client(region: str | None = None) -> Any:
    """A sagemaker-runtime client (AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME is honoured by boto3).

    The read timeout covers a serverless cold start (container start and model load)."""
    from botocore.config import Config

    from photosearch.aws.clients import make_session

    session = make_session(region)
    config = Config(
        retries={"mode": "standard", "total_max_attempts": 3},
        connect_timeout=10,
        read_timeout=180,
    )
    return session.client("sagemaker-runtime", config=config)


def async_location_for(embeddings_bucket: str, endpoint_name: str) -> str:
    """Where an async endpoint's requests and answers live (what `deploy` configures)."""
    return f"s3://{embeddings_bucket}/async/{endpoint_name}"


def _refused(endpoint_name: str, original: str, status: int | None) -> EndpointSearchError:
    # The serving toolkit appends a traceback after the first line.
    first_line = original.strip().splitlines()[0] if original.strip() else original
    return EndpointSearchError(
        f"endpoint {endpoint_name} refused the search"
        + (f" ({status})" if status else "")
        + f": {first_line}",
        status,
    )


def invoke_search(
    endpoint_name: str,
    reference_images: Sequence[bytes],
    threshold: float | None = None,
    *,
    face: int | Sequence[int | None] | None = None,
    exclude: Sequence[tuple[str, int]] = (),
    strictness: float | None = None,
    descriptors: Sequence[Sequence[float]] = (),
    runtime: Any = None,
    region: str | None = None,
    async_location: str | None = None,
    s3: Any = None,
    timeout_seconds: float = ASYNC_TIMEOUT_SECONDS,
    poll_seconds: float = ASYNC_POLL_SECONDS,
) -> dict[str, Any]:
    """The handler's whole answer: matches, the faces found in each reference, index info.

    With `async_location` (an async endpoint's s3://... from `async_location_for`), the
    request goes through S3 and InvokeEndpointAsync, and the answer is awaited in S3.
    """
    runtime = runtime or runtime_client(region)
    body = search_payload(reference_images, threshold, face, exclude, strictness, descriptors)
    if async_location is not None:
        return _invoke_async(
            runtime, s3, endpoint_name, body, async_location, timeout_seconds, poll_seconds
        )
    try:
        response = runtime.invoke_endpoint(
            EndpointName=endpoint_name,
            ContentType="application/json",
            Accept="application/json",
            Body=body,
        )
    except ClientError as exc:
        if error_code(exc) == "ModelError":
            status = exc.response.get("OriginalStatusCode")
            original = exc.response.get("OriginalMessage") or error_message(exc)
            raise _refused(endpoint_name, original, int(status) if status else None) from exc
        with explained(f"searching through endpoint {endpoint_name}"):
            raise
    except Exception as exc:
        with explained(f"searching through endpoint {endpoint_name}"):
            raise exc
    return json.loads(response["Body"].read())


def _split_s3(uri: str) -> tuple[str, str]:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bucket, key


def _read_if_there(s3: Any, uri: str) -> bytes | None:
    bucket, key = _split_s3(uri)
    try:
        return s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except ClientError as exc:
        if error_code(exc) in {"NoSuchKey", "404", "NotFound"}:
            return None
        raise


def _invoke_async(
    runtime: Any,
    s3: Any,
    endpoint_name: str,
    body: bytes,
    async_location: str,
    timeout_seconds: float,
    poll_seconds: float,
) -> dict[str, Any]:
    from photosearch.aws.clients import make_client, make_session

    s3 = s3 or make_client(make_session(), "s3")
    request_id = uuid.uuid4().hex
    bucket, prefix = _split_s3(async_location.rstrip("/"))
    key = f"{prefix}/requests/{request_id}.json"
    action = f"searching through async endpoint {endpoint_name}"
    leftovers = [f"s3://{bucket}/{key}"]
    with explained(action):
        s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType="application/json")
        try:
            response = runtime.invoke_endpoint_async(
                EndpointName=endpoint_name,
                InputLocation=f"s3://{bucket}/{key}",
                ContentType="application/json",
                Accept="application/json",
                InferenceId=request_id,
            )
            output = response["OutputLocation"]
            failure = response.get("FailureLocation")
            leftovers += [output, *([failure] if failure else [])]
            # The first request after a scale-in to zero waits for an instance (minutes).
            deadline = time.monotonic() + timeout_seconds
            while True:
                answer = _read_if_there(s3, output)
                if answer is not None:
                    return json.loads(answer)
                problem = _read_if_there(s3, failure) if failure else None
                if problem is not None:
                    text = problem.decode("utf-8", "replace")
                    found = re.search(r"\((\d{3})\)", text)
                    message = text.split('message "', 1)[-1].rstrip('"') if found else text
                    raise _refused(endpoint_name, message, int(found.group(1)) if found else None)
                if time.monotonic() > deadline:
                    raise AwsError(
                        f"{action}: no answer after {timeout_seconds:.0f} s (still scaling out "
                        f"from zero?); it will appear at {output}"
                    )
                time.sleep(poll_seconds)
        finally:
            # Best effort: a leftover request or answer is a few kB, harmless.
            for leftover in leftovers:
                leftover_bucket, leftover_key = _split_s3(leftover)
                with contextlib.suppress(ClientError):
                    s3.delete_object(Bucket=leftover_bucket, Key=leftover_key)


def search_via_endpoint(
    endpoint_name: str,
    reference_images: list[bytes],
    threshold: float | None = None,
    *,
    face: int | Sequence[int | None] | None = None,
    exclude: Sequence[tuple[str, int]] = (),
    strictness: float | None = None,
    runtime: Any = None,
    region: str | None = None,
    async_location: str | None = None,
    s3: Any = None,
) -> list[dict[str, Any]]:
    """Every matching photo, best first, as the local search's match dicts:
    ``{"photo", "distance", "box": [left, top, right, bottom], "face_index", "score"}``.

    `async_location`: for an async endpoint (see `invoke_search`). Raises EndpointSearchError
    (with the handler's status and message) for a refused request, AwsError for anything else.
    """
    return invoke_search(
        endpoint_name,
        reference_images,
        threshold,
        face=face,
        exclude=exclude,
        strictness=strictness,
        runtime=runtime,
        region=region,
        async_location=async_location,
        s3=s3,
    )["matches"]

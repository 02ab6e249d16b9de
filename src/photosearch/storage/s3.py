"""S3 through s3fs: retry and timeout settings, and AWS failures as one line for the user.

The one place that knows botocore's errors: `photosearch.aws` (boto3 clients for stacks, jobs,
endpoints) words its failures with the same functions. Needs the `aws` extra (boto3).
"""

from __future__ import annotations

import os
import socket
import threading
import time
from typing import Any
from urllib.parse import urlsplit

import botocore.session
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
    ProfileNotFound,
    ReadTimeoutError,
)
from botocore.parsers import ResponseParserError

__all__ = [
    "ACCESS_DENIED_CODES",
    "CREDENTIALS_HINT",
    "DEFAULT_MAX_ATTEMPTS",
    "botocore_error_in",
    "describe_s3_failure",
    "endpoint_reachable",
    "error_code",
    "error_message",
    "failure_reason",
    "s3fs_options",
]

# Total attempts (first try included) when neither AWS_MAX_ATTEMPTS nor the AWS config file set
# it: enough to ride out S3 throttling (503 SlowDown) and short 5xx bursts.
DEFAULT_MAX_ATTEMPTS = 8

CREDENTIALS_HINT = (
    "set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or run `aws configure` / "
    "`aws sso login`"
)


def error_code(exc: ClientError) -> str:
    return exc.response.get("Error", {}).get("Code", "")


def error_message(exc: ClientError) -> str:
    error = exc.response.get("Error", {})
    return error.get("Message") or error.get("Code") or str(exc)


ACCESS_DENIED_CODES = frozenset({"AccessDenied", "AccessDeniedException", "403"})


def failure_reason(exc: BaseException) -> str | None:
    """The one-line reason for a botocore failure, with what to do where known; None for
    anything that is not a botocore failure."""
    if isinstance(exc, NoCredentialsError | PartialCredentialsError):
        return f"no usable AWS credentials ({exc}); {CREDENTIALS_HINT}"
    if isinstance(exc, NoRegionError):
        return "no AWS region: pass --region or set AWS_REGION"
    if isinstance(exc, EndpointConnectionError | ConnectTimeoutError | ReadTimeoutError):
        endpoint = getattr(exc, "kwargs", {}).get("endpoint_url", "the AWS endpoint")
        parts = urlsplit(endpoint)
        if parts.scheme and parts.netloc:  # the server, not the request's path and query
            endpoint = f"{parts.scheme}://{parts.netloc}"
        return f"cannot reach {endpoint} (network down, wrong region or AWS_ENDPOINT_URL?)"
    if isinstance(exc, ClientError):
        code = error_code(exc)
        if code in {"ExpiredToken", "ExpiredTokenException", "RequestExpired"}:
            return "AWS credentials expired; refresh them"
        if code in {"InvalidClientTokenId", "InvalidAccessKeyId", "SignatureDoesNotMatch"}:
            return f"AWS rejected the credentials ({code})"
        if code in ACCESS_DENIED_CODES:
            return f"access denied ({error_message(exc)})"
        return f"{code}: {error_message(exc)}"
    if isinstance(exc, ResponseParserError):
        # Not AWS's XML/JSON: a proxy's error page, or a broken local emulator.
        return "the endpoint's answer could not be read (not AWS?)"
    if isinstance(exc, BotoCoreError):
        return str(exc)
    return None


def s3fs_options() -> dict[str, Any]:
    """Options for s3fs.S3FileSystem: the one place S3 storage is configured.

    Credentials, profile, region and endpoint stay botocore's own resolution (s3fs builds its
    client with aiobotocore, which reads AWS_PROFILE, AWS_ACCESS_KEY_ID..., AWS_REGION /
    AWS_DEFAULT_REGION, AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL and the config files). Set here
    is only what s3fs would otherwise leave weaker: botocore retries with backoff on throttling,
    5xx and connection errors (AWS_RETRY_MODE and AWS_MAX_ATTEMPTS when set, else "adaptive"
    with DEFAULT_MAX_ATTEMPTS), the same timeouts as our boto3 clients, and no listing cache:
    an album or index is listed as it is now, also in a long-running process.
    """
    mode, attempts = "adaptive", DEFAULT_MAX_ATTEMPTS
    endpoint = None
    try:
        session = botocore.session.Session()
        # Only a mode the user chose (botocore's own default is "legacy"): env, then profile.
        chosen = os.environ.get("AWS_RETRY_MODE") or session.get_scoped_config().get("retry_mode")
        mode = chosen or mode
        attempts = int(session.get_config_variable("max_attempts") or attempts)
        endpoint = _s3_endpoint(session)
    except (BotoCoreError, ValueError):
        pass  # e.g. an unknown AWS_PROFILE: the first request reports it, in one line
    connect_timeout = 10
    if endpoint is not None and not endpoint_reachable(endpoint):
        # Nobody listens there (a stopped local server, a wrong AWS_ENDPOINT_URL, no network):
        # retrying with backoff would only delay the one-line error by ~15-45 s.
        attempts, connect_timeout = 1, PROBE_SECONDS
    return {
        "use_listings_cache": False,
        "config_kwargs": {
            "retries": {"mode": mode, "total_max_attempts": attempts},
            "connect_timeout": connect_timeout,
            "read_timeout": 60,
        },
    }


# How long the reachability probe waits for a TCP connection, and how long its answer is kept.
PROBE_SECONDS = 3.0
_PROBE_TTL = 30.0
_probed: dict[tuple[str, int], tuple[float, bool]] = {}
_probe_lock = threading.Lock()


def _s3_endpoint(session: botocore.session.Session) -> str | None:
    """The S3 endpoint requests will go to, when it can be told without a request; None behind
    a proxy (the probe would test the wrong hop)."""
    if any(os.environ.get(name) for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY")):
        return None
    explicit = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    if explicit:
        return explicit
    region = session.get_config_variable("region")
    return f"https://s3.{region}.amazonaws.com" if region else "https://s3.amazonaws.com"


def endpoint_reachable(endpoint: str) -> bool:
    """Whether a TCP connection to the endpoint opens within PROBE_SECONDS (answers are kept
    for 30 s). A refused connection or an unknown host answers at once."""
    parts = urlsplit(endpoint)
    host = parts.hostname
    if not host:
        return True  # not ours to judge: let the request say
    port = parts.port or (443 if parts.scheme == "https" else 80)
    now = time.monotonic()
    with _probe_lock:
        known = _probed.get((host, port))
    if known is not None and now - known[0] < _PROBE_TTL:
        return known[1]
    try:
        with socket.create_connection((host, port), timeout=PROBE_SECONDS):
            reachable = True
    except OSError:
        reachable = False
    with _probe_lock:
        _probed[(host, port)] = (now, reachable)
    return reachable


def describe_s3_failure(exc: BaseException, url: str) -> str | None:
    """One line for a failed S3 request on `url` (``s3://bucket/prefix``) made through s3fs.

    s3fs raises botocore's own errors (credentials, network) or turns S3 error responses into
    OSError subclasses with the botocore error as their cause; both are read here. None when
    `exc` is not an AWS failure, or is a plain missing object (NoSuchKey), whose meaning the
    caller knows ("no index yet", "photo deleted since listing").
    """
    bucket = url.split("://", 1)[-1].split("/", 1)[0]
    cause = botocore_error_in(exc)
    if cause is None:
        if isinstance(exc, PermissionError):
            return f"access denied to {url} ({exc})"
        return None
    if isinstance(cause, ProfileNotFound):
        return f"{url}: AWS profile '{cause.kwargs.get('profile')}' not found (check AWS_PROFILE)"
    if isinstance(cause, ClientError):
        code = error_code(cause)
        if code == "NoSuchBucket":
            return (
                f"bucket '{bucket}' does not exist ({url}; check the bucket name, "
                "AWS_PROFILE and AWS_ENDPOINT_URL)"
            )
        if code in {"NoSuchKey", "404", "NotFound"}:
            return None
        if code in ACCESS_DENIED_CODES:
            return (
                f"access denied to {url} ({error_message(cause)}): the AWS identity in use "
                f"lacks this permission on bucket '{bucket}'"
            )
    return f"{url}: {failure_reason(cause)}"


def botocore_error_in(exc: BaseException) -> BaseException | None:
    """`exc` itself or the botocore error it was translated from (s3fs, pyarrow wrap them)."""
    seen = 0
    current: BaseException | None = exc
    while current is not None and seen < 8:
        if isinstance(current, BotoCoreError | ClientError | ResponseParserError):
            return current
        current = current.__cause__ or current.__context__
        seen += 1
    return None

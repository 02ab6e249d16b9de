"""boto3 sessions and clients with retries, and AWS failures turned into one-line messages."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
    ReadTimeoutError,
)
from botocore.parsers import ResponseParserError

# Total attempts (first try included) when neither AWS_MAX_ATTEMPTS nor the AWS config file set
# it: enough to ride out S3 throttling (503 SlowDown) and short 5xx bursts.
DEFAULT_MAX_ATTEMPTS = 8

CREDENTIALS_HINT = (
    "set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or run `aws configure` / "
    "`aws sso login`"
)


class AwsError(Exception):
    """A failure worth one line to the user: what went wrong and, where known, what to do."""


def make_session(region: str | None = None) -> boto3.Session:
    """A session on the standard credentials chain; fails early without credentials or region."""
    # Unknown profiles, expired SSO tokens etc. raise here, as botocore errors.
    with explained("loading the AWS configuration"):
        session = boto3.Session(region_name=region)
        if session.region_name is None:
            raise AwsError("no AWS region: pass --region or set AWS_REGION")
        if session.get_credentials() is None:
            raise AwsError(f"no AWS credentials found: {CREDENTIALS_HINT}")
    return session


def make_client(
    session: boto3.Session, service: str, *, mode: str = "standard", pool_size: int = 10
) -> Any:
    """A client retrying throttling, 5xx and connection errors with exponential backoff.

    `mode="adaptive"` also rate-limits the client itself after throttling (for bulk uploads).
    AWS_MAX_ATTEMPTS, when set, wins over DEFAULT_MAX_ATTEMPTS.
    """
    configured = session._session.get_config_variable("max_attempts")  # env or config file
    retries = {"mode": mode, "total_max_attempts": int(configured or DEFAULT_MAX_ATTEMPTS)}
    config = Config(
        retries=retries,
        connect_timeout=10,
        read_timeout=60,
        max_pool_connections=pool_size,
    )
    return session.client(service, config=config)


def error_code(exc: ClientError) -> str:
    return exc.response.get("Error", {}).get("Code", "")


def error_message(exc: ClientError) -> str:
    error = exc.response.get("Error", {})
    return error.get("Message") or error.get("Code") or str(exc)


@contextmanager
def explained(action: str) -> Iterator[None]:
    """Re-raise botocore failures during `action` as AwsError with a one-line message."""
    try:
        yield
    except AwsError:
        raise
    except (NoCredentialsError, PartialCredentialsError) as exc:
        raise AwsError(f"{action}: no usable AWS credentials ({exc}); {CREDENTIALS_HINT}") from exc
    except NoRegionError as exc:
        raise AwsError(f"{action}: no AWS region: pass --region or set AWS_REGION") from exc
    except (EndpointConnectionError, ConnectTimeoutError, ReadTimeoutError) as exc:
        endpoint = getattr(exc, "kwargs", {}).get("endpoint_url", "the AWS endpoint")
        raise AwsError(
            f"{action}: cannot reach {endpoint} (network down, wrong region or AWS_ENDPOINT_URL?)"
        ) from exc
    except ClientError as exc:
        code = error_code(exc)
        if code in {"ExpiredToken", "ExpiredTokenException", "RequestExpired"}:
            raise AwsError(f"{action}: AWS credentials expired; refresh them") from exc
        if code in {"InvalidClientTokenId", "InvalidAccessKeyId", "SignatureDoesNotMatch"}:
            raise AwsError(f"{action}: AWS rejected the credentials ({code})") from exc
        if code in {"AccessDenied", "AccessDeniedException", "403"}:
            raise AwsError(f"{action}: access denied ({error_message(exc)})") from exc
        raise AwsError(f"{action}: {code}: {error_message(exc)}") from exc
    except ResponseParserError as exc:
        # Not AWS's XML/JSON: a proxy's error page, or a broken local emulator.
        raise AwsError(f"{action}: the endpoint's answer could not be read (not AWS?)") from exc
    except BotoCoreError as exc:
        raise AwsError(f"{action}: {exc}") from exc

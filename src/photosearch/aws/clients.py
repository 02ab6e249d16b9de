"""boto3 sessions and clients with retries, and AWS failures turned into one-line messages.

The wording of botocore's failures lives in `photosearch.storage.s3`, shared with S3 storage.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from botocore.parsers import ResponseParserError

from photosearch.storage.s3 import CREDENTIALS_HINT, DEFAULT_MAX_ATTEMPTS, failure_reason

__all__ = ["AwsError", "explained", "make_client", "make_session"]


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


@contextmanager
def explained(action: str) -> Iterator[None]:
    """Re-raise botocore failures during `action` as AwsError with a one-line message."""
    try:
        yield
    except AwsError:
        raise
    except (BotoCoreError, ClientError, ResponseParserError) as exc:
        raise AwsError(f"{action}: {failure_reason(exc)}") from exc

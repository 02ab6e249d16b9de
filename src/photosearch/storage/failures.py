"""Storage failures as one line for the user: credentials, missing bucket, network, permissions."""

from __future__ import annotations

from photosearch.storage.locations import S3_PROTOCOLS, protocol_of

__all__ = ["storage_failure"]


def storage_failure(exc: BaseException, location: str) -> str | None:
    """One line for a storage failure at `location` (credentials, missing bucket, network,
    permissions), or None when `exc` is none of these; a plain missing file is None too: the
    caller knows what that means."""
    if protocol_of(location) in S3_PROTOCOLS:
        try:
            from photosearch.storage.s3 import describe_s3_failure
        except ImportError:
            pass
        else:
            message = describe_s3_failure(exc, location)
            if message is not None or isinstance(exc, FileNotFoundError):
                return message
    if isinstance(exc, FileNotFoundError):
        return None
    if isinstance(exc, PermissionError):
        return f"permission denied: {location} ({exc.strerror or exc})"
    if isinstance(exc, OSError):
        return f"{location}: {exc.strerror or exc}"
    return None

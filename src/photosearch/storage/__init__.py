"""Storage: where albums and indexes live, one interface over local paths and ``s3://``.

Every album and index location goes through here: a location is written in one spelling
(`canonical_location`), opened as an fsspec filesystem (`open_filesystem`, with S3 retries and
timeouts), and a failure of the storage becomes one line for the user (`storage_failure`).
Nothing else in the package talks to fsspec's resolution or to botocore's errors directly, so
the storage logic exists once.

Imports nothing from the rest of photosearch. The S3 wording (`storage.s3`) needs the `aws`
extra (boto3) and is imported only when an ``s3://`` location is used.
"""

from photosearch.storage.failures import storage_failure
from photosearch.storage.locations import (
    OBJECT_STORE_PROTOCOLS,
    S3_PROTOCOLS,
    canonical_location,
    is_local,
    is_object_store,
    open_filesystem,
)

__all__ = [
    "OBJECT_STORE_PROTOCOLS",
    "S3_PROTOCOLS",
    "canonical_location",
    "is_local",
    "is_object_store",
    "open_filesystem",
    "storage_failure",
]

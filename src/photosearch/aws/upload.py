"""Upload an album folder to S3: parallel, resumable, and skipping photos already there.

A photo is "already there" when an object with its key exists with the same size and the same
SHA-256, read from the object's `sha256` metadata (written by this uploader), or, for objects
uploaded by other tools, the same MD5 as a single-part ETag. Each upload also sends a SHA-256
checksum that S3 verifies on receipt (ChecksumSHA256), so a corrupted transfer is rejected, not
stored. Re-running after an interruption uploads only what is missing or changed.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from boto3.s3.transfer import TransferConfig
from botocore.exceptions import BotoCoreError, ClientError

from photosearch.aws.clients import AwsError, explained
from photosearch.storage.s3 import error_code, error_message

__all__ = [
    "CHECKSUM_METADATA_KEY",
    "CONTENT_TYPES",
    "DEFAULT_WORKERS",
    "HASH_BLOCK",
    "IMAGE_SUFFIXES",
    "MULTIPART_CHUNK",
    "MULTIPART_THRESHOLD",
    "AlbumUploader",
    "LocalPhoto",
    "S3Location",
    "UploadReport",
    "album_photos",
    "existing_sizes",
    "file_digests",
]

CONTENT_TYPES = {
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".png": "image/png",
    ".webp": "image/webp",
    ".heic": "image/heic",
    ".heif": "image/heif",
    ".bmp": "image/bmp",
}
IMAGE_SUFFIXES = frozenset(CONTENT_TYPES)
CHECKSUM_METADATA_KEY = "sha256"  # stored as x-amz-meta-sha256, hex
DEFAULT_WORKERS = 8
# Photos are almost always smaller: one PutObject with our own SHA-256. Larger files go up in
# parts (retried part by part), each part checksummed by S3.
MULTIPART_THRESHOLD = 64 * 1024 * 1024
MULTIPART_CHUNK = 16 * 1024 * 1024
HASH_BLOCK = 1024 * 1024


@dataclass(frozen=True)
class S3Location:
    bucket: str
    prefix: str = ""  # "" or ending with "/"

    @classmethod
    def parse(cls, url: str) -> S3Location:
        """'s3://bucket' or 's3://bucket/some/prefix' (a trailing slash is implied)."""
        if not url.startswith("s3://") or len(url) <= len("s3://"):
            raise ValueError(f"expected s3://BUCKET[/PREFIX], got {url!r}")
        bucket, _, prefix = url[len("s3://") :].partition("/")
        if not bucket:
            raise ValueError(f"expected s3://BUCKET[/PREFIX], got {url!r}")
        return cls(bucket, cls.normalise_prefix(prefix))

    @staticmethod
    def normalise_prefix(prefix: str) -> str:
        prefix = prefix.strip("/")
        return f"{prefix}/" if prefix else ""

    def key_for(self, relative: PurePosixPath) -> str:
        return f"{self.prefix}{relative.as_posix()}"

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"


@dataclass
class UploadReport:
    destination: S3Location
    uploaded: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # key -> one-line reason
    bytes_uploaded: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "destination": str(self.destination),
            "uploaded": len(self.uploaded),
            "skipped": len(self.skipped),
            "failed": self.failed,
            "bytes_uploaded": self.bytes_uploaded,
        }


@dataclass(frozen=True)
class LocalPhoto:
    path: Path
    key: str
    size: int


def album_photos(album_dir: Path) -> list[Path]:
    """Image files under `album_dir`, recursively, sorted; hidden files and folders left out
    (e.g. macOS '._IMG_0001.jpg' resource forks, '.thumbnails/')."""
    if not album_dir.is_dir():
        raise AwsError(f"album folder not found: {album_dir}")
    photos = []
    for path in album_dir.rglob("*"):
        relative = path.relative_to(album_dir)
        if any(part.startswith(".") for part in relative.parts):
            continue
        if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file():
            photos.append(path)
    return sorted(photos)


def file_digests(path: Path, algorithms: Iterable[str] = ("sha256",)) -> dict[str, bytes]:
    hashers = {name: hashlib.new(name) for name in algorithms}
    with path.open("rb") as stream:
        while block := stream.read(HASH_BLOCK):
            for hasher in hashers.values():
                hasher.update(block)
    return {name: hasher.digest() for name, hasher in hashers.items()}


def existing_sizes(s3: Any, destination: S3Location) -> dict[str, int]:
    """Key -> size of every object under the destination prefix (one request per 1000 keys).

    Also how a missing bucket or missing permission shows up, before any upload starts.
    """
    sizes: dict[str, int] = {}
    try:
        pages = s3.get_paginator("list_objects_v2").paginate(
            Bucket=destination.bucket, Prefix=destination.prefix
        )
        for page in pages:
            for item in page.get("Contents", []):
                sizes[item["Key"]] = item["Size"]
    except ClientError as exc:
        if error_code(exc) == "NoSuchBucket":
            raise AwsError(
                f"bucket {destination.bucket!r} does not exist "
                "(create it with `photosearch aws provision`, or check --bucket/--to)"
            ) from exc
        raise
    return sizes


class AlbumUploader:
    """Uploads one album folder to one S3 location with a pool of threads."""

    def __init__(
        self,
        s3: Any,
        destination: S3Location,
        workers: int = DEFAULT_WORKERS,
        multipart_threshold: int = MULTIPART_THRESHOLD,
        multipart_chunk: int = MULTIPART_CHUNK,
    ) -> None:
        self.s3 = s3
        self.destination = destination
        self.workers = max(1, workers)
        self.multipart_threshold = multipart_threshold
        # Threads inside one file's multipart upload would multiply the pool: one thread per
        # file is enough parallelism, and keeps the connection count = workers.
        self.transfer = TransferConfig(
            multipart_threshold=multipart_threshold,
            multipart_chunksize=multipart_chunk,
            use_threads=False,
        )

    def plan(self, album_dir: Path) -> list[LocalPhoto]:
        return [
            LocalPhoto(
                path=path,
                key=self.destination.key_for(PurePosixPath(*path.relative_to(album_dir).parts)),
                size=path.stat().st_size,
            )
            for path in album_photos(album_dir)
        ]

    def _is_there(self, photo: LocalPhoto, sha256: bytes) -> bool:
        head = self.s3.head_object(Bucket=self.destination.bucket, Key=photo.key)
        stored = head.get("Metadata", {}).get(CHECKSUM_METADATA_KEY)
        if stored is not None:
            return stored == sha256.hex()
        etag = head.get("ETag", "").strip('"')
        # A plain 32-hex ETag is the MD5 of a single-part, non-KMS upload; "-N" marks multipart.
        if len(etag) == 32 and "-" not in etag:
            return file_digests(photo.path, ("md5",))["md5"].hex() == etag
        return False

    def _put(self, photo: LocalPhoto, sha256: bytes) -> None:
        metadata = {CHECKSUM_METADATA_KEY: sha256.hex()}
        content_type = CONTENT_TYPES[photo.path.suffix.lower()]
        if photo.size < self.multipart_threshold:
            with photo.path.open("rb") as body:
                self.s3.put_object(
                    Bucket=self.destination.bucket,
                    Key=photo.key,
                    Body=body,
                    ContentType=content_type,
                    Metadata=metadata,
                    ChecksumSHA256=base64.b64encode(sha256).decode("ascii"),
                )
            return
        self.s3.upload_file(
            str(photo.path),
            self.destination.bucket,
            photo.key,
            ExtraArgs={
                "ContentType": content_type,
                "Metadata": metadata,
                "ChecksumAlgorithm": "SHA256",
            },
            Config=self.transfer,
        )

    def sync_one(self, photo: LocalPhoto, present_size: int | None) -> bool:
        """Upload `photo` unless the same content is there already; True if it was uploaded."""
        sha256 = file_digests(photo.path)["sha256"]
        if present_size == photo.size and self._is_there(photo, sha256):
            return False
        self._put(photo, sha256)
        return True

    def existing(self) -> dict[str, int]:
        """What is at the destination already (key -> size); fails early on a missing bucket."""
        with explained(f"listing {self.destination}"):
            return existing_sizes(self.s3, self.destination)

    def run(
        self,
        photos: list[LocalPhoto],
        on_done: Callable[[int], None] = lambda n: None,
        present: dict[str, int] | None = None,
    ) -> UploadReport:
        """Upload what `plan` found that is not at the destination already (`present`, listed
        here when not given). Failures are collected per photo, not raised."""
        report = UploadReport(self.destination)
        if present is None:
            present = self.existing()
        with ThreadPoolExecutor(self.workers, thread_name_prefix="upload") as pool:
            futures = {
                pool.submit(self.sync_one, photo, present.get(photo.key)): photo for photo in photos
            }
            for future in as_completed(futures):
                photo = futures[future]
                try:
                    uploaded = future.result()
                except (ClientError, BotoCoreError, OSError) as exc:
                    report.failed[photo.key] = _one_line(exc)
                else:
                    if uploaded:
                        report.uploaded.append(photo.key)
                        report.bytes_uploaded += photo.size
                    else:
                        report.skipped.append(photo.key)
                on_done(1)
        report.uploaded.sort()
        report.skipped.sort()
        return report


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, ClientError):
        return f"{error_code(exc)}: {error_message(exc)}"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__

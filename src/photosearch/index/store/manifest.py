"""The manifest: the one JSON document that says which shards make up the current snapshot.

ShardInfo lists a shard, Retired a shard dropped by compaction (kept readable for a grace
period), IndexStats the live counts a commit keeps up to date without rereading the shards.
Manifest.to_json / from_json are the manifest's on-disk form (docs/index-format.md); a manifest
of another format or format version is refused, never silently read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from photosearch.index.album import FINGERPRINT_ALGORITHM
from photosearch.index.store.format import (
    DESCRIPTOR_SIZE,
    FORMAT_NAME,
    FORMAT_VERSION,
    SHARDS_DIR,
    STATUS_DELETED,
    STATUS_ERROR,
    STATUS_NO_FACE,
    IndexFormatError,
    UnsafeIndexError,
    UnsupportedIndexError,
)

if TYPE_CHECKING:  # annotations only: the writer builds on this module
    from photosearch.index.store.writer import PhotoState

__all__ = ["IndexStats", "Manifest", "Retired", "ShardInfo", "checked_shard_path", "utc_now"]


# What a shard path in a manifest may look like: a plain file name under shards/. Anything else
# (an absolute path, "..", a sub-folder) could make a reader read, or a writer's garbage
# collection delete, a file outside the index.
_SHARD_PATH = re.compile(rf"{SHARDS_DIR}/[A-Za-z0-9][A-Za-z0-9._-]*\.parquet")


def checked_shard_path(path: str) -> str:
    """`path` if it names a shard inside the index, else UnsafeIndexError."""
    if not _SHARD_PATH.fullmatch(path) or ".." in path:
        raise UnsafeIndexError(f"the index manifest names a file outside the index: {path!r}")
    return path


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class ShardInfo:
    path: str  # relative to the index root, e.g. "shards/0000000003-1a2b3c4d.parquet"
    rows: int
    bytes: int
    # "sha256:<64 hex>" of the file's bytes; None in manifests written before it was recorded.
    checksum: str | None = None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"path": self.path, "rows": self.rows, "bytes": self.bytes}
        if self.checksum is not None:
            data["checksum"] = self.checksum
        return data


@dataclass(frozen=True)
class Retired:
    path: str
    since: float  # unix time it was dropped from the manifest


@dataclass(frozen=True)
class IndexStats:
    photos: int = 0  # live photos (any status)
    faces: int = 0
    no_face: int = 0  # photos decoded without a face
    errors: int = 0  # unreadable photos

    def plus(self, state: PhotoState | None, sign: int) -> IndexStats:
        if state is None or state.status == STATUS_DELETED:
            return self
        return IndexStats(
            photos=self.photos + sign,
            faces=self.faces + sign * state.face_count,
            no_face=self.no_face + sign * (state.status == STATUS_NO_FACE),
            errors=self.errors + sign * (state.status == STATUS_ERROR),
        )


@dataclass(frozen=True)
class Manifest:
    generation: int  # commit number, 1 for the first commit; 0 for a never-committed index
    created: str
    updated: str
    album: str | None
    model_id: str | None
    shards: tuple[ShardInfo, ...] = ()
    stats: IndexStats = IndexStats()
    retired: tuple[Retired, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "generation": self.generation,
            "created": self.created,
            "updated": self.updated,
            "album": self.album,
            "model_id": self.model_id,
            "fingerprint": FINGERPRINT_ALGORITHM,
            "descriptor_size": DESCRIPTOR_SIZE,
            "stats": vars(self.stats),
            "shards": [shard.to_json() for shard in self.shards],
            "retired": [vars(item) for item in self.retired],
        }

    @classmethod
    def from_json(cls, data: Any) -> Manifest:
        if not isinstance(data, dict) or data.get("format") != FORMAT_NAME:
            raise UnsupportedIndexError("not a photosearch index manifest")
        if data.get("format_version") != FORMAT_VERSION:
            raise UnsupportedIndexError(
                f"index format version {data.get('format_version')!r} is not supported "
                f"(this photosearch reads version {FORMAT_VERSION})"
            )
        try:
            return cls(
                generation=int(data["generation"]),
                created=str(data["created"]),
                updated=str(data["updated"]),
                album=data.get("album"),
                model_id=data.get("model_id"),
                shards=tuple(
                    ShardInfo(
                        checked_shard_path(str(s["path"])),
                        int(s["rows"]),
                        int(s["bytes"]),
                        None if s.get("checksum") is None else str(s["checksum"]),
                    )
                    for s in data["shards"]
                ),
                stats=IndexStats(**{k: int(v) for k, v in data["stats"].items()}),
                retired=tuple(
                    Retired(checked_shard_path(str(r["path"])), float(r["since"]))
                    for r in data.get("retired", [])
                ),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise IndexFormatError(f"malformed index manifest: {exc}") from exc

    @classmethod
    def empty(cls, album: str | None, model_id: str | None) -> Manifest:
        now = utc_now()
        return cls(generation=0, created=now, updated=now, album=album, model_id=model_id)

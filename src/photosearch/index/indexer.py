"""The indexing pipeline: album -> faces -> index, incremental, resumable, overlapped.

A run (1) lists the album, (2) records deletions, (3) skips photos whose listing stamp (size and
mtime/ETag) matches the index, then for every other photo (4) reads its bytes and fingerprints
them in worker threads; bytes already indexed (renamed, copied, touched, or still unreadable)
reuse their stored record without decoding, the rest are (5) decoded in the same threads
(Pillow releases the GIL) and (6) run through the face engine: on a CPU each photo in one of the
engine's threads as soon as it is decoded, on a GPU in batches by the main thread. Records are
committed every `commit_photos` photos or `commit_seconds` seconds, so an interrupted run loses
at most that much work and the next run picks up where it stopped.
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from photosearch.faces.base import FaceFinder
from photosearch.faces.images import ImageLoadError, LoadedImage, load_image
from photosearch.index.album import Album, AlbumFile, fingerprint
from photosearch.index.store import (
    DECODED_STATUSES,
    STATUS_ERROR,
    IndexStorageError,
    IndexWriter,
    PhotoState,
    photo_rows,
)
from photosearch.storage import canonical_location

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_COMMIT_PHOTOS",
    "DEFAULT_COMMIT_SECONDS",
    "Indexer",
    "RunStats",
    "data_dir",
    "default_index_location",
    "default_workers",
    "index_album",
    "known_indexes",
]

DEFAULT_COMMIT_PHOTOS = 500
DEFAULT_COMMIT_SECONDS = 30.0
DEFAULT_BATCH_SIZE = 8


def data_dir() -> Path:
    """Where default indexes live (``PHOTOSEARCH_DATA_DIR`` overrides the user data dir)."""
    override = os.environ.get("PHOTOSEARCH_DATA_DIR")
    if override:
        return Path(override)
    import platformdirs

    return Path(platformdirs.user_data_dir("photosearch", appauthor=False))


def default_index_location(album_location: str | os.PathLike) -> str:
    """The index of an album when none is given: ``<data dir>/indexes/<name>-<hash>``."""
    album = canonical_location(album_location)
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", album.rstrip("/").rsplit("/", 1)[-1])[:40] or "album"
    digest = hashlib.blake2b(album.encode(), digest_size=6).hexdigest()
    return str(data_dir() / "indexes" / f"{name}-{digest}")


def known_indexes() -> list[str]:
    """Default-location indexes on this machine (folders holding a manifest), sorted."""
    root = data_dir() / "indexes"
    if not root.is_dir():
        return []
    return sorted(str(p.parent) for p in root.glob("*/manifest.json"))


def default_workers() -> int:
    return max(2, min(8, os.cpu_count() or 2))


@dataclass
class RunStats:
    """What one indexing run did."""

    listed: int = 0  # photo files in the album
    unchanged: int = 0  # skipped: same size and stamp as indexed
    indexed: int = 0  # decoded and run through the face engine
    reused: int = 0  # bytes already indexed (renamed / copied / touched): record copied
    deleted: int = 0  # gone from the album: removed from the index
    unreadable: int = 0  # recorded with their error (decoding failed)
    read_failures: int = 0  # could not be read from storage (not recorded: retried next run)
    unlisted: int = 0  # folders that could not be listed (their photos' records are kept)
    faces: int = 0  # faces found in the indexed photos
    commits: int = 0
    seconds: float = 0.0
    messages: list[str] = field(default_factory=list)  # one line per problem

    @property
    def processed(self) -> int:
        return self.indexed + self.reused + self.unreadable

    @property
    def failed(self) -> bool:
        """Whether anything went wrong that the run went on past (the exit status 1 case)."""
        return bool(self.unreadable or self.read_failures or self.unlisted)


@dataclass
class _Prepared:
    """A photo after the worker-thread stage."""

    file: AlbumFile
    size: int = 0
    fingerprint: str | None = None
    reuse: PhotoState | None = None
    image: LoadedImage | None = None
    error: str | None = None  # decoding failed: recorded
    read_failure: str | None = None  # reading failed: not recorded
    faces: list | None = None  # found in an engine thread (when the engine has several)
    engine_failure: str | None = None  # the engine raised on it: not recorded


class Indexer:
    """Brings the index of one album up to date (see the module docstring)."""

    def __init__(
        self,
        album: Album,
        index_location: str | os.PathLike,
        engine: FaceFinder,
        *,
        workers: int | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        commit_photos: int = DEFAULT_COMMIT_PHOTOS,
        commit_seconds: float = DEFAULT_COMMIT_SECONDS,
        retry_errors: bool = False,
        rebuild: bool = False,
        repair: bool = False,
        report: Callable[[str], None] | None = None,
        show_progress: bool = False,
        index_storage_options: dict | None = None,
    ) -> None:
        self.album = album
        self.index_location = index_location
        self.engine = engine
        self.workers = workers or default_workers()
        self.commit_photos = max(1, commit_photos)
        # A batch never spans more photos than one commit holds.
        self.batch_size = max(1, min(batch_size, self.commit_photos))
        self.commit_seconds = commit_seconds
        self.retry_errors = retry_errors
        # Photos detected with other settings than this run's go through the engine again (all
        # of them if the engine does not say); each old record stays until its photo's new one
        # is committed, and a re-run resumes an interrupted rebuild.
        self.rebuild = rebuild
        # Damaged shards are dropped and their photos redone (also by --rebuild, which is what
        # someone with a broken index tries first).
        self.repair = repair or rebuild
        self.report = report or (lambda line: print(line, file=sys.stderr))
        self.show_progress = show_progress
        self.index_storage_options = index_storage_options
        self.max_side = engine.max_side
        # Recorded with each photo (None for engines that do not say: then --rebuild redoes all).
        self.detection = engine.detection_settings

    def run(self) -> RunStats:
        started = time.monotonic()
        stats = RunStats()
        listing = self.album.listing()
        files = listing.files
        stats.listed = len(files)
        stats.unlisted = len(listing.unlisted)
        for note in listing.notes:
            self._say(stats, note)
        with IndexWriter(
            self.index_location,
            model_id=self.engine.model_id,
            album=self.album.location,
            storage_options=self.index_storage_options,
            repair=self.repair,
        ) as writer:
            if writer.reset_reason:
                self._say(stats, writer.reset_reason)
            for line in writer.repaired:
                self.report(line)
            shards_before = len(writer.manifest.shards)
            gone = listing.gone(writer.photos)
            if gone and not files:
                # An album that lists nothing while the index holds photos is more likely an
                # unmounted drive or an emptied mount point than a deliberate deletion of all.
                self._say(
                    stats,
                    f"the album lists no photos: the {len(gone)} indexed photo(s) are kept "
                    "(delete the index to start over)",
                )
                stats.unlisted += 1
                gone = []
            for key in gone:
                writer.delete(key)
                stats.deleted += 1
            self._note_other_settings(writer)
            todo = [item for item in files if not self._unchanged(writer.state(item.key), item)]
            stats.unchanged = len(files) - len(todo)
            storage_failed = False
            try:
                self._process(writer, todo, stats)
            except IndexStorageError:
                # A commit just failed: trying the same writes again at once would fail the
                # same way, double the wait, and leave one more unreferenced shard behind.
                storage_failed = True
                raise
            finally:
                # Whatever finished is valid: keep it even when interrupted (Ctrl-C, errors).
                if not storage_failed and writer.commit():
                    stats.commits += 1
            if writer.needs_full_compaction():
                writer.compact(0)
            elif len(writer.manifest.shards) - shards_before > 1:
                writer.compact(shards_before)  # this run's shards become one
        stats.seconds = time.monotonic() - started
        return stats

    # -- planning -------------------------------------------------------------------------------

    def _unchanged(self, state: PhotoState | None, item: AlbumFile) -> bool:
        if state is None or not item.stamp or self._redo(state):
            return False
        return state.size == item.size and state.stamp == item.stamp

    def _redo(self, stored: PhotoState) -> bool:
        """Whether a photo already indexed goes through the engine again anyway."""
        if self.retry_errors and stored.status == STATUS_ERROR:
            return True
        return self.rebuild and self._detected_otherwise(stored)

    def _detected_otherwise(self, stored: PhotoState) -> bool:
        """Whether a photo's faces were looked for with other settings than this run's (an
        interrupted --rebuild resumes: what it already redid now has this run's settings)."""
        if stored.status not in DECODED_STATUSES:
            return False  # never decoded: settings do not matter (retry_errors is for these)
        return self.detection is None or stored.detection != self.detection

    def _note_other_settings(self, writer: IndexWriter) -> None:
        if self.rebuild or self.detection is None:
            return
        other = sum(1 for state in writer.photos.values() if self._detected_otherwise(state))
        if other:
            self.report(
                f"{other} photo(s) in the index were searched for faces with other settings "
                f"than this run's ({self.detection}): they keep their faces; add --rebuild to "
                "detect them again"
            )

    # -- worker-thread stage ----------------------------------------------------------------

    def _prepare(self, writer: IndexWriter, item: AlbumFile) -> _Prepared:
        prepared = _Prepared(item)
        try:
            data = self.album.read(item.key)
        except Exception as exc:  # storage errors: missing since listing, network, permissions
            prepared.read_failure = f"{item.key}: cannot read file ({_one_line(exc)})"
            return prepared
        prepared.size = len(data)
        prepared.fingerprint = fingerprint(data)
        source = writer.source_for(prepared.fingerprint)
        if source is not None and not self._redo(source):
            prepared.reuse = source
            return prepared
        try:
            prepared.image = load_image(data, max_side=self.max_side, name=item.key)
        except ImageLoadError as exc:
            prepared.error = exc.reason
        except Exception as exc:  # anything else the decoder throws is just as deterministic
            prepared.error = f"cannot decode ({_one_line(exc)})"
        return prepared

    # -- main-thread stage ------------------------------------------------------------------

    def _process(self, writer: IndexWriter, todo: list[AlbumFile], stats: RunStats) -> None:
        from photosearch.progress import progress_bar

        window = self.workers * 2 + self.batch_size
        last_commit = time.monotonic()
        with (
            progress_bar("indexing", total=len(todo), disable=not self.show_progress) as advance,
            ThreadPoolExecutor(self.workers, thread_name_prefix="decode") as pool,
            self.engine.parallel_pool() as engine_pool,
        ):
            # On a CPU with several engine threads each photo goes through the engine as soon
            # as it is decoded, one photo per thread: no thread waits for a batch's slowest
            # photo. Otherwise (a GPU) the main thread runs the engine on batches of photos.
            queue: deque[Future[_Prepared]] = deque()
            decodings: deque[Future[_Prepared]] = deque(maxlen=window)  # to cancel on the way out
            upcoming = iter(todo)
            batch: list[_Prepared] = []

            def refill() -> None:
                while len(queue) < window:
                    item = next(upcoming, None)
                    if item is None:
                        return
                    decoding = pool.submit(self._prepare, writer, item)
                    decodings.append(decoding)
                    if engine_pool is not None:
                        decoding = engine_pool.submit(self._faces_of, decoding)
                    queue.append(decoding)

            try:
                refill()
                while queue or batch:
                    if queue:
                        prepared = queue.popleft().result()
                        refill()
                        handled = self._record(writer, prepared, stats, batch)
                        advance(handled)
                    # Run the engine when the batch is full, or when the next photo is still
                    # being decoded (no point holding decoded photos back), or at the end.
                    if batch and (
                        len(batch) >= self.batch_size or not queue or not queue[0].done()
                    ):
                        self._detect(writer, batch, stats)
                        advance(len(batch))
                        batch.clear()
                    due = time.monotonic() - last_commit >= self.commit_seconds
                    if writer.pending >= self.commit_photos or (due and writer.pending):
                        writer.commit()
                        stats.commits += 1
                        last_commit = time.monotonic()
            except BaseException:
                for future in (*queue, *decodings):
                    future.cancel()
                raise

    def _faces_of(self, decoding: Future[_Prepared]) -> _Prepared:
        """Engine-thread stage: the faces of a decoded photo (waits for its decoding)."""
        prepared = decoding.result()
        if prepared.image is None:
            return prepared  # not for the engine: unreadable, reused, or failed to decode
        try:
            prepared.faces = self.engine.faces_for_images([prepared.image])[0]
        except Exception as exc:
            prepared.engine_failure = _one_line(exc)
        return prepared

    def _record(
        self, writer: IndexWriter, prepared: _Prepared, stats: RunStats, batch: list[_Prepared]
    ) -> int:
        """Record a prepared photo (or queue it for the engine); returns photos finished."""
        item = prepared.file
        if prepared.read_failure is not None:
            stats.read_failures += 1
            self._say(stats, prepared.read_failure)
            return 1
        if prepared.reuse is not None:
            writer.reuse(item.key, prepared.reuse, size=prepared.size, stamp=item.stamp)
            stats.reused += 1
            return 1
        if prepared.error is not None:
            writer.put(self._rows(prepared, error=prepared.error))
            stats.unreadable += 1
            self._say(stats, f"{item.key}: {prepared.error}")
            return 1
        if prepared.engine_failure is not None:
            self._engine_failed(stats, prepared, prepared.engine_failure)
            return 1
        if prepared.faces is not None:
            self._put_faces(writer, prepared, prepared.faces, stats)
            return 1
        batch.append(prepared)
        return 0

    def _detect(self, writer: IndexWriter, batch: list[_Prepared], stats: RunStats) -> None:
        images = [prepared.image for prepared in batch]
        try:
            found = self.engine.faces_for_images(images)
        except Exception:
            # One bad photo must not sink its batch: retry one by one to isolate it.
            found = []
            for prepared in batch:
                try:
                    found.append(self.engine.faces_for_images([prepared.image])[0])
                except Exception as exc:
                    self._engine_failed(stats, prepared, _one_line(exc))
                    found.append(None)
        for prepared, faces in zip(batch, found, strict=True):
            if faces is not None:
                self._put_faces(writer, prepared, faces, stats)

    def _put_faces(
        self, writer: IndexWriter, prepared: _Prepared, faces: list, stats: RunStats
    ) -> None:
        writer.put(self._rows(prepared, faces=faces))
        stats.indexed += 1
        stats.faces += len(faces)
        prepared.image = None  # free the pixels now

    def _engine_failed(self, stats: RunStats, prepared: _Prepared, reason: str) -> None:
        # Not recorded: an engine failure (e.g. out of GPU memory) may be transient.
        self._say(stats, f"{prepared.file.key}: face engine failed ({reason})")
        stats.read_failures += 1
        prepared.image = None

    def _rows(self, prepared: _Prepared, *, faces=(), error: str | None = None):
        image = prepared.image
        return photo_rows(
            prepared.file.key,
            prepared.fingerprint or "",
            model_id=self.engine.model_id,
            size=prepared.size,
            stamp=prepared.file.stamp,
            faces=faces,
            error=error,
            image_size=image.original_size if image is not None else None,
            detection=self.detection,
        )

    def _say(self, stats: RunStats, line: str) -> None:
        stats.messages.append(line)
        self.report(line)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def index_album(
    album_location: str | os.PathLike,
    index_location: str | os.PathLike | None = None,
    *,
    engine: FaceFinder | None = None,
    device: str = "auto",
    max_side: int | None = None,
    **options: Any,
) -> RunStats:
    """Index (or update the index of) an album; returns what the run did.

    `engine` defaults to a FaceEngine on `device` (with `max_side` when given); `options` go to
    `Indexer` (workers, batch_size, commit_photos, commit_seconds, retry_errors, rebuild, report,
    show_progress).
    """
    album = Album(album_location)
    if engine is None:
        from photosearch.faces.engine import FaceEngine, resolve_max_side

        engine = FaceEngine(device=device, max_side=resolve_max_side(max_side))
    location = index_location or default_index_location(album.location)
    return Indexer(album, location, engine, **options).run()

"""Background indexing with progress, which never blocks searching the committed part.

The indexer runs in a thread and commits as it goes, so the search sees newly indexed photos
while the run goes on; the engine is wrapped only to count photos for the progress bar, and a
failure becomes one line in the album panel rather than an error on the page.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from photosearch.app.logic.references import _default_engine
from photosearch.faces.base import EngineWrapper, Face, FaceFinder
from photosearch.faces.images import LoadedImage
from photosearch.index.album import Album, AlbumError
from photosearch.index.store import IndexReader
from photosearch.search.query import IndexView

__all__ = [
    "DONE",
    "FAILED",
    "IDLE",
    "RUNNING",
    "BackgroundIndexer",
    "IndexingProgress",
    "format_duration",
]


IDLE, RUNNING, DONE, FAILED = "idle", "running", "done", "failed"


@dataclass(frozen=True)
class IndexingProgress:
    state: str  # idle | running | done | failed
    done: int = 0  # photos processed in this run
    total: int = 0  # photos this run has to process (new or changed)
    started: float | None = None  # time.monotonic()
    finished: float | None = None
    message: str = ""  # summary when done, reason when failed
    problems: tuple[str, ...] = ()  # one line per unreadable photo

    @property
    def fraction(self) -> float:
        return min(1.0, self.done / self.total) if self.total else 1.0

    @property
    def rate(self) -> float | None:
        """Photos per second so far."""
        if self.started is None or self.done == 0:
            return None
        elapsed = (self.finished or time.monotonic()) - self.started
        return self.done / elapsed if elapsed > 0 else None

    @property
    def eta_seconds(self) -> float | None:
        rate = self.rate
        if rate is None or self.state != RUNNING:
            return None
        return max(0.0, (self.total - self.done) / rate)

    def label(self) -> str:
        """One line for the progress bar."""
        if self.state != RUNNING:
            return self.message
        if self.total == 0:
            return "Looking for new photos…"
        parts = [f"Indexing {self.done} of {self.total} photos"]
        if self.rate is not None:
            parts.append(f"{self.rate:.1f} photos/s")
        if self.eta_seconds is not None:
            parts.append(f"about {format_duration(self.eta_seconds)} left")
        return " · ".join(parts)


def format_duration(seconds: float) -> str:
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


class _CountingEngine(EngineWrapper):
    """Passes photos to the real engine and counts them, for the progress bar (its settings,
    detection included, are the real engine's: the index records them as the CLI does)."""

    def __init__(self, engine: FaceFinder, on_photos: Callable[[int], None]) -> None:
        super().__init__(engine)
        self.on_photos = on_photos

    def faces_for_images(self, images: Sequence[LoadedImage]) -> list[list[Face]]:
        found = self.engine.faces_for_images(images)
        self.on_photos(len(images))
        return found


class BackgroundIndexer:
    """Runs the indexer in a thread; searching the committed part goes on meanwhile.

    Commits come every `commit_photos` photos or `commit_seconds` seconds, so the search sees
    newly indexed photos while the run goes on.
    """

    def __init__(
        self,
        album: Album,
        index_location: str,
        *,
        engine_factory: Callable[[], FaceFinder] | None = None,
        view: IndexView | None = None,
        commit_photos: int = 50,
        commit_seconds: float = 10.0,
    ) -> None:
        self.album = album
        self.index_location = index_location
        self.engine_factory = engine_factory or _default_engine
        self.view = view
        self.commit_photos = commit_photos
        self.commit_seconds = commit_seconds
        self._engine: FaceFinder | None = None
        self._lock = threading.Lock()
        self._progress = IndexingProgress(IDLE)
        self._thread: threading.Thread | None = None

    def progress(self) -> IndexingProgress:
        with self._lock:
            return self._progress

    @property
    def running(self) -> bool:
        return self.progress().state == RUNNING

    def start(self) -> bool:
        """Start indexing new and changed photos; False if a run is already going."""
        with self._lock:
            if self._progress.state == RUNNING:
                return False
            self._progress = IndexingProgress(RUNNING, started=time.monotonic())
            self._thread = threading.Thread(target=self._run, name="photosearch-index", daemon=True)
            self._thread.start()
            return True

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the current run to end; True when it has."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
        return not self.running

    def _update(self, **changes: Any) -> None:
        with self._lock:
            values = {**self._progress.__dict__, **changes}
            self._progress = IndexingProgress(**values)

    def _advance(self, count: int) -> None:
        with self._lock:
            progress = self._progress
            done = min(progress.total, progress.done + count)
            self._progress = IndexingProgress(**{**progress.__dict__, "done": done})

    def _run(self) -> None:
        from photosearch.index.indexer import Indexer

        problems: list[str] = []
        try:
            todo = self._plan()
            self._update(total=len(todo))
            keys = set(todo)

            def report(line: str) -> None:
                problems.append(line)
                if line.split(": ", 1)[0] in keys:  # an unreadable photo is processed too
                    self._advance(1)
                self._update(problems=tuple(problems))

            if self._engine is None:
                self._engine = self.engine_factory()
            indexer = Indexer(
                self.album,
                self.index_location,
                _CountingEngine(self._engine, self._advance),
                commit_photos=self.commit_photos,
                commit_seconds=self.commit_seconds,
                report=report,
            )
            stats = indexer.run()
        except Exception as error:  # shown in the panel; the page goes on
            self._update(state=FAILED, finished=time.monotonic(), message=_indexing_failure(error))
        else:
            message = (
                f"Indexed {stats.indexed} new photo{'s' if stats.indexed != 1 else ''} "
                f"({stats.faces} face{'s' if stats.faces != 1 else ''}) in "
                f"{format_duration(stats.seconds)}"
            )
            extras = [
                f"{stats.reused} renamed or copied" if stats.reused else "",
                f"{stats.deleted} removed" if stats.deleted else "",
                f"{stats.unreadable} unreadable" if stats.unreadable else "",
            ]
            extras = [extra for extra in extras if extra]
            if stats.indexed == 0:
                message = "No new photos: the index is up to date"
            if extras:
                message += f" ({', '.join(extras)})"
            self._update(
                state=DONE,
                done=self.progress().total,
                finished=time.monotonic(),
                message=message + ".",
                problems=tuple(problems),
            )
        finally:
            if self.view is not None:
                self.view.refresh()

    def _plan(self) -> list[str]:
        """Album keys the indexer will process: new, changed, or never indexed."""
        files = self.album.files()
        reader = IndexReader(self.index_location)
        known: dict[str, tuple[int | None, str | None]] = {}
        if reader.manifest() is not None:
            photos = reader.photos()
            known = dict(
                zip(
                    photos.column("photo").to_pylist(),
                    zip(
                        photos.column("size").to_pylist(),
                        photos.column("stamp").to_pylist(),
                        strict=True,
                    ),
                    strict=True,
                )
            )
        return [
            item.key
            for item in files
            if not item.stamp or known.get(item.key) != (item.size, item.stamp)
        ]


def _indexing_failure(error: Exception) -> str:
    from photosearch.index.store import IndexBusyError

    if isinstance(error, IndexBusyError):
        return "Another photosearch process is indexing this album right now; try again later."
    if isinstance(error, AlbumError):
        return f"Cannot read the album: {error}"
    text = " ".join(str(error).split()) or error.__class__.__name__
    return f"Indexing stopped: {text}"

"""Results and acting on them: pages of matches, and thumbnails with the matched face boxed.

Thumbnails are made once per album and kept in a bounded cache shared by the sessions. The zip
download and the copy to a folder live in photosearch.search.results (shared with the CLI); they
are re-exported here, beside the rest of what the page does with results.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw

from photosearch.app.logic.references import _jpeg, _working_box
from photosearch.faces.images import ImageLoadError, load_image
from photosearch.index.album import Album
from photosearch.search.match import Match
from photosearch.search.results import UNREADABLE_LIST_NAME as UNREADABLE_LIST_NAME
from photosearch.search.results import CopyReport as CopyReport
from photosearch.search.results import copy_matches as copy_matches
from photosearch.search.results import write_zip as write_zip
from photosearch.search.results import zip_bytes as zip_bytes
from photosearch.search.results import zip_name as zip_name

__all__ = [
    "BOX_COLOUR",
    "CANVAS_COLOUR",
    "PER_PAGE",
    "RESULT_THUMBNAIL_SIZE",
    "UNREADABLE_LIST_NAME",
    "CopyReport",
    "ResultPage",
    "ThumbnailCache",
    "boxed_thumbnail",
    "copy_destination",
    "copy_matches",
    "copy_to_folder",
    "draw_face_box",
    "match_caption",
    "page_of",
    "write_zip",
    "zip_bytes",
    "zip_name",
]


PER_PAGE = 24
RESULT_THUMBNAIL_SIZE = (480, 360)
CANVAS_COLOUR = (240, 242, 246)  # Streamlit's light secondary background
BOX_COLOUR = (255, 196, 0)  # amber: visible on skin, sky and foliage alike


@dataclass(frozen=True)
class ResultPage:
    matches: list[Match]
    number: int  # 1-based
    pages: int
    first: int  # 1-based position of the first match on this page (0 when empty)
    last: int
    total: int


def page_of(matches: Sequence[Match], number: int, per_page: int = PER_PAGE) -> ResultPage:
    """Page `number` (1-based, clamped to the pages that exist) of the matches."""
    pages = max(1, -(-len(matches) // per_page))
    number = min(max(1, int(number)), pages)
    start = (number - 1) * per_page
    chosen = list(matches[start : start + per_page])
    return ResultPage(
        matches=chosen,
        number=number,
        pages=pages,
        first=start + 1 if chosen else 0,
        last=start + len(chosen),
        total=len(matches),
    )


def match_caption(match: Match) -> str:
    return f"{match.photo} · distance {match.distance:.2f}"


def draw_face_box(picture: Image.Image, box: Sequence[int], width: int) -> None:
    """Box a face on `picture` in place, `width` pixels thick."""
    left, top, right, bottom = box
    draw = ImageDraw.Draw(picture)
    # A dark outline around the bright box keeps it visible on light backgrounds.
    draw.rectangle((left - width, top - width, right + width, bottom + width), outline=(0, 0, 0))
    draw.rectangle(
        (left - width + 1, top - width + 1, right + width - 1, bottom + width - 1),
        outline=BOX_COLOUR,
        width=width - 1,
    )


def boxed_thumbnail(
    data: bytes, box: Sequence[int], name: str, size: tuple[int, int] = RESULT_THUMBNAIL_SIZE
) -> bytes:
    """A JPEG of the photo fitted into a `size` canvas, with the matched face boxed.

    Every thumbnail has the same shape (the photo centred on a light background), so the
    result grid stays tidy whatever the photos' orientation.
    """
    loaded = load_image(data, max_side=max(size), name=name)
    picture = Image.fromarray(loaded.pixels)
    draw_face_box(picture, _working_box(loaded, box), max(3, round(max(picture.size) / 70)))
    picture.thumbnail(size, Image.Resampling.LANCZOS)
    canvas = Image.new("RGB", size, CANVAS_COLOUR)
    canvas.paste(picture, ((size[0] - picture.width) // 2, (size[1] - picture.height) // 2))
    return _jpeg(canvas, quality=82)


class ThumbnailCache:
    """Boxed thumbnails of one album, made once and kept (bounded, least recently used)."""

    def __init__(self, album: Album, capacity: int = 600) -> None:
        self.album = album
        self.capacity = capacity
        self._items: OrderedDict[tuple, bytes | str] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, match: Match, size: tuple[int, int] = RESULT_THUMBNAIL_SIZE) -> bytes | str:
        """JPEG bytes, or a one-line reason when the photo cannot be shown."""
        key = (match.photo, match.box, size)
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        try:
            value: bytes | str = boxed_thumbnail(
                self.album.read(match.photo), match.box, match.photo, size
            )
        except ImageLoadError as error:
            value = error.reason
        except OSError as error:
            value = f"cannot read the photo ({error.__class__.__name__})"
        with self._lock:
            self._items[key] = value
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)
        return value


def copy_destination(folder: str, base: str | Path | None = None) -> Path:
    """Where *Copy to a folder* writes: `folder` as typed, ``~`` expanded, and a relative path
    taken inside `base` (the home folder of the user running the app), never the server's
    working directory."""
    path = Path(folder.strip()).expanduser()
    if not path.is_absolute():
        path = Path(base if base is not None else Path.home()) / path
    return path


def copy_to_folder(
    album: Album, matches: Sequence[Match], folder: str, base: str | Path | None = None
) -> CopyReport | str:
    """Copy the matches (see `copy_matches`), or a one-line reason when the folder is unusable."""
    destination = copy_destination(folder, base)
    try:
        return copy_matches(album, matches, destination)
    except OSError as error:
        reason = error.strerror or error.__class__.__name__
        return f"Cannot copy to {destination}: {reason}."

"""The photo viewer without Streamlit: a result's photo at screen size, its face boxed and zoomed.

The photo is decoded from the original file (not the 480 px result thumbnail) at up to
`DECODE_SIDE` pixels, so the screen-size view and the zoomed face crop are both sharp; the view
is then fitted into `SCREEN_SIZE`. Position arithmetic (next / previous, wrapping) lives here
too, so the page only lays out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from PIL import Image

from photosearch.app.logic.references import _jpeg, _working_box, face_thumbnail
from photosearch.app.logic.results import draw_face_box
from photosearch.faces.images import ImageLoadError, load_image
from photosearch.index.album import Album
from photosearch.search.match import Match

__all__ = [
    "DECODE_SIDE",
    "FACE_ZOOM_SIDE",
    "SCREEN_SIZE",
    "ViewerImages",
    "safe_view_of",
    "step",
    "view_of",
]

DECODE_SIDE = 3000  # sharp enough for a zoomed face, bounded for 50-megapixel photos
SCREEN_SIZE = (1600, 1100)
FACE_ZOOM_SIDE = 360


@dataclass(frozen=True)
class ViewerImages:
    photo: bytes  # JPEG of the photo fitted into SCREEN_SIZE, the face boxed
    face: bytes  # JPEG of the face, zoomed
    width: int  # the original photo's size
    height: int


def step(position: int, count: int, delta: int) -> int:
    """The position after moving `delta` through `count` results, wrapping round."""
    return (position + delta) % count if count else 0


def view_of(album: Album, match: Match, screen: Sequence[int] = SCREEN_SIZE) -> ViewerImages:
    """The viewer's images of one match. Raises ImageLoadError or OSError for a photo that
    cannot be read."""
    image = load_image(album.read(match.photo), max_side=DECODE_SIDE, name=match.photo)
    face = face_thumbnail(image, match.box, FACE_ZOOM_SIDE)
    picture = Image.fromarray(image.pixels)
    draw_face_box(picture, _working_box(image, match.box), max(3, round(max(picture.size) / 250)))
    picture.thumbnail(tuple(screen), Image.Resampling.LANCZOS)
    original_width, original_height = image.original_size
    return ViewerImages(_jpeg(picture, quality=88), face, original_width, original_height)


def safe_view_of(album: Album, match: Match) -> ViewerImages | str:
    """view_of, or a one-line reason when the photo cannot be shown."""
    try:
        return view_of(album, match)
    except ImageLoadError as error:
        return error.reason
    except OSError as error:
        return f"cannot read the photo ({error.__class__.__name__})"

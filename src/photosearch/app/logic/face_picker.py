"""Picking one face of a crowd reference by clicking it in the photo.

The page shows the reference photo with every face boxed and numbered (`numbered_picture`),
downscaled to the column; the click component reports the click in displayed pixels and the
displayed size, which `click_to_photo` maps back to the photo's original pixels, and `face_at`
turns into a face number.

Which face a click means: a click inside one or more boxes picks the box whose centre is nearest
(boxes of a tight crowd overlap); a click outside every box picks the nearest face only when it
is within one face-width of that face's box edge (a slightly off click on a small face still
counts), and a click far from every face (sky, a shirt) picks nothing, so it never switches the
search to a face the user did not point at.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from PIL import Image, ImageDraw, ImageFont

from photosearch.faces.images import LoadedImage

__all__ = ["PICKER_MAX_SIDE", "click_to_photo", "face_at", "numbered_picture"]

PICKER_MAX_SIDE = 1200  # the JPEG sent to the browser; the column shows it smaller still
_BOX_COLOUR = (255, 196, 0)  # the results' amber
_LABEL_INK = (0, 0, 0)

Box = Sequence[int]  # (left, top, right, bottom), inclusive, original pixels


def click_to_photo(
    click: Mapping[str, float], photo_size: tuple[int, int]
) -> tuple[float, float] | None:
    """A click `{"x", "y", "width", "height"}` in displayed pixels, in original photo pixels.

    None for a click without a usable displayed size (the component not laid out yet)."""
    try:
        x, y = float(click["x"]), float(click["y"])
        width, height = float(click["width"]), float(click["height"])
    except (KeyError, TypeError, ValueError):
        return None
    if width <= 0 or height <= 0:
        return None
    return x * photo_size[0] / width, y * photo_size[1] / height


def face_at(point: tuple[float, float], boxes: Sequence[Box]) -> int | None:
    """The number (0-based) of the face a click at `point` (original pixels) means, or None."""
    x, y = point
    best: tuple[float, int] | None = None
    for number, (left, top, right, bottom) in enumerate(boxes):
        centre_x, centre_y = (left + right + 1) / 2, (top + bottom + 1) / 2
        # Distance from the box (0 inside it), in units of the face's own width.
        size = max(1, right + 1 - left, bottom + 1 - top)
        outside = max(left - x, 0.0, x - (right + 1)), max(top - y, 0.0, y - (bottom + 1))
        if (outside[0] ** 2 + outside[1] ** 2) ** 0.5 > size:
            continue
        # Inside boxes rank before outside ones; then by distance to the centre.
        inside = outside == (0.0, 0.0)
        rank = (0.0 if inside else 1e12) + (x - centre_x) ** 2 + (y - centre_y) ** 2
        if best is None or rank < best[0]:
            best = (rank, number)
    return None if best is None else best[1]


def numbered_picture(
    image: LoadedImage, boxes: Sequence[Box], max_side: int = PICKER_MAX_SIDE
) -> bytes:
    """A JPEG of the photo, at most `max_side`, with every face boxed and its number above it."""
    from photosearch.app.logic.references import _jpeg, _working_box  # references imports us

    picture = Image.fromarray(image.pixels)
    picture.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    shrink = picture.size[0] / image.pixels.shape[1]
    draw = ImageDraw.Draw(picture)
    width = max(2, round(max(picture.size) / 300))
    font = ImageFont.load_default(size=max(14, round(max(picture.size) / 40)))
    for number, box in enumerate(boxes):
        left, top, right, bottom = (v * shrink for v in _working_box(image, box))
        draw.rectangle((left - 1, top - 1, right + 1, bottom + 1), outline=(0, 0, 0))
        draw.rectangle((left, top, right, bottom), outline=_BOX_COLOUR, width=width)
        label = str(number + 1)
        text_box = draw.textbbox((0, 0), label, font=font)
        text_w, text_h = text_box[2] - text_box[0], text_box[3] - text_box[1]
        tag_top = top - text_h - 8 if top - text_h - 8 >= 0 else bottom + 2
        tag = (left, tag_top, left + text_w + 8, tag_top + text_h + 8)
        draw.rectangle(tag, fill=_BOX_COLOUR, outline=(0, 0, 0))
        draw.text(
            (left + 4 - text_box[0], tag_top + 4 - text_box[1]), label, fill=_LABEL_INK, font=font
        )
    return _jpeg(picture)

"""Small faces of shrunk photos, described from a more detailed decode of the same photo.

A photo is decoded at its working resolution (2000 px on the longer side by default) for
detection. A face at 2% of a 4032 px phone photo is 80 px in the photo but 40 px there, and the
150 px chip the descriptor sees would be mostly interpolation. So when a shrunk photo has faces
under DETAIL_FACE_PX working pixels, it is decoded again at the size that makes its smallest
such face at least DETAIL_FACE_PX wide (at most full size; a JPEG is then drafted at 1/2 or 1/4
if that is enough, and nothing is resampled: shrinking the whole photo to the exact size cost
more than its decode), and those faces' landmarks and chips are taken from that decode. Their boxes
stay as detected. The decode goes through `load_image`, so the process-wide decode budget
bounds its memory; where it is refused or fails, the working image serves as before.

Measured (an LFW face pasted into a 4032x3024 photo, distance to the same image described at
its own 250 px, three people): 80 px faces 0.15-0.21 from the working image, 0.04-0.07 from the
full decode; 60 px 0.25-0.31 -> 0.07-0.11; 48 px 0.31-0.44 -> 0.13-0.15.
"""

from __future__ import annotations

from collections.abc import Sequence

from photosearch.faces.images import ImageLoadError, LoadedImage, load_image

__all__ = ["DETAIL_FACE_PX", "MIN_DETAIL_GAIN", "detail_image", "small_faces", "to_detail_box"]

# The descriptor's 150 px chip holds the face at about 100 px (dlib's 0.25 padding each side).
DETAIL_FACE_PX = 100
MIN_DETAIL_GAIN = 1.25  # a decode that would add less detail than this is not worth its time

Box = tuple[int, int, int, int]


def small_faces(image: LoadedImage, boxes: Sequence[Box]) -> list[int]:
    """Indices of the boxes (working pixels) worth describing from a more detailed decode."""
    if image.encoded is None or image.scale < MIN_DETAIL_GAIN:
        return []
    return [i for i, box in enumerate(boxes) if box[2] - box[0] + 1 < DETAIL_FACE_PX]


def detail_image(image: LoadedImage, boxes: Sequence[Box]) -> LoadedImage | None:
    """The photo decoded so that the smallest of `boxes` is about DETAIL_FACE_PX wide (at most
    full size), or None when that adds too little detail or the decode fails."""
    if image.encoded is None or not boxes:
        return None
    smallest = min(box[2] - box[0] + 1 for box in boxes)
    gain = min(image.scale, DETAIL_FACE_PX / max(smallest, 1))
    if gain < MIN_DETAIL_GAIN:
        return None
    side = round(max(image.working_size) * gain)
    full = max(image.original_size)
    try:
        return load_image(
            image.encoded,
            max_side=None if side >= full else side,
            name=image.source,
            resample=False,  # only a few faces are cut out: no need to resize the whole photo
        )
    except (ImageLoadError, OSError):
        return None


def to_detail_box(image: LoadedImage, detail: LoadedImage, box: Box) -> Box:
    """A working-pixel box of `image` in `detail`'s pixels (through original pixels)."""
    left, top, right, bottom = image.to_original_box(box)
    sx, sy = detail.axis_scales
    new_left, new_top = round(left / sx), round(top / sy)
    return (
        new_left,
        new_top,
        max(new_left, round((right + 1) / sx) - 1),
        max(new_top, round((bottom + 1) / sy) - 1),
    )

"""Aligned face chips, pixel-identical to dlib's ``get_face_chip`` (numpy, no dlib).

dlib (image_transforms/interpolation.h) builds a chip in two steps:

1. ``get_face_chip_details``: fit a similarity transform from a 5-point template (padded by
   ``padding`` and scaled to ``size``) to the detected landmarks; its rotation is the chip angle
   and the chip rectangle is centred on the image of the chip centre, ``size * scale - 1`` wide.
2. ``extract_image_chip``: crop the bounding box of the rotated rectangle (grown by a border that
   doubles per pyramid level), shrink the crop with ``pyramid_down<2>`` until one more level
   would leave fewer than ``size * size`` pixels in the rectangle, then sample that level with
   bilinear interpolation that truncates to uint8; samples outside the crop are black.

See ../shared/docs/dlib-models.md, section 4. Each step repeats dlib's arithmetic in the same
float types and order, with one exception: dlib solves the transform fits with its own SVD and
pseudo-inverse, which we replace by their closed forms (exact in real arithmetic). The two agree
to about 1e-13 pixels, while a sample has to move by about 1e-6 pixels before any chip pixel
changes; the oracle tests check every chip of every shared photo against dlib bit for bit.
(Ill-conditioned fits, such as five landmarks within one pixel, can differ; no face gives them.)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "CHIP_PADDING",
    "CHIP_SIZE",
    "TEMPLATE5",
    "Affine",
    "ChipDetails",
    "Point2",
    "extract_image_chip",
    "face_chip",
    "face_chip_details",
    "face_chips",
    "fit_similarity",
    "pyramid_down2",
]

CHIP_SIZE = 150
CHIP_PADDING = 0.25

# dlib's 5-point template in the unit square: subject's left eye outer and inner corner, right
# eye outer and inner corner, base of the nose (the predictor's point order).
TEMPLATE5: tuple[tuple[float, float], ...] = (
    (0.8595674595992, 0.2134981538014),
    (0.6460604764104, 0.2289674387677),
    (0.1205750620789, 0.2137274526848),
    (0.3340850613712, 0.2290642403242),
    (0.4901123135679, 0.6277975316475),
)

Point2 = tuple[float, float]
# An affine map p -> m @ p + b as (m (2, 2), b (2,)), float64.
Affine = tuple[np.ndarray, np.ndarray]
# drectangle as (left, top, right, bottom); right/bottom inclusive, so width = right - left + 1.
DRect = tuple[float, float, float, float]


@dataclass(frozen=True)
class ChipDetails:
    """dlib's ``chip_details``: where a chip lies in the image and its size."""

    rect: DRect  # the chip rectangle before rotation, in image pixels
    angle: float  # rotation about the rectangle centre, radians
    rows: int
    cols: int

    def chip_to_image(self) -> np.ndarray:
        """(2, 3) affine mapping chip pixel (x, y, 1) to image coordinates (float64).

        The ideal mapping, for placing chip-space results back on the image; dlib samples a
        pyramid level with an equivalent transform.
        """
        left, top, right, bottom = self.rect
        center = ((left + right) / 2.0, (top + bottom) / 2.0)
        tl = _rotate_point(center, (left, top), self.angle)
        tr = _rotate_point(center, (right, top), self.angle)
        bl = _rotate_point(center, (left, bottom), self.angle)
        x_axis = (np.subtract(tr, tl)) / max(self.cols - 1, 1)
        y_axis = (np.subtract(bl, tl)) / max(self.rows - 1, 1)
        return np.column_stack([x_axis, y_axis, tl])


def fit_similarity(from_points: np.ndarray, to_points: np.ndarray) -> Affine:
    """The least-squares similarity transform (rotation, uniform scale, shift) from -> to.

    ``from_points`` and ``to_points`` are (..., P, 2) and broadcast against each other, so many
    fits run at once; float64. Returns m (..., 2, 2) and b (..., 2), mapping p to m @ p + b.
    This is dlib's find_similarity_transform (Umeyama): means, variance and covariance accumulate
    point by point as in dlib (the covariance multiplied by 1/P, the others divided by P), but
    dlib's SVD of the 2x2 covariance is replaced by the 2-D closed form
    c*R = [[a, -s], [s, a]], a = (cov00 + cov11) / var, s = (cov10 - cov01) / var.
    """
    src = np.asarray(from_points, np.float64)
    dst = np.asarray(to_points, np.float64)
    count = src.shape[-2]
    mean_from = _sum_terms(np.moveaxis(src, -2, -1)) / count
    mean_to = _sum_terms(np.moveaxis(dst, -2, -1)) / count
    d_from = src - mean_from[..., None, :]
    d_to = dst - mean_to[..., None, :]
    fx, fy = d_from[..., 0], d_from[..., 1]
    tx, ty = d_to[..., 0], d_to[..., 1]
    var_from = _sum_terms(fx * fx + fy * fy) / count
    inv_count = 1.0 / count
    cos_part = _sum_terms(tx * fx) * inv_count + _sum_terms(ty * fy) * inv_count
    sin_part = _sum_terms(ty * fx) * inv_count - _sum_terms(tx * fy) * inv_count
    with np.errstate(divide="ignore", invalid="ignore"):
        a = cos_part / var_from
        s = sin_part / var_from
        if np.any(var_from == 0):
            # dlib keeps scale 1 when the from points coincide: a pure rotation (or identity).
            norm = np.hypot(cos_part, sin_part)
            coincide = var_from == 0
            a = np.where(coincide, np.where(norm > 0, cos_part / norm, 1.0), a)
            s = np.where(coincide, np.where(norm > 0, sin_part / norm, 0.0), s)
    m = np.empty((*a.shape, 2, 2))
    m[..., 0, 0] = a
    m[..., 0, 1] = -s
    m[..., 1, 0] = s
    m[..., 1, 1] = a
    b = mean_to - (m[..., :, 0] * mean_from[..., 0, None] + m[..., :, 1] * mean_from[..., 1, None])
    return m, b


def _sum_terms(values: np.ndarray) -> np.ndarray:
    """Sum over the last axis left to right, one term at a time (dlib's accumulation order)."""
    total = values[..., 0]
    for i in range(1, values.shape[-1]):
        total = total + values[..., i]
    return total


def _apply(m: np.ndarray, b: np.ndarray, x: float, y: float) -> Point2:
    """dlib's point_transform_affine: m * p + b (products summed left to right, then + b)."""
    return (
        float((m[0, 0] * x + m[0, 1] * y) + b[0]),
        float((m[1, 0] * x + m[1, 1] * y) + b[1]),
    )


def face_chip_details(
    landmarks: np.ndarray | Sequence[Sequence[float]],
    size: int = CHIP_SIZE,
    padding: float = CHIP_PADDING,
) -> ChipDetails:
    """dlib's ``get_face_chip_details`` for 5 landmarks (x, y), e.g. ShapePredictor.predict."""
    points = np.asarray(landmarks, np.float64).reshape(-1, 2)
    if len(points) != len(TEMPLATE5):
        raise ValueError(f"expected 5 landmarks, got {len(points)}")
    if size <= 0 or padding < 0:
        raise ValueError("size must be positive and padding non-negative")
    # dlib: p = (padding + p) / (2*padding + 1), a matrix expression (which multiplies by the
    # reciprocal), then p * size.
    template = (np.asarray(TEMPLATE5) + padding) * (1.0 / (2 * padding + 1)) * size
    m, b = fit_similarity(template, points)
    # chip_details(chip_points, img_points, dims): the rotation and scale of m * (1, 0), and a
    # rectangle of (size * scale) - 1 centred on the image of the chip centre.
    px, py = float(m[0, 0]), float(m[1, 0])
    angle = math.atan2(py, px)
    scale = math.sqrt(px * px + py * py)
    cx, cy = _apply(m, b, size / 2.0, size / 2.0)
    half_w = (size * scale - 1) / 2
    half_h = (size * scale - 1) / 2
    return ChipDetails((cx - half_w, cy - half_h, cx + half_w, cy + half_h), angle, size, size)


def face_chip(
    image: np.ndarray,
    landmarks: np.ndarray | Sequence[Sequence[float]],
    size: int = CHIP_SIZE,
    padding: float = CHIP_PADDING,
) -> np.ndarray:
    """The (size, size, 3) uint8 aligned chip of one face, as ``dlib.get_face_chip`` gives it."""
    return extract_image_chip(image, face_chip_details(landmarks, size, padding))


def face_chips(
    image: np.ndarray,
    landmarks_list: np.ndarray | Sequence[np.ndarray],
    size: int = CHIP_SIZE,
    padding: float = CHIP_PADDING,
) -> np.ndarray:
    """(K, size, size, 3) uint8 chips, each exactly ``dlib.get_face_chip`` of that face.

    Each face gets its own crop and pyramid, as in per-face dlib calls (dlib's batch
    ``get_face_chips`` shares one crop among all faces, which can shift pyramid pixels).
    """
    chips = np.zeros((len(landmarks_list), size, size, 3), np.uint8)
    for index, landmarks in enumerate(landmarks_list):
        chips[index] = face_chip(image, landmarks, size, padding)
    return chips


# ---------------------------------------------------------------------------------------------
# extract_image_chip


def _rotate_point(center: Point2, p: Point2, angle: float) -> Point2:
    """dlib's rotate_point: point_rotator(angle)(p - center) + center."""
    sin_a, cos_a = math.sin(angle), math.cos(angle)
    dx, dy = p[0] - center[0], p[1] - center[1]
    return (cos_a * dx - sin_a * dy) + center[0], (sin_a * dx + cos_a * dy) + center[1]


def _center(rect: DRect) -> Point2:
    return (rect[0] + rect[2]) / 2.0, (rect[1] + rect[3]) / 2.0


def _area(rect: DRect) -> float:
    left, top, right, bottom = rect
    if top > bottom or left > right:
        return 0.0
    return (right - left + 1) * (bottom - top + 1)


def _rect_down(rect: DRect) -> DRect:
    """pyramid_down<2>::rect_down: each corner p -> p/2 - (1.25, 0.75)."""
    left, top, right, bottom = rect
    return (left / 2.0 - 1.25, top / 2.0 - 0.75, right / 2.0 - 1.25, bottom / 2.0 - 0.75)


def _round(value: float) -> int:
    """drectangle -> rectangle conversion: floor(x + 0.5)."""
    return math.floor(value + 0.5)


def pyramid_down2(image: np.ndarray) -> np.ndarray:
    """dlib's pyramid_down<2> on an RGB image: 5-tap [1 4 6 4 1] filter, every other pixel.

    Output is ((rows-3)//2, (cols-3)//2); integer sums divided by 256 with truncation. Images
    with 8 or fewer rows or columns give an empty image, as in dlib.
    """
    rows, cols = image.shape[:2]
    if rows <= 8 or cols <= 8:
        return np.zeros((0, 0, *image.shape[2:]), image.dtype)
    out_rows, out_cols = (rows - 3) // 2, (cols - 3) // 2
    # uint16 as in dlib's rgbptype: the largest sum is 255 * 16 * 16 = 65280.
    pixels = image.astype(np.uint16)
    row_sums = (
        pixels[:, 0 : 2 * out_cols : 2]
        + 4 * pixels[:, 1 : 2 * out_cols + 1 : 2]
        + 6 * pixels[:, 2 : 2 * out_cols + 2 : 2]
        + 4 * pixels[:, 3 : 2 * out_cols + 3 : 2]
        + pixels[:, 4 : 2 * out_cols + 4 : 2]
    )
    sums = (
        row_sums[0 : 2 * out_rows : 2]
        + 4 * row_sums[1 : 2 * out_rows + 1 : 2]
        + 6 * row_sums[2 : 2 * out_rows + 2 : 2]
        + 4 * row_sums[3 : 2 * out_rows + 3 : 2]
        + row_sums[4 : 2 * out_rows + 4 : 2]
    )
    return (sums >> 8).astype(np.uint8)


def _sample_bilinear(source: np.ndarray, transform: Affine, rows: int, cols: int) -> np.ndarray:
    """transform_image with interpolate_bilinear and a black background, vectorized.

    Chip pixel (c, r) maps to source point ``m (c, r) + b``; the four neighbours are mixed in
    float64 exactly as dlib does and the result is truncated (not rounded) to uint8.
    """
    (m00, m01), (m10, m11) = transform[0]
    b0, b1 = transform[1]
    src_rows, src_cols, channels = source.shape
    if src_rows < 2 or src_cols < 2:
        return np.zeros((rows, cols, channels), np.uint8)
    cols_f = np.arange(cols, dtype=np.float64)
    rows_f = np.arange(rows, dtype=np.float64)[:, None]
    x = (m00 * cols_f + m01 * rows_f) + b0
    y = (m10 * cols_f + m11 * rows_f) + b1
    left = np.floor(x)
    top = np.floor(y)
    lr = x - left
    tb = y - top
    inside = (left >= 0) & (top >= 0) & (left < src_cols - 1) & (top < src_rows - 1)
    all_inside = bool(inside.all())
    left_i = left.astype(np.intp)
    top_i = top.astype(np.intp)
    if not all_inside:  # keep the gathers in bounds; those samples are zeroed below
        np.clip(left_i, 0, src_cols - 2, out=left_i)
        np.clip(top_i, 0, src_rows - 2, out=top_i)
    # Flat byte offsets of the top-left neighbours; 1-D take is much faster than fancy indexing.
    flat = (top_i * src_cols + left_i) * channels
    row_step = src_cols * channels
    data = np.ascontiguousarray(source).reshape(-1)
    not_lr = 1 - lr
    not_tb = 1 - tb
    chip = np.empty((rows, cols, channels), np.uint8)
    for channel in range(channels):
        at = flat + channel
        # (1-tb)*((1-lr)*tl + lr*tr) + tb*((1-lr)*bl + lr*br): dlib's operations and order.
        value = not_lr * data.take(at)
        value += lr * data.take(at + channels)
        value *= not_tb
        lower = not_lr * data.take(at + row_step)
        lower += lr * data.take(at + row_step + channels)
        lower *= tb
        value += lower
        np.clip(value, 0, 255, out=value)
        chip[..., channel] = value  # float -> uint8 truncates, like dlib's assign_pixel
    if not all_inside:
        chip[~inside] = 0
    return chip


def extract_image_chip(image: np.ndarray, details: ChipDetails) -> np.ndarray:
    """dlib's ``extract_image_chip`` (bilinear) of an HxWx3 uint8 image."""
    image = np.asarray(image)
    if image.ndim != 3 or image.dtype != np.uint8:
        raise ValueError("expected an HxWxC uint8 image")
    rows, cols = details.rows, details.cols
    height, width = image.shape[:2]
    rect, angle = details.rect, details.angle
    chip_area = rows * cols

    # No rotation and no scaling: dlib copies the (rounded) rectangle.
    if angle == 0 and rect[3] - rect[1] + 1 == rows and rect[2] - rect[0] + 1 == cols:
        return _basic_extract(image, tuple(_round(v) for v in rect), rows, cols)

    # Pyramid depth and the crop: the rotated rectangle's bounding box, grown by a border that
    # covers the pyramid filters' reach, clipped to the image and rounded to whole pixels.
    depth = 0
    grow = 2.0
    level_rect = _rect_down(rect)
    while _area(level_rect) > chip_area:
        level_rect = _rect_down(level_rect)
        depth += 1
        grow = grow * 2 + 2
    center = _center(rect)
    corners = [
        _rotate_point(center, corner, angle)
        for corner in (
            (rect[0], rect[1]),
            (rect[2], rect[1]),
            (rect[0], rect[3]),
            (rect[2], rect[3]),
        )
    ]
    rot_left = min(p[0] for p in corners)
    rot_top = min(p[1] for p in corners)
    rot_right = max(p[0] for p in corners)
    rot_bottom = max(p[1] for p in corners)
    crop_l = _round(max(rot_left - grow, 0.0))
    crop_t = _round(max(rot_top - grow, 0.0))
    crop_r = _round(min(rot_right + grow, float(width - 1)))
    crop_b = _round(min(rot_bottom + grow, float(height - 1)))
    if crop_l > crop_r or crop_t > crop_b:  # the chip lies wholly outside the image
        crop_l, crop_t, crop_r, crop_b = 0, 0, -1, -1
    crop = image[max(crop_t, 0) : crop_b + 1, max(crop_l, 0) : crop_r + 1]

    # The level to sample: shrink the rectangle (relative to the crop) while a further level
    # would still hold more than rows*cols pixels.
    level = -1
    local = (rect[0] - crop_l, rect[1] - crop_t, rect[2] - crop_l, rect[3] - crop_t)
    while _area(_rect_down(local)) > chip_area:
        level += 1
        local = _rect_down(local)
    source = crop
    for _ in range(level + 1):
        source = pyramid_down2(source)

    local_center = _center(local)
    to_points = [
        _rotate_point(local_center, corner, angle)
        for corner in ((local[0], local[1]), (local[2], local[1]), (local[0], local[3]))
    ]
    # find_affine_transform from the chip corners tl, tr, bl to the rotated rectangle's: the
    # exact solution of those three point pairs.
    (tlx, tly), (trx, try_), (blx, bly) = to_points
    m = np.array(
        [
            [(trx - tlx) / max(cols - 1, 1), (blx - tlx) / max(rows - 1, 1)],
            [(try_ - tly) / max(cols - 1, 1), (bly - tly) / max(rows - 1, 1)],
        ]
    )
    transform = (m, np.array([tlx, tly]))
    if source.size == 0:
        return np.zeros((rows, cols, image.shape[2]), np.uint8)
    return _sample_bilinear(source, transform, rows, cols)


def _basic_extract(image: np.ndarray, rect: tuple[int, ...], rows: int, cols: int) -> np.ndarray:
    """A plain copy of the rectangle (zero outside the image), for unrotated unscaled chips."""
    left, top = rect[0], rect[1]
    chip = np.zeros((rows, cols, image.shape[2]), np.uint8)
    src_t, src_l = max(top, 0), max(left, 0)
    src_b = min(top + rows, image.shape[0])
    src_r = min(left + cols, image.shape[1])
    if src_b > src_t and src_r > src_l:
        chip[src_t - top : src_b - top, src_l - left : src_r - left] = image[
            src_t:src_b, src_l:src_r
        ]
    return chip

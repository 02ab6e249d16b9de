"""dlib's image pyramids, reproduced to the bit: the tiled pyramid the MMOD detector scans, and
the 2x ``pyramid_up`` used to find small faces.

Sources mirrored here (dlib 19.x/20.x): ``image_transforms/image_pyramid.h``
(``compute_tiled_image_pyramid_details``, ``tiled_pyramid_to_image``, ``pyramid_down<N>``),
``dnn/input.h`` (``input_rgb_image_pyramid::to_tensor``), ``dnn/cpu_dlib.cpp``
(``resize_bilinear``) and ``image_transforms/interpolation.h`` (``pyramid_up`` and the RGB
``resize_image``). Every float operation keeps dlib's precision and order, because box
coordinates are rounded and uint8 pixels are truncated: one ulp can move a pixel or a box.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

__all__ = [
    "Rect",
    "TiledPyramid",
    "build_tiled_pyramid",
    "nearest_rect",
    "pyramid_down_size",
    "pyramid_up",
    "pyramid_up_size",
    "rect_down_2",
    "resize_bilinear",
    "round_half_away",
    "tiled_pyramid_layout",
    "tiled_pyramid_to_image",
]

Rect = tuple[int, int, int, int]  # left, top, right, bottom, inclusive (dlib::rectangle)


# ---------------------------------------------------------------------------------------------
# Tiled pyramid layout


def pyramid_down_size(rows: int, cols: int, n: int) -> tuple[int, int]:
    """Size of the next pyramid_down<n> level: floor((n-1)/n * size), in double like dlib."""
    rate = (n - 1.0) / n
    return math.floor(rate * rows), math.floor(rate * cols)


@dataclass(frozen=True)
class TiledPyramid:
    """Where each pyramid level sits on the canvas (level 0 is the image itself)."""

    rects: tuple[Rect, ...]
    height: int
    width: int
    rate_n: int  # the N of pyramid_down<N>


def tiled_pyramid_layout(
    rows: int, cols: int, rate_n: int, padding: int, outer_padding: int
) -> TiledPyramid:
    """dlib's ``compute_tiled_image_pyramid_details``: levels down a first column, then the
    smaller ones right-aligned up a second column, stopping where one would overlap level 0."""
    if rows * cols == 0:
        return TiledPyramid((), 0, 0, rate_n)
    min_height = 5
    sizes = [(rows, cols)]
    nr, nc = rows, cols
    while True:
        nr, nc = pyramid_down_size(nr, nc, rate_n)
        if nr * nc == 0 or nr < min_height:
            break
        sizes.append((nr, nc))

    total_height = sum(h + padding for h, _ in sizes) - 2 * padding
    height = 0
    prev_width = 0
    first_h, first_w = sizes[0]
    for h, w in sizes:
        # Go down the first column until the next level fits beside the previous one.
        if w <= first_w - prev_width - padding and (height - first_h) * 2 >= total_height - first_h:
            break
        height += h + padding
        prev_width = w
    height -= padding

    rects: list[Rect] = []
    y = outer_padding
    i = 0
    while y < height + outer_padding and i < len(sizes):
        h, w = sizes[i]
        rects.append((outer_padding, y, outer_padding + w - 1, y + h - 1))
        y += h + padding
        i += 1
    y -= padding
    first = rects[0]
    while i < len(sizes):
        h, w = sizes[i]
        right, bottom = outer_padding + first_w - 1, y - 1
        rect = (right - (w - 1), bottom - (h - 1), right, bottom)
        if _intersects(first, rect):
            break  # dlib drops the levels that would overlap the original image
        rects.append(rect)
        y -= h + padding
        i += 1
    return TiledPyramid(
        tuple(rects), height + 2 * outer_padding, first_w + 2 * outer_padding, rate_n
    )


def _intersects(a: Rect, b: Rect) -> bool:
    return max(a[0], b[0]) <= min(a[2], b[2]) and max(a[1], b[1]) <= min(a[3], b[3])


# ---------------------------------------------------------------------------------------------
# Building the tiled pyramid (dlib's tt::resize_bilinear on the normalized float tensor)


def resize_bilinear(
    src: torch.Tensor, out: torch.Tensor, band_pixels: int | None = None
) -> torch.Tensor:
    """Align-corners bilinear resize of a (B, C, H, W) float32 tensor into ``out`` in dlib's
    float32 arithmetic, ``(1-ty)*((1-tx)*tl + tx*tr) + ty*((1-tx)*bl + tx*br)``, evaluated as a
    horizontal pass over the source rows followed by a vertical one (the same operations), in
    bands of output rows so temporaries stay small. On a CPU a band's temporaries fit in the
    core's cache (~1.4x faster than 8 MB bands); on a GPU bigger bands mean fewer launches."""
    in_rows, in_cols = src.shape[-2:]
    out_rows, out_cols = out.shape[-2:]
    device = src.device
    if band_pixels is None:
        band_pixels = 1 << 17 if device.type == "cpu" else 1 << 21
    top, bottom, ty = _axis_samples(in_rows, out_rows)
    left, right, tx = _axis_samples(in_cols, out_cols)
    one = torch.ones((), dtype=torch.float32, device=device)
    left_t, right_t = torch.from_numpy(left).to(device), torch.from_numpy(right).to(device)
    tx_t = torch.from_numpy(tx).to(device).view(-1, 1)
    band = max(1, band_pixels // max(1, out_cols * src.shape[0] * src.shape[1]))
    for start in range(0, out_rows, band):
        stop = min(out_rows, start + band)
        low, high = int(top[start]), int(bottom[stop - 1]) + 1  # source rows of this band
        # Gathering columns is much faster with columns as the row axis.
        by_column = src[..., low:high, :].transpose(-1, -2).contiguous()
        across = by_column.index_select(-2, left_t).mul_(one - tx_t)
        across.add_(by_column.index_select(-2, right_t).mul_(tx_t))
        del by_column
        across = across.transpose(-1, -2).contiguous()
        upper = torch.from_numpy(top[start:stop] - low).to(device)
        lower = torch.from_numpy(bottom[start:stop] - low).to(device)
        ty_band = torch.from_numpy(ty[start:stop]).to(device).view(-1, 1)
        value = across.index_select(-2, upper).mul_(one - ty_band)
        value.add_(across.index_select(-2, lower).mul_(ty_band))
        out[..., start:stop, :] = value
    return out


def _axis_samples(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source indices (low, high) and float32 fractions for one axis, as dlib's CPU kernel:
    ``scale = (n_in-1)/(float)max(n_out-1, 1)``; ``pos = i*scale``; ``low = floor(pos)``."""
    scale = np.float32(n_in - 1) / np.float32(max(n_out - 1, 1))
    pos = np.arange(n_out, dtype=np.float32) * scale
    low = np.floor(pos)
    frac = (pos - low).astype(np.float32)
    low_i = low.astype(np.int64)
    return low_i, np.minimum(low_i + 1, n_in - 1), frac


def build_tiled_pyramid(
    images: torch.Tensor, means: torch.Tensor, layout: TiledPyramid
) -> torch.Tensor:
    """The detector's input tensor (B, 3, H, W) from (B, rows, cols, 3) uint8 RGB images, as
    dlib's ``input_rgb_image_pyramid``: a zero canvas, level 0 = (pixel - channel mean) / 256
    in float32, each next level resized from the previous one as it sits on the canvas."""
    batch = images.shape[0]
    canvas = torch.zeros((batch, 3, layout.height, layout.width), device=images.device)
    for i, (left, top, right, bottom) in enumerate(layout.rects):
        tile = canvas[:, :, top : bottom + 1, left : right + 1]
        if i == 0:
            tile.copy_(images.permute(0, 3, 1, 2))  # normalized in place: no second copy
            tile.sub_(means.view(1, 3, 1, 1)).div_(256.0)
            continue
        pl, pt, pr, pb = layout.rects[i - 1]
        source = canvas[:, :, pt : pb + 1, pl : pr + 1]
        resize_bilinear(source, out=tile)
    return canvas


# ---------------------------------------------------------------------------------------------
# Mapping boxes between the canvas and the image


def nearest_rect(rects: tuple[Rect, ...], x: int, y: int) -> int:
    """dlib's ``nearest_rect``: the first rect containing the point, else the closest one."""
    best, best_dist = 0, math.inf
    for i, (left, top, right, bottom) in enumerate(rects):
        if left <= x <= right and top <= y <= bottom:
            return i
        dx = min(max(x, left), right) - x
        dy = min(max(y, top), bottom) - y
        dist = math.sqrt(dx * dx + dy * dy)
        if dist < best_dist:
            best, best_dist = i, dist
    return best


def round_half_away(value: float) -> int:
    """dlib's conversion of double coordinates to integer ones (drectangle -> rectangle, dpoint
    -> point) as dlib-bin 20 behaves: to the nearest integer, halves away from zero (C's
    ``round``). Boxes at the finest pyramid level all sit on .5 coordinates, so the rule for
    halves decides every such box with a negative corner (-4.5 -> -5, checked against dlib)."""
    low = math.floor(value)
    diff = value - low  # exact in double for any coordinate an image can have
    return int(low + 1 if diff > 0.5 or (diff == 0.5 and value > 0) else low)


def tiled_pyramid_to_image(
    layout: TiledPyramid, box: tuple[float, float, float, float], level: int | None = None
) -> tuple[float, float, float, float]:
    """A canvas box (double l, t, r, b) in the coordinates of the original image: find the level
    tile nearest to the box's (rounded) centre (unless `level` is given), then map up that many
    levels with p*N/(N-1)+0.3."""
    left, top, right, bottom = box
    if level is None:
        cx, cy = round_half_away((left + right) / 2.0), round_half_away((top + bottom) / 2.0)
        level = nearest_rect(layout.rects, cx, cy)
    ox, oy = layout.rects[level][:2]
    coords = [left - ox, top - oy, right - ox, bottom - oy]
    ratio = layout.rate_n / (layout.rate_n - 1.0)
    for _ in range(level):
        coords = [c * ratio + 0.3 for c in coords]
    return coords[0], coords[1], coords[2], coords[3]


# ---------------------------------------------------------------------------------------------
# pyramid_up with pyramid_down<2>, as dlib's Python cnn detector upsamples


def pyramid_up_size(rows: int, cols: int) -> tuple[int, int]:
    """Output size of dlib's ``pyramid_up(img, pyramid_down<2>)``: the image rect mapped up with
    (p + (1.25, 0.75)) * 2 and rounded, i.e. (2*rows + 1, 2*cols + 2)."""
    if rows * cols == 0:
        return 0, 0
    return 2 * rows + 1, 2 * cols + 2


def rect_down_2(box: Rect, levels: int) -> Rect:
    """Map a rectangle found in an image upsampled ``levels`` times back down: pyramid_down<2>
    point mapping p/2 - (1.25, 0.75) per level in double, then floor(x + 0.5)."""
    left, top, right, bottom = (float(v) for v in box)
    for _ in range(levels):
        left, right = left / 2.0 - 1.25, right / 2.0 - 1.25
        top, bottom = top / 2.0 - 0.75, bottom / 2.0 - 0.75
    return (
        round_half_away(left),
        round_half_away(top),
        round_half_away(right),
        round_half_away(bottom),
    )


def pyramid_up(image: torch.Tensor, max_chunk_elems: int = 1 << 22) -> torch.Tensor:
    """dlib's ``pyramid_up`` of an (H, W, 3) uint8 RGB tensor: align-corners bilinear to
    (2H+1, 2W+2) by dlib's RGB ``resize_image``. Columns in whole blocks of four take its SSE
    path (float32 positions accumulated per block, float32 weights, truncation to uint8); the
    remaining columns take its scalar path in double (also truncating). Rows are processed in
    chunks to bound the float temporaries."""
    rows, cols = image.shape[:2]
    out_rows, out_cols = pyramid_up_size(rows, cols)
    if out_rows == 0:
        return image.new_zeros((0, 0, 3))
    device = image.device
    plan = _resize_plan(rows, cols, out_rows, out_cols)
    out = torch.empty((out_rows, out_cols, 3), dtype=torch.uint8, device=device)
    left = torch.from_numpy(plan.left).to(device)
    right = torch.from_numpy(plan.right).to(device)
    n_simd = plan.n_simd
    lr32 = torch.from_numpy(plan.lr32).to(device).view(1, -1, 1)
    ilr32 = torch.from_numpy(plan.ilr32).to(device).view(1, -1, 1)
    lr64 = torch.from_numpy(plan.lr64).to(device).view(1, -1, 1)
    chunk = max(1, max_chunk_elems // max(1, out_cols * 3))
    src = image
    for start in range(0, out_rows, chunk):
        stop = min(out_rows, start + chunk)
        top = torch.from_numpy(plan.top[start:stop]).to(device)
        bottom = torch.from_numpy(plan.bottom[start:stop]).to(device)
        upper = src.index_select(0, top)
        lower = src.index_select(0, bottom)
        if n_simd:
            tb32 = torch.from_numpy(plan.tb32[start:stop]).to(device).view(-1, 1, 1)
            itb32 = torch.from_numpy(plan.itb32[start:stop]).to(device).view(-1, 1, 1)
            cl, cr = left[:n_simd], right[:n_simd]
            tl = upper.index_select(1, cl).float()
            tr = upper.index_select(1, cr).float()
            bl = lower.index_select(1, cl).float()
            br = lower.index_select(1, cr).float()
            lr, ilr = lr32[:, :n_simd], ilr32[:, :n_simd]
            value = (itb32 * ilr) * tl + (itb32 * lr) * tr
            value = value + (tb32 * ilr) * bl
            value = value + (tb32 * lr) * br
            out[start:stop, :n_simd] = value.to(torch.int32).to(torch.uint8)
        if n_simd < out_cols:
            tb64 = torch.from_numpy(plan.tb64[start:stop]).to(device).view(-1, 1, 1)
            cl, cr = left[n_simd:], right[n_simd:]
            tl = upper.index_select(1, cl).double()
            tr = upper.index_select(1, cr).double()
            bl = lower.index_select(1, cl).double()
            br = lower.index_select(1, cr).double()
            lr = lr64[:, n_simd:]
            value = (1 - tb64) * ((1 - lr) * tl + lr * tr) + tb64 * ((1 - lr) * bl + lr * br)
            out[start:stop, n_simd:] = value.to(torch.int32).to(torch.uint8)
    return out


@dataclass(frozen=True)
class _ResizePlan:
    top: np.ndarray
    bottom: np.ndarray
    tb32: np.ndarray
    itb32: np.ndarray
    tb64: np.ndarray
    left: np.ndarray
    right: np.ndarray
    lr32: np.ndarray
    ilr32: np.ndarray
    lr64: np.ndarray
    n_simd: int


def _resize_plan(rows: int, cols: int, out_rows: int, out_cols: int) -> _ResizePlan:
    """Sample positions and weights of dlib's RGB ``resize_image`` (interpolation.h)."""
    x_scale = (cols - 1) / float(max(out_cols - 1, 1))
    y_scale = (rows - 1) / float(max(out_rows - 1, 1))

    # Rows: y starts at -y_scale and accumulates y_scale in double, one add per row.
    steps = np.full(out_rows + 1, y_scale, dtype=np.float64)
    steps[0] = -y_scale
    y = np.cumsum(steps)[1:]
    top = np.floor(y)
    tb64 = y - top
    top_i = top.astype(np.int64)
    bottom_i = np.minimum(top_i + 1, rows - 1)

    # SSE columns: four float32 lanes start at (-4 + k) * x_scale and add float32(4*x_scale)
    # per block; a block is dropped (and the scalar path takes over) once its last right
    # neighbour would fall outside the image.
    x0 = -4 * x_scale
    lanes = np.array([x0, x0 + x_scale, x0 + 2 * x_scale, x0 + 3 * x_scale], dtype=np.float32)
    n_blocks = (out_cols + 3) // 4 + 1
    block_steps = np.empty((n_blocks + 1, 4), dtype=np.float32)
    block_steps[0] = lanes
    block_steps[1:] = np.float32(4 * x_scale)
    xs = np.cumsum(block_steps, axis=0, dtype=np.float32)[1:]
    lefts = np.trunc(xs).astype(np.int64)
    rights = lefts + 1
    broke = np.nonzero(rights[:, 3] >= cols)[0]
    simd_blocks = int(broke[0]) if broke.size else n_blocks
    n_simd = min(4 * simd_blocks, out_cols)
    x_simd = xs[:simd_blocks].reshape(-1)[:n_simd]
    left_simd = lefts[:simd_blocks].reshape(-1)[:n_simd]
    lr32 = (x_simd - left_simd.astype(np.float32)).astype(np.float32)
    ilr32 = (np.float32(1) - lr32).astype(np.float32)

    # Scalar tail: x restarts at -x_scale + c*x_scale and accumulates x_scale in double.
    tail = out_cols - n_simd
    tail_steps = np.full(tail + 1, x_scale, dtype=np.float64)
    tail_steps[0] = -x_scale + n_simd * x_scale
    x_tail = np.cumsum(tail_steps)[1:]
    left_tail = np.floor(x_tail)
    lr_tail = x_tail - left_tail
    left_tail_i = left_tail.astype(np.int64)
    right_tail_i = np.minimum(left_tail_i + 1, cols - 1)

    lr64 = np.zeros(out_cols, dtype=np.float64)
    lr64[n_simd:] = lr_tail
    lr32_full = np.zeros(out_cols, dtype=np.float32)
    lr32_full[:n_simd] = lr32
    ilr32_full = np.zeros(out_cols, dtype=np.float32)
    ilr32_full[:n_simd] = ilr32
    return _ResizePlan(
        top=top_i,
        bottom=bottom_i,
        tb32=tb64.astype(np.float32),
        itb32=(1.0 - tb64).astype(np.float32),
        tb64=tb64,
        left=np.concatenate([left_simd, left_tail_i]),
        right=np.concatenate([left_simd + 1, right_tail_i]),
        lr32=lr32_full,
        ilr32=ilr32_full,
        lr64=lr64,
        n_simd=n_simd,
    )

"""dlib's MMOD CNN face detector (mmod_human_face_detector.dat) in PyTorch, box-for-box.

Pipeline, as dlib's Python ``cnn_face_detection_model_v1``: optionally ``pyramid_up`` the
image (to find faces under ~80 px), build the tiled image pyramid, run the fully
convolutional net to a score map, turn every cell scoring above the threshold into an 80x80
window mapped back through its pyramid tile, greedy non-max suppression, and map boxes back
down through the upsampling. Facts: ../shared/docs/dlib-models.md, section 5.

Memory: a forward pass holds the pyramid canvas (3 float32 per canvas pixel; dlib's tiled
canvas is about 3.6-4x the image's area) while the stride-2 convs run over it in strips; the
later layers work at 1/8 resolution. Peak use is about 65 bytes per image pixel: ~1.6 GB for a
24-megapixel photo at upsample 0 (upsample 1 quadruples the pixels). ``MAX_PIXELS`` refuses
images over 50 megapixels after upsampling (dlib has no such limit). For album photos,
shrinking to ~2000 px on the long side is the sensible maximum: faces of ~40 px and up stay
findable (with upsample 1) at a fraction of the cost.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from threading import Lock

import numpy as np
import torch
from torch import nn

from photosearch.faces.models.dlib_format import DlibFormatError, DlibReader
from photosearch.faces.models.registry import load_parsed
from photosearch.faces.pyramid import (
    TiledPyramid,
    build_tiled_pyramid,
    nearest_rect,
    pyramid_up,
    pyramid_up_size,
    rect_down_2,
    round_half_away,
    tiled_pyramid_layout,
    tiled_pyramid_to_image,
)

__all__ = [
    "DEFAULT_PYRAMID_OUTER_PADDING",
    "DEFAULT_PYRAMID_PADDING",
    "EXPECTED_CONVS",
    "MAX_PIXELS",
    "PARSER_VERSION",
    "PYRAMID_RATE_N",
    "Detection",
    "FaceDetector",
    "MmodNet",
    "non_max_suppression",
    "parse_detector",
]

PARSER_VERSION = 1
MAX_PIXELS = 50_000_000  # per image, after upsampling

# The network (dlib's C++ type, not recorded in the file): pyramid_down<6> input, then
# (conv 5x5 stride 2 -> bn -> relu) x3, (conv 5x5 -> bn -> relu) x3, conv 9x9 -> scores.
PYRAMID_RATE_N = 6
EXPECTED_CONVS = (
    # out, in, kernel, stride, pad
    (16, 3, 5, 2, 0),
    (32, 16, 5, 2, 0),
    (32, 32, 5, 2, 0),
    (45, 32, 5, 1, 2),
    (45, 45, 5, 1, 2),
    (45, 45, 5, 1, 2),
    (1, 45, 9, 1, 4),
)
# dlib's input_rgb_image_pyramid (version 1 records no padding) defaults.
DEFAULT_PYRAMID_PADDING = 10
DEFAULT_PYRAMID_OUTER_PADDING = 11


@dataclass(frozen=True)
class Detection:
    """A face box as dlib returns it: inclusive integer corners (may lie outside the image)."""

    box: tuple[int, int, int, int]  # left, top, right, bottom inclusive, as dlib's rectangle
    score: float


# ---------------------------------------------------------------------------------------------
# Parsing the .dat file


def parse_detector(data: bytes) -> dict[str, np.ndarray]:
    """Read mmod_human_face_detector.dat into flat arrays, batch norm folded into the convs.

    Layout (dlib serialization): the loss header and its options, one version integer per
    layer wrapper (top-down), the input layer, then each layer's record from the input upwards.
    """
    try:
        return _parse(DlibReader(data))
    except ValueError as error:  # DlibFormatError, or garbage that decodes to nonsense
        raise DlibFormatError(f"mmod face detector file is damaged or not one: {error}") from error


def _parse(reader: DlibReader) -> dict[str, np.ndarray]:
    reader.expect_int(1, "loss layer version")
    reader.expect_string("loss_mmod_")
    options_version = reader.int()
    if options_version != 1:
        raise DlibFormatError(f"unsupported mmod_options version {options_version}")
    window = np.array([reader.int(), reader.int()], dtype=np.int64)  # width, height
    reader.float(), reader.float(), reader.float()  # training-only loss settings
    nms = np.array([reader.float(), reader.float()], dtype=np.float64)  # iou, percent covered
    reader.float(), reader.float()  # overlaps_ignore: training only

    n_layers = 3 * len(EXPECTED_CONVS) - 2  # conv, bn, relu each, but no bn/relu at the top
    for _ in range(n_layers - 1):
        reader.expect_int(2, "layer wrapper version")
    reader.expect_int(3, "input layer wrapper version")

    input_name = reader.string()
    if input_name not in ("input_rgb_image_pyramid", "input_rgb_image_pyramid2"):
        raise DlibFormatError(f"expected an input_rgb_image_pyramid, got {input_name!r}")
    means = np.array([reader.float() for _ in range(3)], dtype=np.float32)
    padding = [DEFAULT_PYRAMID_PADDING, DEFAULT_PYRAMID_OUTER_PADDING]
    if input_name.endswith("2"):
        padding = [reader.int(), reader.int()]

    arrays: dict[str, np.ndarray] = {
        "window": window,
        "nms": nms,
        "means": means,
        "pyramid": np.array([PYRAMID_RATE_N, *padding], dtype=np.int64),
    }
    for index, spec in enumerate(EXPECTED_CONVS):
        weight, bias = _read_conv(reader, spec, first=index == 0)
        if index < len(EXPECTED_CONVS) - 1:
            scale, shift = _read_bn(reader, spec[0])
            _read_wrapper_tail(reader)
            reader.expect_string("relu_")
            _read_wrapper_tail(reader)
            # Fold y = scale * conv(x) + shift into the conv, in double, stored as float32.
            weight = weight.astype(np.float64) * scale.astype(np.float64)[:, None, None, None]
            bias = bias.astype(np.float64) * scale + shift
        arrays[f"conv{index}.weight"] = weight.astype(np.float32)
        arrays[f"conv{index}.bias"] = bias.astype(np.float32)
    if reader.remaining():
        raise DlibFormatError(f"{reader.remaining()} unexpected bytes after the last layer")
    return arrays


def _read_conv(
    reader: DlibReader, spec: tuple[int, int, int, int, int], first: bool
) -> tuple[np.ndarray, np.ndarray]:
    out_ch, in_ch, kernel, stride, pad = spec
    reader.expect_string("con_4")
    params = reader.tensor().reshape(-1)
    geometry = [reader.int() for _ in range(7)]  # filters, nr, nc, stride y/x, pad y/x
    if geometry != [out_ch, kernel, kernel, stride, stride, pad, pad]:
        raise DlibFormatError(f"unexpected conv geometry {geometry}, expected {spec}")
    n_weights = out_ch * in_ch * kernel * kernel
    if params.size != n_weights + out_ch:
        raise DlibFormatError(f"conv has {params.size} parameters, expected {n_weights + out_ch}")
    reader.alias_tensor(), reader.alias_tensor()
    for _ in range(4):
        reader.float()  # learning-rate and weight-decay multipliers
    if first:
        _read_wrapper_tail(reader, input_wrapper=True)
    else:
        _read_wrapper_tail(reader)
    weight = params[:n_weights].reshape(out_ch, in_ch, kernel, kernel)
    return weight, params[n_weights:]


def _read_bn(reader: DlibReader, channels: int) -> tuple[np.ndarray, np.ndarray]:
    """bn_con2 -> per-channel (scale, shift), computed in float32 exactly as dlib's
    ``affine_(const bn_&)`` does when the Python API loads the net for inference."""
    reader.expect_string("bn_con2")
    params = reader.tensor().reshape(-1)
    if params.size != 2 * channels:
        raise DlibFormatError(f"batch norm has {params.size} parameters, expected {2 * channels}")
    reader.alias_tensor(), reader.alias_tensor()
    reader.tensor(), reader.tensor()  # batch means / invstds from the last training step
    running_means = reader.tensor().reshape(-1)
    running_variances = reader.tensor().reshape(-1)
    if running_means.size != channels or running_variances.size != channels:
        raise DlibFormatError("batch norm running statistics have the wrong size")
    reader.int(), reader.int()  # num_updates, running_stats_window_size
    for _ in range(4):
        reader.float()
    eps = np.float32(reader.float())
    gamma, beta = params[:channels], params[channels:]
    scale = gamma / np.sqrt(running_variances + eps)
    shift = beta - scale * running_means
    return scale.astype(np.float32), shift.astype(np.float32)


def _read_wrapper_tail(reader: DlibReader, input_wrapper: bool = False) -> None:
    """What a layer wrapper writes after its layer: three bools and three (empty) tensors;
    the wrapper on the input also writes sample_expansion_factor."""
    for _ in range(3):
        reader.bool()
    for _ in range(3):
        reader.tensor()
    if input_wrapper:
        reader.int()


# ---------------------------------------------------------------------------------------------
# The network


class MmodNet(nn.Module):
    """The detector's fully convolutional net, batch norm folded into the convolutions."""

    def __init__(self, arrays: dict[str, np.ndarray]) -> None:
        super().__init__()
        self.convs = nn.ModuleList()
        for index, (out_ch, in_ch, kernel, stride, pad) in enumerate(EXPECTED_CONVS):
            conv = nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=pad)
            conv.weight.data.copy_(torch.from_numpy(arrays[f"conv{index}.weight"]))
            conv.bias.data.copy_(torch.from_numpy(arrays[f"conv{index}.bias"]))
            self.convs.append(conv)
        # The single-filter 9x9 output conv, as 81 per-tap filters (see _score).
        last = self.convs[-1]
        taps = last.weight.data[0].permute(1, 2, 0).reshape(-1, last.in_channels, 1, 1)
        self.register_buffer("score_taps", taps.contiguous())
        self.n_downsampling = sum(1 for spec in EXPECTED_CONVS if spec[3] != 1)
        self.requires_grad_(False)
        self.eval()
        self._blocked: list[torch.Tensor] | None = None
        self._blocked_lock = Lock()

    def forward(self, canvas: torch.Tensor, strip_rows: int | None = None) -> torch.Tensor:
        """Score map (B, H', W') of a pyramid canvas (B, 3, H, W)."""
        return self.head(self.downsample(canvas, strip_rows))

    def downsample(self, canvas: torch.Tensor, strip_rows: int | None = None) -> torch.Tensor:
        """The stride-2 stack (32 channels at 1/8 resolution). With ``strip_rows`` these
        unpadded convs run on overlapping horizontal strips of that many output rows: the same
        values with a much smaller peak of memory for big canvases."""
        if strip_rows is None:
            return self._downsample(canvas)
        downsampling = EXPECTED_CONVS[: self.n_downsampling]
        out_rows = _output_size(canvas.shape[-2], downsampling)
        stride = 2**self.n_downsampling
        # Output row j of the stride-2 stack reads canvas rows stride*j .. stride*j + reach.
        reach = sum((spec[2] - 1) * 2**i for i, spec in enumerate(downsampling))
        features: torch.Tensor | None = None
        for start in range(0, out_rows, strip_rows):
            stop = min(out_rows, start + strip_rows)
            strip = self._downsample(canvas[:, :, start * stride : (stop - 1) * stride + reach + 1])
            if features is None:
                features = strip.new_empty((*strip.shape[:2], out_rows, strip.shape[-1]))
            features[:, :, start:stop] = strip
        assert features is not None
        return features

    def head(self, features: torch.Tensor) -> torch.Tensor:
        """The stride-1 convs and the score layer, from the output of ``downsample``."""
        return self._score(self._relu_convs(features, self.n_downsampling, len(self.convs) - 1))

    def _downsample(self, x: torch.Tensor) -> torch.Tensor:
        return self._relu_convs(x, 0, self.n_downsampling)

    def _relu_convs(self, x: torch.Tensor, first: int, stop: int) -> torch.Tensor:
        """relu(conv(x)) through convs first..stop-1. On the CPU the activations stay in
        oneDNN's blocked layout from the first of these convs to the last: the same kernels and
        values, without a layout conversion in and out of every conv (~5% faster)."""
        blocked = self._blocked_weights() if x.device.type == "cpu" else None
        if blocked is None:
            for conv in self.convs[first:stop]:
                x = torch.relu_(conv(x))
            return x
        y = x.contiguous().to_mkldnn()
        for index in range(first, stop):
            conv = self.convs[index]
            y = torch.mkldnn_convolution(
                y, blocked[index], conv.bias, conv.padding, conv.stride, conv.dilation, 1
            )
            y = torch.relu(y)
        return y.to_dense()

    def _blocked_weights(self) -> list[torch.Tensor] | None:
        """The convs' weights reordered for oneDNN once (what torch.utils.mkldnn does, without
        its deprecated TorchScript wrapper); None where this torch build has no oneDNN."""
        with self._blocked_lock:
            if self._blocked is None:
                try:
                    reorder = torch._C._nn.mkldnn_reorder_conv2d_weight
                    self._blocked = [
                        reorder(conv.weight.to_mkldnn(), conv.padding, conv.stride, (1, 1), 1)
                        for conv in self.convs[:-1]
                    ]
                except (AttributeError, RuntimeError):
                    self._blocked = []
            return self._blocked or None

    def _score(self, features: torch.Tensor, chunk_pixels: int = 1 << 20) -> torch.Tensor:
        """The 9x9 one-filter conv as a 1x1 conv to one map per tap plus shifted sums: the same
        sum in another order, and ~10x faster on CPU than oneDNN's single-output kernel. Done
        in bands of rows so the 81 maps stay small for big images."""
        kernel = self.convs[-1].kernel_size[0]
        pad = kernel // 2
        batch, _, rows, cols = features.shape
        scores = features.new_empty((batch, rows, cols))
        band = max(1, chunk_pixels // max(1, cols))
        for start in range(0, rows, band):
            stop = min(rows, start + band)
            low, high = max(0, start - pad), min(rows, stop + pad)
            maps = nn.functional.conv2d(features[:, :, low:high], self.score_taps)
            # Zero rows/columns where the conv's zero padding lies; row 0 = image row start-pad.
            maps = nn.functional.pad(maps, (pad, pad, pad - (start - low), pad - (high - stop)))
            height = stop - start
            out = maps[:, 0, :height, :cols].clone()
            for tap in range(1, kernel * kernel):
                dy, dx = divmod(tap, kernel)
                out += maps[:, tap, dy : dy + height, dx : dx + cols]
            scores[:, start:stop] = out + self.convs[-1].bias
        return scores


def _output_size(size: int, convs: Sequence[tuple[int, int, int, int, int]]) -> int:
    """dlib's conv output size, 1 + (in + 2*pad - k) / stride with C++ truncating division;
    anything below 1 means no output (dlib itself errors out on such tiny inputs)."""
    for _, _, kernel, stride, pad in convs:
        span = size + 2 * pad - kernel
        if span < 0:
            return 0
        size = 1 + span // stride
    return size


def _score_cell_to_canvas() -> tuple[float, float]:
    """dlib's output_tensor_to_input_tensor as p * scale + offset: each conv maps
    p -> p*stride - pad + k//2, applied from the output layer down to the input."""
    scale, offset = 1.0, 0.0
    for _, _, kernel, stride, pad in reversed(EXPECTED_CONVS):
        scale, offset = scale * stride, offset * stride - pad + kernel // 2
    return scale, offset


# ---------------------------------------------------------------------------------------------
# Decoding and non-max suppression


def _boxes_from_cells(
    layout: TiledPyramid, cells: np.ndarray, window: tuple[int, int]
) -> np.ndarray:
    """Integer image boxes (n, 4) of score-map cells (n, 2 as row, col)."""
    scale, offset = _score_cell_to_canvas()
    half_w, half_h = (window[0] - 1) / 2.0, (window[1] - 1) / 2.0
    boxes = np.empty((len(cells), 4), dtype=np.int64)
    for i, (row, col) in enumerate(cells.tolist()):
        cx, cy = col * scale + offset, row * scale + offset
        mapped = tiled_pyramid_to_image(
            layout, (cx - half_w, cy - half_h, cx + half_w, cy + half_h)
        )
        boxes[i] = [round_half_away(v) for v in mapped]
    return boxes


def _subcell_box(
    layout: TiledPyramid, score_map: np.ndarray, cell: np.ndarray, window: tuple[int, int]
) -> np.ndarray:
    """The box of a detection whose centre is moved, within its level, to the peak of a
    parabola through the cell's score and its neighbours' (along rows and along columns).

    dlib puts a box at its score cell's centre, so the box moves in steps of a cell (8 canvas
    pixels, 8-10% of the face) with where the face falls on the score grid. For the cascade's
    crops, which place faces arbitrarily on that grid, the same LFW face moved by 5 px or more
    between two crop sizes in 107 of 250 images; at the parabola's peak, in 36."""
    scale, offset = _score_cell_to_canvas()
    row, col = (int(v) for v in cell)
    rows, cols = score_map.shape
    dy = _peak(*score_map[row - 1 : row + 2, col]) if 0 < row < rows - 1 else 0.0
    dx = _peak(*score_map[row, col - 1 : col + 2]) if 0 < col < cols - 1 else 0.0
    half_w, half_h = (window[0] - 1) / 2.0, (window[1] - 1) / 2.0
    cx, cy = col * scale + offset, row * scale + offset
    level = nearest_rect(layout.rects, round_half_away(cx), round_half_away(cy))
    cx, cy = cx + dx * scale, cy + dy * scale
    box = (cx - half_w, cy - half_h, cx + half_w, cy + half_h)
    return np.array([round_half_away(v) for v in tiled_pyramid_to_image(layout, box, level)])


def _peak(before: float, at: float, after: float) -> float:
    """Offset (-0.5 to 0.5 cells) of the maximum of the parabola through three scores."""
    curvature = before - 2.0 * at + after
    if curvature >= 0:  # not a peak (flat or a saddle): stay on the cell
        return 0.0
    return float(np.clip(0.5 * (before - after) / curvature, -0.5, 0.5))


def _overlaps(kept: np.ndarray, box: np.ndarray, iou: float, covered: float) -> bool:
    """dlib's test_box_overlap against any kept box: intersection over the area of the
    bounding box of both > iou, or the intersection covers > ``covered`` of either box."""
    if not len(kept):
        return False
    inner_w = np.minimum(kept[:, 2], box[2]) - np.maximum(kept[:, 0], box[0]) + 1
    inner_h = np.minimum(kept[:, 3], box[3]) - np.maximum(kept[:, 1], box[1]) + 1
    inner = np.where((inner_w > 0) & (inner_h > 0), inner_w * inner_h, 0).astype(np.float64)
    outer = (np.maximum(kept[:, 2], box[2]) - np.minimum(kept[:, 0], box[0]) + 1) * (
        np.maximum(kept[:, 3], box[3]) - np.minimum(kept[:, 1], box[1]) + 1
    )
    area_kept = (kept[:, 2] - kept[:, 0] + 1) * (kept[:, 3] - kept[:, 1] + 1)
    area_box = (box[2] - box[0] + 1) * (box[3] - box[1] + 1)
    hit = (inner / outer > iou) | (inner / area_kept > covered) | (inner / area_box > covered)
    return bool(np.any(hit & (inner > 0)))


def non_max_suppression(
    boxes: np.ndarray, scores: np.ndarray, iou: float, covered: float
) -> list[int]:
    """Greedy NMS in descending score order (ties keep scan order); indices of kept boxes."""
    order = np.argsort(-scores, kind="stable")
    kept: list[int] = []
    for index in order.tolist():
        if not _overlaps(boxes[kept], boxes[index], iou, covered):
            kept.append(index)
    return kept


# ---------------------------------------------------------------------------------------------
# Public API


@dataclass(frozen=True)
class _Model:
    net: MmodNet
    means: torch.Tensor
    window: tuple[int, int]
    iou: float
    covered: float
    padding: int
    outer_padding: int
    rate_n: int


class FaceDetector:
    """dlib's CNN face detector, same boxes and scores; the model loads on first use."""

    # Strip height (score-map rows) for the downsampling convs of big canvases.
    STRIP_ROWS = 64
    STRIP_ABOVE_PIXELS = 4_000_000

    def __init__(self, device: str | torch.device = "cpu", max_batch_pixels: int = 8_000_000):
        self.device = torch.device(device)
        self.max_batch_pixels = max_batch_pixels
        self._lock = Lock()
        self._loaded: _Model | None = None

    @property
    def _model(self) -> _Model:
        with self._lock:
            if self._loaded is None:
                self._loaded = self._load()
            return self._loaded

    def _load(self) -> _Model:
        arrays = load_parsed("detector", parse_detector, PARSER_VERSION)
        rate_n, padding, outer_padding = (int(v) for v in arrays["pyramid"])
        return _Model(
            net=MmodNet(arrays).to(self.device),
            means=torch.from_numpy(arrays["means"]).to(self.device),
            window=(int(arrays["window"][0]), int(arrays["window"][1])),
            iou=float(arrays["nms"][0]),
            covered=float(arrays["nms"][1]),
            padding=padding,
            outer_padding=outer_padding,
            rate_n=rate_n,
        )

    def detect(
        self, image: np.ndarray, upsample: int = 0, threshold: float = 0.0
    ) -> list[Detection]:
        """Faces in an HxWx3 uint8 RGB (or HxW grey) image, best first, as dlib returns them."""
        return self.detect_many([image], upsample=upsample, threshold=threshold)[0]

    def detect_many(
        self,
        images: Sequence[np.ndarray],
        upsample: int = 0,
        threshold: float = 0.0,
        subcell: bool = False,
    ) -> list[list[Detection]]:
        """``detect`` for several images; images of the same size share forward passes (up to
        ``max_batch_pixels`` per pass), and only one such batch is held in memory at a time.
        ``subcell``: place each box at its score peak between score-map cells (`_subcell_box`)
        instead of dlib's cell centre; no longer dlib's boxes."""
        if upsample < 0:
            raise ValueError(f"upsample must be >= 0, got {upsample}")
        arrays = [_as_rgb(image) for image in images]
        by_shape: dict[tuple[int, int], list[int]] = {}
        for index, array in enumerate(arrays):
            shape = _upsampled_size(*array.shape[:2], upsample)
            if shape[0] * shape[1] > MAX_PIXELS:
                raise ValueError(
                    f"image of {array.shape[1]}x{array.shape[0]} upsampled {upsample} times "
                    f"exceeds {MAX_PIXELS} pixels; shrink it first"
                )
            by_shape.setdefault(shape, []).append(index)
        results: list[list[Detection]] = [[] for _ in arrays]
        for (rows, cols), indices in by_shape.items():
            per_batch = max(1, self.max_batch_pixels // max(1, rows * cols))
            for start in range(0, len(indices), per_batch):
                chunk = indices[start : start + per_batch]
                batch = torch.stack([self._upsampled(arrays[i], upsample) for i in chunk])
                for i, found in zip(
                    chunk, self._detect_batch(batch, threshold, subcell), strict=True
                ):
                    results[i] = [
                        Detection(rect_down_2(box, upsample), score) for box, score in found
                    ]
        return results

    def _upsampled(self, array: np.ndarray, upsample: int) -> torch.Tensor:
        """The image as an (H, W, 3) uint8 tensor on the device, upsampled as dlib does."""
        tensor = torch.from_numpy(array).to(self.device)
        for _ in range(upsample):
            tensor = pyramid_up(tensor)
        return tensor

    @torch.inference_mode()
    def _detect_batch(
        self, batch: torch.Tensor, threshold: float, subcell: bool = False
    ) -> list[list[tuple[tuple[int, int, int, int], float]]]:
        """Boxes (in the coordinates of the given, possibly upsampled, images) and scores."""
        model = self._model
        n, rows, cols = batch.shape[:3]
        layout = tiled_pyramid_layout(rows, cols, model.rate_n, model.padding, model.outer_padding)
        if _score_map_size(layout) == (0, 0):
            return [[] for _ in range(n)]  # dlib raises on images this small
        scores = model.net.head(self._features(batch, layout))
        score_maps = scores.cpu().numpy().astype(np.float64)  # dlib compares in double
        hits = np.argwhere(score_maps > threshold)
        values = score_maps[tuple(hits.T)]
        found: list[list[tuple[tuple[int, int, int, int], float]]] = []
        for sample in range(n):
            mine = hits[:, 0] == sample
            cells, cell_scores = hits[mine, 1:], values[mine]
            boxes = _boxes_from_cells(layout, cells, model.window)
            kept = non_max_suppression(boxes, cell_scores, model.iou, model.covered)
            if subcell:
                for i in kept:
                    boxes[i] = _subcell_box(layout, score_maps[sample], cells[i], model.window)
            found.append([(tuple(int(v) for v in boxes[i]), float(cell_scores[i])) for i in kept])
        return found

    def _features(self, batch: torch.Tensor, layout: TiledPyramid) -> torch.Tensor:
        """Canvas -> stride-2 stack; the canvas, the biggest tensor, dies on return."""
        model = self._model
        canvas = build_tiled_pyramid(batch, model.means, layout)
        big = layout.height * layout.width > self.STRIP_ABOVE_PIXELS
        return model.net.downsample(canvas, strip_rows=self.STRIP_ROWS if big else None)


def _as_rgb(image: np.ndarray) -> np.ndarray:
    """A validated, C-contiguous, writable (H, W, 3) uint8 array (grey is copied to R, G, B
    as dlib does)."""
    array = np.asarray(image)
    if array.dtype != np.uint8:
        raise TypeError(f"image must be uint8, got {array.dtype}")
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    if array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"image must be HxWx3 RGB or HxW grey, got shape {array.shape}")
    if not array.flags.writeable or not array.flags.c_contiguous:
        array = np.array(array, order="C")  # torch wants memory it may write
    return array


def _upsampled_size(rows: int, cols: int, upsample: int) -> tuple[int, int]:
    for _ in range(upsample):
        rows, cols = pyramid_up_size(rows, cols)
    return rows, cols


def _score_map_size(layout: TiledPyramid) -> tuple[int, int]:
    """Rows and columns of the score map, (0, 0) when the canvas is too small for the net."""
    if not layout.rects:
        return 0, 0
    rows = _output_size(layout.height, EXPECTED_CONVS)
    cols = _output_size(layout.width, EXPECTED_CONVS)
    return (rows, cols) if rows > 0 and cols > 0 else (0, 0)

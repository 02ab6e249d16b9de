"""128-D face descriptors: dlib's ``dlib_face_recognition_resnet_model_v1`` run in PyTorch.

The network (../shared/docs/dlib-models.md, section 2) is a 29-conv ResNet on a 150x150 aligned
RGB chip. Two dlib behaviours must be kept exactly for the descriptors to match dlib's:
- convolutions use dlib's default padding (k//2 at stride 1, none at stride 2);
- a residual addition of tensors of different shapes zero-pads both to the elementwise maximum
  of channels, rows and columns, aligned top-left (the downsampling blocks add a 3x3 branch to
  a 4x4 shortcut, and a 1x1 one to a 2x2 shortcut, then average over the padded map).

The affine (frozen batch-norm) layers are folded into the preceding convolutions at load time.
Two faces are the same person when their descriptors are less than 0.6 apart (Euclidean).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from photosearch.faces.models import registry
from photosearch.faces.models.resnet_parse import (
    CHIP_SIZE,
    DESCRIPTOR_DIM,
    PARSER_VERSION,
    RESIDUAL_BLOCKS,
    parse_descriptor_model,
)

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "MATCH_THRESHOLD",
    "DescriptorNet",
    "FaceDescriptor",
    "ResidualBlock",
    "full_float32",
    "load_descriptor_arrays",
    "zero_pad_add",
]

DEFAULT_BATCH_SIZE = 32
MATCH_THRESHOLD = 0.6  # the Euclidean distance dlib trained this model for


@cache
def load_descriptor_arrays() -> dict[str, np.ndarray]:
    """The parsed weights (parsed once, then read from the user cache)."""
    return registry.load_parsed("descriptor", parse_descriptor_model, PARSER_VERSION)


def _folded_conv(arrays: dict[str, np.ndarray], conv: str, affine: str, stride: int) -> nn.Conv2d:
    """A conv with the following per-channel affine y = gamma*x + beta folded into it."""
    weight = torch.from_numpy(arrays[f"{conv}.weight"]).double()
    bias = torch.from_numpy(arrays[f"{conv}.bias"]).double()
    gamma = torch.from_numpy(arrays[f"{affine}.gamma"]).double()
    beta = torch.from_numpy(arrays[f"{affine}.beta"]).double()
    out_channels, in_channels, kernel, _ = weight.shape
    padding = kernel // 2 if stride == 1 else 0  # dlib's default padding rule
    layer = nn.Conv2d(in_channels, out_channels, kernel, stride=stride, padding=padding)
    with torch.no_grad():  # fold in float64, store float32
        layer.weight.copy_((weight * gamma[:, None, None, None]).float())
        layer.bias.copy_((bias * gamma + beta).float())
    return layer


def zero_pad_add(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """dlib's add_prev: zero-pad both (N,C,H,W) tensors to the larger C, H, W (top-left), add."""
    if a.shape == b.shape:
        return a + b
    channels, rows, cols = (max(a.shape[i], b.shape[i]) for i in (1, 2, 3))

    def pad(t: torch.Tensor) -> torch.Tensor:
        # F.pad takes (left, right, top, bottom, front, back) for the last three dims.
        return F.pad(t, (0, cols - t.shape[3], 0, rows - t.shape[2], 0, channels - t.shape[1]))

    return pad(a) + pad(b)


class ResidualBlock(nn.Module):
    """conv3x3 -> relu -> conv3x3, plus the input (2x2 average-pooled when downsampling); relu."""

    def __init__(self, conv1: nn.Conv2d, conv2: nn.Conv2d, downsample: bool) -> None:
        super().__init__()
        self.conv1 = conv1
        self.conv2 = conv2
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # in-place relu/add on fresh conv outputs: saves allocating (and page-faulting) copies
        branch = self.conv2(self.conv1(x).relu_())
        if self.downsample:
            return zero_pad_add(branch, F.avg_pool2d(x, 2, 2)).relu_()
        return branch.add_(x).relu_()


class DescriptorNet(nn.Module):
    """dlib's face descriptor ResNet: (N,3,150,150) normalized chips -> (N,128) descriptors.

    Input values are (pixel - channel mean) / 256 (see ``FaceDescriptor.preprocess``).
    """

    def __init__(self, arrays: dict[str, np.ndarray]) -> None:
        super().__init__()
        self.stem = _folded_conv(arrays, "stem.conv", "stem.affine", stride=2)
        blocks = []
        for index, (_, downsample) in enumerate(RESIDUAL_BLOCKS):
            prefix = f"blocks.{index}"
            stride = 2 if downsample else 1
            conv1 = _folded_conv(arrays, f"{prefix}.conv1", f"{prefix}.affine1", stride)
            conv2 = _folded_conv(arrays, f"{prefix}.conv2", f"{prefix}.affine2", 1)
            blocks.append(ResidualBlock(conv1, conv2, downsample))
        self.blocks = nn.Sequential(*blocks)
        fc_weight = torch.from_numpy(arrays["fc.weight"].copy())
        self.fc = nn.Linear(fc_weight.shape[1], fc_weight.shape[0], bias=False)
        with torch.no_grad():
            self.fc.weight.copy_(fc_weight)
        self.register_buffer("means", torch.from_numpy(arrays["input.means"].copy()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(self.stem(x).relu_(), 3, 2)  # dlib pads pools of stride 2 by 0, too
        x = self.blocks(x)
        return self.fc(x.mean(dim=(2, 3)))


@contextmanager
def full_float32(device: torch.device) -> Iterator[None]:
    """Keep CUDA convolutions and matmuls in IEEE float32 while inside.

    cuDNN convolutions default to TF32 (a 10-bit mantissa) on Ampere and later GPUs, which would
    move descriptors by about 1e-3 away from dlib's float32 ones. The setting is process-wide, so
    it is restored on exit; CPU runs are left untouched.
    """
    if device.type != "cuda":
        yield
        return
    backends = torch.backends
    if hasattr(backends.cudnn, "conv"):  # torch >= 2.9: per-backend precision settings
        settings = [(backends.cudnn.conv, "fp32_precision", "ieee")]
        settings.append((backends.cuda.matmul, "fp32_precision", "ieee"))
    else:  # older torch: the legacy switches (never mix the two APIs: torch refuses)
        settings = [
            (backends.cudnn, "allow_tf32", False),
            (backends.cuda.matmul, "allow_tf32", False),
        ]
    saved = [getattr(owner, name) for owner, name, _ in settings]
    try:
        for owner, name, value in settings:
            setattr(owner, name, value)
        yield
    finally:
        for (owner, name, _), value in zip(settings, saved, strict=True):
            setattr(owner, name, value)


class FaceDescriptor:
    """Computes 128-D descriptors of aligned 150x150 face chips; loads the model on first use.

    ``compute(chips)`` matches dlib's ``compute_face_descriptor(chip)`` (num_jitters=1) to
    float32 rounding. ``compute(chips, mirror=True)`` is a deterministic test-time augmentation:
    the mean of the descriptors of each chip and of its left-right mirror image. It costs twice
    the compute and is not dlib's (random) jitter. A face and its mirror image are about 0.2
    apart, so the averaged descriptor sits about 0.1 (Euclidean) from the plain one: keep one
    mode per index and compare like with like.

    Runs on CPU (channels-last, torch's intra-op threads) or CUDA (kept in full float32).
    """

    def __init__(
        self, device: str | torch.device = "cpu", batch_size: int = DEFAULT_BATCH_SIZE
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.device = torch.device(device)
        self.batch_size = batch_size
        self._net: DescriptorNet | None = None
        self._lock = threading.Lock()

    @property
    def net(self) -> DescriptorNet:
        """The network on ``self.device``, built on first access."""
        if self._net is None:
            with self._lock:
                if self._net is None:
                    net = DescriptorNet(load_descriptor_arrays()).eval()
                    if self.device.type == "cpu":  # oneDNN convs run faster in NHWC
                        net = net.to(memory_format=torch.channels_last)
                    self._net = net.to(self.device)
        return self._net

    def preprocess(self, chips: np.ndarray) -> torch.Tensor:
        """(N,150,150,3) uint8 RGB -> (N,3,150,150) float32 (pixel - means) / 256 on the device."""
        pixels = torch.from_numpy(np.ascontiguousarray(chips)).to(self.device)
        # permute of NHWC data is already the channels_last layout: no copy
        x = pixels.permute(0, 3, 1, 2).float()
        return (x - self.net.means.view(1, 3, 1, 1)) / 256.0

    def compute(
        self, chips: np.ndarray, mirror: bool = False, batch_size: int | None = None
    ) -> np.ndarray:
        """Descriptors (N,128) float32 of (N,150,150,3) uint8 RGB chips, computed in batches."""
        chips = np.asarray(chips)
        expected = (CHIP_SIZE, CHIP_SIZE, 3)
        if chips.ndim != 4 or chips.shape[1:] != expected or chips.dtype != np.uint8:
            raise ValueError(
                f"expected (N, {CHIP_SIZE}, {CHIP_SIZE}, 3) uint8 RGB chips, "
                f"got {chips.shape} {chips.dtype}"
            )
        step = batch_size or self.batch_size
        net = self.net
        outputs = []
        with torch.inference_mode(), full_float32(self.device):
            for start in range(0, len(chips), step):
                x = self.preprocess(chips[start : start + step])
                descriptors = net(x)
                if mirror:
                    descriptors = (descriptors + net(x.flip(3))) / 2
                outputs.append(descriptors.cpu().numpy())
        if not outputs:
            return np.zeros((0, DESCRIPTOR_DIM), dtype=np.float32)
        return np.concatenate(outputs).astype(np.float32, copy=False)

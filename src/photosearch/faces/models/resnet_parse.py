"""Parser of ``dlib_face_recognition_resnet_model_v1.dat`` into a flat dict of numpy arrays.

The file is a serialized dlib network (format: ../shared/docs/dlib-models.md, sections 1-2):
a loss header, every layer wrapper's version integer top-down, then the input layer and each
layer's details bottom-up. Tags and skips leave no trace in the file, so the graph is written
down here (``RESIDUAL_BLOCKS``) from dlib's C++ definition, and the parser checks every record
name, hyper-parameter and tensor shape against it: a damaged or different file fails with a
message naming the layer, instead of producing a silently wrong network.

Output keys (all float32):
- ``input.means`` (3,): per-channel RGB means subtracted from the pixels.
- ``stem.conv.weight`` (32, 3, 7, 7), ``stem.conv.bias`` (32,), ``stem.affine.gamma`` /
  ``stem.affine.beta`` (32,).
- ``blocks.{i}.conv{1,2}.weight`` / ``.bias`` and ``blocks.{i}.affine{1,2}.gamma`` / ``.beta``
  for each residual block ``i`` (input to output order).
- ``fc.weight`` (128, 256): torch ``Linear`` layout (dlib stores the transpose).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from photosearch.faces.models.dlib_format import DlibFormatError, DlibReader

__all__ = [
    "CHIP_SIZE",
    "DESCRIPTOR_DIM",
    "PARSER_VERSION",
    "RESIDUAL_BLOCKS",
    "STEM_CHANNELS",
    "network_layers",
    "parse_descriptor_model",
]

# Bump whenever the output of parse_descriptor_model changes (it keys the parsed-model cache).
PARSER_VERSION = 1

CHIP_SIZE = 150
STEM_CHANNELS = 32
DESCRIPTOR_DIM = 128

# (output channels, downsampling?) of each residual block, from the input to the output: the
# alevel4 ... alevel0 templates of dlib's dnn_face_recognition_ex.cpp.
RESIDUAL_BLOCKS: tuple[tuple[int, bool], ...] = (
    ((32, False),) * 3
    + ((64, True),)
    + ((64, False),) * 3
    + ((128, True),)
    + ((128, False),) * 2
    + ((256, True),)
    + ((256, False),) * 2
    + ((256, True),)
)


@dataclass(frozen=True)
class _Layer:
    """One node of the dlib network, as it appears in the file."""

    kind: str  # con | affine | relu | max_pool | avg_pool | add_prev | fc | tag
    name: str = ""  # key prefix in the parsed dict (con/affine only)
    out_channels: int = 0
    in_channels: int = 0
    kernel: int = 0
    stride: int = 1


def _dlib_padding(kernel: int, stride: int) -> int:
    """dlib's default padding: kernel//2 at stride 1, none at any other stride."""
    return kernel // 2 if stride == 1 else 0


def network_layers() -> list[_Layer]:
    """Every layer of the descriptor net, input to output, tags and skips included."""
    layers = [
        _Layer("con", "stem.conv", STEM_CHANNELS, 3, 7, 2),
        _Layer("affine", "stem.affine", STEM_CHANNELS),
        _Layer("relu"),
        _Layer("max_pool", kernel=3, stride=2),
    ]
    channels = STEM_CHANNELS
    for index, (out_channels, down) in enumerate(RESIDUAL_BLOCKS):
        prefix = f"blocks.{index}"
        layers.append(_Layer("tag"))  # tag1: the block input
        layers += [
            _Layer("con", f"{prefix}.conv1", out_channels, channels, 3, 2 if down else 1),
            _Layer("affine", f"{prefix}.affine1", out_channels),
            _Layer("relu"),
            _Layer("con", f"{prefix}.conv2", out_channels, out_channels, 3, 1),
            _Layer("affine", f"{prefix}.affine2", out_channels),
        ]
        if down:  # tag2 (branch output), skip1 (back to the input), 2x2 average of the input
            layers += [_Layer("tag"), _Layer("tag"), _Layer("avg_pool", kernel=2, stride=2)]
        layers += [_Layer("add_prev"), _Layer("relu")]
        channels = out_channels
    layers += [
        _Layer("avg_pool", kernel=0, stride=1),  # avg_pool_everything: nr = nc = 0
        _Layer("fc", "fc", DESCRIPTOR_DIM, channels),
    ]
    return layers


def parse_descriptor_model(data: bytes) -> dict[str, np.ndarray]:
    """Parse the .dat bytes; raises DlibFormatError naming the layer where the file deviates."""
    reader = DlibReader(data)
    layers = network_layers()
    real_layers = [layer for layer in layers if layer.kind != "tag"]
    arrays: dict[str, np.ndarray] = {}
    where = "loss header"
    try:
        reader.expect_int(1, "loss layer version")
        reader.expect_string("loss_metric_2")
        reader.float()  # margin (training only)
        reader.float()  # distance threshold (training only)

        # Wrapper versions, top-down: 2 per ordinary layer, 1 per tag/skip, 3 for the layer on
        # the input (the stem conv).
        for depth, layer in enumerate(reversed(layers)):
            where = f"wrapper version {depth} ({layer.kind})"
            expected = 1 if layer.kind == "tag" else 2
            reader.expect_int(3 if depth == len(layers) - 1 else expected, "layer version")

        where = "input layer"
        reader.expect_string("input_rgb_image_sized")
        means = [reader.float() for _ in range(3)]
        reader.expect_int(CHIP_SIZE, "input rows")
        reader.expect_int(CHIP_SIZE, "input columns")
        arrays["input.means"] = np.asarray(means, dtype=np.float32)

        for index, layer in enumerate(real_layers):
            where = f"layer {index} ({layer.kind} {layer.name})".rstrip()
            _read_details(reader, layer, arrays)
            for _ in range(3):
                reader.bool()
            for _ in range(3):  # x_grad, cached_output, params_grad/grad_final: unused state
                reader.tensor()
            if index == 0:
                reader.expect_int(1, "sample_expansion_factor")
        where = "end of file"
        if reader.remaining():
            raise DlibFormatError(f"{reader.remaining()} unexpected trailing bytes")
    except DlibFormatError as error:
        raise DlibFormatError(f"descriptor model, {where}: {error}") from error
    return arrays


def _read_details(reader: DlibReader, layer: _Layer, arrays: dict[str, np.ndarray]) -> None:
    if layer.kind == "con":
        _read_con(reader, layer, arrays)
    elif layer.kind == "affine":
        _read_affine(reader, layer, arrays)
    elif layer.kind == "relu":
        _expect_one_of(reader, ("relu_", "relu_2"))
    elif layer.kind == "add_prev":
        reader.expect_string("add_prev_")
    elif layer.kind in ("max_pool", "avg_pool"):
        reader.expect_string(f"{layer.kind}_2")
        padding = _dlib_padding(layer.kernel, layer.stride) if layer.kernel else 0
        for value, what in (
            (layer.kernel, "rows"),
            (layer.kernel, "columns"),
            (layer.stride, "stride y"),
            (layer.stride, "stride x"),
            (padding, "padding y"),
            (padding, "padding x"),
        ):
            reader.expect_int(value, f"pool {what}")
    elif layer.kind == "fc":
        _read_fc(reader, layer, arrays)
    else:  # pragma: no cover - network_layers() only yields the kinds above
        raise AssertionError(layer.kind)


def _expect_one_of(reader: DlibReader, names: tuple[str, ...]) -> str:
    at = reader.pos
    name = reader.string()
    if name not in names:
        raise DlibFormatError(
            f"expected record {' or '.join(map(repr, names))}, got {name!r} at {at}"
        )
    return name


def _read_con(reader: DlibReader, layer: _Layer, arrays: dict[str, np.ndarray]) -> None:
    version = _expect_one_of(reader, ("con_4", "con_5", "con_6"))
    params = reader.tensor().reshape(-1)
    out_ch, in_ch, kernel = layer.out_channels, layer.in_channels, layer.kernel
    weight_count = out_ch * in_ch * kernel * kernel
    if params.size != weight_count + out_ch:
        raise DlibFormatError(
            f"conv params hold {params.size} values, expected {weight_count + out_ch} "
            f"({out_ch}x{in_ch}x{kernel}x{kernel} filters + {out_ch} biases)"
        )
    padding = _dlib_padding(kernel, layer.stride)
    for value, what in (
        (out_ch, "num_filters"),
        (kernel, "rows"),
        (kernel, "columns"),
        (layer.stride, "stride y"),
        (layer.stride, "stride x"),
        (padding, "padding y"),
        (padding, "padding x"),
    ):
        reader.expect_int(value, f"conv {what}")
    reader.alias_tensor()  # filters view
    reader.alias_tensor()  # biases view
    for _ in range(4):  # learning-rate and weight-decay multipliers
        reader.float()
    if version in ("con_5", "con_6") and not reader.bool():
        raise DlibFormatError("conv without bias is not part of this network")
    if version == "con_6" and reader.bool():
        raise DlibFormatError("conv with fused relu is not part of this network")
    arrays[f"{layer.name}.weight"] = params[:weight_count].reshape(out_ch, in_ch, kernel, kernel)
    arrays[f"{layer.name}.bias"] = params[weight_count:].copy()


def _read_affine(reader: DlibReader, layer: _Layer, arrays: dict[str, np.ndarray]) -> None:
    version = _expect_one_of(reader, ("affine_", "affine_2"))
    params = reader.tensor().reshape(-1)
    channels = layer.out_channels
    if params.size != 2 * channels:
        raise DlibFormatError(f"affine params hold {params.size} values, expected {2 * channels}")
    reader.alias_tensor()  # gamma view
    reader.alias_tensor()  # beta view
    reader.expect_int(0, "affine mode (0 = CONV_MODE: per channel)")
    if version == "affine_2" and reader.bool():
        raise DlibFormatError("disabled affine layer is not part of this network")
    arrays[f"{layer.name}.gamma"] = params[:channels].copy()
    arrays[f"{layer.name}.beta"] = params[channels:].copy()


def _read_fc(reader: DlibReader, layer: _Layer, arrays: dict[str, np.ndarray]) -> None:
    reader.expect_string("fc_2")
    reader.expect_int(layer.out_channels, "fc outputs")
    reader.expect_int(layer.in_channels, "fc inputs")
    params = reader.tensor().reshape(-1)
    if params.size != layer.in_channels * layer.out_channels:
        raise DlibFormatError(
            f"fc params hold {params.size} values, expected "
            f"{layer.in_channels}x{layer.out_channels} (no bias)"
        )
    reader.alias_tensor()  # weights view
    reader.alias_tensor()  # biases view
    reader.expect_int(1, "fc bias mode (1 = no bias)")
    for _ in range(4):  # learning-rate and weight-decay multipliers
        reader.float()
    # dlib stores W as [in, out] (y = x @ W); torch's Linear wants [out, in].
    weight = params.reshape(layer.in_channels, layer.out_channels)
    arrays[f"{layer.name}.weight"] = np.ascontiguousarray(weight.T)

"""dlib's 5-point face landmark predictor (an ensemble of regression trees), in numpy.

The algorithm and file layout are in ../shared/docs/dlib-models.md, section 3 (dlib's
image_processing/shape_predictor.h). Every step uses dlib's float types and operation order
(float32 where dlib uses ``float``: the shape, the feature offsets, the tree sums; float64 where it
uses ``double``: the similarity fit and the mapping to pixels), so the points are the integers
dlib returns. The one departure: dlib fits the per-cascade similarity with an SVD; we use its 2-D
closed form, which agrees to about 1e-15 (relative) before both are rounded to float32. The
oracle tests check every landmark of every shared photo against dlib.

All faces of one image walk the trees together: per cascade, one gather reads the feature pixels
of every face, ``depth`` vectorized steps walk all trees of every face at once, and one float32
running sum adds the leaves in dlib's order.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property

import numpy as np

from photosearch.faces.models.dlib_format import DlibFormatError, DlibReader
from photosearch.faces.models.registry import load_parsed

__all__ = ["PARSER_VERSION", "Box", "ShapePredictor", "parse_shape_predictor"]

# Bump whenever parse_shape_predictor's output changes (it keys the parsed-model cache).
PARSER_VERSION = 1

Box = tuple[int, int, int, int]


def _decode_ints(buf: bytes, pos: int, count: int) -> tuple[np.ndarray, int]:
    """``count`` consecutive dlib integers from ``buf[pos:]`` and the position after them.

    A tight loop: the forests hold about three million integers, and one DlibReader.int call
    per value makes the first parse several times slower (later runs load the cached arrays).
    """
    values: list[int] = []
    append = values.append
    from_bytes = int.from_bytes
    for _ in range(count):
        control = buf[pos]
        size = control & 0x0F
        if not 1 <= size <= 8:
            raise DlibFormatError(f"bad integer control byte {control:#x} at byte {pos}")
        value = from_bytes(buf[pos + 1 : pos + 1 + size], "little")
        append(-value if control & 0x80 else value)
        pos += 1 + size
    return np.asarray(values, np.int64), pos


def _floats(mantissas: np.ndarray, exponents: np.ndarray) -> np.ndarray:
    """dlib floats from their (mantissa, exponent) integer pairs; float32 values are exact."""
    if np.any(np.abs(exponents) >= 32000):
        raise DlibFormatError("unexpected inf/nan in the shape predictor")
    return np.ldexp(mantissas.astype(np.float64), exponents.astype(np.int32)).astype(np.float32)


def parse_shape_predictor(data: bytes) -> dict[str, np.ndarray]:
    """Parse ``shape_predictor_5_face_landmarks.dat`` into flat arrays.

    Returns (C cascades, T trees per cascade, S splits per tree, L = S + 1 leaves, P points,
    F feature pixels per cascade):
    ``initial_shape`` (2P,) float32, x/y interleaved in box-normalized units;
    ``split_idx1``/``split_idx2`` (C, T, S) int32 and ``split_thresh`` (C, T, S) float32;
    ``leaf_values`` (C, T, L, 2P) float32; ``anchor_idx`` (C, F) int32; ``deltas`` (C, F, 2)
    float32.
    """
    reader = DlibReader(data)
    reader.expect_int(1, "shape_predictor version")
    initial_shape = reader.matrix(np.float32).reshape(-1)
    shape_size = initial_shape.size

    # Forests: vector<vector<regression_tree>>; a tree is vector<split> {idx1, idx2, float}
    # then vector<matrix<float,0,1>>. Every tree of this model has the same depth, so after
    # reading the sizes of the first tree the whole forest is one flat run of integers.
    num_cascades = reader.int()
    header = reader.pos
    num_trees = reader.int()
    num_splits = reader.int()
    for _ in range(num_splits):
        reader.int(), reader.int(), reader.float()
    num_leaves = reader.int()
    if num_leaves != num_splits + 1:
        raise DlibFormatError("trees are not complete binary trees")
    reader.pos = header
    leaf_ints = 2 + 2 * shape_size  # -rows, -cols, then (mantissa, exponent) per value
    tree_ints = 1 + 4 * num_splits + 1 + num_leaves * leaf_ints
    cascade_ints = 1 + num_trees * tree_ints
    flat, reader.pos = _decode_ints(bytes(data), reader.pos, num_cascades * cascade_ints)

    cascades = flat.reshape(num_cascades, cascade_ints)
    trees = cascades[:, 1:].reshape(num_cascades, num_trees, tree_ints)
    splits = trees[:, :, 1 : 1 + 4 * num_splits].reshape(num_cascades, num_trees, num_splits, 4)
    leaf_block = trees[:, :, 2 + 4 * num_splits :].reshape(
        num_cascades, num_trees, num_leaves, leaf_ints
    )
    if (
        np.any(cascades[:, 0] != num_trees)
        or np.any(trees[:, :, 0] != num_splits)
        or np.any(trees[:, :, 1 + 4 * num_splits] != num_leaves)
        or np.any(leaf_block[..., 0] != -shape_size)
        or np.any(leaf_block[..., 1] != -1)
    ):
        raise DlibFormatError("the forests are not uniform complete trees of one depth")
    num_features = int(max(splits[..., 0].max(), splits[..., 1].max())) + 1

    anchors = []
    for _ in range(reader.int()):
        anchors.append([reader.int() for _ in range(reader.int())])
    deltas = []
    for _ in range(reader.int()):
        # dlib::vector<float,2> serializes as its x and y.
        deltas.append([(reader.float(), reader.float()) for _ in range(reader.int())])
    if reader.remaining() != 0:
        raise DlibFormatError(f"{reader.remaining()} unexpected bytes after the shape predictor")
    anchor_idx = np.asarray(anchors, np.int32)
    if anchor_idx.shape != (num_cascades, num_features) or anchor_idx.max() >= shape_size // 2:
        raise DlibFormatError("anchor indices do not match the forests")

    leaf_pairs = leaf_block[..., 2:].reshape(num_cascades, num_trees, num_leaves, shape_size, 2)
    return {
        "initial_shape": initial_shape.astype(np.float32),
        "split_idx1": splits[..., 0].astype(np.int32),
        "split_idx2": splits[..., 1].astype(np.int32),
        "split_thresh": _floats(splits[..., 2], splits[..., 3]),
        "leaf_values": _floats(leaf_pairs[..., 0], leaf_pairs[..., 1]),
        "anchor_idx": anchor_idx,
        "deltas": np.asarray(deltas, np.float32),
    }


class ShapePredictor:
    """dlib's 5-point shape predictor; the model loads on first use.

    Points are returned as int64 (x, y) pixel coordinates, exactly the integer points dlib's
    ``shape_predictor`` returns, in its order: subject's left eye outer and inner corner, right
    eye outer and inner corner, base of the nose.
    """

    def __init__(self, model: dict[str, np.ndarray] | None = None) -> None:
        self._given_model = model

    @cached_property
    def model(self) -> dict[str, np.ndarray]:
        model = self._given_model
        if model is None:
            model = load_parsed("landmarks5", parse_shape_predictor, PARSER_VERSION)
        return model

    @cached_property
    def _forest(self) -> _Forest:
        return _Forest(self.model)

    @property
    def num_parts(self) -> int:
        return self.model["initial_shape"].size // 2

    def predict(self, image: np.ndarray, box: Box) -> np.ndarray:
        """(P, 2) int64 landmarks of one face; ``box`` is dlib's (left, top, right, bottom)."""
        return self.predict_many(image, [box])[0]

    def predict_many(self, image: np.ndarray, boxes: Sequence[Box] | np.ndarray) -> np.ndarray:
        """(K, P, 2) int64 landmarks of K faces of one image, all walked through the trees at once.

        ``image`` is HxWx3 uint8 RGB (or HxW uint8 grey); boxes are dlib rectangles with
        inclusive right/bottom and may reach outside the image (pixels there read as 0).
        """
        box_array = np.asarray(boxes, np.int64).reshape(-1, 4)
        if len(box_array) == 0:
            return np.zeros((0, self.num_parts, 2), np.int64)
        return self._forest.run(_IntensityReader(image), box_array)


class _IntensityReader:
    """Reads dlib's grey level of an image at integer points: (r + g + b) // 3, 0 outside."""

    def __init__(self, image: np.ndarray) -> None:
        image = np.asarray(image)
        if image.dtype != np.uint8 or image.ndim not in (2, 3):
            raise ValueError("expected an HxWx3 (RGB) or HxW uint8 image")
        if image.ndim == 3 and image.shape[2] not in (1, 3):
            raise ValueError("expected 3 colour channels (RGB)")
        self.height, self.width = image.shape[:2]
        self.channels = 1 if image.ndim == 2 else image.shape[2]
        self.data = np.ascontiguousarray(image).reshape(-1)

    def read(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """float32 intensities at integer coordinates (any shape)."""
        inside = (x >= 0) & (y >= 0) & (x < self.width) & (y < self.height)
        flat = np.where(inside, y * self.width + x, 0) * self.channels
        if self.channels == 1:
            grey = self.data.take(flat).astype(np.int32)
        else:
            grey = (
                self.data.take(flat).astype(np.int32)
                + self.data.take(flat + 1)
                + self.data.take(flat + 2)
            ) // 3
        return np.where(inside, grey, 0).astype(np.float32)


class _Forest:
    """The parsed model laid out for vectorized evaluation (flat per-cascade tables)."""

    def __init__(self, model: dict[str, np.ndarray]) -> None:
        num_cascades, num_trees, num_splits = model["split_idx1"].shape
        num_leaves = model["leaf_values"].shape[2]
        self.depth = int(np.log2(num_leaves))
        if 2**self.depth != num_leaves or num_leaves != num_splits + 1:
            raise ValueError("trees must be complete binary trees")
        self.num_cascades = num_cascades
        self.num_splits = num_splits
        self.initial_shape = model["initial_shape"].astype(np.float32)
        # The similarity fit's "from" side is always the initial shape: precompute its centred
        # points and variance (the same sums fit_similarity makes, in the same order).
        initial_points = self.initial_shape.astype(np.float64).reshape(-1, 2)
        self.num_points = len(initial_points)
        mean_from = initial_points[0]
        for point in initial_points[1:]:
            mean_from = mean_from + point
        mean_from = mean_from / self.num_points
        self.centred_from = initial_points - mean_from  # (P, 2)
        var_from = 0.0
        for fx, fy in self.centred_from:
            var_from += fx * fx + fy * fy
        self.var_from = var_from / self.num_points
        # Both feature indices of each split side by side: one gather fetches the pair.
        self.split_pairs = (
            np.stack([model["split_idx1"], model["split_idx2"]], -1)
            .reshape(num_cascades, -1, 2)
            .astype(np.intp)
        )
        self.split_thresh = model["split_thresh"].reshape(num_cascades, -1).astype(np.float32)
        self.leaf_values = (
            model["leaf_values"]
            .reshape(num_cascades, num_trees * num_leaves, -1)
            .astype(np.float32)
        )
        self.anchor_idx = model["anchor_idx"].astype(np.intp)
        self.deltas = model["deltas"].astype(np.float32)
        self.num_features = self.anchor_idx.shape[1]
        # Offsets of each tree's splits and leaves in the flat tables.
        self.split_offset = np.arange(num_trees) * num_splits
        self.leaf_offset = np.arange(num_trees) * num_leaves - num_splits

    def run(self, reader: _IntensityReader, boxes: np.ndarray) -> np.ndarray:
        num_faces = len(boxes)
        left = boxes[:, 0].astype(np.float64)[:, None]
        top = boxes[:, 1].astype(np.float64)[:, None]
        # unnormalizing_tform: (0,0) -> (left, top), (1,1) -> (right, bottom).
        width = (boxes[:, 2] - boxes[:, 0]).astype(np.float64)[:, None]
        height = (boxes[:, 3] - boxes[:, 1]).astype(np.float64)[:, None]
        row_offset = (np.arange(num_faces) * self.num_features)[:, None]

        shape = np.tile(self.initial_shape, (num_faces, 1))  # (K, 2P) float32
        for cascade in range(self.num_cascades):
            features = self._feature_values(reader, shape, cascade, left, top, width, height)
            shape = self._add_forest(shape, features.reshape(-1), row_offset, cascade)

        points = shape.reshape(num_faces, -1, 2).astype(np.float64)
        x = np.floor(width * points[..., 0] + left + 0.5)
        y = np.floor(height * points[..., 1] + top + 0.5)
        return np.stack([x, y], -1).astype(np.int64)

    def _feature_values(
        self,
        reader: _IntensityReader,
        shape: np.ndarray,
        cascade: int,
        left: np.ndarray,
        top: np.ndarray,
        width: np.ndarray,
        height: np.ndarray,
    ) -> np.ndarray:
        """extract_feature_pixel_values for every face: (K, F) float32 intensities."""
        m = self._similarity(shape)
        dx = self.deltas[cascade, :, 0]
        dy = self.deltas[cascade, :, 1]
        anchors = self.anchor_idx[cascade]
        # tform * delta + location(anchor), all float32 as in dlib.
        a, s = m[:, 0, None], m[:, 1, None]  # tform = [[a, -s], [s, a]]
        u = a * dx + (-s) * dy
        u += shape[:, 2 * anchors]
        v = s * dx + a * dy
        v += shape[:, 2 * anchors + 1]
        # To pixels in float64, rounded like dlib's vector<double> -> point conversion.
        x = np.floor(width * u.astype(np.float64) + left + 0.5).astype(np.intp)
        y = np.floor(height * v.astype(np.float64) + top + 0.5).astype(np.intp)
        return reader.read(x, y)

    def _similarity(self, shape: np.ndarray) -> np.ndarray:
        """(K, 2) float32 (a, s): the similarity [[a, -s], [s, a]] from the initial shape to each
        current shape (find_tform_between_shapes), fitted in float64 and cast to float32.

        The closed form of photosearch.faces.align.fit_similarity with the initial shape's side
        precomputed; the cross-covariance terms accumulate point by point as there.
        """
        to = shape.astype(np.float64).reshape(len(shape), -1, 2)
        mean_to = to[:, 0]
        for i in range(1, self.num_points):
            mean_to = mean_to + to[:, i]
        centred_to = to - (mean_to / self.num_points)[:, None, :]
        products = centred_to[:, :, :, None] * self.centred_from[:, None, :]  # (K, P, 2, 2)
        cov = products[:, 0]
        for i in range(1, self.num_points):
            cov = cov + products[:, i]
        cov = cov * (1.0 / self.num_points)
        a = (cov[:, 0, 0] + cov[:, 1, 1]) / self.var_from
        s = (cov[:, 1, 0] - cov[:, 0, 1]) / self.var_from
        return np.stack([a, s], -1).astype(np.float32)

    def _add_forest(
        self, shape: np.ndarray, features: np.ndarray, row_offset: np.ndarray, cascade: int
    ) -> np.ndarray:
        """Walk every tree of one cascade for every face and add the leaves to the shapes.

        ``features`` is the flat (K*F) float32 vector; ``row_offset`` (K, 1) each face's start.
        """
        pairs = self.split_pairs[cascade]
        thresh = self.split_thresh[cascade]
        node = np.zeros((len(shape), len(self.split_offset)), np.intp)
        for _ in range(self.depth):
            at = node + self.split_offset
            values = features.take(pairs.take(at, axis=0) + row_offset[..., None])  # (K, T, 2)
            # Left child (2i+1) when f[idx1] - f[idx2] > thresh, else right (2i+2).
            go_left = values[..., 0] - values[..., 1] > thresh.take(at)
            node *= 2
            node += 2
            node -= go_left
        leaves = self.leaf_values[cascade].take(node + self.leaf_offset, axis=0)  # (K, T, 2P)
        # dlib adds the trees' leaves one after another in float32: a sequential running sum.
        terms = np.concatenate([shape[:, None, :], leaves], axis=1)
        return np.add.accumulate(terms, axis=1)[:, -1]

"""Face proposals: MTCNN's three-stage cascade (P-Net pyramid, R-Net, O-Net), boxes only.

The proposals are candidates, not answers: the cascade detector (cascade.py) verifies each one
with dlib's MMOD net on a crop at the scale the face needs, and only MMOD's box is kept. So the
thresholds here are set for recall, below MTCNN's usual (0.6, 0.7, 0.7): (0.5, 0.5, 0.6)
found the sixth face of a 500 px VOC crowd photo that (0.6, 0.6, 0.6) missed, and no false face
on the no-face photos.

Cost: P-Net runs on an image pyramid whose first level is the image scaled by 12 / min_face,
so it grows with pixels / min_face², not with pixels: with the smallest face at 2% of the
longer side, a photo of any size costs about the same (its first level is ~600 px long).
R-Net and O-Net run on 24 and 48 px crops of the surviving candidates.
"""

from __future__ import annotations

from threading import Lock

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from photosearch.faces.mtcnn_nets import ONet, PNet, RNet, load_mtcnn_nets

__all__ = ["PROPOSAL_THRESHOLDS", "FaceProposer", "nms"]

PROPOSAL_THRESHOLDS = (0.5, 0.5, 0.6)
PYRAMID_FACTOR = 0.709  # MTCNN's: each level ~half the area of the one above
MAX_CANDIDATES = 400  # after P-Net: a texture that fires everywhere costs no more than this


class FaceProposer:
    """Candidate face boxes (x1, y1, x2, y2, score) in an image's pixels; nets load on first use."""

    def __init__(
        self,
        device: str | torch.device = "cpu",
        thresholds: tuple[float, float, float] = PROPOSAL_THRESHOLDS,
    ) -> None:
        self.device = torch.device(device)
        self.thresholds = thresholds
        self._lock = Lock()
        self._nets: tuple[PNet, RNet, ONet] | None = None

    @property
    def nets(self) -> tuple[PNet, RNet, ONet]:
        with self._lock:
            if self._nets is None:
                self._nets = load_mtcnn_nets(self.device)
            return self._nets

    @torch.inference_mode()
    def propose(self, pixels: np.ndarray, min_face: float) -> np.ndarray:
        """(N, 5) float64 boxes with scores, best first, of faces from about `min_face` px."""
        pnet, rnet, onet = self.nets
        image = Image.fromarray(np.ascontiguousarray(pixels))
        boxes = self._pnet_stage(pnet, image, min_face)
        if len(boxes) == 0:
            return boxes
        boxes = self._refine(rnet, image, boxes, 24, self.thresholds[1], 0.7)
        if len(boxes) == 0:
            return boxes
        return self._refine(onet, image, boxes, 48, self.thresholds[2], 0.7, by_min=True)

    def _pnet_stage(self, pnet: PNet, image: Image.Image, min_face: float) -> np.ndarray:
        rows, cols = image.height, image.width
        scale = 12.0 / max(12.0, min_face)
        found = []
        level: torch.Tensor | None = None
        while min(rows, cols) * scale >= 12:
            size = (int(rows * scale + 1), int(cols * scale + 1))
            # Each level is an area average of the one above (the first, of the photo: done
            # by Pillow on uint8, ~10x faster than averaging the full float image per level).
            if level is None:
                first = image.resize((size[1], size[0]), Image.Resampling.BOX)
                level = _as_tensor(np.asarray(first), self.device)
            else:
                level = F.interpolate(level, size=size, mode="area")
            # Channels-last: oneDNN pools and convolves this layout several times faster.
            probs, regs = pnet(_normalise(level).contiguous(memory_format=torch.channels_last))
            probs, regs = probs[0].cpu().numpy(), regs[0].cpu().numpy()
            ys, xs = np.nonzero(probs >= self.thresholds[0])
            if len(ys):
                cells = np.stack([xs, ys], axis=1).astype(np.float64)
                x1y1 = np.floor((2 * cells + 1) / scale)
                x2y2 = np.floor((2 * cells + 12) / scale)
                boxes = np.concatenate(
                    [x1y1, x2y2, probs[ys, xs][:, None], regs[:, ys, xs].T], axis=1
                )
                found.append(boxes[nms(boxes[:, :4], boxes[:, 4], 0.5)])
            scale *= PYRAMID_FACTOR
        if not found:
            return np.zeros((0, 5))
        boxes = np.concatenate(found)
        boxes = boxes[nms(boxes[:, :4], boxes[:, 4], 0.7)][:MAX_CANDIDATES]
        width = boxes[:, 2] - boxes[:, 0]
        height = boxes[:, 3] - boxes[:, 1]
        moved = boxes[:, :4] + boxes[:, 5:9] * np.stack([width, height, width, height], axis=1)
        return _square(np.concatenate([moved, boxes[:, 4:5]], axis=1))

    def _refine(
        self,
        net: RNet | ONet,
        image: Image.Image,
        boxes: np.ndarray,
        side: int,
        threshold: float,
        iou: float,
        by_min: bool = False,
    ) -> np.ndarray:
        crops = np.stack([_crop(image, box, side) for box in boxes])  # (N, side, side, 3)
        probs, regs = net(_normalise(_as_tensor(crops, self.device)))
        probs, regs = probs.cpu().numpy(), regs.cpu().numpy()
        keep = probs > threshold
        boxes, probs, regs = boxes[keep], probs[keep], regs[keep]
        if by_min:  # O-Net: regress first, then suppress (MTCNN's order)
            boxes = _regress(boxes, regs)
            boxes[:, 4] = probs
            return boxes[nms(boxes[:, :4], probs, iou, by_min=True)]
        picked = nms(boxes[:, :4], probs, iou)
        boxes = _regress(boxes[picked], regs[picked])
        boxes[:, 4] = probs[picked]
        return _square(boxes)


def _as_tensor(pixels: np.ndarray, device: torch.device) -> torch.Tensor:
    """(N, 3, H, W) float32 of (H, W, 3) or (N, H, W, 3) uint8 pixels; NHWC memory seen as
    NCHW is channels-last already."""
    batch = pixels if pixels.ndim == 4 else pixels[None]
    tensor = torch.from_numpy(np.array(batch, order="C")).to(device)  # a writable copy
    return tensor.permute(0, 3, 1, 2).float()


def _normalise(pixels: torch.Tensor) -> torch.Tensor:
    return (pixels - 127.5) * 0.0078125


def _crop(image: Image.Image, box: np.ndarray, side: int) -> np.ndarray:
    """A side x side area-average resample of the box, uint8; parts outside the image are black
    (MTCNN's padding). Pillow on uint8, one call per crop: ~10x cheaper than slicing a float copy
    of the whole photo and pooling each patch in torch."""
    x1, y1, x2, y2 = (int(v) for v in box[:4])
    x2, y2 = max(x2, x1 + 1), max(y2, y1 + 1)
    if x1 >= 0 and y1 >= 0 and x2 <= image.width and y2 <= image.height:
        patch = image.resize((side, side), Image.Resampling.BOX, box=(x1, y1, x2, y2))
    else:  # crop() fills outside the image with black
        patch = image.crop((x1, y1, x2, y2)).resize((side, side), Image.Resampling.BOX)
    return np.asarray(patch)


def _regress(boxes: np.ndarray, regs: np.ndarray) -> np.ndarray:
    out = boxes.copy()
    width = boxes[:, 2] - boxes[:, 0] + 1
    height = boxes[:, 3] - boxes[:, 1] + 1
    out[:, :4] = boxes[:, :4] + regs[:, :4] * np.stack([width, height, width, height], axis=1)
    return out


def _square(boxes: np.ndarray) -> np.ndarray:
    """Boxes made square about their centres (the next stage's crops are square)."""
    out = boxes.copy()
    width = boxes[:, 2] - boxes[:, 0]
    height = boxes[:, 3] - boxes[:, 1]
    side = np.maximum(width, height)
    out[:, 0] = boxes[:, 0] + width / 2 - side / 2
    out[:, 1] = boxes[:, 1] + height / 2 - side / 2
    out[:, 2] = out[:, 0] + side
    out[:, 3] = out[:, 1] + side
    return out


def nms(
    boxes: np.ndarray, scores: np.ndarray, threshold: float, by_min: bool = False
) -> np.ndarray:
    """Greedy non-max suppression: indices kept, best first. Overlap is intersection over union,
    or over the smaller box (`by_min`, which also drops a small box inside a big one)."""
    if len(boxes) == 0:
        return np.zeros(0, dtype=np.int64)
    x1, y1, x2, y2 = (boxes[:, i] for i in range(4))
    area = (x2 - x1 + 1) * (y2 - y1 + 1)
    order = np.argsort(-scores, kind="stable")
    kept = []
    while len(order):
        best, rest = order[0], order[1:]
        kept.append(best)
        width = np.maximum(0.0, np.minimum(x2[best], x2[rest]) - np.maximum(x1[best], x1[rest]) + 1)
        height = np.maximum(
            0.0, np.minimum(y2[best], y2[rest]) - np.maximum(y1[best], y1[rest]) + 1
        )
        inter = width * height
        base = np.minimum(area[best], area[rest]) if by_min else area[best] + area[rest] - inter
        order = rest[inter / base <= threshold]
    return np.asarray(kept, dtype=np.int64)

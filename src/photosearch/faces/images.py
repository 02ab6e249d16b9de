"""Load album photos into RGB arrays at a working resolution, robust to real-world files.

Real albums hold files whose extension lies (a ``.jpg`` that is WEBP or PNG), phone photos that
are stored sideways with an EXIF orientation tag, HEIC from iPhones, PNGs with transparency,
16-bit and CMYK files, truncated downloads, and the odd text file or decompression bomb.
:func:`load_image` turns every one of them either into a :class:`LoadedImage` (upright RGB
pixels plus what is needed to map results back to the original photo) or into a single error
type, :class:`ImageLoadError`, whose message names the file and the reason in plain words.

Conventions, fixed here once for the whole project:

- Pixels are ``HxWx3`` ``uint8`` RGB, C-contiguous and writable, upright (EXIF orientation
  applied: what a photo viewer shows).
- Transparent pixels are composited on **white**: the background a transparent picture is
  normally shown on (viewers, web pages), and a neutral one for face detection. Whatever colour
  hides under fully transparent pixels (often black or garbage) never shows.
- 16-bit samples are scaled to 8 bits (``round(v * 255 / 65535)``), never clipped.
- Integer pixel coordinates name pixel *centres*: pixel ``(x, y)`` covers the continuous square
  ``[x, x + 1) x [y, y + 1)`` and its centre is at ``(x + 0.5, y + 0.5)``. This is dlib's
  convention for boxes (inclusive ``left, top, right, bottom``) and landmark points.
"""

from __future__ import annotations

import dataclasses
import io
import math
import os
import re
import threading
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np
from PIL import ExifTags, Image, features

from photosearch.faces.memory import DecodeBudgetError, decode_budget

__all__ = ["DEFAULT_MAX_PIXELS", "ImageLoadError", "LoadedImage", "load_image", "resize_pixels"]

# Pillow's own hard limit with its default settings (2 x Image.MAX_IMAGE_PIXELS): about
# 179 megapixels, enough for 108 MP phone photos and medium-format cameras.
DEFAULT_MAX_PIXELS = 2 * (1024 * 1024 * 1024 // 4 // 3)

# JPEGs are first decoded at 1/2, 1/4 or 1/8 size (libjpeg's DCT scaling, itself a proper
# low-pass) as long as that stays at least _DRAFT_MARGIN times the target, then resampled. With
# margin 1 a 36 MP photo loads at 1024 px 3-4x faster than with Pillow's thumbnail margin of 2,
# and differs from a full decode + the same filter by under 1.5 grey levels on average.
_DRAFT_MARGIN = 1
# Shrinking filter. Pillow's bilinear is a proper (triangle) low-pass when shrinking, at 0.4x
# Lanczos' time: a 3000 px photo to 2000 px took 50-150 ms against 125-280 ms (twice its decode),
# about 15% of a group photo's indexing. Faces the detector finds small are described from a
# more detailed decode anyway (faces/detail.py).
_RESAMPLE = Image.Resampling.BILINEAR
_SNIFF_BYTES = 4096

# EXIF orientation -> the transpose that makes the stored pixels upright (as in
# PIL.ImageOps.exif_transpose). Orientations 5-8 swap width and height.
_ORIENTATION_FIX = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}

_SIXTEEN_BIT_MODES = {"I;16", "I;16L", "I;16B", "I;16N"}
# Modes Pillow resizes directly, whose conversion to 8 bits goes through numpy.
_WIDE_MODES = _SIXTEEN_BIT_MODES | {"I", "F"}
# Bytes per pixel Pillow's decoded image takes, by mode (RGB is stored in 4 bytes a pixel).
_PILLOW_BYTES = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16L": 2, "I;16B": 2, "I;16N": 2}


def _decode_bytes(image: Image.Image, target: tuple[int, int]) -> int:
    """The memory a decode holds at its peak, estimated from the header: the decoded image (as
    drafted), a full-size conversion for modes converted before resizing, the working copies."""
    width, height = image.size
    pixels = width * height
    decoded = pixels * _PILLOW_BYTES.get(image.mode, 4)
    converted = 0 if image.mode in ("RGB", "RGBA", "L") or image.mode in _WIDE_MODES else pixels * 4
    if image.mode in _WIDE_MODES and target == (width, height):
        converted = pixels * 10  # numpy's conversion at full size: int64 samples, then 8 bits
    # The numpy copy (3 bytes a pixel), and the resized Pillow image when there is one; an
    # 8-bit shrink (`_shrink`) also holds a copy of the decode and torch's result.
    working = target[0] * target[1] * (3 if target == (width, height) else 10)
    shrink_copy = 0 if target == (width, height) or image.mode in _WIDE_MODES else pixels * 3
    return decoded + converted + working + shrink_copy


class ImageLoadError(Exception):
    """A file that cannot be loaded as a photo; ``str()`` is ``"<name>: <reason>"`` on one line."""

    def __init__(self, name: str, reason: str) -> None:
        self.name = name
        self.reason = reason
        super().__init__(f"{name}: {reason}")

    def __reduce__(self):  # survive pickling, e.g. when loading in a process pool
        return type(self), (self.name, self.reason)


@dataclass(frozen=True, eq=False)
class LoadedImage:
    """A decoded photo at working resolution, and the geometry to map results back.

    ``pixels`` is ``HxWx3`` ``uint8`` RGB, C-contiguous, upright. ``original_size`` is the
    upright photo's ``(width, height)`` in pixels (after EXIF orientation). ``scale`` is original
    pixels per working pixel along the longer side (1.0 when not shrunk). The shorter side was
    rounded to whole pixels, so its exact factor differs slightly; the mapping methods therefore
    use the exact per-axis factors ``original_width / working_width`` and
    ``original_height / working_height``, which is precisely the geometry of the resize (the
    working image spans the whole original, edge to edge). ``format`` is the real format found
    in the content ("JPEG", "PNG", "WEBP", "HEIF", "GIF", ...), whatever the file is named;
    ``source`` names the file in messages. ``encoded`` is, for a shrunk photo loaded from bytes
    or a local path, those bytes or that path (``load_image(encoded, ...)`` decodes it again, at
    more detail: small faces are described from it); None otherwise.
    """

    pixels: np.ndarray
    original_size: tuple[int, int]
    scale: float
    format: str
    source: str
    encoded: bytes | str | None = None

    @property
    def working_size(self) -> tuple[int, int]:
        """``(width, height)`` of ``pixels``."""
        return int(self.pixels.shape[1]), int(self.pixels.shape[0])

    @property
    def axis_scales(self) -> tuple[float, float]:
        """Exact original pixels per working pixel, ``(along x, along y)``."""
        working_width, working_height = self.working_size
        return self.original_size[0] / working_width, self.original_size[1] / working_height

    def to_original_box(self, box: Sequence[int]) -> tuple[int, int, int, int]:
        """Map an inclusive ``(left, top, right, bottom)`` working-pixel box to original pixels.

        The box covers the continuous area ``[left, right + 1) x [top, bottom + 1)``; that area
        is scaled by the per-axis factors and each edge is rounded to the nearest pixel
        boundary, so the result is the inclusive original box covering (to the nearest pixel)
        the same part of the scene, and at least one pixel wide and tall. Boxes reaching
        outside the image are mapped as they are, not clamped. Identity when not shrunk.
        """
        left, top, right, bottom = (int(v) for v in box)
        scale_x, scale_y = self.axis_scales
        new_left = _round_half_up(left * scale_x)
        new_top = _round_half_up(top * scale_y)
        new_right = max(new_left, _round_half_up((right + 1) * scale_x) - 1)
        new_bottom = max(new_top, _round_half_up((bottom + 1) * scale_y) - 1)
        return new_left, new_top, new_right, new_bottom

    def to_original_points(self, points: np.ndarray | Sequence[Sequence[float]]) -> np.ndarray:
        """Map ``(..., 2)`` working-pixel ``(x, y)`` points to original pixels (float64).

        Integer coordinates are pixel centres in both images, so a point maps as
        ``x_original = (x + 0.5) * scale_x - 0.5`` (likewise y): the centre of working pixel 0
        lands on the centre of the original pixels it was averaged from. Identity when not
        shrunk.
        """
        working = np.asarray(points, dtype=np.float64)
        if working.shape[-1:] != (2,):
            raise ValueError(f"points must have shape (..., 2), got {working.shape}")
        factors = np.asarray(self.axis_scales, dtype=np.float64)
        return (working + 0.5) * factors - 0.5


def load_image(
    source: str | os.PathLike | bytes | BinaryIO,
    *,
    max_side: int | None = None,
    name: str | None = None,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    resample: bool = True,
) -> LoadedImage:
    """Decode a photo into upright RGB at working resolution.

    ``source`` is a path, the file's bytes, or a binary file object (local, or an fsspec file
    such as an S3 object); a file object is read from its start and is not closed. The format
    is sniffed from the content, never the name. HEIC/HEIF is read through pillow-heif; of an
    animated GIF/WEBP only the first frame is used. If the longer upright side exceeds
    ``max_side``, the image is shrunk (JPEGs are decoded at a reduced size first, then
    resampled bilinearly) so that the longer side is exactly ``max_side``; never enlarged.

    ``resample=False`` stops at what the decoder gives: a JPEG drafted at 1/2, 1/4 or 1/8 while
    the longer side stays at least ``max_side``, never resampled (for a second, more detailed
    decode, where a few faces are cut out and a resize of the whole photo would be wasted).

    ``max_pixels`` rejects images whose header claims more pixels (decompression bombs);
    ``None`` disables our check. Pillow's process-wide hard limit (``2 * Image.MAX_IMAGE_PIXELS``,
    the default here) still applies on top: raise ``PIL.Image.MAX_IMAGE_PIXELS`` to go beyond.
    ``name`` is used in messages and as ``LoadedImage.source`` (default: the path, or the file
    object's path/name).

    Every file that cannot be loaded raises :class:`ImageLoadError` (missing, empty, not an
    image, truncated, corrupt, too large); truncated files are never loaded half-grey.
    """
    if max_side is not None and max_side < 1:
        raise ValueError(f"max_side must be a positive number of pixels, got {max_side}")
    label = name if name is not None else _default_name(source)
    file, owned = _open_binary(source, label)
    try:
        prefix = _read_prefix(file, label)
        if not prefix:
            raise ImageLoadError(label, "empty file (0 bytes)")
        if prefix[4:8] == b"ftyp":
            _register_heif_opener()
        with warnings.catch_warnings():
            # Our own max_pixels check replaces Pillow's bomb warning (which would fire for
            # legitimate 90-179 MP photos); its hard-limit error is converted below.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            loaded = _decode(file, prefix, label, max_side, max_pixels, resample)
    finally:
        if owned:
            file.close()
    if loaded.scale > 1.0 and isinstance(source, bytes | str | os.PathLike):
        encoded = source if isinstance(source, bytes) else os.fspath(source)
        loaded = dataclasses.replace(loaded, encoded=encoded)
    return loaded


def _decode(
    file: BinaryIO,
    prefix: bytes,
    label: str,
    max_side: int | None,
    max_pixels: int | None,
    resample: bool = True,
) -> LoadedImage:
    try:
        image = Image.open(file)
    except Image.DecompressionBombError as error:
        raise ImageLoadError(label, _pillow_bomb_reason(error)) from error
    except Exception as error:  # Pillow raises many types for unreadable headers.
        raise ImageLoadError(label, _unidentified_reason(prefix, file)) from error

    with image:
        image_format = image.format or "unknown"
        stored_width, stored_height = image.size
        if max_pixels is not None and stored_width * stored_height > max_pixels:
            raise ImageLoadError(
                label,
                f"image too large ({stored_width}x{stored_height} pixels, "
                f"limit {_megapixels(max_pixels)} megapixels)",
            )
        target = _working_size(stored_width, stored_height, max_side)
        try:
            region = _draft(image, stored_width, stored_height, target)
            if not resample:  # the (drafted) decode as it is, overhang and all (< 1 pixel)
                target = image.size
                region = (0.0, 0.0, float(target[0]), float(target[1]))
            with decode_budget().reserve(_decode_bytes(image, target)):
                image.load()
                orientation = _orientation(image)
                if image.mode in _WIDE_MODES and target != (stored_width, stored_height):
                    # Shrink in the source precision first (Pillow resizes these modes), then
                    # convert only the small result: 16-bit photos need no full-size copies.
                    working = _to_rgb_family(image.resize(target, _RESAMPLE, box=region))
                else:
                    working = _to_rgb_family(image)
                    if target != (stored_width, stored_height):
                        working = _shrink(working, target, region)
                if orientation in _ORIENTATION_FIX:
                    working = working.transpose(_ORIENTATION_FIX[orientation])
                # np.array copies: the pixels outlive the (closed) Pillow image, writable.
                pixels = np.array(_flatten_to_rgb(working), dtype=np.uint8)
        except DecodeBudgetError as error:
            raise ImageLoadError(label, f"image too large to decode here: {error}") from error
        except Image.DecompressionBombError as error:
            raise ImageLoadError(label, _pillow_bomb_reason(error)) from error
        except MemoryError as error:
            raise ImageLoadError(
                label, f"not enough memory to decode {stored_width}x{stored_height} pixels"
            ) from error
        except Exception as error:  # decoder failures surface as OSError, SyntaxError, ...
            raise ImageLoadError(
                label, _decode_failure_reason(error, image_format, file)
            ) from error

    swaps_axes = orientation in (5, 6, 7, 8)
    original_size = (stored_height, stored_width) if swaps_axes else (stored_width, stored_height)
    return LoadedImage(
        pixels=np.ascontiguousarray(pixels),
        original_size=original_size,
        scale=max(original_size) / max(pixels.shape[0], pixels.shape[1]),
        format=image_format,
        source=label,
    )


# --- input handling -----------------------------------------------------------------------


def resize_pixels(pixels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """An RGB (or grey) uint8 array resized to ``size`` (width, height): Lanczos when shrinking
    (the MMOD detector's own detection size), bilinear when enlarging (no ringing on the faint
    edges the detector looks for)."""
    image = Image.fromarray(np.ascontiguousarray(pixels))
    enlarging = size[0] > image.width
    resample = Image.Resampling.BILINEAR if enlarging else Image.Resampling.LANCZOS
    return np.asarray(image.resize(size, resample))


def _default_name(source: object) -> str:
    if isinstance(source, str | os.PathLike):
        return os.fsdecode(os.fspath(source))
    if isinstance(source, bytes | bytearray | memoryview):
        return "<bytes>"
    for attribute in ("path", "name"):  # fsspec files have .path; open() files have .name
        value = getattr(source, attribute, None)
        if isinstance(value, str) and value:
            return value
    return "<stream>"


def _open_binary(source: object, label: str) -> tuple[BinaryIO, bool]:
    """A seekable binary file for ``source`` and whether we opened it (so must close it)."""
    if isinstance(source, bytes | bytearray | memoryview):
        return io.BytesIO(bytes(source)), True
    if isinstance(source, str | os.PathLike):
        try:
            return open(source, "rb"), True  # closed by load_image
        except FileNotFoundError as error:
            raise ImageLoadError(label, "no such file") from error
        except IsADirectoryError as error:
            raise ImageLoadError(label, "is a directory, not a file") from error
        except PermissionError as error:
            raise ImageLoadError(label, "permission denied") from error
        except OSError as error:
            raise ImageLoadError(label, f"cannot open file ({error.strerror or error})") from error
    if not hasattr(source, "read"):
        raise TypeError(f"cannot load an image from {type(source).__name__}")
    seekable = getattr(source, "seekable", None)
    if callable(seekable) and seekable():
        return source, False  # type: ignore[return-value]
    # Pillow needs to seek; a pipe or HTTP stream is read into memory once.
    try:
        return io.BytesIO(source.read()), True  # type: ignore[attr-defined]
    except OSError as error:
        raise ImageLoadError(label, f"cannot read file ({error})") from error


def _read_prefix(file: BinaryIO, label: str) -> bytes:
    try:
        file.seek(0)
        prefix = file.read(_SNIFF_BYTES)
        file.seek(0)
    except OSError as error:
        raise ImageLoadError(label, f"cannot read file ({error})") from error
    return bytes(prefix)


_heif_lock = threading.Lock()
_heif_registered = False


def _register_heif_opener() -> None:
    """Teach Pillow HEIC/HEIF, once, and only when a file looks like one (import costs ~0.2 s)."""
    global _heif_registered
    with _heif_lock:
        if _heif_registered:
            return
        try:
            import pillow_heif
        except ImportError:  # then HEIF files fail as "HEIF ... cannot be decoded" below
            return
        pillow_heif.register_heif_opener()
        _heif_registered = True


# --- decoding -----------------------------------------------------------------------------


def _round_half_up(value: float) -> int:
    return math.floor(value + 0.5)


def _working_size(width: int, height: int, max_side: int | None) -> tuple[int, int]:
    """Size with the longer side at most ``max_side`` (exactly, when shrunk), same aspect."""
    longer = max(width, height)
    if max_side is None or longer <= max_side:
        return width, height
    factor = longer / max_side
    return max(1, _round_half_up(width / factor)), max(1, _round_half_up(height / factor))


def _draft(
    image: Image.Image, width: int, height: int, target: tuple[int, int]
) -> tuple[float, float, float, float]:
    """Ask the JPEG decoder for a 1/2, 1/4 or 1/8 size decode when that still leaves
    ``_DRAFT_MARGIN`` times the target; return the region of the decoded image that holds the
    original photo (a reduced decode rounds its size up, so its last pixels overhang)."""
    full = (0.0, 0.0, float(width), float(height))
    if target == (width, height):
        return full
    request = (target[0] * _DRAFT_MARGIN, target[1] * _DRAFT_MARGIN)
    drafted = image.draft(None, request)
    if drafted is None:  # not a JPEG, or nothing to gain
        return full
    return tuple(float(v) for v in drafted[1])  # type: ignore[return-value]


def _orientation(image: Image.Image) -> int:
    """EXIF orientation 1-8 (1 when absent or unreadable: a broken tag must not lose a photo)."""
    try:
        value = image.getexif().get(ExifTags.Base.Orientation, 1)
    except Exception:  # corrupt EXIF blocks raise assorted errors; the pixels are still fine
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _shrink(
    image: Image.Image, target: tuple[int, int], region: tuple[float, float, float, float]
) -> Image.Image:
    """`image.resize(target, _RESAMPLE, box=region)`, by torch's antialiased bilinear kernel for
    8-bit RGB and grey: the same triangle filter (within one grey level of Pillow's), 1.8x
    faster on 2-4k px photos (45 against 81 ms a photo on one core, conversions included), where
    Pillow's shrink had cost more than the decode itself. The region (a drafted decode's part
    that holds the photo, see `_draft`) is honoured through explicit scale factors."""
    if target == image.size and region == (0.0, 0.0, *map(float, image.size)):
        return image
    if image.mode not in ("RGB", "L") or region[:2] != (0.0, 0.0):
        return image.resize(target, _RESAMPLE, box=region)
    try:
        import torch
        import torch.nn.functional as F
    except ImportError:  # the slim app image has no torch; its thumbnails shrink in Pillow
        return image.resize(target, _RESAMPLE, box=region)

    pixels = torch.from_numpy(np.array(image))  # a writable copy, (H, W[, 3])
    batch = pixels.permute(2, 0, 1)[None] if pixels.ndim == 3 else pixels[None, None]
    width, height = region[2] - region[0], region[3] - region[1]
    if (width, height) == image.size:
        shrunk = F.interpolate(batch, size=(target[1], target[0]), mode="bilinear", antialias=True)
    else:  # src = (dst + 0.5) / factor - 0.5, as Pillow maps a box
        factors = (target[1] / height, target[0] / width)
        shrunk = F.interpolate(
            batch,
            scale_factor=factors,
            recompute_scale_factor=False,
            mode="bilinear",
            antialias=True,
        )[..., : target[1], : target[0]]
    if shrunk.shape[-2:] != (target[1], target[0]):  # a factor rounded one pixel short
        return image.resize(target, _RESAMPLE, box=region)
    out = shrunk[0].permute(1, 2, 0) if pixels.ndim == 3 else shrunk[0, 0]
    return Image.fromarray(out.contiguous().numpy())


def _to_rgb_family(image: Image.Image) -> Image.Image:
    """Convert any mode to "L", "RGB" or "RGBA" (alpha kept so resizing weights it properly)."""
    mode = image.mode
    if mode in ("RGB", "RGBA", "L"):
        return image
    if mode in _SIXTEEN_BIT_MODES:
        # Pillow's own I;16 -> L conversion clips at 255; scale the 16-bit range instead
        # (in uint32: the products fit, at half int64's memory).
        samples = np.asarray(image).astype(np.uint32)
        return Image.fromarray(((samples * 255 + 32767) // 65535).astype(np.uint8), "L")
    if mode == "I":
        samples = np.clip(np.asarray(image).astype(np.int64), 0, 65535)
        return Image.fromarray(((samples * 255 + 32767) // 65535).astype(np.uint8), "L")
    if mode == "F":
        return Image.fromarray(_float_to_uint8(np.asarray(image, dtype=np.float64)), "L")
    if image.has_transparency_data:  # LA, PA, La, RGBa, P or RGB/L with a transparent colour
        return image.convert("RGBA")
    if mode == "1":
        return image.convert("L")
    return image.convert("RGB")  # P, CMYK, YCbCr, LAB, HSV, RGBX, ...


def _float_to_uint8(samples: np.ndarray) -> np.ndarray:
    """Floating-point images have no fixed range: [0, 1] data is scaled to [0, 255], anything
    else is stretched from min(0, lowest) to its highest value. NaN becomes black."""
    samples = np.nan_to_num(samples, nan=0.0, posinf=0.0, neginf=0.0)
    low, high = min(0.0, float(samples.min())), float(samples.max())
    if low == 0.0 and high <= 1.0:
        high = 1.0
    scaled = (samples - low) / (high - low) if high > low else np.zeros_like(samples)
    return np.round(scaled * 255).astype(np.uint8)


def _flatten_to_rgb(image: Image.Image) -> Image.Image:
    """Final RGB: grey replicated, transparency composited on white."""
    if image.mode == "RGBA":
        white = Image.new("RGBA", image.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, image).convert("RGB")
    if image.mode != "RGB":
        return image.convert("RGB")
    return image


# --- plain-words reasons ------------------------------------------------------------------


def _megapixels(pixels: int) -> str:
    megapixels = pixels / 1e6
    return f"{megapixels:,.0f}" if megapixels >= 100 else f"{megapixels:.3g}"


def _pillow_bomb_reason(error: Exception) -> str:
    # Pillow's message: "Image size (N pixels) exceeds limit of M pixels, could be ...".
    numbers = re.findall(r"\((\d+) pixels\)|of (\d+) pixels", str(error))
    found = [int(a or b) for a, b in numbers]
    if len(found) == 2:
        return (
            f"image too large ({_megapixels(found[0])} megapixels, limit "
            f"{_megapixels(found[1])} megapixels, from PIL.Image.MAX_IMAGE_PIXELS)"
        )
    return "image too large (over PIL.Image.MAX_IMAGE_PIXELS)"


def _decode_failure_reason(error: Exception, image_format: str, file: BinaryIO) -> str:
    message = str(error)
    if "truncated" in message.lower() or isinstance(error, EOFError):
        return f"truncated {image_format}"
    if image_format == "WEBP" and _riff_is_cut_short(file):
        return "truncated WEBP"  # libwebp only says "could not create decoder object"
    detail = message.splitlines()[0] if message else type(error).__name__
    return f"corrupt {image_format} data ({detail})"


def _riff_is_cut_short(file: BinaryIO) -> bool:
    """Whether a RIFF (WEBP) file is shorter than the size its header declares."""
    try:
        file.seek(0)
        header = file.read(8)
        actual = file.seek(0, os.SEEK_END)
    except Exception:
        return False
    if len(header) < 8 or header[:4] != b"RIFF":
        return False
    return int.from_bytes(header[4:8], "little") + 8 > actual


# ISO base media ("ftyp") brands: which are still images and which are video.
_HEIF_BRANDS = {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"hevm", b"hevs", b"mif1"}
_HEIF_BRANDS |= {b"msf1", b"mif2"}
_AVIF_BRANDS = {b"avif", b"avis"}

# (magic bytes at offset 0, plain-words name, whether it is an image format we decode)
_MAGIC: list[tuple[bytes, str, bool]] = [
    (b"\xff\xd8\xff", "JPEG", True),
    (b"\x89PNG\r\n\x1a\n", "PNG", True),
    (b"GIF87a", "GIF", True),
    (b"GIF89a", "GIF", True),
    (b"II*\x00", "TIFF", True),
    (b"MM\x00*", "TIFF", True),
    (b"8BPS", "Photoshop PSD", True),
    (b"FUJIFILMCCD-RAW", "Fujifilm RAW photo", False),
    (b"\xff\x0a", "JPEG XL", False),
    (b"\x00\x00\x00\x0cJXL \r\n\x87\n", "JPEG XL", False),
    (b"%PDF", "PDF document", False),
    (b"PK\x03\x04", "ZIP archive", False),
    (b"\x1f\x8b", "gzip archive", False),
    (b"7z\xbc\xaf\x27\x1c", "7-Zip archive", False),
    (b"Rar!", "RAR archive", False),
    (b"\x1a\x45\xdf\xa3", "Matroska/WebM video", False),
    (b"ID3", "MP3 audio", False),
    (b"OggS", "Ogg media", False),
]


def _unidentified_reason(prefix: bytes, file: BinaryIO) -> str:
    """Why Pillow could not open a file, from its first bytes."""
    kind, is_image = _sniff(prefix)
    if kind == "WEBP" and _riff_is_cut_short(file):
        return "truncated WEBP"
    if kind == "AVIF" and features.check_module("avif"):
        is_image = True  # Pillow decodes AVIF when built with libavif
    if is_image:
        return f"corrupt or truncated {kind} (its header cannot be read)"
    if kind in ("AVIF", "JPEG XL"):
        return f"{kind} images are not supported (no decoder installed)"
    if kind is not None:
        return f"not an image ({kind})"
    return f"not a recognised image format (starts with bytes {prefix[:8].hex(' ')})"


def _sniff(prefix: bytes) -> tuple[str | None, bool]:
    """(what the content is, whether it is an image format we decode) from magic bytes."""
    if prefix[4:8] == b"ftyp":
        brand = prefix[8:12]
        if brand in _HEIF_BRANDS:
            return "HEIF", True
        if brand in _AVIF_BRANDS:
            return "AVIF", False
        if brand == b"crx ":
            return "Canon CR3 RAW photo", False
        return "MP4/QuickTime video", False
    if prefix[:4] == b"RIFF":
        kind = {b"WEBP": "WEBP", b"AVI ": "AVI video", b"WAVE": "WAV audio"}.get(prefix[8:12])
        return (kind, kind == "WEBP") if kind else ("RIFF file", False)
    for magic, kind, is_image in _MAGIC:
        if prefix.startswith(magic):
            return kind, is_image
    text_kind = _text_kind(prefix)
    if text_kind is not None:
        return text_kind, False
    if prefix[:2] == b"BM":  # weak magic: checked after text, which may start with "BM"
        return "BMP", True
    return None, False


def _text_kind(prefix: bytes) -> str | None:
    """'text file' (or HTML page, SVG/XML...) when the bytes read as text, else None."""
    for bom, encoding in (
        (b"\xef\xbb\xbf", "utf-8"),
        (b"\xff\xfe", "utf-16"),
        (b"\xfe\xff", "utf-16"),
    ):
        if prefix.startswith(bom):
            text = prefix.decode(encoding, errors="ignore")
            break
    else:
        if b"\x00" in prefix:
            return None
        text = prefix.decode("utf-8", errors="replace")
        if text.count("\ufffd") > len(text) // 100 + 1:  # a few may be a cut multi-byte char
            return None
    printable = sum(ch.isprintable() or ch in "\t\n\r\f" for ch in text)
    if printable < 0.95 * len(text):
        return None
    head = text.lstrip("\ufeff \t\r\n").lower()
    if head.startswith(("<!doctype html", "<html")):
        return "HTML page"
    if head.startswith("<svg") or (head.startswith("<?xml") and "<svg" in head):
        return "SVG vector drawing"
    if head.startswith("<?xml"):
        return "XML file"
    return "text file"

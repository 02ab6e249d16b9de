"""Image loading on real album files and on generated tricky ones (photosearch.faces.images)."""

from __future__ import annotations

import io
import pickle
import struct
import subprocess
import sys
import warnings
import zlib
from pathlib import Path

import fsspec
import numpy as np
import pytest
from conftest import shared_photos
from PIL import Image, ImageOps

from photosearch.faces.images import ImageLoadError, LoadedImage, load_image

# The transpose that turns an upright picture into what a camera stores with EXIF orientation
# o (the inverse of the fix a viewer applies): 6 and 8 are each other's inverse, the rest are
# their own.
STORED_FROM_UPRIGHT = {
    1: None,
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


# --- helpers ------------------------------------------------------------------------------


def upright_picture(width: int = 64, height: int = 40) -> np.ndarray:
    """A picture with no symmetry: gradients plus an off-centre red block."""
    y, x = np.mgrid[0:height, 0:width]
    picture = np.stack(
        [
            x * 255 // (width - 1),
            y * 255 // (height - 1),
            (x + 2 * y) * 255 // (width + 2 * height),
        ],
        axis=-1,
    ).astype(np.uint8)
    picture[3:12, 5:20] = (255, 0, 0)
    return picture


def with_orientation(upright: np.ndarray, orientation: int) -> tuple[Image.Image, bytes]:
    """(stored image, EXIF bytes) that a viewer shows as ``upright``."""
    stored = Image.fromarray(upright)
    if STORED_FROM_UPRIGHT[orientation] is not None:
        stored = stored.transpose(STORED_FROM_UPRIGHT[orientation])
    exif = Image.Exif()
    exif[0x0112] = orientation
    return stored, exif.tobytes()


def encoded(image: Image.Image, image_format: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, image_format, **options)
    return buffer.getvalue()


def png_bytes(
    width: int, height: int, bit_depth: int, color_type: int, rows: bytes | None
) -> bytes:
    """A PNG written by hand (Pillow cannot write 16-bit RGB, nor lie about its size)."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    header = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    idat = chunk(b"IDAT", zlib.compress(rows)) if rows is not None else b""
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + idat + chunk(b"IEND", b"")


def pillow_rgb(path: Path | bytes) -> np.ndarray:
    """Reference decode: Pillow, EXIF-transposed, as RGB (for opaque images)."""
    source = io.BytesIO(path) if isinstance(path, bytes) else path
    with Image.open(source) as image:
        return np.asarray(ImageOps.exif_transpose(image).convert("RGB"))


def pixel_count(path: Path) -> int:
    with Image.open(path) as image:
        return image.size[0] * image.size[1]


def mean_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    assert a.shape == b.shape
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


def assert_working_image(loaded: LoadedImage) -> None:
    pixels = loaded.pixels
    assert pixels.dtype == np.uint8 and pixels.ndim == 3 and pixels.shape[2] == 3
    assert pixels.flags["C_CONTIGUOUS"] and pixels.flags["WRITEABLE"]


def load_error(source, **options) -> str:
    with pytest.raises(ImageLoadError) as caught:
        load_image(source, **options)
    message = str(caught.value)
    assert "\n" not in message
    return message


# --- the real album files -----------------------------------------------------------------


def test_every_shared_photo_loads_upright_at_working_size(shared_data):
    paths = shared_photos()
    assert len(paths) > 150
    max_side = 400
    for path in paths:
        with Image.open(path) as image:  # header only: cheap
            real_format = image.format
            sideways = image.getexif().get(0x0112, 1) in (5, 6, 7, 8)
            upright_size = image.size[::-1] if sideways else image.size
        loaded = load_image(path, max_side=max_side)
        assert_working_image(loaded)
        assert loaded.format == real_format, path
        assert loaded.original_size == upright_size, path
        assert loaded.source == str(path)
        working_width, working_height = loaded.pixels.shape[1], loaded.pixels.shape[0]
        assert max(working_width, working_height) == min(max_side, max(upright_size)), path
        # Same aspect ratio, to the rounding of the shorter side.
        assert abs(working_width * loaded.scale - upright_size[0]) <= loaded.scale, path
        assert abs(working_height * loaded.scale - upright_size[1]) <= loaded.scale, path


def test_webp_named_jpg_loads_with_its_real_format(shared_data):
    path = shared_data / "photos/people/deepface/img47.jpg"
    loaded = load_image(path)
    assert loaded.format == "WEBP"
    assert loaded.scale == 1.0
    np.testing.assert_array_equal(loaded.pixels, pillow_rgb(path))


def test_rgba_pngs_in_the_album_are_found_by_content_and_composited_on_white(shared_data):
    rgba_pngs = []
    for path in shared_photos():
        with Image.open(path) as image:
            if image.format == "PNG" and image.mode == "RGBA":
                rgba_pngs.append(path)
    assert any(p.suffix == ".jpg" for p in rgba_pngs), "expected RGBA PNGs named .jpg"
    for path in rgba_pngs:
        loaded = load_image(path)
        assert loaded.format == "PNG"
        with Image.open(path) as image:
            rgba = np.asarray(image).astype(np.float64)
        alpha = rgba[..., 3:] / 255
        expected = np.round(rgba[..., :3] * alpha + 255 * (1 - alpha))
        assert np.abs(loaded.pixels - expected).max() <= 1, path


def test_big_jpeg_shrinks_through_draft_like_a_full_decode(shared_data):
    path = max(shared_photos(), key=pixel_count)
    full = pillow_rgb(path)
    assert max(full.shape) >= 4000  # the 36 MP photo: decoded at 1/4 or 1/8 size first
    loaded = load_image(path, max_side=800)
    reference = Image.fromarray(full).resize(
        (loaded.pixels.shape[1], loaded.pixels.shape[0]), Image.Resampling.BILINEAR
    )
    # Misaligned geometry or a poor filter would differ by several grey levels on a photo.
    assert mean_abs_diff(loaded.pixels, np.asarray(reference)) < 1.5


def test_the_shrink_is_pillows_bilinear_filter_within_one_grey_level(shared_data, tmp_path):
    """Photos are shrunk by torch's uint8 kernel (faster); it must stay Pillow's filter with
    Pillow's geometry, for drafted JPEGs (whose decode overhangs the photo), plain decodes and
    grey photos alike."""
    path = max(shared_photos(), key=pixel_count)
    with Image.open(path) as image:
        image = ImageOps.exif_transpose(image).convert("RGB")
    # Odd sizes: a 1/2 draft of these rounds up and overhangs by half a pixel.
    odd = image.resize((4179, 2351))
    grey = image.convert("L").resize((2501, 1667))
    for name, picture in (("odd.jpg", odd), ("odd.png", odd), ("grey.jpg", grey)):
        picture.save(tmp_path / name)
        loaded = load_image(tmp_path / name, max_side=1000)
        with Image.open(tmp_path / name) as reference:
            target = (loaded.pixels.shape[1], loaded.pixels.shape[0])
            drafted = reference.draft(None, target)
            box = drafted[1] if drafted else None
            expected = reference.convert("RGB").resize(target, Image.Resampling.BILINEAR, box=box)
        difference = np.abs(loaded.pixels.astype(np.int16) - np.asarray(expected))
        assert difference.max() <= 1, name
        assert difference.mean() < 0.05, name


def test_a_decode_without_resampling_stops_at_the_drafted_size(shared_data, tmp_path):
    """For the detail decode of small faces: a JPEG drafted to 1/2, 1/4 or 1/8 as long as that
    leaves max_side, never resampled, with the geometry still mapping to the whole photo."""
    path = max(shared_photos(), key=pixel_count)
    with Image.open(path) as image:
        width, height = ImageOps.exif_transpose(image).size
    loaded = load_image(path, max_side=max(width, height) // 3, resample=False)
    longer = max(loaded.pixels.shape[:2])
    assert longer == -(-max(width, height) // 2)  # the 1/2 decode: 1/4 would be too small
    assert loaded.original_size == (width, height)
    right, bottom = loaded.pixels.shape[1] - 1, loaded.pixels.shape[0] - 1
    corner = loaded.to_original_box((0, 0, right, bottom))
    assert abs(corner[2] - (width - 1)) <= 1 and abs(corner[3] - (height - 1)) <= 1
    full = load_image(path, max_side=max(width, height) - 1, resample=False)
    assert full.pixels.shape[:2] == (height, width)  # nothing smaller is enough: full size


def test_bytes_file_objects_and_fsspec_files_load_like_paths(shared_data, tmp_path):
    path = shared_data / "photos/people/deepface/img47.jpg"
    expected = load_image(path, max_side=300)
    data = path.read_bytes()

    class UnseekableStream(io.RawIOBase):
        def __init__(self, payload: bytes) -> None:
            self._payload = io.BytesIO(payload)

        def readable(self) -> bool:
            return True

        def readinto(self, buffer) -> int:
            chunk = self._payload.read(len(buffer))
            buffer[: len(chunk)] = chunk
            return len(chunk)

    class RangeFile(fsspec.spec.AbstractBufferedFile):
        """Reads by byte ranges, as fsspec's S3/GCS/HTTP files do."""

        def __init__(self, payload: bytes, path: str) -> None:
            self._payload = payload
            fs = fsspec.filesystem("memory")
            super().__init__(fs, path, mode="rb", size=len(payload), block_size=4096)

        def _fetch_range(self, start: int, end: int) -> bytes:
            return self._payload[start:end]

    memory = fsspec.filesystem("memory")
    memory.pipe("/album/img47.jpg", data)
    file_object = io.BytesIO(data)
    file_object.seek(100)  # read from the start whatever the position
    sources = [  # (source, the name it gets by default)
        (data, "<bytes>"),
        (file_object, "<stream>"),
        (UnseekableStream(data), "<stream>"),
        (RangeFile(data, "album/img47.jpg"), "album/img47.jpg"),
    ]
    for source, default_name in sources:
        loaded = load_image(source, max_side=300)
        assert loaded.source == default_name
        assert loaded.format == "WEBP"
        np.testing.assert_array_equal(loaded.pixels, expected.pixels)
    with memory.open("/album/img47.jpg", "rb") as opened:
        np.testing.assert_array_equal(load_image(opened, max_side=300).pixels, expected.pixels)
    assert not file_object.closed  # the caller's file stays open
    assert load_image(data, name="holiday/x.jpg").source == "holiday/x.jpg"


# --- orientation --------------------------------------------------------------------------


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_gives_the_upright_picture(tmp_path, orientation):
    upright = upright_picture()
    stored, exif = with_orientation(upright, orientation)

    png = tmp_path / f"o{orientation}.png"
    png.write_bytes(encoded(stored, "PNG", exif=exif))
    loaded = load_image(png)
    np.testing.assert_array_equal(loaded.pixels, upright)  # lossless: exact
    np.testing.assert_array_equal(loaded.pixels, pillow_rgb(png))  # agrees with Pillow's
    assert loaded.original_size == (upright.shape[1], upright.shape[0])

    jpeg = tmp_path / f"o{orientation}.jpg"
    jpeg.write_bytes(encoded(stored, "JPEG", exif=exif, quality=95))
    loaded = load_image(jpeg)
    np.testing.assert_array_equal(loaded.pixels, pillow_rgb(jpeg))
    assert mean_abs_diff(loaded.pixels, upright) < 6

    webp = encoded(stored, "WEBP", exif=exif, lossless=True)
    np.testing.assert_array_equal(load_image(webp).pixels, upright)


def test_rotated_phone_photo_shrinks_and_maps_boxes_in_upright_coordinates(tmp_path):
    # A portrait photo stored sideways (orientation 6), as phones do, with a dark square.
    upright = np.full((2003, 1501, 3), 235, np.uint8)
    square = (400, 1100, 899, 1599)  # inclusive left, top, right, bottom, upright pixels
    upright[square[1] : square[3] + 1, square[0] : square[2] + 1] = 20
    stored, exif = with_orientation(upright, 6)
    path = tmp_path / "portrait.jpg"
    path.write_bytes(encoded(stored, "JPEG", exif=exif, quality=92))

    loaded = load_image(path, max_side=500)
    assert loaded.original_size == (1501, 2003)
    assert loaded.pixels.shape == (500, 375, 3)
    assert loaded.scale == pytest.approx(2003 / 500)
    assert_box_recovered(loaded, square)


# --- formats and pixel modes --------------------------------------------------------------


def test_heic_loads_through_pillow_heif_registered_only_when_needed(tmp_path):
    pillow_heif = pytest.importorskip("pillow_heif")
    if not pillow_heif.libheif_info().get("HEIF"):
        pytest.skip("this libheif build has no HEVC encoder to write a test HEIC")
    upright = np.asarray(Image.fromarray(upright_picture()).resize((128, 80)))
    path = tmp_path / "IMG_0001.jpg"  # HEIC content under another name
    buffer = io.BytesIO()
    pillow_heif.from_pillow(Image.fromarray(upright)).save(buffer, quality=95)
    path.write_bytes(buffer.getvalue())
    assert path.read_bytes()[4:8] == b"ftyp"
    loaded = load_image(path)
    assert loaded.format == "HEIF"
    assert loaded.original_size == (128, 80)
    assert mean_abs_diff(loaded.pixels, upright) < 6  # HEVC is lossy

    # An iPhone portrait: stored sideways, rotation in the container (irot) and EXIF orientation
    # 6 as well. pillow-heif applies the rotation and resets the EXIF tag, so it is not doubled.
    stored, exif = with_orientation(upright, 6)
    buffer = io.BytesIO()
    pillow_heif.from_pillow(stored).save(buffer, quality=95, exif=exif)
    loaded = load_image(buffer.getvalue())
    assert loaded.original_size == (128, 80)
    assert mean_abs_diff(loaded.pixels, upright) < 6

    # Albums without HEIC never pay for importing pillow-heif.
    jpeg = tmp_path / "plain.jpg"
    Image.fromarray(upright).save(jpeg)
    script = (
        "import sys; from photosearch.faces.images import load_image; "
        f"load_image({str(jpeg)!r}); assert 'pillow_heif' not in sys.modules; "
        f"assert load_image({str(path)!r}).format == 'HEIF'; assert 'pillow_heif' in sys.modules"
    )
    subprocess.run([sys.executable, "-c", script], check=True)


def test_16bit_png_is_scaled_not_clipped(tmp_path):
    ramp = np.linspace(0, 65535, 40 * 64).round().astype(np.uint16).reshape(40, 64)
    grey = tmp_path / "grey16.png"
    Image.fromarray(ramp).save(grey)
    with Image.open(grey) as image:
        assert image.mode.startswith("I;16")
    loaded = load_image(grey)
    expected = np.round(ramp / 257).astype(np.uint8)
    for channel in range(3):
        np.testing.assert_array_equal(loaded.pixels[..., channel], expected)

    rgb = np.stack([ramp, ramp[::-1], 65535 - ramp], axis=-1)
    rows = b"".join(b"\x00" + row.astype(">u2").tobytes() for row in rgb)
    colour = tmp_path / "colour16.png"
    colour.write_bytes(png_bytes(64, 40, 16, 2, rows))
    loaded = load_image(colour)
    assert np.abs(loaded.pixels.astype(int) - np.round(rgb / 257)).max() <= 1


def test_float_tiff_in_unit_range_is_scaled(tmp_path):
    values = np.linspace(0, 1, 20 * 30, dtype=np.float32).reshape(20, 30)
    path = tmp_path / "float.tif"
    Image.fromarray(values, "F").save(path)
    loaded = load_image(path)
    assert loaded.format == "TIFF"
    np.testing.assert_array_equal(loaded.pixels[..., 1], np.round(values * 255).astype(np.uint8))


def test_cmyk_jpeg_becomes_rgb(tmp_path):
    upright = np.asarray(Image.fromarray(upright_picture()).resize((160, 100)))
    path = tmp_path / "print.jpg"
    path.write_bytes(encoded(Image.fromarray(upright).convert("CMYK"), "JPEG", quality=95))
    with Image.open(path) as image:
        assert image.mode == "CMYK"
    loaded = load_image(path, max_side=80)  # through the reduced-size decode too
    assert loaded.format == "JPEG"
    assert mean_abs_diff(load_image(path).pixels, upright) < 4
    reference = np.asarray(Image.fromarray(upright).resize((80, 50), Image.Resampling.LANCZOS))
    assert mean_abs_diff(loaded.pixels, reference) < 6


def test_transparency_is_composited_on_white(tmp_path):
    palette_image = Image.new("P", (30, 20), 0)
    palette_image.putpalette([255, 255, 255, 200, 30, 40, 10, 120, 220] + [0] * 759)
    palette_image.paste(1, (0, 0, 15, 20))  # left half red, right half transparent index 2
    palette_image.paste(2, (15, 0, 30, 20))
    for image_format in ("PNG", "GIF"):
        data = encoded(palette_image, image_format, transparency=2)
        pixels = load_image(data).pixels
        assert (pixels[:, :15] == (200, 30, 40)).all(), image_format
        assert (pixels[:, 15:] == 255).all(), image_format

    rgba = np.zeros((20, 30, 4), np.uint8)
    rgba[..., :3] = (0, 100, 200)
    rgba[..., 3] = np.linspace(0, 255, 30).round().astype(np.uint8)
    pixels = load_image(encoded(Image.fromarray(rgba, "RGBA"), "PNG")).pixels.astype(float)
    alpha = rgba[..., 3:] / 255
    expected = rgba[..., :3] * alpha + 255 * (1 - alpha)
    assert np.abs(pixels - expected).max() <= 1
    assert (pixels[:, 0] == 255).all()  # fully transparent: white, not the hidden blue

    grey_alpha = Image.fromarray(np.dstack([np.full((10, 10), 0, np.uint8)] * 2), "LA")
    assert (load_image(encoded(grey_alpha, "PNG")).pixels == 255).all()


def test_animated_gif_and_webp_give_the_first_frame():
    frames = [Image.new("RGB", (24, 16), colour) for colour in ((250, 0, 0), (0, 0, 250))]
    for image_format in ("GIF", "WEBP"):
        data = encoded(frames[0], image_format, save_all=True, append_images=frames[1:])
        with Image.open(io.BytesIO(data)) as image:
            assert image.n_frames == 2
        pixels = load_image(data).pixels.astype(int)
        assert np.abs(pixels - (250, 0, 0)).max() <= 8, image_format


# --- working resolution and coordinate mapping --------------------------------------------


def assert_box_recovered(loaded: LoadedImage, square: tuple[int, int, int, int]) -> None:
    """Find the dark square in the working pixels and map it back to the original photo."""
    darkness = 255 - loaded.pixels.mean(axis=2)
    ys, xs = np.nonzero(darkness > 110)  # half-way between the two levels
    working_box = (int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max()))
    original_box = loaded.to_original_box(working_box)
    # Each edge lands within one working pixel of the truth.
    assert np.abs(np.subtract(original_box, square)).max() <= loaded.scale + 1, original_box

    # The darkness-weighted centre is a sub-pixel measurement: it must map back precisely.
    # Background is the commonest level; resampling ringing just below it must weigh nothing.
    weights = np.clip(darkness - np.median(darkness), 0, None)
    grid_y, grid_x = np.mgrid[0 : weights.shape[0], 0 : weights.shape[1]]
    centre = [(weights * grid_x).sum() / weights.sum(), (weights * grid_y).sum() / weights.sum()]
    mapped = loaded.to_original_points(np.array([centre]))[0]
    true_centre = ((square[0] + square[2]) / 2, (square[1] + square[3]) / 2)
    assert np.abs(mapped - true_centre).max() < 0.15 * loaded.scale, (mapped, true_centre)


@pytest.mark.parametrize(
    ("image_format", "width", "height"),
    [
        ("PNG", 2003, 1501),
        # 1/8-size decode of 4001 px gives 501 px, the last one mostly padding: mapping back
        # must use the exact region the photo fills (500.125 px), or the centre is 4 px off.
        ("JPEG", 4001, 3001),
    ],
)
def test_max_side_shrinks_and_boxes_map_back_to_the_original(tmp_path, image_format, width, height):
    picture = np.full((height, width, 3), 235, np.uint8)
    square = (width * 3 // 10, height // 5, width * 6 // 10, height * 3 // 5)
    picture[square[1] : square[3] + 1, square[0] : square[2] + 1] = 20
    path = tmp_path / f"wide.{image_format.lower()}"
    Image.fromarray(picture).save(path, image_format)

    loaded = load_image(path, max_side=500)
    assert loaded.pixels.shape == (round(500 * height / width), 500, 3)
    assert loaded.original_size == (width, height)
    assert loaded.scale == pytest.approx(width / 500)
    assert_box_recovered(loaded, square)

    unshrunk = load_image(path, max_side=5000)
    assert unshrunk.scale == 1.0 and unshrunk.pixels.shape == picture.shape
    assert unshrunk.to_original_box((3, 4, 10, 20)) == (3, 4, 10, 20)
    np.testing.assert_array_equal(unshrunk.to_original_points([[3.0, 4.5]]), [[3.0, 4.5]])


def test_coordinate_mapping_follows_the_pixel_centre_convention():
    loaded = LoadedImage(
        pixels=np.zeros((10, 20, 3), np.uint8),
        original_size=(80, 30),  # 4x along x, 3x along y
        scale=4.0,
        format="PNG",
        source="synthetic",
    )
    # Working pixel 0 spans original [0, 4) x [0, 3): its centre is original (1.5, 1.0).
    np.testing.assert_allclose(loaded.to_original_points([[0, 0], [19, 9]]), [[1.5, 1], [77.5, 28]])
    # The whole working image maps to the whole original.
    assert loaded.to_original_box((0, 0, 19, 9)) == (0, 0, 79, 29)
    assert loaded.to_original_box((5, 2, 5, 2)) == (20, 6, 23, 8)
    assert loaded.to_original_box((-2, -1, 3, 4)) == (-8, -3, 15, 14)  # not clamped


# --- unreadable files: one error type, one line naming the file and the reason -------------


def test_truncated_files_raise_instead_of_loading_half_an_image(tmp_path):
    picture = Image.fromarray(upright_picture(200, 120))
    for image_format, suffix in (("JPEG", "jpg"), ("PNG", "png"), ("WEBP", "webp")):
        data = encoded(picture, image_format)
        path = tmp_path / f"cut.{suffix}"
        path.write_bytes(data[: len(data) * 6 // 10])
        assert load_error(path) == f"{path}: truncated {image_format}"
        assert load_error(path, max_side=50) == f"{path}: truncated {image_format}"

    stub = tmp_path / "stub.jpg"
    stub.write_bytes(encoded(picture, "JPEG")[:20])
    message = load_error(stub)
    assert message.startswith(f"{stub}: ") and "truncated JPEG" in message


def test_non_images_and_missing_files_are_named_with_the_reason(tmp_path):
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    assert load_error(empty) == f"{empty}: empty file (0 bytes)"
    with pytest.raises(ImageLoadError) as caught:
        load_image(empty)
    assert (caught.value.name, caught.value.reason) == (str(empty), "empty file (0 bytes)")
    copied = pickle.loads(pickle.dumps(caught.value))  # crosses process-pool boundaries
    assert str(copied) == str(caught.value) and copied.reason == caught.value.reason

    text = tmp_path / "holiday" / "IMG_1.jpg"
    text.parent.mkdir()
    text.write_text("These are my holiday notes, not a photo.\n" * 20)
    assert load_error(text) == f"{text}: not an image (text file)"

    html = b"<!DOCTYPE html><html><body>403 Forbidden</body></html>"
    assert (
        load_error(html, name="s3://bucket/a.jpg") == "s3://bucket/a.jpg: not an image (HTML page)"
    )

    video = b"\x00\x00\x00\x18ftypmp42" + bytes(64)
    assert load_error(video, name="clip.heic") == "clip.heic: not an image (MP4/QuickTime video)"

    missing = tmp_path / "gone.jpg"
    assert load_error(missing) == f"{missing}: no such file"
    assert load_error(tmp_path) == f"{tmp_path}: is a directory, not a file"

    noise = bytes(np.random.default_rng(1).integers(0, 256, 300, dtype=np.uint8))
    assert "not a recognised image format" in load_error(b"\x01" + noise)


def test_decompression_bombs_raise_image_load_error_without_pillow_warnings(tmp_path):
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_bytes(120000, 90000, 8, 2, rows=b"\x00" * 100))
    big = tmp_path / "big.png"  # 108 MP: over Pillow's warning threshold, under the default limit
    big.write_bytes(png_bytes(12000, 9000, 8, 2, rows=b"\x00" * 100))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a leaked DecompressionBombWarning would fail here
        message = load_error(bomb)
        assert message.startswith(f"{bomb}: image too large (") and "megapixels" in message
        # Within the limit, the header is accepted; its missing pixel data is then reported.
        assert load_error(big) == f"{big}: truncated PNG"
        assert load_error(big, max_pixels=50_000_000) == (
            f"{big}: image too large (12000x9000 pixels, limit 50 megapixels)"
        )

    small = encoded(Image.fromarray(upright_picture(200, 120)), "PNG")
    assert load_error(small, name="s.png", max_pixels=10_000) == (
        "s.png: image too large (200x120 pixels, limit 0.01 megapixels)"
    )
    assert load_image(small, max_pixels=None).pixels.shape == (120, 200, 3)

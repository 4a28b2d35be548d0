"""Reading images: every format a microscope PC produces, and a clear reason for every bad file."""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from leukviewer.core.analysis.imageio import (
    DEFAULT_MAX_PIXELS,
    IMAGE_SUFFIXES,
    UnreadableImage,
    list_images,
    read_image,
    read_image_scaled,
)



@pytest.fixture(scope="module")
def field_path(shared_data: Path) -> Path:
    return shared_data / "bccd" / "JPEGImages" / "BloodImage_00010.jpg"


@pytest.fixture(scope="module")
def field_rgb(field_path: Path) -> np.ndarray:
    return np.asarray(Image.open(field_path).convert("RGB"))


# ------------------------------------------------------------------- real files


def test_reads_every_real_fixture_format(shared_data: Path) -> None:
    samples = [
        next((shared_data / "bccd" / "JPEGImages").glob("*.jpg")),
        next((shared_data / "cnmc" / "training_data" / "fold_1" / "all").glob("*.png")),
        next((shared_data / "cnmc" / "original-bmp").glob("*.bmp")),
        next((shared_data / "pbc" / "neutrophil").glob("*.jpg")),
    ]
    for path in samples:
        rgb = read_image(path)
        assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3, path
        assert rgb.flags.c_contiguous
        expected = np.asarray(Image.open(path).convert("RGB"))
        np.testing.assert_array_equal(rgb, expected)


def test_bmp_and_its_png_copy_read_identically(shared_data: Path) -> None:
    bmp = next((shared_data / "cnmc" / "original-bmp").glob("*.bmp"))
    rgb = read_image(bmp)
    assert rgb.shape == (450, 450, 3)
    assert (rgb.max(axis=2) == 0).mean() > 0.5  # the C-NMC black background survives


# ------------------------------------------------------------------- odd but valid formats


def test_16_bit_grayscale_tiff_is_scaled_not_clipped(field_rgb, tmp_path) -> None:
    gray8 = np.asarray(Image.fromarray(field_rgb).convert("L"))
    gray16 = gray8.astype(np.uint16) * 257  # full 16-bit range
    path = tmp_path / "gray16.tif"
    Image.fromarray(gray16).save(path)
    assert Image.open(path).mode.startswith("I;16")
    rgb = read_image(path)
    assert rgb.shape == field_rgb.shape
    np.testing.assert_array_equal(rgb[..., 0], gray8)
    np.testing.assert_array_equal(rgb[..., 0], rgb[..., 2])


def test_16_bit_rgb_tiff_keeps_colour(field_rgb, tmp_path) -> None:
    import cv2

    rgb16 = field_rgb.astype(np.uint16) * 257
    path = tmp_path / "rgb16.tif"
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb16, cv2.COLOR_RGB2BGR))
    rgb = read_image(path)
    assert np.abs(rgb.astype(int) - field_rgb).max() <= 1


def test_rgba_png_drops_alpha(field_rgb, tmp_path) -> None:
    rgba = np.dstack([field_rgb, np.full(field_rgb.shape[:2], 0, np.uint8)])  # fully transparent
    path = tmp_path / "rgba.png"
    Image.fromarray(rgba, "RGBA").save(path)
    np.testing.assert_array_equal(read_image(path), field_rgb)


def test_grayscale_png_becomes_three_equal_channels(field_rgb, tmp_path) -> None:
    path = tmp_path / "gray.png"
    Image.fromarray(field_rgb).convert("L").save(path)
    rgb = read_image(path)
    assert rgb.shape == field_rgb.shape
    assert (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all()


def test_cmyk_jpeg_reads_as_rgb(field_rgb, tmp_path) -> None:
    path = tmp_path / "cmyk.jpg"
    Image.fromarray(field_rgb).convert("CMYK").save(path, quality=95)
    rgb = read_image(path)
    assert rgb.shape == field_rgb.shape
    assert np.abs(rgb.astype(int) - field_rgb).mean() < 6  # JPEG loss only, colours intact


def test_exif_orientation_is_applied(field_rgb, tmp_path) -> None:
    # Orientation 6: the camera held sideways; viewers rotate 90 degrees clockwise.
    path = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(field_rgb).save(path, quality=95, exif=exif)
    rgb = read_image(path)
    assert rgb.shape == (field_rgb.shape[1], field_rgb.shape[0], 3)
    expected = np.rot90(field_rgb, k=-1)
    assert np.abs(rgb.astype(int) - expected).mean() < 3


# ------------------------------------------------------------------- bad files


def _expect_unreadable(path: Path, *words: str, **kwargs) -> UnreadableImage:
    with pytest.raises(UnreadableImage) as caught:
        read_image(path, **kwargs)
    reason = caught.value.reason.lower()
    for word in words:
        assert word in reason, reason
    assert path.name in str(caught.value)
    return caught.value


def test_zero_byte_file(tmp_path) -> None:
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    _expect_unreadable(path, "empty")


def test_truncated_jpeg(field_path, tmp_path) -> None:
    data = field_path.read_bytes()
    path = tmp_path / "truncated.jpg"
    path.write_bytes(data[: len(data) // 2])
    _expect_unreadable(path, "truncated")


def test_truncated_png(field_rgb, tmp_path) -> None:
    whole = tmp_path / "whole.png"
    Image.fromarray(field_rgb).save(whole)
    path = tmp_path / "truncated.png"
    path.write_bytes(whole.read_bytes()[:5000])
    _expect_unreadable(path, "truncated")


def test_text_file_named_jpg(tmp_path) -> None:
    path = tmp_path / "notes.jpg"
    path.write_text("patient notes, not an image\n" * 20)
    _expect_unreadable(path, "not an image")


def test_one_pixel_image_is_too_small(tmp_path) -> None:
    path = tmp_path / "dot.png"
    Image.new("RGB", (1, 1), "white").save(path)
    _expect_unreadable(path, "1 x 1")


def test_missing_file(tmp_path) -> None:
    _expect_unreadable(tmp_path / "nowhere.png", "does not exist")


def _png_with_header_size(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width x height (a decompression bomb's shape)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit gray
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


def test_decompression_bomb_beyond_the_pixel_limit(tmp_path) -> None:
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_with_header_size(30_000, 30_000))  # 900 MP in a 100-byte file
    assert path.stat().st_size < 1000
    error = _expect_unreadable(path, "larger than the limit")
    assert "megapixels" in error.reason
    assert 30_000 * 30_000 > DEFAULT_MAX_PIXELS


def test_max_pixels_lowers_the_limit(field_path) -> None:
    assert read_image(field_path, max_pixels=640 * 480).shape == (480, 640, 3)
    _expect_unreadable(field_path, "640 x 480", max_pixels=640 * 480 - 1)


# ------------------------------------------------------------------- scaled reading


def test_read_image_scaled_limits_the_longer_side(field_rgb, tmp_path) -> None:
    big = np.asarray(Image.fromarray(field_rgb).resize((3200, 2400), Image.Resampling.BILINEAR))
    path = tmp_path / "big.jpg"
    Image.fromarray(big).save(path, quality=90)
    small, scale = read_image_scaled(path, 400)
    assert max(small.shape[:2]) <= 400 and small.shape[2] == 3
    assert scale == pytest.approx(small.shape[1] / 3200)
    reference = np.asarray(Image.fromarray(big).resize(small.shape[1::-1], Image.Resampling.BOX))
    assert np.abs(small.astype(int) - reference).mean() < 4


def test_read_image_scaled_keeps_small_images(field_path) -> None:
    rgb, scale = read_image_scaled(field_path, 1000)
    assert scale == 1.0 and rgb.shape == (480, 640, 3)


def test_read_image_scaled_still_refuses_bad_files(tmp_path) -> None:
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    with pytest.raises(UnreadableImage, match="empty"):
        read_image_scaled(path, 256)


# ------------------------------------------------------------------- folders


def test_list_images_sorted_and_skips_non_images(tmp_path) -> None:
    for name in ["b.JPG", "a.png", "C.tif", "notes.txt", ".hidden.png", "Thumbs.db"]:
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "d.bmp").write_bytes(b"x")
    images, skipped = list_images(tmp_path)
    assert [p.name for p in images] == ["a.png", "b.JPG", "C.tif"]
    assert [p.name for p in skipped] == ["notes.txt", "Thumbs.db"]
    images, _ = list_images(tmp_path, recursive=True)
    assert [p.relative_to(tmp_path).as_posix() for p in images] == [
        "a.png", "b.JPG", "C.tif", "sub/d.bmp",
    ]


def test_image_suffixes_cover_microscope_formats() -> None:
    assert {".bmp", ".png", ".jpg", ".jpeg", ".tif", ".tiff"} <= IMAGE_SUFFIXES

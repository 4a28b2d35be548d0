"""Reading microscope images into RGB arrays, with one clear error for anything unusable.

The one decoder of the project: the app (``leukviewer.core.analysis.imageio``) and training both read every image
through :func:`read_image` (or :func:`read_image_scaled` for previews of very large fields), so a cell is decoded alike
when a model learns from it and when it classifies it. The result is always an ``H x W x 3`` ``uint8`` RGB array
in display orientation; anything that cannot be turned into that raises :class:`UnreadableImage` whose message a
hematologist can act on.
"""

from __future__ import annotations

import os
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

__all__ = ["DEFAULT_MAX_PIXELS", "MIN_SIDE", "UnreadableImage", "read_image", "read_image_scaled"]

#: Largest image accepted, in pixels: PIL's own decompression-bomb limit (twice
#: ``Image.MAX_IMAGE_PIXELS``, about 179 megapixels), which stays on. ``max_pixels`` arguments
#: can lower it, never raise it.
DEFAULT_MAX_PIXELS: int = 2 * (Image.MAX_IMAGE_PIXELS or 89_478_485)

#: Smallest side accepted: below this there is no cell to see.
MIN_SIDE: int = 16


class UnreadableImage(Exception):
    """The file cannot be used as a microscope image; ``reason`` says why in plain words."""

    def __init__(self, reason: str, path: str | os.PathLike[str] | None = None) -> None:
        self.reason = reason
        self.path = None if path is None else Path(path)
        super().__init__(reason if path is None else f"{Path(path).name}: {reason}")


def _check_file(path: Path) -> None:
    if not path.exists():
        raise UnreadableImage("the file does not exist", path)
    if not path.is_file():
        raise UnreadableImage("this is a folder, not an image file", path)
    if path.stat().st_size == 0:
        raise UnreadableImage("the file is empty (0 bytes)", path)


def _open(path: Path, max_pixels: int) -> Image.Image:
    """Open lazily (header only) and apply the size checks before any pixel is decoded."""
    try:
        with warnings.catch_warnings():
            # PIL warns between its limit and twice it; we apply our own limit just below.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(path)
    except UnidentifiedImageError:
        raise UnreadableImage(
            "not an image, or an image format leukviewer cannot read "
            "(expected BMP, PNG, JPEG or TIFF)",
            path,
        ) from None
    except Image.DecompressionBombError:
        raise UnreadableImage(_too_large_reason(None, max_pixels), path) from None
    except OSError as error:
        raise UnreadableImage(f"the file could not be read ({error})", path) from None
    width, height = image.size
    if width * height > min(max_pixels, DEFAULT_MAX_PIXELS):
        image.close()
        raise UnreadableImage(_too_large_reason((width, height), max_pixels), path)
    if min(width, height) < MIN_SIDE:
        image.close()
        raise UnreadableImage(
            f"the image is only {width} x {height} pixels; at least {MIN_SIDE} pixels "
            "on each side are needed",
            path,
        )
    return image


def _too_large_reason(size: tuple[int, int] | None, max_pixels: int) -> str:
    limit = f"{min(max_pixels, DEFAULT_MAX_PIXELS) / 1e6:.0f} megapixels"
    if size is None:
        return f"the image is larger than the limit of {limit} (possible decompression bomb)"
    width, height = size
    return (
        f"the image is {width} x {height} pixels ({width * height / 1e6:.0f} megapixels), "
        f"larger than the limit of {limit}"
    )


def _decode(image: Image.Image, path: Path) -> Image.Image:
    """Decode fully; turn every decoder failure into UnreadableImage."""
    try:
        image.load()
        ImageOps.exif_transpose(image, in_place=True)   # no copy of the pixels when there is nothing to turn
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        text = str(error).lower()
        if "truncated" in text or "premature" in text or isinstance(error, EOFError):
            reason = "the file is truncated (incomplete download or copy?)"
        else:
            reason = f"the image data is damaged and cannot be decoded ({error})"
        raise UnreadableImage(reason, path) from None
    return image


def _to_rgb8(image: Image.Image) -> np.ndarray:
    """Any PIL mode to H x W x 3 uint8 RGB. Alpha is dropped, not composited."""
    mode = image.mode
    if mode == "RGB":
        rgb = _rgb_array(image)
    elif mode.startswith("I") or mode == "F":  # 16/32-bit gray: scale, do not clip
        rgb = _gray_to_rgb8(np.asarray(image))
    else:  # RGBA/LA/PA (alpha dropped), P, L, 1, CMYK (inverted Adobe JPEGs handled by PIL)...
        try:
            rgb = _rgb_array(image.convert("RGB"))
        except (OSError, ValueError) as error:
            raise UnreadableImage(f"unsupported pixel format {mode!r} ({error})") from None
    if rgb.ndim == 2:
        rgb = np.repeat(rgb[:, :, None], 3, axis=2)
    return np.ascontiguousarray(rgb)


def _rgb_array(image: Image.Image) -> np.ndarray:
    """An RGB PIL image's pixels as a read-only H x W x 3 uint8 array: its raw bytes, as they are (numpy's array
    interface on a PIL image costs ~2.5x more: 17 vs 7 ms a 2592x1944 field)."""
    return np.frombuffer(image.tobytes(), np.uint8).reshape(image.height, image.width, 3)


def _gray_to_rgb8(values: np.ndarray) -> np.ndarray:
    """16-bit or 32-bit gray to 8 bit, scaled by the bit depth the data really uses: a 12-bit camera's 0-4095
    stored in a 16-bit file is divided by 4095, not 65535 (which would leave it nearly black). Brightness is kept
    (no contrast stretch), so an under-exposed field still looks under-exposed."""
    values = np.asarray(values)
    if values.dtype == np.uint16 or (values.dtype.kind in "iu" and values.max(initial=0) > 255):
        bits = max(8, int(values.max(initial=0)).bit_length())
        scaled = values.astype(np.float32) * (255.0 / float((1 << bits) - 1))
    elif values.dtype.kind == "f":
        low, high = float(np.nanmin(values)), float(np.nanmax(values))
        if high <= 1.0 and low >= 0.0:
            scaled = values * 255.0
        else:
            scaled = (values - low) * (255.0 / max(high - low, 1e-6))
    else:
        scaled = values.astype(np.float32)
    gray = np.clip(np.rint(scaled), 0, 255).astype(np.uint8)
    return np.repeat(gray[:, :, None], 3, axis=2)


def read_image(
    path: str | os.PathLike[str], *, max_pixels: int = DEFAULT_MAX_PIXELS
) -> np.ndarray:
    """Read a BMP/PNG/JPEG/TIFF file as an ``H x W x 3`` uint8 RGB array.

    Handles RGBA (alpha dropped), palette, grayscale, 16-bit (scaled to 8-bit), CMYK JPEG and
    EXIF orientation (the array is in display orientation). Raises :class:`UnreadableImage`
    for a missing, empty, truncated, corrupt, non-image, too small (< ``MIN_SIDE`` px) or too
    large (> ``max_pixels``) file.
    """
    path = Path(path)
    _check_file(path)
    image = _open(path, max_pixels)
    with _naming(path, image):
        image = _decode(image, path)
        return _to_rgb8(image)


@contextmanager
def _naming(path: Path, image):
    """Errors raised while decoding ``image`` name ``path``; the file is closed whatever happens."""
    try:
        yield
    except UnreadableImage as error:
        if error.path is None:
            raise UnreadableImage(error.reason, path) from None
        raise
    finally:
        image.close()


def read_image_scaled(
    path: str | os.PathLike[str],
    max_side: int,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> tuple[np.ndarray, float]:
    """Read an image so that its longer side is at most ``max_side`` pixels.

    Returns ``(rgb, scale)`` where ``scale`` is output pixels per file pixel (1.0 when the
    image is already small enough). JPEGs are decoded at reduced resolution by the decoder
    itself (``Image.draft``) and other formats with ``Image.reduce``, so a 100-megapixel
    field is never held at full resolution. The same errors as :func:`read_image` apply.
    """
    if max_side < MIN_SIDE:
        raise ValueError(f"max_side must be at least {MIN_SIDE}")
    path = Path(path)
    _check_file(path)
    image = _open(path, max_pixels)
    with _naming(path, image):
        full_w, full_h = image.size
        if max(full_w, full_h) > max_side and image.format == "JPEG":
            # The decoder scales by 1/2, 1/4 or 1/8 while decoding: a big saving for huge files.
            image.draft("RGB", (max(1, full_w * max_side // max(full_w, full_h)),
                                max(1, full_h * max_side // max(full_w, full_h))))
        image = _decode(image, path)
        # After exif_transpose the sides may be swapped; the scale is orientation-free.
        longest_full = max(full_w, full_h)
        factor = max(image.size) / max_side
        if factor >= 2 and image.mode not in ("P", "1"):
            image = image.reduce(int(factor))  # cheap box filter by a whole factor first
        if max(image.size) > max_side:
            ratio = max_side / max(image.size)
            size = (max(1, round(image.size[0] * ratio)), max(1, round(image.size[1] * ratio)))
            image = image.resize(size, Image.Resampling.LANCZOS if image.mode in
                                 ("RGB", "L", "RGBA") else Image.Resampling.NEAREST)
        rgb = _to_rgb8(image)
    scale = max(rgb.shape[0], rgb.shape[1]) / longest_full
    return rgb, min(scale, 1.0)

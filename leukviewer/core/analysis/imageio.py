"""Reading microscope images into RGB arrays, with one clear error for anything unusable, and finding them in a
folder.

Every image that reaches the rest of leukviewer passes through :func:`read_image` (or
:func:`read_image_scaled` for previews of very large fields): the result is always an
``H x W x 3`` ``uint8`` RGB array in display orientation. Anything that cannot be turned
into that raises :class:`UnreadableImage` whose message a hematologist can act on. The decoder itself lives in
``training.imageio`` (the lower layer), so that training and the app decode every image alike; this module adds
what only the app needs: the folder listing and the greyscale check.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from training.imageio import DEFAULT_MAX_PIXELS, MIN_SIDE, UnreadableImage, read_image, read_image_scaled

__all__ = [
    "IMAGE_SUFFIXES",
    "DEFAULT_MAX_PIXELS",
    "MIN_SIDE",
    "UnreadableImage",
    "read_image",
    "read_image_scaled",
    "greyscale_reason",
    "list_images",
]

#: File suffixes treated as images when scanning a folder (lower case, with the dot).
IMAGE_SUFFIXES: frozenset[str] = frozenset(
    {".bmp", ".png", ".jpg", ".jpeg", ".jpe", ".tif", ".tiff"}
)


def greyscale_reason(rgb: np.ndarray) -> str | None:
    """Why an image cannot be analysed when it holds no colour (None when it does).

    White cells are found by the violet of their stained nuclei and classified on colour images, so a greyscale
    field (an 8- or 16-bit grey file, or a colour file of a grey image) would only ever give "no cells".
    """
    from training.preprocess import channel_max, channel_min, percentiles_of_counts

    rgb = np.asarray(rgb)
    step = max(1, int(np.sqrt(rgb.shape[0] * rgb.shape[1] / 250_000)))
    sample = rgb[::step, ::step]
    brightest = channel_max(sample)
    lit = brightest > 20              # a cell on black (C-NMC): judge the cell, not the background
    if int(np.count_nonzero(lit)) < 100:
        return None
    chroma = (brightest - channel_min(sample))[lit]
    if chroma.dtype == np.uint8:      # the 99.5th percentile read off a histogram: the same value, faster
        high = float(percentiles_of_counts(np.bincount(chroma, minlength=256), (99.5,))[0])
    else:
        high = float(np.percentile(chroma.astype(np.int16), 99.5))
    if high > 6:
        return None
    return ("the image is greyscale: white cells are found and classified by the colours of their stain "
            "(May-Grünwald-Giemsa / Wright), so a grey image cannot be analysed; scan or export the slide in colour")


def list_images(
    folder: str | os.PathLike[str], recursive: bool = False
) -> tuple[list[Path], list[Path]]:
    """Image files in ``folder`` and the other files that were skipped.

    Returns ``(images, skipped)``, both sorted by their path relative to ``folder`` compared
    case-insensitively (then exactly, to break ties), so the order is the same on every
    platform. Hidden files (``.name``) and folders are ignored; files are judged by suffix.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise NotADirectoryError(f"{folder} is not a folder")
    candidates = folder.rglob("*") if recursive else folder.iterdir()
    images: list[Path] = []
    skipped: list[Path] = []
    for entry in candidates:
        relative = entry.relative_to(folder)
        if any(part.startswith(".") for part in relative.parts):
            continue
        if not entry.is_file():
            continue
        (images if entry.suffix.lower() in IMAGE_SUFFIXES else skipped).append(entry)

    def order(item: Path) -> tuple[str, str]:
        text = item.relative_to(folder).as_posix()
        return text.lower(), text

    return sorted(images, key=order), sorted(skipped, key=order)

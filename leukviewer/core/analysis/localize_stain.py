"""A smear field's stain and its red cells: the colour references every later step is measured against, and the
red-cell diameter that sets the scale of everything (step 1 of ``localize``'s method; no Qt, no TensorFlow).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from training.preprocess import percentiles_of_counts

#: Pixels of the first preview on which the red-cell diameter is measured ...
PREVIEW_PIXELS = 60_000
#: ... the red-cell diameter (pixels) at which the measure is most reliable ...
PREVIEW_RBC_DIAMETER = 38.0
#: ... and the largest preview used to reach it.
MAX_PREVIEW_PIXELS = 8_000_000
MIN_WINDOW_SIDE = 256  # smallest window of a huge field on which red cells are measured
#: Largest preview on which a field's red cells are measured again when the first measure was far off.
MAX_REMEASURE_PIXELS = 125_000


def as_rgb(rgb: np.ndarray) -> np.ndarray:
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected an H x W x 3 uint8 RGB image, got {rgb.shape} {rgb.dtype}")
    return rgb


def downscaled(rgb: np.ndarray, max_pixels: int) -> tuple[np.ndarray, float]:
    """Downscale (area-averaged) so the image has at most ``max_pixels`` pixels."""
    h, w = rgb.shape[:2]
    scale = min(1.0, float(np.sqrt(max_pixels / float(h * w))))
    if scale >= 1.0:
        return rgb, 1.0
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA), size[0] / w


def disc(diameter: float) -> np.ndarray:
    size = max(1, int(round(diameter)))
    size += 1 - size % 2
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))


@dataclass
class Stain:
    """Per-field colour references, measured on the working image."""

    background: np.ndarray  # mean RGB of the background (float32, 3)
    violet: np.ndarray  # white-balanced blue minus green, float32 HxW
    stained: np.ndarray  # white-balanced darkness of the green channel, float32 HxW
    redness: np.ndarray  # white-balanced red minus blue, float32 HxW


def _counts(channel: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """How many pixels of an 8-bit channel (where ``mask``) hold each value 0..255."""
    m = None if mask is None else mask.view(np.uint8)
    return cv2.calcHist([np.ascontiguousarray(channel)], [0], m, [256], [0, 256]).ravel()


def measure_stain(rgb: np.ndarray) -> Stain:
    rgb = as_rgb(rgb)
    # Each channel once, contiguous (OpenCV's split): a strided channel costs a copy at every use.
    channels = cv2.split(np.ascontiguousarray(rgb))
    # Background: the brightest, greyest part of the field (between the red cells). The percentiles and the
    # median are read off the 8-bit values' counts (``percentiles_of_counts``): numpy's figures, without the sorts.
    brightness = channels[1]
    chroma = cv2.subtract(cv2.max(cv2.max(channels[0], channels[1]), channels[2]),
                          cv2.min(cv2.min(channels[0], channels[1]), channels[2]))
    bright = brightness >= percentiles_of_counts(_counts(brightness), 75)
    grey = chroma <= percentiles_of_counts(_counts(chroma, bright), 50) if bright.any() else bright
    candidates = bright & grey
    if np.count_nonzero(candidates) < 50:
        candidates = bright
    background = np.array([percentiles_of_counts(_counts(channel, candidates), 50) for channel in channels],
                          np.float32)
    background = np.maximum(background, 1.0)
    gain = 200.0 / background  # white balance to a neutral grey background of 200
    # value * gain of every 8-bit value, looked up: the very float32 products, without a float copy of the field
    levels = np.arange(256, dtype=np.float32)
    red, green, blue = (cv2.LUT(channel, (levels * g).reshape(1, 256)) for channel, g in zip(channels, gain))
    return Stain(
        background=background,
        violet=blue - green,
        stained=200.0 - green,
        redness=red - blue,
    )


def _rbc_diameter_from_stain(stain: Stain) -> tuple[float, int] | None:
    """Median red-cell diameter (pixels) and the number of red cells it was measured on.

    Red cells are the round stained objects of a field: a circle Hough transform on the
    stain image finds them whether they are pale, have a central pallor or lie in clumps.
    """
    image = cv2.GaussianBlur(np.clip(stain.stained * 2.0, 0, 255).astype(np.uint8), (0, 0), 1.0)
    side = min(image.shape)
    circles = cv2.HoughCircles(
        image,
        cv2.HOUGH_GRADIENT_ALT,
        dp=1.5,
        minDist=side / 20.0,
        param1=60,
        param2=0.8,
        minRadius=3,
        maxRadius=max(4, side // 4),
    )
    if circles is None or len(circles[0]) < 3:
        return None
    return float(2.0 * np.median(circles[0, :, 2])), int(len(circles[0]))


def holes(mask: np.ndarray) -> np.ndarray:
    """Pixels of enclosed holes of a 0/1 mask (not connected to the image border)."""
    inverse = (mask == 0).astype(np.uint8)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(inverse, connectivity=4)
    if count <= 1:
        return np.zeros_like(mask)
    x, y, w, h = (stats[:, i] for i in range(4))
    height, width = mask.shape
    touches = (x == 0) | (y == 0) | (x + w == width) | (y + h == height)
    hole_label = ~touches
    hole_label[0] = False
    return hole_label[labels].astype(np.uint8)


def estimate_rbc_diameter(rgb: np.ndarray) -> float | None:
    """Typical red-cell diameter of a smear field in image pixels, or ``None`` if unmeasurable.

    Measured on a small preview first, then again on a preview resampled so that red cells
    are about ``PREVIEW_RBC_DIAMETER`` pixels across when the first measure was far from it
    (other magnifications, whole-slide tiles) or failed.
    """
    rgb = as_rgb(rgb)
    height, width = rgb.shape[:2]
    if height * width > 2 * MAX_PREVIEW_PIXELS:
        return _rbc_diameter_of_samples(rgb)
    small, scale = downscaled(rgb, PREVIEW_PIXELS)
    measured = _rbc_diameter_from_stain(measure_stain(small))
    if measured is None:
        measured, scale = _nearby_measure(rgb, scale)
    for _ in range(2):
        low, high = PREVIEW_RBC_DIAMETER / 1.6, PREVIEW_RBC_DIAMETER * 1.6
        if measured is not None and low <= measured[0] <= high:
            break
        wanted = scale * (PREVIEW_RBC_DIAMETER / measured[0] if measured else 4.0)
        wanted = min(1.0, wanted, float(np.sqrt(MAX_PREVIEW_PIXELS / float(height * width))))
        if abs(wanted - scale) < 0.05 * scale:
            break
        small, scale = _central_preview(rgb, wanted)
        measured = _rbc_diameter_from_stain(measure_stain(small))
    if measured is None or measured[0] < 8.0:
        return None
    return measured[0] / scale


def _nearby_measure(rgb: np.ndarray, scale: float) -> tuple[tuple[float, int] | None, float]:
    """A second look when the usual preview found too few red-cell circles: the preview a little smaller, then a
    little larger. Red cells packed edge to edge (a thick area, a higher magnification) can hide their outlines at
    one preview size and show them at the next; jumping to a far larger preview instead finds only the small bright
    dots inside them (two BCCD fields of ~100-px red cells measured 23 px that way). (measure, its scale), or
    (None, ``scale``) when neither helps."""
    for factor in (0.8, 1.25):
        wanted = min(1.0, scale * factor)
        if abs(wanted - scale) < 0.05 * scale:
            continue
        small, got = _central_preview(rgb, wanted)
        measured = _rbc_diameter_from_stain(measure_stain(small))
        if measured is not None:
            return measured, got
    return None, scale


def _central_preview(rgb: np.ndarray, scale: float) -> tuple[np.ndarray, float]:
    """The field resampled by ``scale`` (area-averaged), or, when that preview would exceed ``MAX_REMEASURE_PIXELS``,
    its central window of that many preview pixels (same shape as the field): ~85 red cells at 38 px, which measure
    their diameter as well as the whole field does at a fraction of the cost (a 2592x1944 field: ~0.5 s of CPU on
    the whole, 125 ms on 250,000 preview pixels, 87 ms on 125,000; on 48 such fields the spread of the measure was
    the same, 4.7 and 4.4 px of ~60).
    Returns (preview, preview pixels per image pixel)."""
    height, width = rgb.shape[:2]
    share = min(1.0, float(np.sqrt(MAX_REMEASURE_PIXELS / (height * width * scale * scale))))
    if share < 1.0:
        win_h, win_w = max(1, round(height * share)), max(1, round(width * share))
        y0, x0 = (height - win_h) // 2, (width - win_w) // 2
        rgb = rgb[y0:y0 + win_h, x0:x0 + win_w]
        height, width = win_h, win_w
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA), size[0] / width


def _rbc_diameter_of_samples(rgb: np.ndarray) -> float | None:
    """The red-cell diameter of a huge field, measured at full resolution on five windows (centre and the
    quadrants' centres) and their median taken: a preview of the whole would shrink its red cells below what can
    be measured, and the magnification is the same all over a field."""
    height, width = rgb.shape[:2]
    side = int(np.sqrt(MAX_PREVIEW_PIXELS / 8))   # 1000 px: hundreds of red cells at usual magnifications
    found = []
    for fx, fy in ((0.5, 0.5), (0.25, 0.25), (0.75, 0.25), (0.25, 0.75), (0.75, 0.75)):
        x0 = int(np.clip(fx * width - side / 2, 0, max(0, width - side)))
        y0 = int(np.clip(fy * height - side / 2, 0, max(0, height - side)))
        window = np.ascontiguousarray(rgb[y0:y0 + side, x0:x0 + side])
        if min(window.shape[:2]) >= MIN_WINDOW_SIDE:
            measured = estimate_rbc_diameter(window)
            if measured is not None:
                found.append(measured)
    return float(np.median(found)) if found else None

"""Finding white blood cells in microscope images (OpenCV; no Qt, no TensorFlow).

Two kinds of input reach leukviewer:

* ``"single_cell"`` — a C-NMC-style crop: one cell on a pure black background.
  :func:`find_single_cell` returns the non-black region.
* ``"smear_field"`` — a stained peripheral-smear field (bright background, many red cells,
  some white cells; PBC crops are small fields with one white cell in the middle).
  :func:`find_white_cells` finds every white cell.

How white cells are found in a field (all sizes are relative to the red-cell diameter
measured in the same field, so other magnifications work):

1. The red-cell diameter is measured on a small preview (:func:`estimate_rbc_diameter`) and
   the field is resampled so that a red cell is ``WORK_RBC_DIAMETER`` pixels across; very
   large fields are therefore processed at a bounded size and coordinates mapped back.
2. Nuclei of white cells are the only objects both violet and dark (Romanowsky stains): the
   white-balanced min(blue - green, darkness) is thresholded (Otsu with a floor, hysteresis).
3. Nucleus lobes closer than ``lobe_gap`` red cells are one cell (segmented neutrophils).
   A group too large for one cell is split by a distance-transform watershed, kept only if
   each part holds a whole nucleus and the parts meet at a narrow waist (two touching
   cells), so lobed or granular cells (eosinophils) are not cut up. Then touching cells
   (two side by side, clumps of blasts) are told apart: round nuclei at least ~1 red cell
   thick and ``touch_peak_distance`` apart seed a flood of the group, kept only where every
   part is one compact nucleus and the parts meet at a waist (``touch_*`` in ``PARAMS``).
4. Violet objects that are small (platelets), thin (red-cell edge fringes, platelet clumps)
   or faint are dropped.
5. The outline is the nucleus hull plus the cytoplasm around it: stained pixels clearly
   less red than the field's red cells, shared out between neighbouring nuclei by a flood
   from each nucleus (watershed), opened, and with holes filled.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from training.preprocess import channel_max, channel_min

__all__ = [
    "CellRegion",
    "ImageKind",
    "classify_image_kind",
    "crop_cell",
    "estimate_rbc_diameter",
    "find_cells",
    "find_single_cell",
    "find_white_cells",
]

ImageKind = str  # "single_cell" | "smear_field"

#: Red-cell diameter, in pixels, at which fields are analysed.
WORK_RBC_DIAMETER = 40.0
#: Upper bound on the pixels of the working image (bounded memory for whole-slide tiles).
MAX_WORK_PIXELS = 8_000_000
#: Pixels of the first preview on which the red-cell diameter is measured ...
PREVIEW_PIXELS = 60_000
#: ... the red-cell diameter (pixels) at which the measure is most reliable ...
PREVIEW_RBC_DIAMETER = 38.0
#: ... and the largest preview used to reach it.
MAX_PREVIEW_PIXELS = 8_000_000
#: Red-cell diameter assumed when a field holds too few red cells to measure (relative to
#: the shorter image side; a BCCD field is 480 px high with ~100 px red cells).
FALLBACK_RBC_FRACTION = 0.2

#: Side, in working pixels, of the overlapping tiles a field too large to analyse whole at the working scale is
#: cut into (each tile is analysed at full working resolution, so memory stays bounded by the tile, not the field).
TILE_WORK_SIDE = 2048
#: Overlap of neighbouring tiles in red-cell diameters: more than a white cell with its margin, so every cell lies
#: whole in the tile whose core holds its centre, and is kept there only (no duplicate across seams).
TILE_OVERLAP_RBC = 4.0

MIN_WINDOW_SIDE = 256  # smallest window of a huge field on which red cells are measured

_NEAR_BLACK = 20  # max channel value of the C-NMC background
_SINGLE_CELL_BLACK_FRACTION = 0.40


@dataclass(frozen=True, eq=False)
class CellRegion:
    """One cell in image pixel coordinates (of the image passed in).

    ``bbox`` is ``(x, y, w, h)`` of the outline; ``outline`` an ``N x 2`` int32 polygon of
    ``(x, y)`` points; ``centroid`` ``(x, y)`` of the outline's area; ``area`` and
    ``nucleus_area`` in pixels; ``partial`` is true when the cell touches the image border
    (part of it is outside the field). No mask is stored: draw the outline when one is needed.
    """

    bbox: tuple[int, int, int, int]
    outline: np.ndarray = field(repr=False)
    centroid: tuple[float, float]
    area: int
    nucleus_area: int
    partial: bool

    def __post_init__(self) -> None:
        outline = np.ascontiguousarray(self.outline, dtype=np.int32).reshape(-1, 2)
        outline.setflags(write=False)
        object.__setattr__(self, "outline", outline)

    def mask(self, shape: tuple[int, ...]) -> np.ndarray:
        """A ``uint8`` mask (255 inside the outline) of an image of ``shape`` (H, W, ...)."""
        mask = np.zeros(shape[:2], np.uint8)
        cv2.fillPoly(mask, [self.outline.reshape(-1, 1, 2)], 255)
        return mask


# --------------------------------------------------------------------------- image kind


def _as_rgb(rgb: np.ndarray) -> np.ndarray:
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected an H x W x 3 uint8 RGB image, got {rgb.shape} {rgb.dtype}")
    return rgb


def _small(rgb: np.ndarray, max_pixels: int) -> tuple[np.ndarray, float]:
    """Downscale (area-averaged) so the image has at most ``max_pixels`` pixels."""
    h, w = rgb.shape[:2]
    scale = min(1.0, float(np.sqrt(max_pixels / float(h * w))))
    if scale >= 1.0:
        return rgb, 1.0
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA), size[0] / w


def classify_image_kind(rgb: np.ndarray) -> ImageKind:
    """``"single_cell"`` for a cell on a black background (C-NMC), else ``"smear_field"``.

    A C-NMC crop is mostly pure black (about 80 %) around one cell; a smear field (BCCD, or a
    PBC crop with its red cells) has a bright background.
    """
    small, _ = _small(_as_rgb(rgb), 250_000)
    black = channel_max(small) <= _NEAR_BLACK
    return "single_cell" if black.mean() > _SINGLE_CELL_BLACK_FRACTION else "smear_field"


# --------------------------------------------------------------------------- regions


def _region_from_mask(
    mask: np.ndarray,
    scale: float,
    image_shape: tuple[int, int],
    nucleus_area: float,
    offset: tuple[int, int] = (0, 0),
    touches_border: bool | None = None,
) -> CellRegion | None:
    """Outline of a (window of a) working-scale mask, in image coordinates.

    ``scale`` is working pixels per image pixel; ``offset`` the window's (x, y) in the
    working image; ``touches_border`` overrides the border test on the mask itself.
    """
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    if not contours:
        return None
    contour = max(contours, key=cv2.contourArea)
    points = contour.reshape(-1, 2).astype(np.float64) + np.asarray(offset, np.float64)
    if scale != 1.0:
        # Pixel centres: working pixel i covers image pixels [i/scale, (i+1)/scale).
        points = (points + 0.5) / scale - 0.5
    height, width = image_shape
    points[:, 0] = np.clip(np.rint(points[:, 0]), 0, width - 1)
    points[:, 1] = np.clip(np.rint(points[:, 1]), 0, height - 1)
    outline = points.astype(np.int32)
    x, y, w, h = cv2.boundingRect(outline.reshape(-1, 1, 2))
    moments = cv2.moments(outline.reshape(-1, 1, 2).astype(np.float32))
    if moments["m00"] > 0:
        centroid = (moments["m10"] / moments["m00"], moments["m01"] / moments["m00"])
    else:
        centroid = (x + w / 2.0, y + h / 2.0)
    area = int(round(np.count_nonzero(mask) / scale**2))
    if touches_border is None:
        touches_border = bool(
            mask[0, :].any() or mask[-1, :].any() or mask[:, 0].any() or mask[:, -1].any()
        )
    partial = bool(touches_border)
    return CellRegion(
        bbox=(int(x), int(y), int(w), int(h)),
        outline=outline,
        centroid=(round(float(centroid[0]), 2), round(float(centroid[1]), 2)),
        area=area,
        nucleus_area=min(area, int(round(nucleus_area / scale**2))),
        partial=partial,
    )


def find_single_cell(rgb: np.ndarray) -> CellRegion | None:
    """The cell of a C-NMC-style crop: the largest connected non-black region.

    Returns ``None`` when the image is entirely black. ``nucleus_area`` is 0: the stain
    normalisation of these crops does not separate nucleus and cytoplasm reliably.
    """
    rgb = _as_rgb(rgb)
    foreground = (channel_max(rgb) > _NEAR_BLACK).astype(np.uint8)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(foreground, connectivity=8)
    if count <= 1:
        return None
    largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    mask = (labels == largest).astype(np.uint8) * 255
    return _region_from_mask(mask, 1.0, rgb.shape[:2], 0.0)


# --------------------------------------------------------------------------- smear fields


@dataclass
class _Stain:
    """Per-field colour references, measured on the working image."""

    background: np.ndarray  # mean RGB of the background (float32, 3)
    violet: np.ndarray  # white-balanced blue minus green, float32 HxW
    stained: np.ndarray  # white-balanced darkness of the green channel, float32 HxW
    redness: np.ndarray  # white-balanced red minus blue, float32 HxW


def _measure_stain(rgb: np.ndarray) -> _Stain:
    image = rgb.astype(np.float32)
    red, green, blue = image[..., 0], image[..., 1], image[..., 2]
    # Background: the brightest, greyest part of the field (between the red cells).
    brightness = green
    chroma = channel_max(image) - channel_min(image)
    bright = brightness >= np.percentile(brightness, 75)
    grey = chroma <= np.percentile(chroma[bright], 50) if bright.any() else bright
    candidates = bright & grey
    if candidates.sum() < 50:
        candidates = bright
    background = np.median(image[candidates], axis=0).astype(np.float32)
    background = np.maximum(background, 1.0)
    gain = 200.0 / background  # white balance to a neutral grey background of 200
    red, green, blue = red * gain[0], green * gain[1], blue * gain[2]
    return _Stain(
        background=background,
        violet=blue - green,
        stained=200.0 - green,
        redness=red - blue,
    )


def _rbc_diameter_from_stain(stain: _Stain) -> tuple[float, int] | None:
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


def _holes(mask: np.ndarray) -> np.ndarray:
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
    rgb = _as_rgb(rgb)
    height, width = rgb.shape[:2]
    if height * width > 2 * MAX_PREVIEW_PIXELS:
        return _rbc_diameter_of_samples(rgb)
    small, scale = _small(rgb, PREVIEW_PIXELS)
    measured = _rbc_diameter_from_stain(_measure_stain(small))
    for _ in range(2):
        low, high = PREVIEW_RBC_DIAMETER / 1.6, PREVIEW_RBC_DIAMETER * 1.6
        if measured is not None and low <= measured[0] <= high:
            break
        wanted = scale * (PREVIEW_RBC_DIAMETER / measured[0] if measured else 4.0)
        wanted = min(1.0, wanted, float(np.sqrt(MAX_PREVIEW_PIXELS / float(height * width))))
        if abs(wanted - scale) < 0.05 * scale:
            break
        size = (max(1, round(width * wanted)), max(1, round(height * wanted)))
        small = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
        scale = size[0] / width
        measured = _rbc_diameter_from_stain(_measure_stain(small))
    if measured is None or measured[0] < 8.0:
        return None
    return measured[0] / scale


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


def _disc(diameter: float) -> np.ndarray:
    size = max(1, int(round(diameter)))
    size += 1 - size % 2
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))


def _nucleus_mask(stain: _Stain, rbc: float) -> np.ndarray:
    """Violet (nucleus) pixels, 0/255 uint8, before grouping."""
    # Nuclei are violet AND dark; the bluish cytoplasm of some cells is violet but pale, the
    # red cells are dark but not violet.
    score = cv2.GaussianBlur(
        np.minimum(stain.violet, stain.stained), (0, 0), max(0.6, rbc / 60.0)
    )
    values = np.clip(score * 2.0, 0, 255).astype(np.uint8)
    otsu, _ = cv2.threshold(values, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    # The floor keeps Otsu from splitting noise in fields without any white cell.
    high = max(otsu / 2.0, PARAMS["nucleus_floor"])
    low = max(high * PARAMS["nucleus_low"], 30.0)
    strong = (score > high).astype(np.uint8)
    weak = (score > low).astype(np.uint8)
    # Hysteresis: keep weak components that contain a strong pixel.
    count, labels = cv2.connectedComponents(weak, connectivity=8)
    has_strong = np.zeros(count, bool)
    has_strong[labels[strong > 0]] = True
    has_strong[0] = False
    mask = has_strong[labels].astype(np.uint8) * 255
    mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, _disc(rbc * 0.06))
    return mask


def _cytoplasm_mask(stain: _Stain, rbc: float) -> np.ndarray:
    """Stained but not red-cell-coloured pixels (white-cell cytoplasm), 0/255 uint8."""
    stained = cv2.GaussianBlur(stain.stained, (0, 0), max(0.8, rbc / 40.0))
    redness = cv2.GaussianBlur(stain.redness, (0, 0), max(0.8, rbc / 40.0))
    # Red cells are the bulk of the stained, non-violet pixels; cytoplasm is clearly bluer
    # than they are. Where the camera renders red cells barely red (PBC: the red channel is
    # saturated on a cream background) the limit follows the field's own red cells.
    red_cells = (stain.stained > 25.0) & (stain.violet < 25.0)
    typical = float(np.median(stain.redness[red_cells])) if red_cells.any() else 20.0
    limit = min(PARAMS["cyto_redness"], typical - PARAMS["cyto_margin"])
    mask = (stained > 10.0) & (redness < limit)
    return mask.astype(np.uint8) * 255


#: Tunable values. Sizes are relative to the measured red-cell diameter ``rbc`` (the Hough
#: measure; a BCCD white cell is 1.4-3.6 of it across, median 2.4); colours are in
#: white-balanced 8-bit units (background = 200 grey). Tuned on the 364 BCCD fields.
PARAMS = {
    "nucleus_floor": 45.0,  # nucleus score (white-balanced) is at least this ...
    "nucleus_low": 0.75,  # ... and nucleus pixels connected to those at least this of it
    "lobe_gap": 0.2,  # nucleus lobes closer than this belong to one cell
    "min_nucleus": 0.6,  # in red-cell areas; platelets are ~0.1-0.4
    "min_thickness": 0.44,  # the thickest nucleus lobe is at least this wide
    "min_violet": 60.0,  # 90th percentile of the nucleus's white-balanced blue minus green
    "split_extent": 3.0,  # a nucleus group wider than this may be two cells
    "split_area": 7.0,  # ... or with more nucleus than this (red-cell areas)
    "split_peak_distance": 1.1,  # nucleus centres of two cells are at least this far apart
    "split_min_thickness": 0.2,  # ... and each nucleus is at least this thick (2 x radius)
    "split_min_part": 1.2,  # ... and holds at least this much nucleus (red-cell areas)
    "split_neck": 0.7,  # ... and the two meet at a waist thinner than this of each
    "touch_peak_distance": 0.8,  # touching cells: round nuclei whose centres are this far apart ...
    "touch_min_thickness": 1.1,  # ... at least this thick (a segmented neutrophil's lobes are thinner)
    "touch_min_part": 1.5,  # ... each holding this much nucleus (red-cell areas) ...
    "touch_solidity": 0.7,  # ... as one compact mass (this much of its convex hull; lobes and granules are not)
    "touch_neck": 0.5,  # ... meeting at a waist thinner than this of either nucleus
    "cyto_redness": 8.0,  # white-cell cytoplasm is less red than this (red minus blue) ...
    "cyto_margin": 8.0,  # ... and than the field's typical red cell by this much
    "reach": 1.0,  # cytoplasm extends at most this far beyond the nucleus hull
}


def _split_group(group: np.ndarray, nucleus: np.ndarray, rbc: float, split) -> np.ndarray:
    """Label image (int32, 0 = outside) splitting one nucleus group into cells with ``split``
    (``_split_padded`` or ``_split_touching``, given the group padded by 2 pixels).

    ``_split_padded``: seeds are the thick parts of the nucleus group (distance-transform maxima at least
    ``split_peak_distance`` red cells apart); a split is kept only when every part holds a
    whole cell's worth of nucleus and the parts meet at a narrow waist, so a multi-lobed
    nucleus or a granular cell is not cut into slivers.
    """
    # Pad: watershed marks the image border as a line, and the distance transform treats
    # the outside of the window as foreground.
    group = cv2.copyMakeBorder(group, 2, 2, 2, 2, cv2.BORDER_CONSTANT, value=0)
    nucleus = cv2.copyMakeBorder(
        nucleus.astype(np.uint8), 2, 2, 2, 2, cv2.BORDER_CONSTANT, value=0
    )
    return split(group, nucleus, rbc)[2:-2, 2:-2]


def _split_padded(group: np.ndarray, nucleus: np.ndarray, rbc: float) -> np.ndarray:
    distance = cv2.distanceTransform(group, cv2.DIST_L2, 5)
    peaks = distance >= cv2.dilate(distance, _disc(rbc * PARAMS["split_peak_distance"]))
    peaks &= distance >= rbc * PARAMS["split_min_thickness"]
    count, seeds = cv2.connectedComponents(peaks.astype(np.uint8), connectivity=8)
    whole = (group > 0).astype(np.int32)
    if count <= 2:
        return whole
    relief = cv2.cvtColor(
        np.clip(255.0 - distance * (255.0 / max(float(distance.max()), 1.0)), 0, 255).astype(
            np.uint8
        ),
        cv2.COLOR_GRAY2BGR,
    )
    min_part = PARAMS["split_min_part"] * np.pi * (rbc / 2.0) ** 2
    cross = np.ones((3, 3), np.uint8)
    for _ in range(count):  # drop failing seeds one at a time until every part is a cell
        markers = seeds.astype(np.int32)
        markers[group == 0] = count  # outside marker
        cv2.watershed(relief, markers)
        lines = (markers < 0) & (group > 0)
        markers[(markers == count) | (markers < 0) | (group == 0)] = 0
        labels = [label for label in range(1, count) if (seeds == label).any()]
        if len(labels) < 2:
            return whole
        failing = []
        for label in labels:
            part = markers == label
            area = int((part & (nucleus > 0)).sum())
            # Two touching cells meet at a waist much thinner than either cell; the lobes
            # and granules of one cell form one round blob without such a waist.
            on_line = lines & (cv2.dilate(part.astype(np.uint8), cross) > 0)
            waist = float(distance[on_line].max()) if on_line.any() else 0.0
            peak = float(distance[part].max(initial=0.0))
            if area < min_part or waist > PARAMS["split_neck"] * peak:
                failing.append((area, label))
        if not failing:
            return markers
        seeds[seeds == min(failing)[1]] = 0
    return whole


def _split_touching(group: np.ndarray, nucleus: np.ndarray, rbc: float) -> np.ndarray:
    """Label image of the touching cells in one (padded) nucleus group: two cells side by side,
    a clump of blasts. Each part is one round nucleus; a split is kept only when every part is
    thick, compact and large enough for a cell's nucleus and the parts meet at narrow waists,
    so the lobes of one neutrophil or eosinophil stay one cell."""
    distance = cv2.distanceTransform(group, cv2.DIST_L2, 5)
    # Seeds: the centres of round nuclei (maxima of the distance to the group's edge, none
    # higher within touch_peak_distance, at least touch_min_thickness thick). The lobes of a
    # segmented neutrophil are thinner than that and seed nothing.
    smooth = cv2.GaussianBlur(distance, (0, 0), max(1.0, rbc * 0.04))
    peaks = smooth >= cv2.dilate(smooth, _disc(2.0 * rbc * PARAMS["touch_peak_distance"]))
    peaks &= distance >= rbc * PARAMS["touch_min_thickness"] / 2.0
    count, seeds = cv2.connectedComponents(peaks.astype(np.uint8), connectivity=8)
    whole = (group > 0).astype(np.int32)
    if count <= 2:
        return whole
    # Each seed's core: the part of the group around it at least touch_neck of its own depth.
    # Two cells meet at a waist thinner than that, so their cores are apart; two seeds of one
    # cell (a lobed or granular nucleus, an irregular blob) share one core and count once.
    seeds_by_depth = sorted(
        ((float(distance[seeds == label].max()), label) for label in range(1, count)), reverse=True
    )
    cores: list[np.ndarray] = []
    for depth, label in seeds_by_depth:
        ys, xs = np.nonzero(seeds == label)
        within = (distance >= PARAMS["touch_neck"] * depth).astype(np.uint8)
        _, parts = cv2.connectedComponents(within, connectivity=8)
        core = parts == parts[ys[0], xs[0]]
        if any((core & other).any() for other in cores):
            continue
        cores.append(core)
    min_part = PARAMS["touch_min_part"] * np.pi * (rbc / 2.0) ** 2
    flat = cv2.cvtColor((group == 0).astype(np.uint8) * 255, cv2.COLOR_GRAY2BGR)
    cross = np.ones((3, 3), np.uint8)
    while len(cores) >= 2:
        # Every pixel of the group goes to the core it reaches first (a flood at equal speed).
        markers = np.zeros(group.shape, np.int32)
        for n, core in enumerate(cores, start=1):
            markers[core] = n
        outside = len(cores) + 1
        markers[group == 0] = outside
        cv2.watershed(flat, markers)
        markers[(markers == outside) | (markers < 0) | (group == 0)] = 0
        failing = set()
        areas, depths, grown = [], [], []
        for n in range(1, len(cores) + 1):
            part = markers == n
            own = (part & (nucleus > 0)).astype(np.uint8)
            areas.append(int(own.sum()))
            depths.append(float(distance[part].max(initial=0.0)))
            grown.append(cv2.dilate(part.astype(np.uint8), cross) > 0)
            # A cell's nucleus is one compact mass; half of a lobed or granular nucleus is not.
            points = cv2.findNonZero(own)
            hull = cv2.contourArea(cv2.convexHull(points)) if points is not None else 0.0
            if areas[-1] < min_part or areas[-1] < PARAMS["touch_solidity"] * hull:
                failing.add(n - 1)
        for i in range(len(cores)):
            for j in range(i + 1, len(cores)):
                # Two cells meet at a waist thinner than touch_neck of either nucleus.
                contact = grown[i] & grown[j]
                if contact.any() and float(distance[contact].max()) > PARAMS["touch_neck"] * min(
                    depths[i], depths[j]
                ):
                    failing.add(i if depths[i] < depths[j] else j)
        if not failing:
            return markers
        del cores[min(failing, key=lambda k: areas[k])]  # not a cell of its own
    return whole


def _is_nucleus(part: np.ndarray, violet: np.ndarray, rbc: float) -> bool:
    """Whether one cell's nucleus pixels look like a white-cell nucleus.

    Rejects platelets (too little), platelet clumps and the violet fringe of red-cell edges
    (too thin: no lobe as thick as ``min_thickness``) and faint violet smudges.
    """
    area = int(np.count_nonzero(part))
    if area < PARAMS["min_nucleus"] * np.pi * (rbc / 2.0) ** 2:
        return False
    thickness = 2.0 * float(cv2.distanceTransform(part.astype(np.uint8), cv2.DIST_L2, 5).max())
    if thickness < PARAMS["min_thickness"] * rbc:
        return False
    return float(np.percentile(violet[part], 90)) >= PARAMS["min_violet"]


def _nucleus_groups(
    nuclei: np.ndarray, violet: np.ndarray, rbc: float
) -> tuple[np.ndarray, int]:
    """Label nuclei into one label per white cell: lobes grouped, merged cells split."""
    grouped = cv2.morphologyEx(nuclei, cv2.MORPH_CLOSE, _disc(rbc * PARAMS["lobe_gap"]))
    grouped = np.maximum(grouped, nuclei)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(grouped, connectivity=8)
    rbc_area = np.pi * (rbc / 2.0) ** 2
    out = np.zeros(nuclei.shape, np.int32)
    next_label = 1
    for label in range(1, count):
        x, y, w, h, _ = stats[label]
        window = (slice(y, y + h), slice(x, x + w))
        group = (labels[window] == label).astype(np.uint8) * 255
        nucleus = (group > 0) & (nuclei[window] > 0)
        area = int(nucleus.sum())
        if area < PARAMS["min_nucleus"] * rbc_area:
            continue
        if max(w, h) > PARAMS["split_extent"] * rbc or area > PARAMS["split_area"] * rbc_area:
            parts = _split_group(group, nucleus, rbc, _split_padded)
        else:
            parts = (group > 0).astype(np.int32)
        cells = []
        for part in range(1, int(parts.max()) + 1):
            # Then round nuclei of touching cells (clumps of blasts, two cells side by side).
            piece = parts == part
            if int((piece & nucleus).sum()) < 2 * PARAMS["touch_min_part"] * rbc_area:
                cells.append(piece)
                continue
            touching = _split_group(piece.astype(np.uint8) * 255, piece & nucleus, rbc, _split_touching)
            cells.extend(touching == n for n in range(1, int(touching.max()) + 1))
        for cell in cells:
            cell_nucleus = cell & nucleus
            if not _is_nucleus(cell_nucleus, violet[window], rbc):
                continue
            out[window][cell_nucleus] = next_label
            next_label += 1
    return out, next_label - 1


def _label_boxes(labels: np.ndarray, count: int) -> np.ndarray:
    """``(count + 1) x 4`` array of (x0, y0, x1, y1) per label (exclusive ends; row 0 unused)."""
    ys, xs = np.nonzero(labels)
    values = labels[ys, xs]
    boxes = np.zeros((count + 1, 4), np.int64)
    boxes[:, 0] = boxes[:, 1] = np.iinfo(np.int64).max
    np.minimum.at(boxes[:, 0], values, xs)
    np.minimum.at(boxes[:, 1], values, ys)
    np.maximum.at(boxes[:, 2], values, xs + 1)
    np.maximum.at(boxes[:, 3], values, ys + 1)
    return boxes


def _cell_masks(
    groups: np.ndarray, count: int, cytoplasm: np.ndarray, rbc: float
) -> np.ndarray:
    """Label image of whole cells: each nucleus group plus the cytoplasm nearest to it."""
    # Convex hull of each nucleus group: the space between lobes is the cell's own.
    hulls = np.zeros(groups.shape, np.int32)
    for label, (x0, y0, x1, y1) in enumerate(_label_boxes(groups, count)[1:], start=1):
        if x1 <= x0:
            continue
        points = cv2.findNonZero((groups[y0:y1, x0:x1] == label).astype(np.uint8))
        layer = np.zeros((y1 - y0, x1 - x0), np.uint8)
        cv2.fillConvexPoly(layer, cv2.convexHull(points), 1)
        window = hulls[y0:y1, x0:x1]
        window[(layer > 0) & (window == 0)] = label
    reach = cv2.dilate((hulls > 0).astype(np.uint8), _disc(2 * rbc * PARAMS["reach"]))
    candidate = (((cytoplasm > 0) & (reach > 0)) | (hulls > 0)).astype(np.uint8)
    # Flood from the nucleus hulls through the candidate pixels at equal speed: every
    # cytoplasm pixel goes to the nucleus it is connected to most directly.
    markers = hulls.copy()
    markers[candidate == 0] = count + 1
    relief = cv2.cvtColor(255 - candidate * 255, cv2.COLOR_GRAY2BGR)
    cv2.watershed(relief, markers)
    markers[(markers > count) | (markers < 0)] = 0
    return markers


def _clean_cell(cell: np.ndarray, hull: np.ndarray, rbc: float) -> np.ndarray:
    """Smooth one cell mask: open away thin strands, keep what touches the nucleus, fill holes."""
    opened = cv2.morphologyEx(cell, cv2.MORPH_OPEN, _disc(rbc * 0.25))
    opened = np.maximum(opened, hull)
    count, labels = cv2.connectedComponents(opened, connectivity=8)
    if count > 2:
        keep = np.unique(labels[hull > 0])
        keep = keep[keep > 0]
        opened = (np.isin(labels, keep) * 255).astype(np.uint8)
    closed = cv2.morphologyEx(opened, cv2.MORPH_CLOSE, _disc(rbc * 0.2))
    return np.maximum(closed, _holes(closed // 255) * 255)


def _work_scale(rgb: np.ndarray, rbc_diameter: float | None) -> tuple[float, float]:
    """(scale from image to working pixels, red-cell diameter in image pixels)."""
    if rbc_diameter is None:
        rbc_diameter = estimate_rbc_diameter(rgb)
    if rbc_diameter is None:
        rbc_diameter = FALLBACK_RBC_FRACTION * min(rgb.shape[:2])
    scale = min(2.0, WORK_RBC_DIAMETER / rbc_diameter)
    height, width = rgb.shape[:2]
    scale = min(scale, float(np.sqrt(MAX_WORK_PIXELS / float(height * width))))
    return scale, rbc_diameter


def find_white_cells(
    rgb: np.ndarray, *, rbc_diameter: float | None = None
) -> list[CellRegion]:
    """White cells of a stained smear field, sorted by (y, x) of their bounding box.

    ``rbc_diameter`` (image pixels) overrides the value measured from the field. Cells cut
    by the image border are returned with ``partial=True``. Platelets are excluded.
    """
    rgb = _as_rgb(rgb)
    scale, rbc_image = _work_scale(rgb, rbc_diameter)
    height, width = rgb.shape[:2]
    wanted = min(2.0, WORK_RBC_DIAMETER / rbc_image)
    if scale < wanted * 0.999:   # too large to analyse whole at the working scale: in tiles, at that scale
        return _find_white_cells_tiled(rgb, rbc_image, wanted)
    return _find_white_cells_at(rgb, scale, rbc_image)


def _find_white_cells_at(rgb: np.ndarray, scale: float, rbc_image: float) -> list[CellRegion]:
    """:func:`find_white_cells` of a field analysed whole at ``scale`` working pixels per image pixel."""
    height, width = rgb.shape[:2]
    if abs(scale - 1.0) > 1e-3:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
        work = cv2.resize(rgb, size, interpolation=interpolation)
        scale = size[0] / width
    else:
        work, scale = rgb, 1.0
    rbc = rbc_image * scale  # red-cell diameter in working pixels
    stain = _measure_stain(work)

    nuclei = _nucleus_mask(stain, rbc)
    groups, count = _nucleus_groups(nuclei, stain.violet, rbc)
    if count == 0:
        return []
    cytoplasm = _cytoplasm_mask(stain, rbc)
    cells = _cell_masks(groups, count, cytoplasm, rbc)

    regions: list[CellRegion] = []
    pad = int(np.ceil(rbc * 0.5))
    work_h, work_w = cells.shape
    for label, (x0, y0, x1, y1) in enumerate(_label_boxes(cells, count)[1:], start=1):
        if x1 <= x0:
            continue
        x0, y0 = max(0, x0 - pad), max(0, y0 - pad)
        x1, y1 = min(work_w, x1 + pad), min(work_h, y1 + pad)
        own_nucleus = (groups[y0:y1, x0:x1] == label).astype(np.uint8) * 255
        cell = (cells[y0:y1, x0:x1] == label).astype(np.uint8) * 255
        hull = cv2.bitwise_and(_convex_fill(own_nucleus), cell)
        outline = _clean_cell(cell, hull, rbc)
        region = _region_from_mask(
            outline,
            scale,
            (height, width),
            cv2.countNonZero(own_nucleus),
            offset=(x0, y0),
            touches_border=(
                (x0 == 0 and outline[:, 0].any())
                or (y0 == 0 and outline[0, :].any())
                or (x1 == work_w and outline[:, -1].any())
                or (y1 == work_h and outline[-1, :].any())
            ),
        )
        if region is not None:
            regions.append(region)
    regions.sort(key=lambda r: (r.bbox[1], r.bbox[0], r.bbox[3], r.bbox[2]))
    return regions


def _tile_starts(length: int, tile: int, overlap: int) -> list[tuple[int, int]]:
    spans, start = [], 0
    while True:
        end = min(start + tile, length)
        spans.append((start, end))
        if end >= length:
            return spans
        start += tile - overlap


def _find_white_cells_tiled(rgb: np.ndarray, rbc: float, scale: float) -> list[CellRegion]:
    """:func:`find_white_cells` of a huge field, tile by tile at the working scale.

    Tiles overlap by ``TILE_OVERLAP_RBC`` red cells; a cell is kept by the one tile whose core (the tile less half
    the overlap on each inner side) holds its centroid, so a cell on a seam is found whole, once.
    """
    height, width = rgb.shape[:2]
    overlap = int(np.ceil(TILE_OVERLAP_RBC * rbc))
    tile = max(int(TILE_WORK_SIDE / scale), 3 * overlap)
    half = overlap // 2
    regions: list[CellRegion] = []
    for y0, y1 in _tile_starts(height, tile, overlap):
        for x0, x1 in _tile_starts(width, tile, overlap):
            core = (x0 + half if x0 else 0, y0 + half if y0 else 0,
                    x1 - (overlap - half) if x1 < width else width, y1 - (overlap - half) if y1 < height else height)
            found = _find_white_cells_at(np.ascontiguousarray(rgb[y0:y1, x0:x1]), scale, rbc)
            for r in found:
                cx, cy = r.centroid[0] + x0, r.centroid[1] + y0
                if not (core[0] <= cx < core[2] and core[1] <= cy < core[3]):
                    continue   # another tile holds this cell whole
                bx, by, bw, bh = r.bbox
                at_image_border = ((bx <= 0 and x0 == 0) or (by <= 0 and y0 == 0)
                                   or (bx + bw >= x1 - x0 - 1 and x1 == width)
                                   or (by + bh >= y1 - y0 - 1 and y1 == height))
                regions.append(CellRegion(
                    bbox=(bx + x0, by + y0, bw, bh), outline=r.outline + np.array([x0, y0], np.int32),
                    centroid=(round(cx, 2), round(cy, 2)), area=r.area, nucleus_area=r.nucleus_area,
                    partial=bool(r.partial and at_image_border)))
    regions.sort(key=lambda r: (r.bbox[1], r.bbox[0], r.bbox[3], r.bbox[2]))
    return regions


def no_cell_reason(rgb: np.ndarray, kind: str) -> str:
    """Why a field in which no white cell was found may be so, in words a hematologist can act on."""
    rgb = _as_rgb(rgb)
    height, width = rgb.shape[:2]
    small, _ = _small(rgb, PREVIEW_PIXELS)
    grey = small.astype(np.float32).mean(axis=2)
    if float(np.percentile(grey, 90)) < 40.0:
        return "the image is very dark (under-exposed, or not a bright-field smear?)"
    if float(grey.std()) < 4.0:
        return "the image is nearly uniform (blank, out of focus or over-exposed?)"
    if kind == "single_cell":
        return "nothing but black background was found (a single-cell crop with no cell?)"
    if min(height, width) < 128:
        return (f"the image is only {width} x {height} pixels: too few to find a white cell (a smear field at "
                "least a few red cells wide is expected)")
    rbc = estimate_rbc_diameter(rgb)
    if rbc is None:
        return ("no red cells could be measured and no violet-stained nucleus was found: is this a stained "
                "peripheral-blood smear?")
    return ("no violet-stained nucleus was found: the field may hold no white cell, or its stain differs from "
            "May-Grünwald-Giemsa / Wright")


def _convex_fill(mask: np.ndarray) -> np.ndarray:
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    filled = np.zeros_like(mask)
    if contours:
        hull = cv2.convexHull(np.vstack(contours))
        cv2.fillConvexPoly(filled, hull, 255)
    return filled


def find_cells(rgb: np.ndarray) -> tuple[ImageKind, list[CellRegion]]:
    """Classify the image and find its cells: ``(kind, regions)``."""
    kind = classify_image_kind(rgb)
    if kind == "single_cell":
        region = find_single_cell(rgb)
        return kind, [] if region is None else [region]
    return kind, find_white_cells(rgb)


# --------------------------------------------------------------------------- crops


def crop_cell(
    rgb: np.ndarray, region: CellRegion, mask_background: bool = True, margin: float = 0.05
) -> np.ndarray:
    """A square crop centred on the cell, padded with black (C-NMC style).

    With ``mask_background`` everything outside the outline is black. ``margin`` adds that
    fraction of the cell's larger side around it.
    """
    rgb = _as_rgb(rgb)
    x, y, w, h = region.bbox
    side = int(np.ceil(max(w, h) * (1.0 + 2.0 * margin))) or 1
    cx, cy = x + w / 2.0, y + h / 2.0
    left, top = int(np.floor(cx - side / 2.0)), int(np.floor(cy - side / 2.0))
    out = np.zeros((side, side, 3), np.uint8)
    height, width = rgb.shape[:2]
    sx0, sy0 = max(0, left), max(0, top)
    sx1, sy1 = min(width, left + side), min(height, top + side)
    if sx1 <= sx0 or sy1 <= sy0:
        return out
    patch = rgb[sy0:sy1, sx0:sx1]
    if mask_background:
        mask = np.zeros(patch.shape[:2], np.uint8)
        shifted = region.outline - np.array([sx0, sy0], np.int32)
        cv2.fillPoly(mask, [shifted.reshape(-1, 1, 2)], 255)
        patch = cv2.bitwise_and(patch, patch, mask=mask)
    out[sy0 - top : sy1 - top, sx0 - left : sx1 - left] = patch
    return out

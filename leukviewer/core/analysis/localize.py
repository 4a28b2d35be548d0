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
   Where a stain or camera renders the red cells blue-grey (green above red in at least 5% of the
   stained pixels), pixels lose score in proportion to how much greener than red they are: a nucleus
   is purple (red above green), a blue-grey red cell is not (``green_excess``).
3. Nucleus lobes closer than ``lobe_gap`` red cells are one cell (segmented neutrophils).
   A group too large for one cell is split by a distance-transform watershed, kept only if
   each part holds a whole nucleus and the parts meet at a narrow waist (two touching
   cells), so lobed or granular cells (eosinophils) are not cut up. Then touching cells
   (two side by side, clumps of blasts) are told apart: round nuclei at least ~1 red cell
   thick and ``touch_peak_distance`` apart seed a flood of the group, kept only where every
   part is one compact nucleus and the parts meet at a waist (``touch_*`` in ``PARAMS``).
   Nuclei pressed together with no waist at all (a field packed with blasts) come apart at a
   higher violet level than the field's own, along their paler contacts; each part must again be
   one thick, compact nucleus, so the lobes of one cell stay together (``contrast_*``).
4. Violet objects that are small (platelets), thin (red-cell edge fringes, platelet clumps)
   or faint are dropped.
5. The outline is the nucleus hull plus the cytoplasm around it: stained pixels clearly
   less red than the field's red cells (blue-grey red cells counted among them), shared out
   between neighbouring nuclei by a flood from each nucleus (watershed), opened, and with holes
   filled.

Step 1 lives in ``localize_stain`` (the field's stain and red-cell diameter), steps 2-5 in ``localize_nuclei``; this
module holds what the rest of the app calls.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from training.preprocess import channel_max, largest_region

from .localize_nuclei import (cell_masks, clean_cell, convex_fill, cytoplasm_mask, green_excess, label_boxes,
                              nucleus_groups, nucleus_mask)
from .localize_stain import PREVIEW_PIXELS, as_rgb, downscaled, estimate_rbc_diameter, measure_stain

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
#: Red-cell diameter assumed when a field holds too few red cells to measure (relative to
#: the shorter image side; a BCCD field is 480 px high with ~100 px red cells).
FALLBACK_RBC_FRACTION = 0.2

#: Side, in working pixels, of the overlapping tiles a field too large to analyse whole at the working scale is
#: cut into (each tile is analysed at full working resolution, so memory stays bounded by the tile, not the field).
TILE_WORK_SIDE = 2048
#: Overlap of neighbouring tiles in red-cell diameters: more than a white cell with its margin, so every cell lies
#: whole in the tile whose core holds its centre, and is kept there only (no duplicate across seams).
TILE_OVERLAP_RBC = 4.0

_NEAR_BLACK = 20  # max channel value of the C-NMC background
_SINGLE_CELL_BLACK_FRACTION = 0.40
_KIND_PIXELS = 250_000  # pixels on which the kind is decided at most


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


def classify_image_kind(rgb: np.ndarray) -> ImageKind:
    """``"single_cell"`` for a cell on a black background (C-NMC), else ``"smear_field"``.

    A C-NMC crop is mostly pure black (about 80 %) around one cell; a smear field (BCCD, or a
    PBC crop with its red cells) has a bright background. The share is counted on every pixel of an image of up to
    ``_KIND_PIXELS``, on an evenly strided sample of a larger one (no resampling: a 640x480 field took 4 ms to
    resize for this, a 177 MP one seconds).
    """
    rgb = as_rgb(rgb)
    step = max(1, int(np.ceil(np.sqrt(rgb.shape[0] * rgb.shape[1] / _KIND_PIXELS))))
    black = channel_max(rgb[::step, ::step]) <= _NEAR_BLACK
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
    rgb = as_rgb(rgb)
    region = largest_region((channel_max(rgb) > _NEAR_BLACK).view(np.uint8))
    if region is None:
        return None
    return _region_from_mask(region.window_mask(), 1.0, rgb.shape[:2], 0.0, offset=region.offset,
                             touches_border=region.touches_border)


# --------------------------------------------------------------------------- smear fields


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
    rgb = as_rgb(rgb)
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
    stain = measure_stain(work)

    greener = green_excess(stain, rbc)
    nuclei = nucleus_mask(stain, rbc, greener)
    groups, count = nucleus_groups(nuclei, stain.violet, rbc)
    if count == 0:
        return []
    cytoplasm = cytoplasm_mask(stain, rbc, greener)
    cells = cell_masks(groups, count, cytoplasm, rbc)

    regions: list[CellRegion] = []
    pad = int(np.ceil(rbc * 0.5))
    work_h, work_w = cells.shape
    for label, (x0, y0, x1, y1) in enumerate(label_boxes(cells, count)[1:], start=1):
        if x1 <= x0:
            continue
        x0, y0 = max(0, x0 - pad), max(0, y0 - pad)
        x1, y1 = min(work_w, x1 + pad), min(work_h, y1 + pad)
        own_nucleus = (groups[y0:y1, x0:x1] == label).astype(np.uint8) * 255
        cell = (cells[y0:y1, x0:x1] == label).astype(np.uint8) * 255
        hull = cv2.bitwise_and(convex_fill(own_nucleus), cell)
        outline = clean_cell(cell, hull, rbc)
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
    rgb = as_rgb(rgb)
    height, width = rgb.shape[:2]
    small, _ = downscaled(rgb, PREVIEW_PIXELS)
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
    rgb = as_rgb(rgb)
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

"""White cells of a smear field from its stain: nuclei (violet and dark), lobes grouped into one cell, touching
cells split, the cytoplasm around each nucleus (steps 2-5 of ``localize``'s method; no Qt, no TensorFlow).
All sizes are relative to the red-cell diameter ``rbc`` of the working image.
"""

from __future__ import annotations

import functools

import cv2
import numpy as np

from .localize_stain import Stain, disc, holes


def green_excess(stain: Stain, rbc: float) -> np.ndarray | None:
    """How much greener than red each pixel is beyond ``green_margin`` (white-balanced, >= 0, float32 HxW), the
    colour averaged over a tenth of a red cell so that the thin colour fringes at sharp edges (lateral chromatic
    aberration) do not count; ``None`` for a field whose stain shows no blue-grey (fewer than ``green_share`` of
    its stained pixels greener than red: at most 2.1% in 40 BCCD and 40 PBC fields, 40-90% in most of another lab's
    smear fields).

    Romanowsky nuclei let through more red than green (purple), and so do red cells as most stains and cameras
    render them (pink). Some render the red cells blue-grey instead (green above red): they are then violet and dark
    like a nucleus, and bluish like cytoplasm, and merge a crowded field's cells with each other and with the red
    cells around them. This measure tells them apart."""
    green_minus_red = -(stain.redness + stain.violet)
    stained = stain.stained > 25.0
    if np.count_nonzero((green_minus_red > PARAMS["green_margin"]) & stained) < PARAMS["green_share"] * max(
            1, np.count_nonzero(stained)):
        return None
    green_minus_red = cv2.GaussianBlur(green_minus_red, (0, 0), max(1.0, rbc * 0.1))
    return np.maximum(green_minus_red - PARAMS["green_margin"], 0.0)


def nucleus_mask(stain: Stain, rbc: float, greener: np.ndarray | None = None) -> np.ndarray:
    """Violet (nucleus) pixels, 0/255 uint8, before grouping. ``greener``: the field's :func:`green_excess`
    (``None``: its red cells are not blue-grey)."""
    # Nuclei are violet AND dark; the bluish cytoplasm of some cells is violet but pale, the
    # red cells are dark but not violet.
    sigma = max(0.6, rbc / 60.0)
    score = cv2.GaussianBlur(np.minimum(stain.violet, stain.stained), (0, 0), sigma)
    values = np.clip(score * 2.0, 0, 255).astype(np.uint8)
    otsu, _ = cv2.threshold(values, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    # The floor keeps Otsu from splitting noise in fields without any white cell.
    high = max(otsu / 2.0, PARAMS["nucleus_floor"])
    low = max(high * PARAMS["nucleus_low"], 30.0)
    # Blue-grey red cells (greener than red) lose score in proportion; the thresholds above stay the field's own.
    if greener is not None:
        score = score - PARAMS["green_penalty"] * greener
    strong = (score > high).astype(np.uint8)
    weak = (score > low).astype(np.uint8)
    # Hysteresis: keep weak components that contain a strong pixel.
    count, labels = cv2.connectedComponents(weak, connectivity=8)
    has_strong = np.zeros(count, bool)
    has_strong[labels[strong > 0]] = True
    has_strong[0] = False
    mask = has_strong[labels].astype(np.uint8) * 255
    mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, disc(rbc * 0.06))
    return mask


def cytoplasm_mask(stain: Stain, rbc: float, greener: np.ndarray | None = None) -> np.ndarray:
    """Stained but not red-cell-coloured pixels (white-cell cytoplasm), 0/255 uint8. ``greener``: the field's
    :func:`green_excess` (``None``: its red cells are not blue-grey)."""
    stained = cv2.GaussianBlur(stain.stained, (0, 0), max(0.8, rbc / 40.0))
    redness = cv2.GaussianBlur(stain.redness, (0, 0), max(0.8, rbc / 40.0))
    # Red cells are the bulk of the stained, non-violet pixels; cytoplasm is clearly bluer
    # than they are. Where the camera renders red cells barely red (PBC: the red channel is
    # saturated on a cream background) the limit follows the field's own red cells.
    # Red cells rendered blue-grey (greener than red) are violet too: they count as red cells, so that the limit
    # below keeps to cytoplasm bluer than they are and a cell does not spread over its blue-grey neighbours.
    red_cells = (stain.stained > 25.0) & (stain.violet < 25.0)
    if greener is not None:
        red_cells |= (stain.stained > 25.0) & (greener > 0.0)
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
    "green_penalty": 5.0,  # nucleus score lost per unit of green above red (blue-grey red cells) ...
    "green_margin": 3.0,  # ... beyond this margin, in fields where ...
    "green_share": 0.05,  # ... at least this share of the stained pixels is greener than red by the margin
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
    "contrast_levels": (40.0, 55.0, 70.0),  # violet percentiles of a clump at which its nuclei may come apart ...
    "contrast_min_core": 0.75,  # ... into cores at least this share of a touching cell's nucleus (area, thickness)
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
    peaks = distance >= cv2.dilate(distance, disc(rbc * PARAMS["split_peak_distance"]))
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


def _hull_area(mask: np.ndarray) -> float:
    """Area of the convex hull of a 0/1 uint8 mask's pixels (0 for an empty mask): a nucleus that fills most of
    its hull is one compact mass; a lobed or granular one is not."""
    points = cv2.findNonZero(mask)
    return float(cv2.contourArea(cv2.convexHull(points))) if points is not None else 0.0


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
    peaks = smooth >= cv2.dilate(smooth, disc(2.0 * rbc * PARAMS["touch_peak_distance"]))
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
            if areas[-1] < min_part or areas[-1] < PARAMS["touch_solidity"] * _hull_area(own):
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


def _split_by_contrast(piece: np.ndarray, nucleus: np.ndarray, violet: np.ndarray, rbc: float) -> np.ndarray:
    """Label image (int32) of the cells of a clump (``piece``, its ``nucleus`` pixels) whose nuclei press against
    each other with no waist in the mask (a field packed with blasts): the nuclei are the clump's most violet parts
    and the lines where they touch are paler, so at a higher violet level than the field's own they come apart.

    Levels (``contrast_levels``, percentiles of the clump's violet) are tried from low to high. Where two or more
    parts come apart, each a compact core of at least ``contrast_min_core`` of a touching cell's nucleus (area and
    thickness), they seed a flood over the clump along the violet relief, kept only if every part is one compact
    nucleus at least ``touch_min_thickness`` red cells thick and ``touch_min_part`` red-cell areas large (the seed
    of a failing part is dropped and the flood run again). Otherwise the clump stays whole. The lobes of a segmented
    neutrophil or an eosinophil are thinner than that and stay one cell."""
    whole = piece.astype(np.int32)
    inside = piece > 0
    values = cv2.GaussianBlur(violet, (0, 0), max(1.0, rbc * 0.04))
    min_part = PARAMS["touch_min_part"] * np.pi * (rbc / 2.0) ** 2
    opening = disc(rbc * 0.1)
    relief = cv2.cvtColor(cv2.copyMakeBorder(np.clip(255.0 - values, 0, 255).astype(np.uint8), 1, 1, 1, 1,
                                             cv2.BORDER_REPLICATE), cv2.COLOR_GRAY2BGR)
    for level in np.percentile(values[inside], PARAMS["contrast_levels"]):
        strict = cv2.morphologyEx(((values > level) & inside).astype(np.uint8), cv2.MORPH_OPEN, opening)
        count, parts = cv2.connectedComponents(strict, connectivity=8)
        seeds = []
        for label in range(1, count):
            part = (parts == label).astype(np.uint8)
            area = int(part.sum())
            if area < min_part * PARAMS["contrast_min_core"]:
                continue
            if 2.0 * float(cv2.distanceTransform(part, cv2.DIST_L2, 5).max()) < PARAMS["touch_min_thickness"] * rbc * \
                    PARAMS["contrast_min_core"]:
                continue
            if area < PARAMS["touch_solidity"] * _hull_area(part):
                continue
            seeds.append(parts == label)
        while len(seeds) >= 2:   # drop the seed of a part too small to be a cell, one at a time
            outside = len(seeds) + 1
            markers = np.zeros(piece.shape, np.int32)
            for n, seed in enumerate(seeds, start=1):
                markers[seed] = n
            markers[~inside] = outside
            padded = cv2.copyMakeBorder(markers, 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=outside)
            cv2.watershed(relief, padded)
            markers = padded[1:-1, 1:-1]
            markers[(markers == outside) | (markers < 0) | ~inside] = 0
            areas, compact = [], []
            for n in range(1, len(seeds) + 1):
                own = ((markers == n) & nucleus).astype(np.uint8)
                areas.append(int(own.sum()))
                thickness = 2.0 * float(cv2.distanceTransform(own, cv2.DIST_L2, 5).max())
                compact.append(thickness >= PARAMS["touch_min_thickness"] * rbc
                               and areas[-1] >= PARAMS["touch_solidity"] * _hull_area(own))
            if min(areas) >= min_part and all(compact):
                return markers
            failing = [n for n in range(len(seeds)) if areas[n] < min_part or not compact[n]]
            del seeds[min(failing, key=lambda n: areas[n])]
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


def nucleus_groups(
    nuclei: np.ndarray, violet: np.ndarray, rbc: float
) -> tuple[np.ndarray, int]:
    """Label nuclei into one label per white cell: lobes grouped, merged cells split."""
    grouped = cv2.morphologyEx(nuclei, cv2.MORPH_CLOSE, disc(rbc * PARAMS["lobe_gap"]))
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
            if touching.max() <= 1:   # no waist anywhere: nuclei pressed together, told apart by their paler contacts
                touching = _split_by_contrast(piece, piece & nucleus, violet[window], rbc)
            cells.extend(touching == n for n in range(1, int(touching.max()) + 1))
        for cell in cells:
            cell_nucleus = cell & nucleus
            if not _is_nucleus(cell_nucleus, violet[window], rbc):
                continue
            out[window][cell_nucleus] = next_label
            next_label += 1
    return out, next_label - 1


def label_boxes(labels: np.ndarray, count: int) -> np.ndarray:
    """``(count + 1) x 4`` array of (x0, y0, x1, y1) per label (exclusive ends; row 0 unused)."""
    points = cv2.findNonZero((labels != 0).view(np.uint8))   # the labelled pixels, a few times faster than numpy
    points = np.empty((0, 2), np.int32) if points is None else points.reshape(-1, 2)
    xs, ys = points[:, 0].astype(np.int64), points[:, 1].astype(np.int64)   # ufunc.at is fast on one dtype
    values = labels[ys, xs]
    boxes = np.zeros((count + 1, 4), np.int64)
    boxes[:, 0] = boxes[:, 1] = np.iinfo(np.int64).max
    np.minimum.at(boxes[:, 0], values, xs)
    np.minimum.at(boxes[:, 1], values, ys)
    np.maximum.at(boxes[:, 2], values, xs + 1)
    np.maximum.at(boxes[:, 3], values, ys + 1)
    return boxes


def dilate_near(mask: np.ndarray, boxes: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """``cv2.dilate(mask, kernel)`` (0/1 uint8) computed only around ``boxes`` (x0, y0, x1, y1), which hold every
    pixel of ``mask``: the same pixels, at the cost of the cells' windows instead of the whole field (a disc of two
    red cells across costs ~10 ms on a whole BCCD field). An elliptic ``kernel`` (``disc``) is applied through a
    distance transform (:func:`_dilate_by_disc`), a few times cheaper than OpenCV's dilation by a large disc and
    exactly equal to it."""
    mask = mask.astype(np.uint8)
    out = np.zeros_like(mask)
    ry, rx = kernel.shape[0] // 2, kernel.shape[1] // 2
    height, width = mask.shape
    # each window holds its box and everything the kernel reaches from it; dilating the window alone is exact there
    # (what lies outside the window is farther than the kernel reaches from the box)
    windows = [(max(0, int(x0) - rx), max(0, int(y0) - ry), min(width, int(x1) + rx), min(height, int(y1) + ry))
               for x0, y0, x1, y1 in boxes if x1 > x0]
    if sum((x1 - x0) * (y1 - y0) for x0, y0, x1, y1 in windows) >= height * width:
        windows = [(0, 0, width, height)]    # crowded (a clump of blasts): the whole field once is cheaper
    dilate = _dilate_by_disc if _is_disc(kernel) else (lambda m, k: cv2.dilate(m, k))
    for wx0, wy0, wx1, wy1 in windows:
        grown = dilate(np.ascontiguousarray(mask[wy0:wy1, wx0:wx1]), kernel)
        np.maximum(out[wy0:wy1, wx0:wx1], grown, out=out[wy0:wy1, wx0:wx1])
    return out


def _is_disc(kernel: np.ndarray) -> bool:
    """Whether ``kernel`` is OpenCV's elliptic structuring element of an odd square size (what ``disc`` makes)."""
    side = kernel.shape[0]
    return (kernel.ndim == 2 and side == kernel.shape[1] and side % 2 == 1 and side > 1
            and np.array_equal(kernel != 0, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (side, side)) != 0))


@functools.lru_cache(maxsize=64)
def _disc_geometry(side: int) -> tuple[float, float, np.ndarray]:
    """(distance below which every pixel is in, distance beyond which every pixel is out, half-width of each row)
    of OpenCV's elliptic structuring element ``side`` x ``side``."""
    r = side // 2
    inside = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (side, side)) != 0
    offsets = np.arange(-r, r + 1)
    squared = offsets[:, None] ** 2 + offsets[None, :] ** 2
    inner = min(int(squared[~inside].min()) if (~inside).any() else (r + 1) ** 2, (r + 1) ** 2)
    outer = int(squared[inside].max())
    half = np.where(inside.any(axis=1), np.abs(np.argmax(inside, axis=1) - r), -1)
    # squared distances are whole numbers: compare the distances half a unit of their square away from them
    return float(np.sqrt(inner - 0.5)), float(np.sqrt(outer + 0.5)), half


def _dilate_by_disc(mask: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """``cv2.dilate(mask, kernel)`` of a 0/1 mask by an elliptic ``kernel``, exactly, from the Euclidean distance
    of each pixel to the mask. OpenCV's disc is not a Euclidean ball: it holds every offset of squared length below
    some ``inner`` and none beyond some ``outer`` (radius 40: 1600 and 1636). A pixel nearer the mask than
    ``inner`` is in, one farther than ``outer`` out; the thin ring between is decided row by row (the disc's row
    ``dy`` spans ``|dx| <= half[dy]``: is a mask pixel of row ``y + dy`` within ``half[dy]`` of ``x``?)."""
    if not mask.any():
        return np.zeros_like(mask)
    inner, outer, half = _disc_geometry(kernel.shape[0])
    distance = cv2.distanceTransform((mask == 0).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    grown = (distance < inner).astype(np.uint8)
    ys, xs = np.nonzero((distance >= inner) & (distance <= outer))
    if len(ys):
        height, width = mask.shape
        columns = np.arange(width, dtype=np.int32)
        big = 4 * (height + width)
        left = np.maximum.accumulate(np.where(mask != 0, columns, -big), axis=1)
        right = np.minimum.accumulate(np.where(mask != 0, columns, 2 * big)[:, ::-1], axis=1)[:, ::-1]
        row_distance = np.minimum(columns - left, right - columns)   # to the nearest mask pixel in the same row
        r = len(half) // 2
        rows = ys[:, None] + np.arange(-r, r + 1)[None, :]             # every row of the disc around each pixel
        valid = (rows >= 0) & (rows < height) & (half >= 0)[None, :]
        near = row_distance[np.clip(rows, 0, height - 1), xs[:, None]] <= half[None, :]
        hit = (near & valid).any(axis=1)
        grown[ys[hit], xs[hit]] = 1
    return grown


def cell_masks(
    groups: np.ndarray, count: int, cytoplasm: np.ndarray, rbc: float
) -> np.ndarray:
    """Label image of whole cells: each nucleus group plus the cytoplasm nearest to it."""
    # Convex hull of each nucleus group: the space between lobes is the cell's own.
    hulls = np.zeros(groups.shape, np.int32)
    boxes = label_boxes(groups, count)[1:]
    for label, (x0, y0, x1, y1) in enumerate(boxes, start=1):
        if x1 <= x0:
            continue
        points = cv2.findNonZero((groups[y0:y1, x0:x1] == label).astype(np.uint8))
        layer = np.zeros((y1 - y0, x1 - x0), np.uint8)
        cv2.fillConvexPoly(layer, cv2.convexHull(points), 1)
        window = hulls[y0:y1, x0:x1]
        window[(layer > 0) & (window == 0)] = label
    reach = dilate_near(hulls > 0, boxes, disc(2 * rbc * PARAMS["reach"]))
    candidate = (((cytoplasm > 0) & (reach > 0)) | (hulls > 0)).astype(np.uint8)
    # Flood from the nucleus hulls through the candidate pixels at equal speed: every
    # cytoplasm pixel goes to the nucleus it is connected to most directly.
    markers = hulls.copy()
    markers[candidate == 0] = count + 1
    relief = cv2.cvtColor(255 - candidate * 255, cv2.COLOR_GRAY2BGR)
    cv2.watershed(relief, markers)
    markers[(markers > count) | (markers < 0)] = 0
    return markers


def clean_cell(cell: np.ndarray, hull: np.ndarray, rbc: float) -> np.ndarray:
    """Smooth one cell mask: open away thin strands, keep what touches the nucleus, fill holes."""
    opened = cv2.morphologyEx(cell, cv2.MORPH_OPEN, disc(rbc * 0.25))
    opened = np.maximum(opened, hull)
    count, labels = cv2.connectedComponents(opened, connectivity=8)
    if count > 2:
        keep = np.unique(labels[hull > 0])
        keep = keep[keep > 0]
        opened = (np.isin(labels, keep) * 255).astype(np.uint8)
    closed = cv2.morphologyEx(opened, cv2.MORPH_CLOSE, disc(rbc * 0.2))
    return np.maximum(closed, holes(closed // 255) * 255)


def convex_fill(mask: np.ndarray) -> np.ndarray:
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    filled = np.zeros_like(mask)
    if contours:
        hull = cv2.convexHull(np.vstack(contours))
        cv2.fillConvexPoly(filled, hull, 255)
    return filled

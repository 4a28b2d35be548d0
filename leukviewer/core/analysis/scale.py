"""Each image's physical scale (micrometres of slide per pixel) and where it came from.

Order of trust: the user's microscope setting (``--um-per-px``, or a folder profile), the image's own metadata
(TIFF resolution in pixels per centimetre or inch, OME-TIFF ``PhysicalSizeX``), the red cells of a smear field,
and for single-cell crops on black the C-NMC calibration (``training.scale``). In a folder (one microscope), a
field whose own red-cell measure is far from the folder's median, or missing, takes that median
(``folder_red_cells``, see ``pipeline.FolderRedCells``). A field whose red cells cannot be measured at all gets an
assumed scale and is flagged ``assumed``: its cell sizes, and so its classification by a
physical-scale model, cannot be trusted.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from training.scale import CNMC_UM_PER_PX, RBC_DIAMETER_UM, um_per_px_from_rbc

#: a scale outside this range (µm per pixel) is not a light-microscope field: such metadata is ignored
PLAUSIBLE_UM_PER_PX = (0.02, 2.0)

SCALE_USER = "user"
SCALE_METADATA = "metadata"
SCALE_RED_CELLS = "red_cells"
SCALE_FOLDER_RED_CELLS = "folder_red_cells"   # the field's own measure was far off: its folder's median is used
SCALE_CNMC = "cnmc_calibration"
SCALE_ASSUMED = "assumed"


@dataclass(frozen=True)
class ImageScale:
    um_per_px: float
    source: str            # user | metadata | red_cells | folder_red_cells | cnmc_calibration | assumed
    rbc_diameter_px: float | None = None

    @property
    def trusted(self) -> bool:
        return self.source != SCALE_ASSUMED


def _plausible(value: float | None) -> float | None:
    if value is None or not np.isfinite(value):
        return None
    lo, hi = PLAUSIBLE_UM_PER_PX
    return float(value) if lo <= value <= hi else None


def metadata_um_per_px(path: str | Path) -> float | None:
    """µm per pixel stored in a TIFF (resolution with a centimetre or inch unit, or OME ``PhysicalSizeX``).

    JPEG/PNG "dpi" values are screen or scanner settings, never a microscope's scale: they are ignored.
    """
    path = Path(path)
    if path.suffix.lower() not in (".tif", ".tiff"):
        return None
    try:
        from PIL import Image

        with Image.open(path) as image:
            tags = getattr(image, "tag_v2", {}) or {}
            description = str(tags.get(270, ""))
            m = re.search(r'PhysicalSizeX="([0-9.eE+-]+)"', description)
            if m:
                unit = re.search(r'PhysicalSizeXUnit="([^"]+)"', description)
                factor = {"µm": 1.0, "um": 1.0, "nm": 1e-3, "mm": 1e3}.get(unit.group(1) if unit else "µm")
                if factor is not None:
                    found = _plausible(float(m.group(1)) * factor)
                    if found:
                        return found
            x_resolution, unit = tags.get(282), tags.get(296, 2)
            if x_resolution:
                per_unit = float(x_resolution)
                if per_unit > 0 and unit in (2, 3):
                    return _plausible((25400.0 if unit == 2 else 10000.0) / per_unit)
    except Exception:  # unreadable metadata is no scale, never an unreadable image
        return None
    return None


def image_scale(rgb: np.ndarray, kind: str, path: str | Path | None = None, user_um_per_px: float | None = None,
                rbc_diameter_px: float | None = None) -> ImageScale:
    """The scale of one image (see the module docstring for the order of trust).

    ``rbc_diameter_px``: the red-cell diameter already measured on this field (saves measuring it twice).
    """
    if user_um_per_px:
        return ImageScale(float(user_um_per_px), SCALE_USER, rbc_diameter_px)
    if path is not None:
        found = metadata_um_per_px(path)
        if found:
            return ImageScale(found, SCALE_METADATA, rbc_diameter_px)
    if kind == "single_cell":
        return ImageScale(CNMC_UM_PER_PX, SCALE_CNMC)
    if rbc_diameter_px is None:
        from .localize import estimate_rbc_diameter

        rbc_diameter_px = estimate_rbc_diameter(rgb)
    if rbc_diameter_px:
        return ImageScale(um_per_px_from_rbc(rbc_diameter_px), SCALE_RED_CELLS, rbc_diameter_px)
    from .localize import FALLBACK_RBC_FRACTION

    assumed = FALLBACK_RBC_FRACTION * min(rgb.shape[:2])
    return ImageScale(RBC_DIAMETER_UM / assumed, SCALE_ASSUMED, None)


def measured_um_per_px(rgb: np.ndarray, path: str | Path | None = None) -> float:
    """µm per pixel of one image as the app measures it without a user setting: its kind (single cell or field),
    then its metadata, its red cells or the C-NMC calibration. What ``training.evaluate.evaluate_folder`` is given
    as ``um_per_px_of``, so a physical-scale model is evaluated on images scaled as the app scales them."""
    from .localize import classify_image_kind

    return image_scale(rgb, classify_image_kind(rgb), path).um_per_px

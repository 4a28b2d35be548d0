"""Physical scale: micrometres of slide per image pixel, and where that figure came from.

A model that keeps cell size in micrometres (preprocessing step ``pad_canvas_um``) needs each image's scale. In
order of trust: the image's own metadata, the user's microscope profile (``--um-per-px``), the red cells of a smear
field (a normal red cell is about ``RBC_DIAMETER_UM`` across), and for single-cell crops on black, which show no red
cell, the calibration of the C-NMC 2019 release below.
"""
from __future__ import annotations

#: Mean diameter of a normal red cell on a dried, stained smear (7.5–8 µm; 7.5 is the usual textbook figure).
RBC_DIAMETER_UM = 7.5

#: C-NMC 2019 crops (450x450, cell on black) carry no scale and no red cell. Calibrated by matching the median
#: equivalent diameter of its healthy donors' lymphoid cells (fold_0 + fold_1 HEM, 2,293 cells: 174.2 px) to that
#: of PBC's lymphocytes measured by the same localiser against their red cells (499 cells: 11.3 µm), which gives
#: 0.0651 µm/px; the value kept, 0.0655, is 0.6% from it and makes 23 µm the 1.x models' 352-pixel canvas
#: (``python -m leukviewer cells`` records every cell's diameter in µm to redo this).
CNMC_UM_PER_PX = 0.0655

#: Where an image's scale came from (``images.csv`` / ``summary.json`` column ``scale_source``).
SCALE_SOURCES = ("metadata", "user", "red_cells", "cnmc_calibration", "unknown")


def um_per_px_from_rbc(rbc_diameter_px: float) -> float:
    """Scale of a smear field from its measured red-cell diameter in pixels."""
    if not rbc_diameter_px > 0:
        raise ValueError("red-cell diameter must be positive")
    return RBC_DIAMETER_UM / float(rbc_diameter_px)

"""The labels a cell can carry, the rule that gives them, and their colours and words: one home, so the window,
report.pdf and cells.geojson show a blast in the same red (before, each had its own palette)."""
from __future__ import annotations

LABEL_BLAST = "ALL"          # leukemic blast
LABEL_NORMAL = "HEM"         # normal (not a blast)
LABEL_UNCERTAIN = "UNCERTAIN"
LABELS = (LABEL_BLAST, LABEL_UNCERTAIN, LABEL_NORMAL)   # also the order of galleries and legends

# The one palette: red for a blast, amber for a cell that needs a look, teal for normal.
LABEL_HEX = {LABEL_BLAST: "#d7263d", LABEL_UNCERTAIN: "#f29e02", LABEL_NORMAL: "#1b998b"}
UNKNOWN_HEX = "#888888"
SELECTION_HEX = "#00b4ff"    # the selected cell's halo and, in the histogram, the cells of the shown image
# Short words (reports, legends) and the window's names for the gallery groups.
LABEL_WORDS = {LABEL_BLAST: "blast (ALL)", LABEL_UNCERTAIN: "uncertain", LABEL_NORMAL: "normal (HEM)"}
LABEL_NAMES = {LABEL_BLAST: "ALL (blast)", LABEL_UNCERTAIN: "Uncertain", LABEL_NORMAL: "HEM (normal)"}


def label_hex(label: str) -> str:
    """The label's colour as #rrggbb (grey for anything else)."""
    return LABEL_HEX.get(label, UNKNOWN_HEX)


def label_rgb(label: str) -> list[int]:
    """The label's colour as [r, g, b] 0-255 (GeoJSON, QuPath)."""
    h = label_hex(label)
    return [int(h[i:i + 2], 16) for i in (1, 3, 5)]


def label_for(p_blast: float, threshold: float, band: tuple[float, float]) -> str:
    """ALL at or above the threshold, else HEM; UNCERTAIN strictly inside the uncertainty band."""
    lo, hi = band
    if lo < p_blast < hi:
        return LABEL_UNCERTAIN
    return LABEL_BLAST if p_blast >= threshold else LABEL_NORMAL

"""The histogram of a case's blast probabilities: what it shows (bins, bars stacked by label, band, threshold),
for report.pdf and the window's summary panel, and the report's picture of it.

The bars count the cells per bin, stacked by label (the reviewer's where reviewed, else the model's) in the one
palette of ``core.labels``; the uncertain band is shaded in the uncertain colour; the threshold is a dashed line
with its value; the cells of the shown image, where the caller passes them, are ticks under the bars. The PDF's
picture is drawn here with matplotlib's Agg canvas (without pyplot); the window paints the same ``BINS``,
``counts_by_label``, colours and band opacity with Qt (``gui/histogram_view.py``): a matplotlib draw is tens of
milliseconds of Python that stalled the window during long analyses.
"""
from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np

from ..labels import LABEL_BLAST, LABEL_HEX, LABEL_NORMAL, LABEL_UNCERTAIN, LABEL_WORDS, SELECTION_HEX, label_for

BINS = np.linspace(0.0, 1.0, 21)                          # 0.05 wide: a threshold at 0.50 falls on an edge
STACK_ORDER = (LABEL_NORMAL, LABEL_UNCERTAIN, LABEL_BLAST)   # bottom to top
BAND_ALPHA = 0.18                                         # the band behind the bars, in the uncertain colour
THRESHOLD_HEX = "#333333"                                 # dark: it must stand out against the red blasts
FONT_PT = 7
X_LABEL = "P(blast), calibrated · shaded: uncertain band"


def bin_counts(probabilities: Sequence[float]) -> np.ndarray:
    """Cells per bin of ``BINS`` (the last bin holds 1.0)."""
    counts, _ = np.histogram(np.asarray(probabilities, dtype=float), bins=BINS)
    return counts


def counts_by_label(probabilities: Sequence[float], labels: Sequence[str]) -> dict[str, np.ndarray]:
    """Cells per bin for each label of ``STACK_ORDER`` (what the stacked bars show)."""
    probabilities = np.asarray(probabilities, dtype=float)
    labels = np.asarray(list(labels), dtype=object)
    return {label: bin_counts(probabilities[labels == label]) for label in STACK_ORDER}


def draw(probabilities: Sequence[float], threshold: float, band: tuple[float, float],
         labels: Sequence[str] | None = None, *, image: Sequence[float] = (), width_px: int = 1050,
         height_px: int = 315, dpi: int = 150, legend_title: str | None = None):
    """The drawn matplotlib ``Figure`` (Agg). ``labels``: one per probability (None: the model's rule,
    ``label_for``); ``image``: the shown image's probabilities, drawn as ticks; ``legend_title``: a legend with the
    count per label inside the picture (the PDF's; the window writes its legend under the picture)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    probabilities = np.asarray(probabilities, dtype=float)
    if labels is None:
        labels = [label_for(p, threshold, band) for p in probabilities]
    figure = Figure(figsize=(width_px / dpi, height_px / dpi), dpi=dpi, facecolor="white")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot(1, 1, 1)
    lo, hi = band
    if hi > lo:
        axes.axvspan(lo, hi, color=LABEL_HEX[LABEL_UNCERTAIN], alpha=BAND_ALPHA, linewidth=0, zorder=0)
    stacked = counts_by_label(probabilities, labels)
    bottom = np.zeros(len(BINS) - 1, dtype=int)
    for label in STACK_ORDER:
        axes.bar(BINS[:-1], stacked[label], width=BINS[1] - BINS[0], bottom=bottom, align="edge",
                 color=LABEL_HEX[label], edgecolor="white", linewidth=0.5, zorder=2,
                 label=f"{LABEL_WORDS[label]} ({int(stacked[label].sum())})")
        bottom = bottom + stacked[label]
    if not len(probabilities):
        axes.text(0.5, 0.5, "no cells", ha="center", va="center", transform=axes.transAxes, fontsize=FONT_PT + 2)
    elif legend_title is not None:
        handles, names = axes.get_legend_handles_labels()
        axes.legend(handles[::-1], names[::-1], fontsize=FONT_PT, frameon=False, loc="upper left",
                    bbox_to_anchor=(1.01, 1.0), title=legend_title, title_fontsize=FONT_PT, alignment="left")
    axes.axvline(threshold, color=THRESHOLD_HEX, linestyle="--", linewidth=1, zorder=3)
    axes.text(threshold, 1.0, f" threshold {threshold:.2f}", transform=axes.get_xaxis_transform(),
              fontsize=FONT_PT, va="top", ha="left", color=THRESHOLD_HEX, zorder=4)
    if len(image):
        axes.plot(list(image), [0.0] * len(image), "|", color=SELECTION_HEX, markersize=10, markeredgewidth=2,
                  clip_on=False, zorder=5)
    axes.set_xlim(0, 1)
    axes.set_ylim(0, max(1, int(bottom.max(initial=0))) * 1.18)   # room for the threshold's value on top
    axes.yaxis.set_major_locator(MaxNLocator(nbins=4, integer=True))   # whole cells, a few labels
    axes.set_xlabel(X_LABEL, fontsize=FONT_PT)
    axes.set_ylabel("cells", fontsize=FONT_PT)
    axes.tick_params(labelsize=FONT_PT)
    axes.spines[["top", "right"]].set_visible(False)
    figure.tight_layout(pad=0.4)
    figure.canvas.draw()
    return figure


def render_histogram(probabilities: Sequence[float], threshold: float, band: tuple[float, float],
                     labels: Sequence[str] | None = None, *, image: Sequence[float] = (), width_px: int = 1050,
                     height_px: int = 315, dpi: int = 150, legend_title: str | None = None) -> np.ndarray:
    """The picture as an (height_px, width_px, 4) uint8 RGBA array; the arguments as :func:`draw`."""
    figure = draw(probabilities, threshold, band, labels, image=image, width_px=width_px, height_px=height_px,
                  dpi=dpi, legend_title=legend_title)
    return np.array(figure.canvas.buffer_rgba(), dtype=np.uint8)


def histogram_png(probabilities: Sequence[float], threshold: float, band: tuple[float, float],
                  labels: Sequence[str] | None = None, *, legend_title: str | None = None, width_px: int = 1050,
                  height_px: int = 315, dpi: int = 150) -> bytes:
    """The picture as PNG bytes (for report.pdf); the arguments as :func:`draw`."""
    from PIL import Image

    rgba = render_histogram(probabilities, threshold, band, labels, width_px=width_px, height_px=height_px,
                            dpi=dpi, legend_title=legend_title)
    buffer = io.BytesIO()
    Image.fromarray(rgba[..., :3]).save(buffer, format="PNG", dpi=(dpi, dpi))   # opaque: no alpha to carry
    return buffer.getvalue()

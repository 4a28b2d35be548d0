"""The one histogram renderer (report.pdf and the window's summary panel), without Qt: what a hematologist reads
off the picture is where the numbers say: the threshold line at the threshold, the uncertain band shaded, each bar
as tall as its cells and in its label's colour, the shown image's cells ticked."""
import io

import numpy as np
import pytest

from leukviewer.core.labels import LABEL_HEX, SELECTION_HEX
from leukviewer.core.reports import histogram
from leukviewer.core.reports.histogram import (BAND_ALPHA, THRESHOLD_HEX, bin_counts, counts_by_label, draw,
                                               histogram_png, render_histogram)

THRESHOLD, BAND = 0.62, (0.40, 0.55)      # a line inside a bin, a band away from the bars
CASE = [0.11, 0.12, 0.13, 0.91, 0.92]      # three cells in the 0.10-0.15 bin, two in 0.90-0.95
SIZE = dict(width_px=700, height_px=240, dpi=100)


def rgb(hex_colour: str) -> np.ndarray:
    return np.array([int(hex_colour[i:i + 2], 16) for i in (1, 3, 5)])


class Picture:
    """The drawn figure's pixels, addressed in data coordinates (x: P(blast), y: cells)."""

    def __init__(self, *args, **kwargs):
        figure = draw(*args, **kwargs)
        self.axes = figure.axes[0]
        self.pixels = np.asarray(figure.canvas.buffer_rgba())[..., :3].astype(int)
        self.height = self.pixels.shape[0]
        x0, y0 = self.axes.transAxes.transform((0, 0))
        x1, y1 = self.axes.transAxes.transform((1, 1))
        self.rows = (int(self.height - y1) + 3, int(self.height - y0) - 3)     # inside the axes, off the spines

    def at(self, x: float, y: float) -> np.ndarray:
        px, py = self.axes.transData.transform((x, y))
        return self.pixels[int(round(self.height - py)), int(round(px))]

    def column(self, x: float) -> np.ndarray:
        px = int(round(self.axes.transData.transform((x, 0))[0]))
        return self.pixels[self.rows[0]:self.rows[1], px - 1:px + 2]

    def fraction_near(self, x: float, colour: str, tolerance: int = 40) -> float:
        column = self.column(x)
        return float((np.abs(column - rgb(colour)).max(axis=-1) <= tolerance).any(axis=1).mean())


def test_cells_per_bin_and_per_label():
    assert bin_counts([0.0, 0.04, 0.05, 0.5, 0.99, 1.0]).tolist() == [2, 1] + [0] * 8 + [1] + [0] * 8 + [2]
    stacked = counts_by_label([0.11, 0.12, 0.91], ["HEM", "ALL", "ALL"])
    assert stacked["HEM"][2] == 1 and stacked["ALL"][2] == 1 and stacked["ALL"][18] == 1
    assert sum(int(c.sum()) for c in stacked.values()) == 3


def test_the_threshold_line_is_at_the_threshold_and_only_there():
    picture = Picture(CASE, THRESHOLD, BAND, **SIZE)
    assert picture.fraction_near(THRESHOLD, THRESHOLD_HEX) > 0.4                # dashed: about half drawn
    for x in (0.3, 0.85):                                                       # elsewhere: no line
        assert picture.fraction_near(x, THRESHOLD_HEX) < 0.05


def test_the_uncertain_band_is_shaded_in_the_uncertain_colour_and_nothing_else_is():
    picture = Picture(CASE, THRESHOLD, BAND, **SIZE)
    pale = 255 * (1 - BAND_ALPHA) + rgb(LABEL_HEX["UNCERTAIN"]) * BAND_ALPHA
    assert np.abs(picture.at(0.47, 1.5) - pale).max() <= 3
    assert picture.at(0.30, 1.5).tolist() == [255, 255, 255]
    assert picture.at(0.58, 1.5).tolist() == [255, 255, 255]
    # An empty band draws no shade.
    plain = Picture(CASE, 0.5, (0.5, 0.5), **SIZE)
    assert plain.at(0.47, 1.5).tolist() == [255, 255, 255]


def test_bars_are_as_tall_as_their_cells_and_stacked_in_the_palette_by_label():
    # The model's rule without labels: below the band normal (teal), above the threshold blast (red).
    picture = Picture(CASE, THRESHOLD, BAND, **SIZE)
    assert np.abs(picture.at(0.125, 2.5) - rgb(LABEL_HEX["HEM"])).max() <= 3
    assert picture.at(0.125, 3.3).tolist() == [255, 255, 255]                  # three cells tall, not more
    assert np.abs(picture.at(0.925, 1.5) - rgb(LABEL_HEX["ALL"])).max() <= 3
    assert picture.at(0.925, 2.3).tolist() == [255, 255, 255]
    # After review: one of the three low cells relabelled a blast sits on top of the two normal ones.
    reviewed = Picture(CASE, THRESHOLD, BAND, ["HEM", "ALL", "HEM", "ALL", "UNCERTAIN"], **SIZE)
    assert np.abs(reviewed.at(0.125, 1.5) - rgb(LABEL_HEX["HEM"])).max() <= 3
    assert np.abs(reviewed.at(0.125, 2.5) - rgb(LABEL_HEX["ALL"])).max() <= 3
    assert np.abs(reviewed.at(0.925, 0.5) - rgb(LABEL_HEX["UNCERTAIN"])).max() <= 3
    assert np.abs(reviewed.at(0.925, 1.5) - rgb(LABEL_HEX["ALL"])).max() <= 3


def test_the_shown_images_cells_are_ticked_only_when_passed():
    def ticks(picture):
        near = np.abs(picture.pixels - rgb(SELECTION_HEX)).max(axis=-1) <= 40
        return int(near.sum())

    assert ticks(Picture(CASE, THRESHOLD, BAND, image=[0.3], **SIZE)) >= 10
    assert ticks(Picture(CASE, THRESHOLD, BAND, **SIZE)) == 0


def test_array_and_png_are_the_drawn_picture_at_the_asked_size():
    from PIL import Image

    rgba = render_histogram(CASE, THRESHOLD, BAND, image=[0.3], **SIZE)
    assert rgba.shape == (240, 700, 4) and rgba.dtype == np.uint8
    figure = draw(CASE, THRESHOLD, BAND, image=[0.3], **SIZE)
    assert np.array_equal(rgba, np.asarray(figure.canvas.buffer_rgba()))
    png = Image.open(io.BytesIO(histogram_png(CASE, THRESHOLD, BAND, legend_title="model's label", **SIZE)))
    assert png.size == (700, 240)
    with_legend = render_histogram(CASE, THRESHOLD, BAND, legend_title="model's label", **SIZE)
    assert np.array_equal(np.asarray(png.convert("RGB")), with_legend[..., :3])


@pytest.mark.parametrize("case", [[], [0.0, 1.0, 1.0]])
def test_edge_cases_draw(case):
    rgba = render_histogram(case, 0.5, (0.4, 0.6), legend_title="model's label", **SIZE)
    assert rgba.shape == (240, 700, 4) and (rgba[..., :3] < 128).any()          # axes and text on white


def test_the_pdf_draws_with_this_renderer():
    from leukviewer.core.reports import pdf

    assert pdf.histogram_png is histogram.histogram_png     # the window paints the same counts: tests/gui/test_histogram_view.py

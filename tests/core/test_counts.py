"""Counts a hematologist can trust: cells cut by the field's border are shown and flagged, not counted."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from leukviewer.core.analysis.imageio import read_image
from leukviewer.core.analysis.localize import estimate_rbc_diameter, find_white_cells
from leukviewer.core.analysis.results import Cell, CaseSummary, ImageResult
from leukviewer.core.review.session import ReviewSession, reviewed_counts
from leukviewer.core.reports.tables import IMAGE_COLUMNS, image_row

MODEL = {"name": "m", "version": "1", "sha256": "a" * 64}


def _result_of(rgb: np.ndarray, name: str, rbc: float) -> ImageResult:
    """An ImageResult as the pipeline builds it, every cell suggested a blast (the model is not the point)."""
    regions = find_white_cells(rgb, rbc_diameter=rbc)
    result = ImageResult(path=f"/case/{name}", image=name, status="ok", kind="smear_field",
                         width=rgb.shape[1], height=rgb.shape[0])
    for n, r in enumerate(regions, start=1):
        result.cells.append(Cell(f"{name}#{n}", name, tuple(int(v) for v in r.bbox), r.outline.tolist(), r.centroid,
                                 r.area, 0.9, "ALL", bool(r.partial), "m", "1", "a" * 64))
    return result


def test_cell_cut_by_the_border_is_flagged_and_left_out_of_the_counts(shared_data: Path, tmp_path: Path) -> None:
    # BCCD 00065: two white cells, both whole. Cut the field through the right one: it is still found and
    # shown (flagged as cut by the border) but the counts hold only the other one. (Cut through its middle, too
    # little of its nucleus is left for a white cell.)
    field = read_image(shared_data / "bccd" / "JPEGImages" / "BloodImage_00065.jpg")
    rbc = estimate_rbc_diameter(field)
    whole = _result_of(field, "whole.jpg", rbc)
    x, _, w, _ = max(whole.cells, key=lambda c: c.bbox[0]).bbox
    assert [c.partial for c in whole.cells] == [False, False]
    cut = _result_of(np.ascontiguousarray(field[:, : x + 2 * w // 3]), "cut.jpg", rbc)
    assert len(cut.cells) == 2 and sum(c.partial for c in cut.cells) == 1

    counts = cut.counts()
    assert (counts["white_cells"], counts["blasts"], counts["border_cells_excluded"]) == (1, 1, 1)
    assert counts["blast_percentage"] == 100.0
    assert whole.counts()["white_cells"] == 2 and whole.counts()["border_cells_excluded"] == 0

    case = CaseSummary(folder="/case")
    case.add(whole)
    case.add(cut)
    assert (case.white_cells, case.blasts, case.border_cells_excluded) == (3, 3, 1)
    assert case.to_dict()["border_cells_excluded"] == 1

    # After review: a reviewer's label on the cut cell does not enter the counts either.
    session = ReviewSession.open(tmp_path, MODEL)
    partial = next(c for c in cut.cells if c.partial)
    session.set_label(partial.cell_id, "HEM", suggested="ALL", reviewer="r")
    after = reviewed_counts(cut.cells, session)
    assert (after["white_cells"], after["blasts"], after["normal"], after["border_cells_excluded"]) == (1, 1, 0, 1)

    row = dict(zip(IMAGE_COLUMNS, image_row(cut, "/case", after)))
    assert row["white_cells"] == "1" and row["border_cells_excluded"] == "1"
